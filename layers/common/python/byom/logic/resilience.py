"""Retries with backoff, then fallbacks, inside one deadline (SPEC §5).

A call to a model is tried up to `max_attempts` times while the provider says trying again may help
(throttling, 5xx, timeouts), sleeping a random time between 0 and an exponentially growing ceiling
before each retry ("full jitter"). Then the alias's fallbacks are tried in order, each resolved in
the caller's tenant and tried the same way; a fallback's own fallbacks are not followed. Every wait
and every provider timeout fits in what is left of the deadline, so the whole call ends before API
Gateway's 29 s integration timeout does.

The clock, the sleep and the random source are collaborators so tests run instantly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from byom.errors import ByomError, GatewayMisconfigured, ModelNotFound, OutboundRefused, ProviderError
from byom.observability import logger
from byom.providers import Target

T = TypeVar("T")

ATTEMPTS_HEADER = "x-byom-attempts"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    """Calls per model, the first included."""
    base_seconds: float = 0.2
    cap_seconds: float = 2.0
    deadline_seconds: float = 27.0
    """For the whole call: every attempt, wait and fallback."""
    attempt_timeout_seconds: float = 25.0
    """The most one provider call may take; less when less of the deadline is left."""
    min_attempt_seconds: float = 1.0
    """An attempt that could not get this long is not started: it would time out, not answer."""
    stream_seconds: float | None = None
    """The most a stream may run once it has begun, the deadline's part included; None: no limit."""

    def backoff_ceiling(self, retry: int) -> float:
        """The longest wait before retry number `retry` (0 for the first retry)."""
        return min(self.cap_seconds, self.base_seconds * 2**retry)


@dataclass(frozen=True)
class Timing:
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    # From the OS, not the module's generator: with SnapStart (byom:snapStart) every execution
    # environment restored from one snapshot would share its state, and retry in step.
    uniform: Callable[[float, float], float] = random.SystemRandom().uniform


def backoff(policy: RetryPolicy, retry: int, uniform: Callable[[float, float], float]) -> float:
    """Full jitter: anywhere between no wait and the ceiling, so throttled callers spread out."""
    return uniform(0.0, policy.backoff_ceiling(retry))


@dataclass
class Deadline:
    timing: Timing
    seconds: float
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.timing.monotonic()

    def remaining(self) -> float:
        return self.started + self.seconds - self.timing.monotonic()


class Next(Enum):
    RETRY = "retry"  # the same model again, after a backoff
    FALLBACK = "fallback"  # this model cannot answer; the next one may
    ANSWER = "answer"  # no other model would answer differently: the caller gets this error


def next_step(error: ByomError) -> Next:
    if isinstance(error, ProviderError):
        if error.retryable:
            return Next.RETRY
        # The provider found the request itself bad; another model would most likely agree.
        # Its refusals of the credential or model id (401, 403, 404) are this model's problem.
        return Next.ANSWER if error.status == 400 else Next.FALLBACK
    if isinstance(error, OutboundRefused | GatewayMisconfigured):
        return Next.FALLBACK  # this model's endpoint or key is unusable; a fallback has its own
    return Next.ANSWER


@dataclass(frozen=True)
class Outcome(Generic[T]):
    value: T
    target: Target
    """The model that answered: the alias asked for or one of its fallbacks."""
    attempts: int
    fell_back_from: tuple[str, ...] = ()
    """The aliases that failed before `target` answered, in the order tried (its fallback covered
    them): each an error of its own in the usage counters, at no cost."""


def _targets(first: Target, resolve: Callable[[str], Target]) -> Iterator[Target]:
    yield first
    for alias in first.fallbacks:
        try:
            yield resolve(alias)
        except (ModelNotFound, GatewayMisconfigured) as error:
            # Resolved only when needed, so a fallback removed or broken since it was registered is
            # found here; the caller's own model was fine, so its error is the one to report.
            logger.warning(
                "fallback skipped",
                extra={"alias": first.alias, "fallback": alias, "error_type": type(error).__name__},
            )


def _failed(error: ByomError, attempts: int) -> ByomError:
    error.headers[ATTEMPTS_HEADER] = str(attempts)
    return error


def call_with_fallbacks(
    first: Target,
    resolve: Callable[[str], Target],
    call: Callable[[Target, float], T],
    *,
    policy: RetryPolicy,
    timing: Timing,
    deadline: Deadline,
) -> Outcome[T]:
    """`call(target, timeout)` once or more per target until one answers.

    Raises the error that ended the call: one that `next_step` says to answer at once, or the last
    error once the attempts, the fallbacks or the time ran out. It carries `x-byom-attempts`.
    """
    attempts = 0
    last: ByomError | None = None
    failed: list[str] = []
    for target in _targets(first, resolve):
        for retry in range(policy.max_attempts):
            if retry:
                pause = backoff(policy, retry - 1, timing.uniform)
                if deadline.remaining() - pause < policy.min_attempt_seconds:
                    break  # no time to try this model again; a fallback needs no wait
                timing.sleep(pause)
            remaining = deadline.remaining()
            if attempts and remaining < policy.min_attempt_seconds:
                assert last is not None
                raise _failed(last, attempts)
            timeout = min(policy.attempt_timeout_seconds, max(remaining, policy.min_attempt_seconds))
            attempts += 1
            try:
                value = call(target, timeout)
            except ByomError as error:
                step = next_step(error)
                _log_failure(target, error, step, attempts)
                if step is Next.ANSWER:
                    raise _failed(error, attempts) from None
                last = error
                if step is Next.FALLBACK:
                    break
                continue
            covered = tuple(alias for alias in dict.fromkeys(failed) if alias != target.alias)
            return Outcome(value, target, attempts, covered)
        failed.append(target.alias)  # every attempt of this model failed: the next one is tried
    assert last is not None
    raise _failed(last, attempts)


def _log_failure(target: Target, error: ByomError, step: Next, attempt: int) -> None:
    # Status and type only: a provider's message may quote the request.
    logger.warning(
        "model call failed",
        extra={
            "alias": target.alias,
            "provider": target.provider,
            "model_id": target.model_id,
            "status": error.status,
            "provider_status": getattr(error, "provider_status", None),
            "error_type": type(error).__name__,
            "attempt": attempt,
            "next": step.value,
        },
    )
