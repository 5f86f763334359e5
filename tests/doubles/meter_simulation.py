"""Many concurrent calls of one tenant metered against a contended usage table (docs/scale.md).

Each call is what the gateway does for a chat completion under a hard budget, without the
provider: read the budget and the month's ledger (one BatchGetItem), `CallMeter.admit` (reserve
the estimate), then `CallMeter.succeeded` with the provider's usage (settle). The calls start
together (a barrier) in threads, so their transactions on the tenant's ledger items overlap.
tests/integration/test_ledger_contention.py asserts on the outcome; bench/contention.py prints it.
"""

from __future__ import annotations

import calendar
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from byom.dal.aws import from_item
from byom.dal.ledger import TOTAL, UsageTable, ledger_of, shard_pk
from byom.domain import Budget, Pricing
from byom.errors import BudgetExceeded
from byom.logic.call_meter import CallMeter
from byom.logic.money import Estimate, month_of
from byom.money import Ledger
from byom.providers import Usage

from tests.doubles.served import low_level_client

TENANT = "tnt_contended"
KEY_ID = "key_1"
ALIAS = "chat"
NOW = calendar.timegm((2026, 11, 23, 12, 0, 0))
MONTH = month_of(NOW)
# At $1 / $2 per 1K input / output tokens, 6 + 2 tokens cost 10,000 micro-dollars; each call
# reserves three times that (its max_tokens bound), as a real estimate exceeds the real cost.
PRICING = Pricing(input_per_1k_usd=1.0, output_per_1k_usd=2.0)
USAGE = Usage(6, 2)
CALL_COST_MICROS = 10_000
ESTIMATE = Estimate(6, 12, 30_000)


@dataclass
class Outcome:
    """What the calls did and what the ledger holds afterwards."""

    calls: int
    limit_micros: int
    seconds: float
    settled: int = 0
    """Calls whose settle returned counted: each must be in the ledger exactly once."""
    refused: int = 0
    """Calls refused by the hard budget (429 insufficient_quota)."""
    escaped: Counter[str] = field(default_factory=Counter)
    """Any other exception out of a call, by where it escaped and its type (`settle:ClientError`):
    what the caller would see as a 500. Out of the settle, the provider's answer goes unmetered."""
    costs_micros: int = 0
    """The sum of the costs the settles answered."""
    ledger: Ledger = field(default_factory=Ledger)
    requests_counted: int = 0
    markers: int = 0
    holds_left: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    """The ledger's own retries of cancelled transactions, by reason."""

    @property
    def lost(self) -> int:
        """Answered calls the ledger does not count: settles that failed, and settled calls missing."""
        unsettled = sum(n for where, n in self.escaped.items() if where.startswith("settle:"))
        return unsettled + max(0, self.settled - min(self.requests_counted, self.markers))

    @property
    def server_errors(self) -> int:
        return sum(self.escaped.values())

    @property
    def double_counted(self) -> int:
        return max(0, max(self.requests_counted, self.markers) - self.settled)

    @property
    def overspend_micros(self) -> int:
        return max(0, self.ledger.spent_micros - self.limit_micros)


def run_calls(table: Any, *, calls: int = 100, limit_micros: int = 500_000, shards: int = 1) -> Outcome:
    """`calls` concurrent calls of one tenant under a hard monthly budget of `limit_micros`, its
    month split over `shards` ledger shards."""
    usage = budgeted(table, limit_micros, shards)
    outcome = Outcome(calls=calls, limit_micros=limit_micros, seconds=0.0)
    lock = threading.Lock()
    start = threading.Barrier(calls)

    def call(n: int) -> None:
        start.wait()
        phase = ["read"]
        try:
            cost = one_call(usage, table, f"req-{n:04d}", phase)
        except BudgetExceeded:
            with lock:
                outcome.refused += 1
        except Exception as error:  # the simulation's point: count what would be a 500
            with lock:
                outcome.escaped[f"{phase[0]}:{type(error).__name__}"] += 1
        else:
            with lock:
                outcome.settled += 1
                outcome.costs_micros += cost

    threads = [threading.Thread(target=call, args=(n,)) for n in range(calls)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcome.seconds = time.perf_counter() - began
    _read_back(usage, table, outcome, shards)
    return outcome


def budgeted(table: Any, limit_micros: int, shards: int = 1) -> UsageTable:
    """The usage table with the tenant's hard monthly budget of `limit_micros` set."""
    usage = UsageTable(table, low_level_client(table))
    budget = Budget(
        tenant_id=TENANT,
        monthly_limit_usd=limit_micros / 1_000_000,
        warn_at=[],
        hard=True,
        ledger_shards=shards,
        updated_at=0,
    )
    usage.put_budget(budget, MONTH, {}, limit_micros)
    return usage


def one_call(usage: UsageTable, table: Any, request_id: str, phase: list[str] | None = None) -> int:
    """One call, its cost; `phase` says how far it got (`read`, `reserve`, `settle`)."""
    phase = phase if phase is not None else ["read"]
    keys = usage.call_keys(TENANT, MONTH)
    answer = table.meta.client.batch_get_item(RequestItems={table.name: {"Keys": keys}})
    items = [from_item(i) for i in answer["Responses"].get(table.name, [])]
    meter = CallMeter(
        usage, None, None, TENANT, KEY_ID, request_id, usage.budget_state(items, TENANT), lambda: NOW
    )
    with meter:
        phase[0] = "reserve"
        meter.admit(ESTIMATE)
        phase[0] = "settle"  # the provider has answered: from here a failure loses the meter
        return meter.succeeded(ALIAS, USAGE, PRICING, latency_ms=1)


def _read_back(usage: UsageTable, table: Any, outcome: Outcome, shards: int) -> None:
    """The month's ledger summed over its shards (as the usage report sums it), and every
    shard's markers and holds."""
    total = next((i for i in usage.month_items(TENANT, MONTH) if i["sk"] == TOTAL), None)
    outcome.ledger = ledger_of(total)
    outcome.requests_counted = int(total.get("requests", 0)) if total else 0
    prefixes: Counter[str] = Counter()
    for shard in range(shards):
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": shard_pk(TENANT, MONTH, shard)},
            "ConsistentRead": True,
        }
        while True:
            page = table.query(**kwargs)
            prefixes.update(str(i["sk"]).split("#", 1)[0] for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    outcome.markers = prefixes["req"]
    outcome.holds_left = prefixes["hold"]
    outcome.retries = Counter(usage.retries)
