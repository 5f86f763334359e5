"""The ledger under contention, and the per-tenant ceiling of its write layout (docs/scale.md).

    .venv/bin/python -m bench.contention [--calls 100] [--quick]

Concurrent calls of one tenant, each through `CallMeter` (read, reserve under a hard budget,
settle), against a moto server behind a DynamoDB double that conflicts and throttles as DynamoDB
does (tests/doubles/contended_dynamodb.py). Three capacities: DynamoDB's own (1,000 write units a
second per partition), and two scaled down to the emulator's pace (it applies a few hundred
requests a second, not DynamoDB's thousands), so the calls meet the partition's limit: a burst over
it, then a sustained overload. Each prints what the calls cost in retries and whether the ledger
stayed exact: no meter lost or counted twice, nothing spent over the budget.

Then one call alone, its requests counted item by item: the write (and read) units each call puts
on the tenant's partition and on its hottest item, and the ceiling in calls a second that follows
from DynamoDB's per-partition limits and from transactions on one item conflicting.

No LiteLLM figure beside it: this measures the gateway's ledger layout against DynamoDB's limits,
and LiteLLM's proxy has no DynamoDB ledger to run in the same conditions.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from dataclasses import dataclass

from bench.common import machine, say, table, use_layer

TOTAL = "total"  # byom.dal.ledger.TOTAL, named here before the layer is on the path

# DynamoDB's documented limits of one partition (an item lives on one, so they cap an item too).
PARTITION_WRU = 1000
PARTITION_RRU = 3000
# How long a transaction holds its items in the simulation: an assumption (DynamoDB publishes no
# figure), of the order of a multi-item TransactWriteItems' latency.
SERVICE_SECONDS = 0.01
LIMIT_MICROS = 800_000
# The shards each scenario is run on again, and a shard count that reaches 1,000 calls a second.
SHARDS = 8
TARGET_CALLS_PER_SECOND = 1000


@dataclass(frozen=True)
class Scenario:
    name: str
    item_wru: int
    partition_wru: int
    limit_micros: int = LIMIT_MICROS


SCENARIOS = (
    Scenario(
        "DynamoDB's capacity, a budget with room for every call ($10)",
        PARTITION_WRU,
        PARTITION_WRU,
        10_000_000,
    ),
    Scenario("DynamoDB's capacity (1,000 WRU/s a partition)", PARTITION_WRU, PARTITION_WRU),
    Scenario("a burst over the partition (scaled: 150 / 300 WRU/s)", 150, 300),
    Scenario("sustained overload (scaled: 40 / 100 WRU/s)", 40, 100),
)


def run_scenario(endpoint: str, scenario: Scenario, calls: int, shards: int) -> list[object]:
    from tests.doubles.contended_dynamodb import Capacity, ContendedDynamoDB
    from tests.doubles.meter_simulation import run_calls
    from tests.doubles.served import contended_table

    capacity = Capacity(
        item_wru=scenario.item_wru, partition_wru=scenario.partition_wru, service_seconds=SERVICE_SECONDS
    )
    double = ContendedDynamoDB(capacity)
    outcome = run_calls(
        contended_table(endpoint, double), calls=calls, limit_micros=scenario.limit_micros, shards=shards
    )
    retries = sum(outcome.retries.values())
    escaped = ", ".join(f"{n} {where}" for where, n in sorted(outcome.escaped.items())) or "0"
    return [
        scenario.name,
        shards,
        f"{outcome.settled} / {outcome.refused}",
        f"{retries / calls:.2f}",
        f"{sum(double.tally.requests.values()) / calls:.1f}",
        ", ".join(f"{n} {reason}" for reason, n in sorted(outcome.retries.items())) or "-",
        double.tally.conflicts,
        double.tally.throttles,
        escaped,
        outcome.lost,
        outcome.double_counted,
        f"{outcome.overspend_micros / 1e6:.6f}",
        outcome.holds_left,
        f"{outcome.seconds:.1f}",
    ]


@dataclass(frozen=True)
class CallUnits:
    """What one call (reserve + settle, no contention) puts on the tenant's partition."""

    transactions: int
    items: int
    wru: int
    rru: float
    by_item: Counter[str]
    transactions_on_hottest: int


def one_call_units(endpoint: str) -> CallUnits:
    from tests.doubles.contended_dynamodb import ContendedDynamoDB, Tally
    from tests.doubles.meter_simulation import budgeted, one_call
    from tests.doubles.served import contended_table

    double = ContendedDynamoDB()
    usage_table = contended_table(endpoint, double)
    usage = budgeted(usage_table, LIMIT_MICROS)
    double.tally = Tally()  # the call's requests only, not the budget's
    one_call(usage, usage_table, "req-alone")
    sent = double.tally.applied()
    by_item: Counter[str] = Counter({sk: units for (_, _, sk), units in double.tally.item_wru.items()})
    # Every call writes `total` (the budget's ledger), and no other item twice: `req#` and `hold#`
    # are the call's own, so they never get hot.
    hottest = TOTAL
    return CallUnits(
        transactions=sum(1 for s in sent if s.operation == "TransactWriteItems"),
        items=sum(len(s.items) for s in sent),
        wru=sum(s.wru for s in sent),
        rru=sum(double.tally.partition_rru.values()),
        by_item=by_item,
        transactions_on_hottest=sum(1 for s in sent if any(sk == hottest for _, _, sk in s.items)),
    )


def _item_name(sk: str) -> str:
    """A per-request item's name without its request id (`req#…`, `hold#…`)."""
    prefix = sk.split("#", 1)[0]
    return f"{prefix}#…" if prefix in ("req", "hold") else sk


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls per scenario (1-200)")
    parser.add_argument("--quick", action="store_true", help="25 calls: a smoke test")
    args = parser.parse_args()
    calls = 25 if args.quick else max(1, min(args.calls, 200))
    use_layer()
    from tests.doubles.served import moto_server

    say(f"## The ledger under contention ({machine()})")
    say()
    began = time.perf_counter()
    with moto_server() as endpoint:
        rows = [
            run_scenario(endpoint, scenario, calls, shards)
            for scenario in SCENARIOS
            for shards in (1, SHARDS)
        ]
        units = one_call_units(endpoint)
    say(
        table(
            f"{calls} concurrent calls of one tenant, hard budget ${LIMIT_MICROS / 1e6:.2f} "
            "(unless the capacity names another) "
            "(each reserves $0.03, costs $0.01), a transaction holding its items "
            f"{SERVICE_SECONDS * 1000:.0f} ms",
            [
                "capacity",
                "ledger shards",
                "settled / refused",
                "ledger retries per call",
                "DynamoDB requests per call",
                "retries by reason",
                "conflicts",
                "throttles",
                "500s",
                "lost meters",
                "double-counted",
                "overspend $",
                "holds left",
                "seconds",
            ],
            rows,
        )
    )
    say(
        "Requests per call: every request the double saw (reads, the reservation and settle, retries, "
        "a sharded reservation's read of the shards and its borrowing, the sweep of a refused call). "
        "Seconds are the emulator's: it applies one request at a time, where DynamoDB serves the "
        "shards' partitions side by side. "
        "Conflicts and throttles: the requests the double refused (the ledger's retries, the SDK's own "
        "retries of plain writes, and any that gave up). A 500 out of `settle` is a lost meter: the "
        "provider answered and the call was not counted."
    )
    say()
    say(
        table(
            "Write units one call puts on the tenant's partition (hard budget: reserve + settle)",
            ["item", "WRU per call"],
            [[_item_name(sk), n] for sk, n in sorted(units.by_item.items(), key=lambda kv: -kv[1])],
        )
    )
    hottest = units.by_item[TOTAL]
    one_partition = 1 / (units.wru / PARTITION_WRU + units.rru / PARTITION_RRU)
    split = PARTITION_WRU / hottest
    conflict_bound = 1 / (units.transactions_on_hottest * SERVICE_SECONDS)
    # A shard is a partition key of its own: each carries its calls as one ledger carries all.
    per_shard = min(one_partition, conflict_bound)
    needed = math.ceil(TARGET_CALLS_PER_SECOND / per_shard)
    say(
        table(
            "Per-tenant ceiling of the ledger's layout (one shard: all of a month's items under one "
            "partition key)",
            ["bound", "from", "calls/s per tenant"],
            [
                [
                    "one partition (one shard, before DynamoDB splits it)",
                    f"{units.items} items in {units.transactions} transactions = {units.wru} WRU "
                    f"+ {units.rru:g} RRU a call; {PARTITION_WRU} WRU/s, {PARTITION_RRU} RRU/s",
                    f"{one_partition:.0f}",
                ],
                [
                    "split for heat (each hot item on a partition of its own)",
                    f"the hottest item, `total`: {hottest} WRU a call",
                    f"{split:.0f}",
                ],
                [
                    "transactions on one item conflicting",
                    f"{units.transactions_on_hottest} transactions a call on `total`, each holding it "
                    f"~{SERVICE_SECONDS * 1000:.0f} ms (assumed)",
                    f"{conflict_bound:.0f}",
                ],
                [
                    f"`ledger_shards: {SHARDS}`",
                    f"{SHARDS} x the lower of the two above (each shard its own partition key)",
                    f"{SHARDS * per_shard:.0f}",
                ],
                [
                    f"`ledger_shards: {needed}`",
                    f"the shards {TARGET_CALLS_PER_SECOND:,} calls a second of one tenant need",
                    f"{needed * per_shard:.0f}",
                ],
                [
                    "the table's on-demand quota (all tenants)",
                    f"40,000 WRU/s a table (an account quota, raisable) ÷ {units.wru} WRU a call",
                    f"{40_000 / units.wru:.0f}",
                ],
            ],
        )
    )
    say(f"Ran in {time.perf_counter() - began:.0f} s. The sharded layout: docs/scale.md.")


if __name__ == "__main__":
    main()
