"""A month split over ledger shards (docs/scale.md), against DynamoDB in moto: the same exactness as
one ledger (nothing admitted past the limit, every call counted once), across shards.

The direct tests run on a moto server that applies one request at a time (`served_usage`), so
concurrent reservations really race on the shards' items."""

from __future__ import annotations

import calendar
from typing import Any

import pytest
from byom.dal.ledger import TOTAL, UsageTable, ledger_of, month_pk, shard_pk
from byom.domain import Budget, Pricing
from byom.errors import BudgetExceeded
from byom.logic.call_meter import CallMeter, Threshold
from byom.logic.ledger_shards import shard_of
from byom.logic.money import Estimate
from byom.money import BudgetState, Hold, Ledger, ReservationRefused
from byom.providers import Usage

from tests.integration.conftest import Api
from tests.integration.fake_openai import Gateway, gateway, loopback
from tests.integration.test_budgets import (
    PRICING,
    _budget,
    _chat,
    _usage,
    reserve_at_once,
    served_usage,
    tenant,
    upstream,
)

__all__ = ["gateway", "loopback", "served_usage", "tenant", "upstream"]  # shared fixtures

MONTH = "2026-11"
NOW = calendar.timegm((2026, 11, 23, 12, 0, 0))
LIMIT = 1_000_000


def _set_budget(usage: UsageTable, shards: int, limit: int = LIMIT, **fields: Any) -> Budget:
    budget = Budget(
        tenant_id="tnt_a",
        monthly_limit_usd=limit / 1_000_000,
        hard=True,
        ledger_shards=shards,
        updated_at=0,
        **fields,
    )
    usage.put_budget(budget, MONTH, {}, limit)
    return budget


def _hold(request_id: str, amount: int, shards: int, *, expires_at: int = 10**10) -> Hold:
    return Hold(
        "tnt_a",
        MONTH,
        request_id,
        "key_1",
        amount,
        LIMIT,
        None,
        expires_at,
        shard=shard_of(request_id, shards),
        shards=shards,
    )


def _month(usage: UsageTable) -> Ledger:
    """The month's ledger as the usage report sums it over the shards."""
    return ledger_of(next((i for i in usage.month_items("tnt_a", MONTH) if i["sk"] == TOTAL), None))


def _remaining_by_shard(usage: UsageTable, shards: int) -> list[int]:
    items = [
        usage._table.get_item(Key={"pk": shard_pk("tnt_a", MONTH, i), "sk": TOTAL}).get("Item")
        for i in range(shards)
    ]
    return [int(item["remaining_micros"]) for item in items if item]


def _meter(usage: UsageTable, request_id: str, notifier: Any = None) -> CallMeter:
    """A call's meter, reading what a call reads: the budget and shard 0's ledger."""
    item = usage._table.get_item(Key={"pk": month_pk("tnt_a", MONTH), "sk": TOTAL}).get("Item")
    state = BudgetState(usage.get_budget("tnt_a"), ledger_of(item))
    return CallMeter(usage, notifier, None, "tnt_a", "key_1", request_id, state, lambda: NOW)


@pytest.mark.parametrize(
    "set_this_month", [True, False], ids=["budget-set-this-month", "shards-start-lazily"]
)
def test_fifty_concurrent_reservations_on_four_shards_admit_exactly_what_the_limit_holds(
    served_usage: UsageTable, set_this_month: bool
) -> None:
    if set_this_month:
        _set_budget(served_usage, 4)

    admitted, refused = reserve_at_once(served_usage, [_hold(f"r{n}", 70_000, 4) for n in range(50)])

    month = _month(served_usage)
    # As on one ledger: 14 x 70,000 <= 1,000,000 < 15 x 70,000, though a shard's share holds 3.
    assert (len(admitted), len(refused)) == (14, 36)
    assert (month.committed_micros, month.remaining_micros) == (980_000, 20_000)
    assert min(_remaining_by_shard(served_usage, 4)) >= 0
    assert set(refused) == {20_000}


def test_a_call_bigger_than_its_shards_share_borrows_from_the_others(served_usage: UsageTable) -> None:
    _set_budget(served_usage, 4)

    served_usage.reserve(_hold("big", 600_000, 4))
    served_usage.reserve(_hold("rest", 400_000, 4))
    with pytest.raises(ReservationRefused) as refused:
        served_usage.reserve(_hold("one-more", 1, 4))

    assert refused.value.remaining_micros == 0
    assert _month(served_usage).committed_micros == LIMIT
    assert _remaining_by_shard(served_usage, 4) == [0, 0, 0, 0]


@pytest.mark.parametrize("shards", [1, 4])
def test_a_months_first_reservation_over_the_whole_limit_is_refused(
    served_usage: UsageTable, shards: int
) -> None:
    """The month's ledgers are not written yet (its budget was set in an earlier month)."""
    with pytest.raises(ReservationRefused):
        served_usage.reserve(_hold("huge", LIMIT + 1, shards))

    assert _month(served_usage).committed_micros == 0


def test_a_budget_change_re_splits_what_is_left(served_usage: UsageTable) -> None:
    _set_budget(served_usage, 4)
    holds = [_hold(f"r{n}", 100_000, 4) for n in range(6)]
    for hold in holds:
        served_usage.reserve(hold)

    _set_budget(served_usage, 4, limit=2_000_000)
    assert _month(served_usage).remaining_micros == 2_000_000 - 600_000
    assert min(_remaining_by_shard(served_usage, 4)) > 0

    # Lowered under what is committed: nothing more is admitted, even once holds are given back.
    _set_budget(served_usage, 4, limit=500_000)
    for hold in holds[:3]:
        served_usage.release(hold)
    with pytest.raises(ReservationRefused):
        served_usage.reserve(_hold("after-lowering", 1, 4))
    # Set again once the month is back under it, the budget admits what is left.
    _set_budget(served_usage, 4, limit=500_000)
    served_usage.reserve(_hold("fits", 200_000, 4))
    with pytest.raises(ReservationRefused):
        served_usage.reserve(_hold("does-not", 1, 4))


def test_sharded_calls_are_each_counted_once_and_the_report_sums_the_shards(served_usage: UsageTable) -> None:
    _set_budget(served_usage, 4)
    ids = [f"call-{n}" for n in range(12)]
    assert len({shard_of(i, 4) for i in ids}) == 4
    for request_id in ids:
        with _meter(served_usage, request_id) as meter:
            meter.admit(Estimate(50, 25, 100_000))
            meter.succeeded("chat", Usage(6, 2), Pricing(**PRICING), latency_ms=1)  # 10,000 micro-dollars
    meter = _meter(served_usage, ids[0])  # a replay of the first call
    with meter:
        meter.admit(Estimate(50, 25, 100_000))
        meter.succeeded("chat", Usage(6, 2), Pricing(**PRICING), latency_ms=1)

    items = {i["sk"]: i for i in served_usage.month_items("tnt_a", MONTH)}
    month = ledger_of(items[TOTAL])
    assert (items[TOTAL]["requests"], items["model#chat"]["requests"], items["key#key_1"]["requests"]) == (
        12,
        12,
        12,
    )
    assert (month.spent_micros, month.committed_micros, month.remaining_micros) == (120_000, 120_000, 880_000)
    assert items["day#2026-11-23"]["cost_micros"] == 120_000


def test_a_sharded_threshold_is_announced_once_once_the_month_reaches_it(served_usage: UsageTable) -> None:
    _set_budget(served_usage, 4, warn_at=[0.5])
    sent: list[Threshold] = []

    class Notifier:
        def budget_threshold_crossed(self, threshold: Threshold) -> None:
            sent.append(threshold)

    announced_after: list[int] = []
    for n in range(16):  # $0.05 each: the month reaches 50 % at the 10th call
        with _meter(served_usage, f"call-{n}", Notifier()) as meter:
            meter.admit(Estimate(0, 25, 50_000))
            meter.succeeded("chat", Usage(0, 25), Pricing(**PRICING), latency_ms=1)
        if sent and not announced_after:
            announced_after.append(n + 1)

    assert [t.fraction for t in sent] == [0.5]
    assert sent[0].spent_usd >= 0.5
    assert announced_after == [10]  # these request ids put the 10th call on a shard past its part
    item = served_usage._table.get_item(Key={"pk": month_pk("tnt_a", MONTH), "sk": TOTAL})["Item"]
    assert item["warned"] == {"0.5"}


def test_fewer_shards_later_in_the_month_keep_the_earlier_shards_in_the_report_and_the_sweep(
    served_usage: UsageTable,
) -> None:
    _set_budget(served_usage, 4)
    for n in range(8):
        with _meter(served_usage, f"early-{n}") as meter:
            meter.admit(Estimate(50, 25, 100_000))
            meter.succeeded("chat", Usage(6, 2), Pricing(**PRICING), latency_ms=1)
    crashed = next(f"crashed-{n}" for n in range(100) if shard_of(f"crashed-{n}", 4) == 3)
    stuck = _hold(crashed, 50_000, 4, expires_at=NOW - 1)  # on a shard the month then stops using
    served_usage.reserve(stuck)

    _set_budget(served_usage, 2)
    with _meter(served_usage, "late") as meter:
        meter.admit(Estimate(50, 25, 100_000))
        meter.succeeded("chat", Usage(6, 2), Pricing(**PRICING), latency_ms=1)

    assert served_usage.sweep("tnt_a", MONTH, NOW) == 1
    month = _month(served_usage)
    assert (month.spent_micros, month.committed_micros, month.remaining_micros) == (90_000, 90_000, 910_000)


# Through the API


def test_a_sharded_budget_is_set_called_and_reported_through_the_api(
    admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    answer = _budget(admin_api, tenant, 0.10, ledger_shards=4)
    assert answer["ledger_shards"] == 4

    statuses = [_chat(gateway, tenant)[0] for _ in range(6)]

    usage = _usage(admin_api, tenant)
    # Each call holds $0.057, more than a shard's $0.025 share, and costs $0.010: as on one ledger,
    # five fit and the sixth is refused with $0.050 left.
    assert statuses == [200, 200, 200, 200, 200, 429]
    assert usage["total"]["requests"] == 5
    assert usage["budget"] | {"warned": []} == {
        "limit_usd": 0.10,
        "spent_usd": pytest.approx(0.050),
        "reserved_usd": 0.0,
        "remaining_usd": pytest.approx(0.050),
        "hard": True,
        "warn_at": [],
        "warned": [],
    }


@pytest.mark.parametrize("shards", [0, 33, 2.5])
def test_a_shard_count_out_of_range_is_a_400(admin_api: Api, tenant: str, shards: Any) -> None:
    body = {"monthly_limit_usd": 1, "ledger_shards": shards}
    status, answer, _ = admin_api("PUT", f"/admin/tenants/{tenant}/budget", body)

    assert status == 400
    assert answer["error"]["param"] == "ledger_shards"


def test_a_key_limit_holds_across_shards(served_usage: UsageTable) -> None:
    budget = Budget(
        tenant_id="tnt_a",
        monthly_limit_usd=1,
        hard=True,
        key_limits={"key_1": 0.2},
        ledger_shards=4,
        updated_at=0,
    )
    served_usage.put_budget(budget, MONTH, {"key_1": 200_000}, LIMIT)
    admitted = 0
    for n in range(10):
        hold = Hold("tnt_a", MONTH, f"k{n}", "key_1", 70_000, LIMIT, 200_000, 10**10, shard_of(f"k{n}", 4), 4)
        try:
            served_usage.reserve(hold)
            admitted += 1
        except ReservationRefused as refused:
            assert refused.scope == "key"

    assert admitted == 2  # 2 x 70,000 <= 200,000 < 3 x 70,000
    with pytest.raises(BudgetExceeded):
        meter = _meter(served_usage, "over-the-key")
        meter.admit(Estimate(0, 0, 70_000))


def test_a_sharded_months_minute_counter_adds_every_shards_tokens_where_calls_read_it(
    served_usage: UsageTable,
) -> None:
    _set_budget(served_usage, 4)
    ids = [f"tpm-{n}" for n in range(8)]
    assert len({shard_of(i, 4) for i in ids}) > 1
    for request_id in ids:
        meter = CallMeter(
            served_usage,
            None,
            None,
            "tnt_a",
            "key_1",
            request_id,
            BudgetState(served_usage.get_budget("tnt_a"), Ledger()),
            lambda: NOW,
            tokens_minute="2026-11-23T12:00",
        )
        with meter:
            meter.succeeded("chat", Usage(6, 2), Pricing(**PRICING), latency_ms=1)

    minute = served_usage._table.get_item(Key={"pk": month_pk("tnt_a", MONTH), "sk": "tpm#2026-11-23T12:00"})
    assert minute["Item"]["tokens"] == 8 * 8
