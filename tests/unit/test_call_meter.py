"""The money of one call: reserve, settle, release, announce. The usage table is a recording fake;
its conditional writes are exercised against DynamoDB (moto) in tests/integration/test_budgets.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from byom.domain import Budget, Pricing
from byom.errors import BudgetExceeded, StoreUnavailable
from byom.logic.call_meter import HOLD_SECONDS, CallMeter, Foreseen, Foresight, Threshold, reconcile
from byom.logic.ledger_shards import shard_of
from byom.logic.money import Estimate
from byom.money import BudgetState, Hold, Ledger, Metered, Pending, ReservationRefused, Settled
from byom.providers import Usage

NOW = 1_790_000_000  # 2026-09-21
PRICE = Pricing(input_per_1k_usd=1.0, output_per_1k_usd=2.0)


@dataclass
class RecordingUsage:
    refuse: list[ReservationRefused] = field(default_factory=list)
    metered_before: bool = False
    broken: bool = False
    """Every write but a release raises, as a throttled table does after its retries."""
    spent: int = 0
    """The ledger's spend, which a guarded settle answers with."""
    swept: int = 0
    warned: set[str] = field(default_factory=set)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    thresholds: list[int | None] = field(default_factory=list)
    guards: list[int | None] = field(default_factory=list)

    def reserve(self, hold: Hold) -> None:
        self.calls.append(("reserve", hold))
        if self.broken:
            raise ConnectionError("throttled")
        if self.refuse:
            raise self.refuse.pop(0)

    def sweep(self, tenant_id: str, month: str, now: int, shards: int | None = None) -> int:
        self.calls.append(("sweep", month))
        return self.swept

    def settle(
        self,
        metered: Metered,
        hold: Hold | None,
        spend_guard: int | None = None,
        *,
        also: list[dict[str, Any]] | None = None,
    ) -> Settled:
        self.calls.append(("settle", (metered, hold)))
        self.guards.append(spend_guard)
        self.also = list(also or [])
        if self.broken:
            raise ConnectionError("throttled")
        if self.metered_before:
            return Settled(False)
        before, self.spent = self.spent, self.spent + metered.cost_micros
        if spend_guard is not None and before >= spend_guard:
            return Settled(True, self.spent, frozenset(self.warned))
        return Settled(True)

    def release(self, hold: Hold) -> bool:
        self.calls.append(("release", hold))
        return True

    def mark_warned(self, tenant_id: str, month: str, label: str, threshold: int | None) -> bool:
        self.calls.append(("mark_warned", label))
        self.thresholds.append(threshold)
        if label in self.warned:
            return False
        self.warned.add(label)
        return True

    def month_spend(self, tenant_id: str, month: str, shards: int) -> tuple[int, frozenset[str]]:
        self.calls.append(("month_spend", shards))
        return self.spent, frozenset(self.warned)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@dataclass
class RecordingNotifier:
    sent: list[Threshold] = field(default_factory=list)
    broken: bool = False

    def budget_threshold_crossed(self, threshold: Threshold) -> None:
        if self.broken:
            raise ConnectionError("EventBridge is down")
        self.sent.append(threshold)


def _budget(
    limit: float = 1.0, *, hard: bool = True, warn_at: list[float] | None = None, **keys: float
) -> Budget:
    return Budget(
        tenant_id="tnt_a",
        monthly_limit_usd=limit,
        warn_at=warn_at or [],
        hard=hard,
        key_limits=keys,
        updated_at=NOW,
    )


@dataclass
class RecordingBacklog:
    kept: list[Pending] = field(default_factory=list)
    broken: bool = False

    def keep(self, pending: Pending) -> None:
        if self.broken:
            raise ConnectionError("SQS is down")
        self.kept.append(pending)


@dataclass
class RecordingWriter:
    written: list[dict[str, Any]] = field(default_factory=list)

    def write(self, items: list[dict[str, Any]]) -> None:
        self.written.extend(items)


def _meter(
    usage: RecordingUsage,
    budget: Budget | None,
    spent: int = 0,
    notifier: RecordingNotifier | None = None,
    backlog: RecordingBacklog | None = None,
    request_id: str = "req-1",
) -> CallMeter:
    return CallMeter(
        usage=usage,
        notifier=notifier or RecordingNotifier(),
        metrics=None,
        tenant_id="tnt_a",
        key_id="key_1",
        request_id=request_id,
        state=BudgetState(budget, Ledger(spent_micros=spent, committed_micros=spent)),
        now=lambda: NOW,
        backlog=backlog,
    )


ESTIMATE = Estimate(input_tokens=100, output_tokens=50, cost_micros=200_000)


def test_without_a_hard_budget_nothing_is_reserved() -> None:
    usage = RecordingUsage()
    for budget in (None, _budget(hard=False)):
        _meter(usage, budget).admit(ESTIMATE)

    assert usage.calls == []


def test_a_hard_budget_reserves_the_estimate_until_the_hold_expires() -> None:
    usage = RecordingUsage()
    meter = _meter(usage, _budget(2.5, key_1=0.5))

    meter.admit(ESTIMATE)

    hold = usage.calls[0][1]
    assert (hold.amount_micros, hold.limit_micros, hold.key_limit_micros) == (200_000, 2_500_000, 500_000)
    assert (hold.month, hold.expires_at) == ("2026-09", NOW + HOLD_SECONDS)


def test_a_refusal_sweeps_crashed_holds_then_answers_429_naming_what_remains() -> None:
    usage = RecordingUsage(refuse=[ReservationRefused("tenant", 120_000)])

    with pytest.raises(BudgetExceeded) as refused:
        _meter(usage, _budget()).admit(ESTIMATE)

    assert usage.names() == ["reserve", "sweep"]
    assert (refused.value.status, refused.value.type, refused.value.code) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert "$0.120000 remaining" in refused.value.message
    assert "up to $0.200000" in refused.value.message


def test_a_key_refusal_says_it_is_the_keys_budget() -> None:
    usage = RecordingUsage(refuse=[ReservationRefused("key", 0)])

    with pytest.raises(BudgetExceeded, match="this API key's monthly budget"):
        _meter(usage, _budget(key_1=0.1)).admit(ESTIMATE)


def test_a_call_is_admitted_when_a_sweep_frees_enough() -> None:
    usage = RecordingUsage(refuse=[ReservationRefused("tenant", 0)], swept=1)
    meter = _meter(usage, _budget())

    meter.admit(ESTIMATE)

    assert usage.names() == ["reserve", "sweep", "reserve"]
    assert meter.hold is not None


def test_success_settles_the_hold_at_the_providers_tokens() -> None:
    usage = RecordingUsage()
    with _meter(usage, _budget()) as meter:
        meter.admit(ESTIMATE)
        cost = meter.succeeded("chat", Usage(10, 5), PRICE, latency_ms=12)

    metered, hold = usage.calls[-1][1]
    assert cost == 10 * 1000 + 5 * 2000
    assert (metered.input_tokens, metered.output_tokens, metered.cost_micros) == (10, 5, cost)
    assert hold is meter.hold
    assert "release" not in usage.names()


def test_the_aliases_a_fallback_covered_are_settled_with_the_answer_in_one_write() -> None:
    usage = RecordingUsage()
    with _meter(usage, _budget()) as meter:
        meter.admit(ESTIMATE)
        cost = meter.succeeded("fast", Usage(10, 5), PRICE, latency_ms=12, fell_back_from=("smart",))

    metered, _ = usage.calls[-1][1]
    assert usage.names() == ["reserve", "settle"]
    assert (metered.alias, metered.fell_back_from, metered.cost_micros) == ("fast", ("smart",), cost)


def test_the_answering_models_counters_keep_the_covered_failures_out() -> None:
    metered = Metered(
        "tnt_a",
        "2026-09",
        "2026-09-01",
        "r1",
        "key_1",
        "fast",
        10,
        5,
        20_000,
        fell_back_from=("smart", "mid"),
    )

    call, model = metered.counters(), metered.model_counters()

    assert (call["requests"], call["errors"], call["fallbacks"], call["cost_micros"]) == (1, 2, 2, 20_000)
    assert (model["requests"], model["errors"], model["fallbacks"], model["cost_micros"]) == (1, 0, 0, 20_000)


def test_a_request_metered_before_gives_its_new_hold_back() -> None:
    usage = RecordingUsage(metered_before=True)
    with _meter(usage, _budget()) as meter:
        meter.admit(ESTIMATE)
        meter.succeeded("chat", Usage(10, 5), PRICE, latency_ms=12)

    assert usage.names() == ["reserve", "settle", "release"]


def test_a_cache_hit_is_counted_at_no_cost() -> None:
    usage = RecordingUsage()
    with _meter(usage, None) as meter:
        cost = meter.succeeded("chat", Usage(10, 5), PRICE, latency_ms=None, cache_hit=True)

    metered, _ = usage.calls[-1][1]
    assert (cost, metered.cache_hit, metered.input_tokens) == (0, True, 0)


def test_a_provider_failure_counts_an_error_and_gives_the_hold_back_in_the_same_write() -> None:
    usage = RecordingUsage()
    with _meter(usage, _budget()) as meter:
        meter.admit(ESTIMATE)
        meter.failed("chat", latency_ms=30)

    metered, hold = usage.calls[-1][1]
    assert (usage.names(), metered.error, metered.cost_micros, hold) == (
        ["reserve", "settle"],
        True,
        0,
        meter.hold,
    )


@pytest.mark.parametrize(
    "interruption", [RuntimeError("gateway fault"), KeyboardInterrupt(), GeneratorExit()]
)
def test_any_interruption_before_settling_releases_the_hold(interruption: BaseException) -> None:
    usage = RecordingUsage()

    with pytest.raises(type(interruption)), _meter(usage, _budget()) as meter:
        meter.admit(ESTIMATE)
        raise interruption

    assert usage.names() == ["reserve", "release"]


def test_crossing_warn_at_fractions_announces_each_once() -> None:
    usage, notifier = RecordingUsage(spent=450_000), RecordingNotifier()
    budget = _budget(1.0, warn_at=[0.5, 0.8])

    with _meter(usage, budget, spent=450_000, notifier=notifier) as first:
        first.succeeded("chat", Usage(100, 0), PRICE, latency_ms=1)  # +0.1 USD: 55 %
    with _meter(usage, budget, spent=550_000, notifier=notifier) as second:
        second.succeeded("chat", Usage(100, 0), PRICE, latency_ms=1)  # 65 %: nothing new

    assert [(t.fraction, t.month, t.limit_usd) for t in notifier.sent] == [(0.5, "2026-09", 1.0)]
    assert notifier.sent[0].spent_usd == pytest.approx(0.55)


def test_the_call_that_reaches_a_threshold_announces_it_though_it_started_before_others_spent() -> None:
    usage, notifier = RecordingUsage(spent=450_000), RecordingNotifier()

    # It read the ledger at 0 %; another call has since spent 45 %.
    with _meter(usage, _budget(1.0, warn_at=[0.5]), spent=0, notifier=notifier) as late:
        late.succeeded("chat", Usage(100, 0), PRICE, latency_ms=1)

    assert [(t.fraction, t.spent_usd) for t in notifier.sent] == [(0.5, pytest.approx(0.55))]


def test_a_sharded_month_holds_and_counts_the_call_on_the_shard_of_its_request_id() -> None:
    usage = RecordingUsage()
    budget = _budget(1.0).model_copy(update={"ledger_shards": 8})
    request_id = next(f"req-{n}" for n in range(100) if shard_of(f"req-{n}", 8) == 5)

    with _meter(usage, budget, request_id=request_id) as meter:
        meter.admit(ESTIMATE)
        meter.succeeded("chat", Usage(100, 0), PRICE, latency_ms=1)

    hold, (metered, settled_hold) = usage.calls[0][1], usage.calls[1][1]
    assert (hold.shard, hold.shards, hold.limit_micros) == (5, 8, 1_000_000)
    assert (metered.shard, settled_hold) == (5, hold)


def test_a_sharded_shard_past_its_part_of_a_threshold_reads_the_month_before_announcing() -> None:
    budget = _budget(1.0, warn_at=[0.5]).model_copy(update={"ledger_shards": 4})
    below, notifier = RecordingUsage(spent=140_000), RecordingNotifier()

    with _meter(below, budget, notifier=notifier) as meter:  # its shard past $0.125; the month at 24 %
        meter.succeeded("chat", Usage(100, 0), PRICE, latency_ms=1)
    reached = RecordingUsage(spent=450_000)
    with _meter(reached, budget, notifier=notifier) as meter:  # the month at 55 %
        meter.succeeded("chat", Usage(100, 0), PRICE, latency_ms=1)

    assert below.guards == [500_000 // 4 - 100_000]
    assert below.names() == ["settle", "month_spend"]
    assert reached.names() == ["settle", "month_spend", "mark_warned"]
    assert reached.thresholds == [None]  # the month's spend was read, summed over the shards
    assert [(t.fraction, t.spent_usd) for t in notifier.sent] == [(0.5, pytest.approx(0.55))]


def test_a_hold_reserved_ahead_that_the_read_confirms_stands_for_the_call() -> None:
    usage = RecordingUsage()
    ahead = _meter(RecordingUsage(), _budget(2.5, key_1=0.5)).hold_for(300_000)
    meter = _meter(usage, _budget(2.5, key_1=0.5))

    meter.adopt(ahead)
    meter.admit(ESTIMATE)  # 200,000: the hold ahead covers it

    assert (meter.hold, usage.names()) == (ahead, [])


@pytest.mark.parametrize(
    "budget_now",
    [_budget(2.5), _budget(3.0, key_1=0.5), _budget(2.5, key_1=0.5).model_copy(update={"ledger_shards": 4})],
    ids=["key-limit-gone", "limit-changed", "now-sharded"],
)
def test_a_hold_reserved_ahead_on_other_ledgers_than_the_read_says_is_given_back(budget_now: Budget) -> None:
    usage = RecordingUsage()
    ahead = _meter(RecordingUsage(), _budget(2.5, key_1=0.5)).hold_for(300_000)
    meter = _meter(usage, budget_now)

    meter.adopt(ahead)
    meter.admit(ESTIMATE)

    assert usage.names() == ["release", "reserve"]
    assert usage.calls[0][1] == ahead
    assert meter.hold is not None and meter.hold.amount_micros == 200_000


def test_a_hold_reserved_ahead_smaller_than_the_estimate_is_given_back_and_reserved_again() -> None:
    usage = RecordingUsage()
    meter = _meter(usage, _budget())
    ahead = meter.hold_for(100_000)

    meter.adopt(ahead)
    meter.admit(ESTIMATE)

    assert usage.names() == ["release", "reserve"]
    assert meter.hold is not None and meter.hold.amount_micros == 200_000


def test_a_hold_reserved_ahead_is_given_back_when_the_call_stops_before_the_provider() -> None:
    usage = RecordingUsage()
    meter = _meter(usage, _budget())
    ahead = meter.hold_for(300_000)

    with meter:
        meter.adopt(ahead)
    # (a content policy refusal, a rate limit: the call never reached `admit`)

    assert usage.calls == [("release", ahead)]


def test_the_last_read_of_each_alias_is_remembered_most_recent_first() -> None:
    foresight = Foresight(size=2)
    seen = Foreseen(_budget(), None, 100)
    for alias in ("a", "b", "c"):
        foresight.remember("tnt_a", alias, seen)
    foresight.remember("tnt_a", "b", None)  # no hard budget any more

    assert [foresight.get("tnt_a", alias) for alias in ("a", "b", "c")] == [None, None, seen]


def test_a_call_below_every_threshold_does_not_try_to_announce() -> None:
    usage = RecordingUsage(spent=100_000)

    with _meter(usage, _budget(1.0, warn_at=[0.5]), spent=100_000) as meter:
        meter.succeeded("chat", Usage(100, 0), PRICE, latency_ms=1)

    assert "mark_warned" not in usage.names()


def test_a_fraction_another_call_announced_is_not_announced_again() -> None:
    usage, notifier = RecordingUsage(warned={"0.5"}, spent=600_000), RecordingNotifier()

    with _meter(usage, _budget(warn_at=[0.5]), spent=0, notifier=notifier) as meter:
        meter.succeeded("chat", Usage(1, 0), PRICE, latency_ms=1)

    assert notifier.sent == []


def test_a_failed_notification_does_not_fail_the_call() -> None:
    usage = RecordingUsage(spent=600_000)

    with _meter(
        usage, _budget(warn_at=[0.5]), spent=600_000, notifier=RecordingNotifier(broken=True)
    ) as meter:
        cost = meter.succeeded("chat", Usage(1, 0), PRICE, latency_ms=1)

    assert cost == 1000
    assert "mark_warned" in usage.names()


def test_a_call_with_cached_tokens_is_charged_at_the_cache_rates_and_counts_them() -> None:
    usage = RecordingUsage()
    meter = _meter(usage, None)
    pricing = PRICE.model_copy(update={"cache_read_per_1k_usd": 0.1, "cache_write_per_1k_usd": 1.25})

    cost = meter.succeeded(
        "fast",
        Usage(prompt_tokens=100, completion_tokens=10, cached_tokens=60, cache_write_tokens=30),
        pricing,
        latency_ms=5,
    )

    # 10 plain x $1 + 60 read x $0.1 + 30 written x $1.25 + 10 output x $2, per 1K tokens.
    assert cost == 10_000 + 6_000 + 37_500 + 20_000
    metered, _ = usage.calls[-1][1]
    assert (metered.input_tokens, metered.cached_tokens, metered.cost_micros) == (100, 60, cost)


# When the ledger fails


class Record:
    """The call's audit record (byom.governance.trail.Trail's side of the settle)."""

    def __init__(self) -> None:
        self.written = False

    def item(self, input_tokens: int, output_tokens: int, cost_micros: int) -> dict[str, Any]:
        return {"Put": {"TableName": "audit", "Item": {"cost_micros": cost_micros}}}

    def settled(self) -> None:
        self.written = True


def test_a_settle_the_ledger_refuses_is_kept_with_its_hold_and_audit_record() -> None:
    usage, backlog, record = RecordingUsage(), RecordingBacklog(), Record()
    with _meter(usage, _budget(), backlog=backlog) as meter:
        meter.admit(ESTIMATE)
        usage.broken = True
        cost = meter.succeeded("chat", Usage(10, 5), PRICE, latency_ms=12, record=record)

    (pending,) = backlog.kept
    assert pending.metered is not None and pending.metered.cost_micros == cost == 20_000
    assert pending.hold is not None and pending.hold.amount_micros == ESTIMATE.cost_micros
    assert pending.also == ({"Put": {"TableName": "audit", "Item": {"cost_micros": 20_000}}},)
    assert record.written  # it goes with the meter, not on its own
    assert "release" not in usage.names()  # the hold stays held


def test_without_a_backlog_a_refused_settle_fails_the_call_and_gives_the_hold_back() -> None:
    usage = RecordingUsage()
    with pytest.raises(ConnectionError), _meter(usage, _budget()) as meter:
        meter.admit(ESTIMATE)
        usage.broken = True
        meter.succeeded("chat", Usage(10, 5), PRICE, latency_ms=12)

    assert usage.names() == ["reserve", "settle", "release"]


def test_when_the_backlog_fails_too_the_answer_stands_and_the_hold_stays() -> None:
    usage, backlog = RecordingUsage(), RecordingBacklog(broken=True)
    with _meter(usage, _budget(), backlog=backlog) as meter:
        meter.admit(ESTIMATE)
        usage.broken = True
        meter.succeeded("chat", Usage(10, 5), PRICE, latency_ms=12)

    assert usage.names() == ["reserve", "settle"]


def test_a_reservation_the_ledger_fails_is_a_503_and_holds_nothing() -> None:
    usage = RecordingUsage(broken=True)
    with pytest.raises(StoreUnavailable), _meter(usage, _budget()) as meter:
        meter.admit(ESTIMATE)

    assert meter.hold is None
    assert usage.names() == ["reserve"]


def test_the_reconciler_settles_a_kept_meter_with_its_hold_and_record() -> None:
    usage, writer = RecordingUsage(), RecordingWriter()
    hold = Hold("tnt_a", "2026-09", "req-1", "key_1", 200_000, 1_000_000, None, NOW + HOLD_SECONDS)
    metered = Metered("tnt_a", "2026-09", "2026-09-21", "req-1", "key_1", "chat", cost_micros=20_000)
    audit = {"Put": {"TableName": "audit", "Item": {}}}

    assert reconcile(usage, writer, Pending(metered, hold, (audit,)))
    assert usage.calls == [("settle", (metered, hold))]
    assert usage.also == [audit]
    assert writer.written == []


def test_a_kept_meter_already_counted_gives_its_hold_back() -> None:
    usage, writer = RecordingUsage(metered_before=True), RecordingWriter()
    hold = Hold("tnt_a", "2026-09", "req-1", "key_1", 200_000, 1_000_000, None, NOW + HOLD_SECONDS)
    metered = Metered("tnt_a", "2026-09", "2026-09-21", "req-1", "key_1", "chat")

    assert not reconcile(usage, writer, Pending(metered, hold))
    assert usage.names() == ["settle", "release"]


def test_an_audit_record_kept_on_its_own_is_written_as_it_was_built() -> None:
    usage, writer = RecordingUsage(), RecordingWriter()
    audit = {"Put": {"TableName": "audit", "Item": {"sk": "1#interaction#req-1"}}}

    assert reconcile(usage, writer, Pending(None, None, (audit,)))
    assert writer.written == [audit]
    assert usage.calls == []


def test_a_threshold_mark_the_ledger_fails_leaves_the_call_answered_and_the_threshold_for_the_next() -> None:
    usage, notifier = RecordingUsage(spent=600_000), RecordingNotifier()

    def conflicted(*_: object) -> bool:
        raise ConnectionError("TransactionConflictException")

    usage.mark_warned = conflicted  # type: ignore[method-assign]
    with _meter(usage, _budget(warn_at=[0.5]), spent=600_000, notifier=notifier) as meter:
        meter.succeeded("chat", Usage(10, 5), PRICE, latency_ms=12)

    assert notifier.sent == []
