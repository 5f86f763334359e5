"""Retries, backoff, deadline and fallbacks (byom.logic.resilience) on a fake clock: no real waits."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from byom.errors import (
    ByomError,
    GatewayMisconfigured,
    InvalidRequest,
    ModelNotFound,
    OutboundRefused,
    ProviderError,
)
from byom.logic.resilience import (
    ATTEMPTS_HEADER,
    Deadline,
    Next,
    Outcome,
    RetryPolicy,
    Timing,
    backoff,
    call_with_fallbacks,
    next_step,
)
from byom.providers import Target

from tests.unit.fakes import FakeClock

POLICY = RetryPolicy(
    max_attempts=3, base_seconds=0.2, cap_seconds=2.0, deadline_seconds=27.0, attempt_timeout_seconds=25.0
)


def _target(alias: str, *fallbacks: str) -> Target:
    return Target(
        tenant_id="tnt_a", alias=alias, provider="bedrock", model_id=f"model-{alias}", fallbacks=fallbacks
    )


def unavailable() -> ProviderError:
    return ProviderError("Bedrock answered 503 ServiceUnavailableException: busy", status=503, retryable=True)


def throttled() -> ProviderError:
    return ProviderError("Bedrock answered 429 ThrottlingException: slow down", status=429, retryable=True)


def bad_request() -> ProviderError:
    return ProviderError("The provider answered 400: max_tokens is too large", status=400)


def bad_key() -> ProviderError:
    return ProviderError("The provider answered 401: Incorrect API key provided", status=502)


Step = ByomError | str | float
"""What one call does: raise the error, answer the string, or take that many seconds (then time out
if that is longer than its timeout, else answer "ok")."""


class Models:
    """Scripted models: each call of an alias plays its next step; the last step repeats."""

    def __init__(self, clock: FakeClock, **scripts: list[Step]) -> None:
        self.clock = clock
        self.scripts = scripts
        self.calls: list[str] = []
        self.timeouts: list[tuple[float, float]] = []  # (timeout given, time left then)
        self.resolved: list[str] = []
        self.targets = {alias: _target(alias) for alias in scripts}
        self.deadline: Deadline | None = None

    def call(self, target: Target, timeout: float) -> str:
        assert self.deadline is not None
        self.calls.append(target.alias)
        self.timeouts.append((timeout, self.deadline.remaining()))
        script = self.scripts[target.alias]
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, ByomError):
            raise step
        if isinstance(step, float):
            if step >= timeout:
                self.clock.advance(timeout)
                raise ProviderError(f"{target.alias} did not answer in time", status=504, retryable=True)
            self.clock.advance(step)
            return "ok"
        return step

    def resolve(self, alias: str) -> Target:
        self.resolved.append(alias)
        if alias not in self.targets:
            raise ModelNotFound(f"The model '{alias}' does not exist")
        return self.targets[alias]

    def run(self, first: Target, policy: RetryPolicy = POLICY) -> tuple[str, Target, int]:
        outcome = self.outcome(first, policy)
        return outcome.value, outcome.target, outcome.attempts

    def outcome(self, first: Target, policy: RetryPolicy = POLICY) -> Outcome[str]:
        timing = Timing(monotonic=self.clock.monotonic, sleep=self.clock.sleep, uniform=self.clock.uniform)
        self.deadline = Deadline(timing, policy.deadline_seconds)
        return call_with_fallbacks(
            first, self.resolve, self.call, policy=policy, timing=timing, deadline=self.deadline
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _fails(run: Callable[[], object]) -> ByomError:
    with pytest.raises(ByomError) as failed:
        run()
    return failed.value


# Backoff


def test_the_backoff_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    assert [POLICY.backoff_ceiling(retry) for retry in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_the_wait_is_drawn_from_zero_to_the_ceiling(clock: FakeClock) -> None:
    backoff(POLICY, 3, clock.uniform)

    assert clock.ranges == [(0.0, 1.6)]


def test_jittered_waits_stay_within_zero_and_the_ceiling() -> None:
    draw = random.Random(7).uniform

    waits = [backoff(POLICY, retry, draw) for retry in range(8) for _ in range(200)]

    assert all(0.0 <= wait <= 2.0 for wait in waits)
    assert min(waits) < 0.05 and max(waits) > 1.9  # full jitter: the whole range is used


# Retries


def test_a_retryable_error_is_retried_and_the_answer_returned(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable(), "answer"])

    assert models.run(_target("fast")) == ("answer", models.targets["fast"], 2)


def test_retries_wait_the_jittered_backoff_between_attempts(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable(), unavailable(), "answer"])

    models.run(_target("fast"))

    assert clock.ranges == [(0.0, 0.2), (0.0, 0.4)]
    assert clock.sleeps == [0.2, 0.4]  # the fake draws the top of each range


def test_attempts_per_model_are_bounded(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable()])

    error = _fails(lambda: models.run(_target("fast")))

    assert models.calls == ["fast"] * 3
    assert error.headers[ATTEMPTS_HEADER] == "3"


def test_a_single_attempt_policy_never_retries(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable()])

    _fails(lambda: models.run(_target("fast"), RetryPolicy(max_attempts=1)))

    assert (models.calls, clock.sleeps) == (["fast"], [])


def test_throttling_after_retries_stays_a_429_rate_limit_error(clock: FakeClock) -> None:
    models = Models(clock, fast=[throttled()])

    error = _fails(lambda: models.run(_target("fast")))

    assert (error.status, error.type, error.code, error.source) == (
        429,
        "rate_limit_exceeded",
        "rate_limit_exceeded",
        "provider",
    )


# The deadline


def test_the_whole_call_ends_by_the_deadline_however_long_the_provider_hangs(clock: FakeClock) -> None:
    models = Models(clock, fast=[100.0], backup=[100.0])
    start = clock.now

    error = _fails(lambda: models.run(_target("fast", "backup")))

    assert clock.now - start <= POLICY.deadline_seconds
    assert (error.status, error.source) == (504, "provider")


def test_no_attempt_is_given_more_time_than_is_left(clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=3, deadline_seconds=27.0, attempt_timeout_seconds=10.0)
    models = Models(clock, fast=[100.0], backup=[100.0])

    _fails(lambda: models.run(_target("fast", "backup"), policy))

    # 10 s each while more is left; then the 6.4 s that remain after two timeouts and two waits.
    assert [round(timeout, 6) for timeout, _ in models.timeouts] == [10.0, 10.0, 6.4]
    assert all(timeout <= left for timeout, left in models.timeouts)


def test_the_first_attempt_gets_the_providers_own_timeout(clock: FakeClock) -> None:
    models = Models(clock, fast=["answer"])

    models.run(_target("fast"))

    assert models.timeouts[0][0] == 25.0


def test_no_retry_starts_when_less_than_a_useful_attempt_is_left(clock: FakeClock) -> None:
    # 25.5 s pass on the first attempt: 1.5 s remain, the 0.2 s wait would leave 1.3 s: one more try;
    # after it times out nothing is left, so neither a third attempt nor the fallback starts.
    models = Models(clock, fast=[ProviderError("slow", status=504, retryable=True), 100.0], backup=["x"])
    clock_start = clock.now

    def first_takes_long(target: Target, timeout: float) -> str:
        if not models.calls:
            clock.advance(25.5)
        return Models.call(models, target, timeout)

    models.call = first_takes_long  # type: ignore[method-assign]
    _fails(lambda: models.run(_target("fast", "backup")))

    assert models.calls == ["fast", "fast"]
    assert clock.now - clock_start <= POLICY.deadline_seconds


def test_a_fallback_gets_the_time_a_retry_could_not_use(clock: FakeClock) -> None:
    # After 25.9 s, a retry's wait (up to 0.2 s) would leave too little; the fallback needs no wait.
    models = Models(clock, fast=[unavailable()], backup=["from backup"])

    def slow_first(target: Target, timeout: float) -> str:
        if not models.calls:
            clock.advance(25.9)
        return Models.call(models, target, timeout)

    models.call = slow_first  # type: ignore[method-assign]

    assert models.run(_target("fast", "backup"))[:2] == ("from backup", models.targets["backup"])
    assert models.calls == ["fast", "backup"]


# Fallbacks


def test_fallbacks_are_tried_in_order_after_the_retries(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable()], second=[unavailable()], third=["from third"])

    value, target, attempts = models.run(_target("fast", "second", "third"))

    assert models.calls == ["fast"] * 3 + ["second"] * 3 + ["third"]
    assert (value, target.alias, attempts) == ("from third", "third", 7)


def test_fallbacks_are_resolved_only_when_needed(clock: FakeClock) -> None:
    models = Models(clock, fast=["answer"], backup=["x"])

    models.run(_target("fast", "backup"))

    assert models.resolved == []


def test_a_fallbacks_own_fallbacks_are_not_followed(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable()], backup=[unavailable()], deeper=["x"])
    models.targets["backup"] = _target("backup", "deeper")

    _fails(lambda: models.run(_target("fast", "backup")))

    assert "deeper" not in models.calls + models.resolved


def test_a_provider_400_is_answered_without_retry_or_fallback(clock: FakeClock) -> None:
    models = Models(clock, fast=[bad_request()], backup=["x"])

    error = _fails(lambda: models.run(_target("fast", "backup")))

    assert (models.calls, models.resolved) == (["fast"], [])
    assert (error.status, error.type, error.source, error.headers[ATTEMPTS_HEADER]) == (
        400,
        "invalid_request_error",
        "provider",
        "1",
    )


def test_a_request_the_gateway_finds_unfit_for_the_model_is_answered_at_once(clock: FakeClock) -> None:
    models = Models(
        clock, fast=[InvalidRequest("Bedrock models take images as data: URLs only")], backup=["x"]
    )

    error = _fails(lambda: models.run(_target("fast", "backup")))

    assert (models.calls, error.status) == (["fast"], 400)


def test_a_refused_credential_is_not_retried_but_falls_back(clock: FakeClock) -> None:
    models = Models(clock, fast=[bad_key()], backup=["from backup"])

    assert models.run(_target("fast", "backup"))[0] == "from backup"
    assert models.calls == ["fast", "backup"]


@pytest.mark.parametrize(
    "error",
    [OutboundRefused("Refusing to call 169.254.169.254"), GatewayMisconfigured("The key could not be read")],
)
def test_a_model_the_gateway_cannot_call_falls_back(clock: FakeClock, error: ByomError) -> None:
    models = Models(clock, fast=[error], backup=["from backup"])

    assert models.run(_target("fast", "backup"))[0] == "from backup"
    assert models.calls == ["fast", "backup"]


def test_a_fallback_that_no_longer_resolves_is_skipped(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable()], last=["from last"])

    value, target, _ = models.run(_target("fast", "deleted", "last"))

    assert (value, target.alias, models.resolved) == ("from last", "last", ["deleted", "last"])


def test_the_outcome_names_the_models_that_failed_before_the_one_that_answered(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable()], second=[bad_key()], third=["from third"])

    outcome = models.outcome(_target("fast", "second", "third"))

    assert (outcome.target.alias, outcome.fell_back_from) == ("third", ("fast", "second"))


def test_an_answer_after_retries_of_the_same_model_names_no_failed_model(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable(), "answer"], backup=["x"])

    assert models.outcome(_target("fast", "backup")).fell_back_from == ()


def test_a_fallback_that_no_longer_resolves_is_not_a_failed_model(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable()], last=["from last"])

    assert models.outcome(_target("fast", "deleted", "last")).fell_back_from == ("fast",)


# What the caller is told when everything failed


def test_the_last_error_is_the_answer_when_every_model_failed(clock: FakeClock) -> None:
    timed_out = ProviderError("backup did not answer in time", status=504, retryable=True)
    models = Models(clock, fast=[unavailable()], backup=[timed_out])

    error = _fails(lambda: models.run(_target("fast", "backup")))

    assert (error.status, error.type, error.source, error.message) == (
        504,
        "provider_error",
        "provider",
        "backup did not answer in time",
    )
    assert error.headers[ATTEMPTS_HEADER] == "6"


def test_the_callers_model_error_is_reported_when_its_only_fallback_is_gone(clock: FakeClock) -> None:
    models = Models(clock, fast=[unavailable()])

    error = _fails(lambda: models.run(_target("fast", "deleted")))

    assert (error.status, error.message) == (503, "Bedrock answered 503 ServiceUnavailableException: busy")


def test_gateway_errors_keep_the_gateway_as_their_source(clock: FakeClock) -> None:
    models = Models(clock, fast=[GatewayMisconfigured("The key of credential 'llm' could not be read")])

    error = _fails(lambda: models.run(_target("fast")))

    assert (error.status, error.source) == (500, "gateway")


@pytest.mark.parametrize(
    ("error", "step"),
    [
        (unavailable(), Next.RETRY),
        (throttled(), Next.RETRY),
        (ProviderError("timeout", status=504, retryable=True), Next.RETRY),
        (bad_request(), Next.ANSWER),
        (bad_key(), Next.FALLBACK),
        (OutboundRefused("no"), Next.FALLBACK),
        (GatewayMisconfigured("no"), Next.FALLBACK),
        (InvalidRequest("no"), Next.ANSWER),
    ],
)
def test_what_follows_each_kind_of_error(error: ByomError, step: Next) -> None:
    assert next_step(error) is step
