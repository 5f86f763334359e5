"""The ledger under contention: a DynamoDB double that conflicts and throttles as DynamoDB does
(tests/doubles/contended_dynamodb.py), and 100 concurrent calls of one tenant metered against it.

The double's own tests move its clock by hand, so an item stays "in flight" until the test says
otherwise; the simulation runs on the real clock, threads really overlapping (docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from byom.dal import ledger
from byom.dal.ledger import UsageTable
from byom.money import Hold

from tests.doubles.contended_dynamodb import Capacity, ContendedDynamoDB
from tests.doubles.meter_simulation import CALL_COST_MICROS, Outcome, run_calls
from tests.doubles.served import contended_table, moto_server

PK = "tnt_a#2026-11"
SERVICE = 0.01


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _double(clock: Clock, **capacity: Any) -> ContendedDynamoDB:
    return ContendedDynamoDB(
        Capacity(service_seconds=SERVICE, **capacity), clock=clock, sleep=lambda _seconds: None
    )


def _add(sk: str, table: Any, pk: str = PK) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table.name,
            "Key": {"pk": pk, "sk": sk},
            "UpdateExpression": "ADD requests :one",
            "ExpressionAttributeValues": {":one": 1},
        }
    }


def _requests(table: Any, sk: str) -> int:
    item = table.get_item(Key={"pk": PK, "sk": sk}, ConsistentRead=True).get("Item")
    return int(item["requests"]) if item else 0


# Conflicts


def test_a_transaction_on_an_item_another_transaction_holds_is_cancelled_for_that_item(
    endpoint: str, clock: Clock
) -> None:
    table = contended_table(endpoint, _double(clock))
    client = table.meta.client
    client.transact_write_items(TransactItems=[_add("total", table)])

    with pytest.raises(client.exceptions.TransactionCanceledException) as cancelled:
        client.transact_write_items(TransactItems=[_add("day#2026-11-23", table), _add("total", table)])

    assert cancelled.value.response["CancellationReasons"] == [
        {"Code": "None"},
        {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
    ]
    assert (_requests(table, "total"), _requests(table, "day#2026-11-23")) == (1, 0)


def test_a_plain_write_on_an_item_a_transaction_holds_fails_with_transaction_conflict_exception(
    endpoint: str, clock: Clock
) -> None:
    table = contended_table(endpoint, _double(clock))
    table.meta.client.transact_write_items(TransactItems=[_add("total", table)])

    with pytest.raises(ClientError) as conflict:
        table.update_item(
            Key={"pk": PK, "sk": "total"},
            UpdateExpression="ADD requests :one",
            ExpressionAttributeValues={":one": 1},
        )

    assert conflict.value.response["Error"]["Code"] == "TransactionConflictException"
    assert _requests(table, "total") == 1


def test_a_transaction_commits_once_the_other_is_over_or_when_it_touches_other_items(
    endpoint: str, clock: Clock
) -> None:
    table = contended_table(endpoint, _double(clock))
    client = table.meta.client
    client.transact_write_items(TransactItems=[_add("total", table)])

    client.transact_write_items(TransactItems=[_add("day#2026-11-23", table)])
    clock.now += SERVICE
    client.transact_write_items(TransactItems=[_add("total", table)])

    assert (_requests(table, "total"), _requests(table, "day#2026-11-23")) == (2, 1)


def test_plain_writes_on_one_item_do_not_conflict_with_each_other(endpoint: str, clock: Clock) -> None:
    double = _double(clock)
    table = contended_table(endpoint, double)

    for _ in range(3):
        table.update_item(
            Key={"pk": PK, "sk": "total"},
            UpdateExpression="ADD requests :one",
            ExpressionAttributeValues={":one": 1},
        )

    assert (_requests(table, "total"), double.tally.conflicts) == (3, 0)


# Throttling and write units


def test_an_item_over_its_write_units_is_cancelled_with_throttling_error_until_the_second_is_over(
    endpoint: str, clock: Clock
) -> None:
    table = contended_table(endpoint, _double(clock, item_wru=4))
    client = table.meta.client
    for _ in range(2):  # 2 units each: a transaction writes its items twice
        client.transact_write_items(TransactItems=[_add("total", table)])
        clock.now += SERVICE

    with pytest.raises(client.exceptions.TransactionCanceledException) as throttled:
        client.transact_write_items(TransactItems=[_add("total", table)])
    clock.now += 1.0
    client.transact_write_items(TransactItems=[_add("total", table)])

    assert [r["Code"] for r in throttled.value.response["CancellationReasons"]] == ["ThrottlingError"]
    assert _requests(table, "total") == 3


def test_a_partition_key_over_its_write_units_is_throttled_across_its_items(
    endpoint: str, clock: Clock
) -> None:
    table = contended_table(endpoint, _double(clock, partition_wru=6))
    client = table.meta.client
    client.transact_write_items(TransactItems=[_add("total", table), _add("model#chat", table)])

    with pytest.raises(client.exceptions.TransactionCanceledException) as throttled:
        client.transact_write_items(TransactItems=[_add("key#key_1", table), _add("day#2026-11-23", table)])
    client.transact_write_items(TransactItems=[_add("total", table, pk="tnt_b#2026-11")])

    reasons = [r["Code"] for r in throttled.value.response["CancellationReasons"]]
    assert reasons == ["ThrottlingError", "ThrottlingError"]


def test_a_throttled_plain_write_is_retried_by_the_sdk_then_fails_as_dynamodb_fails_it(
    endpoint: str, clock: Clock
) -> None:
    double = _double(clock, item_wru=1)
    table = contended_table(endpoint, double)
    table.put_item(Item={"pk": PK, "sk": "total"})

    with pytest.raises(table.meta.client.exceptions.ProvisionedThroughputExceededException) as throttled:
        table.put_item(Item={"pk": PK, "sk": "total", "requests": 1})

    reasons = throttled.value.response["ThrottlingReasons"]
    assert [r["reason"] for r in reasons] == ["TableWriteKeyRangeThroughputExceeded"]
    assert reasons[0]["resource"].endswith(f":table/{table.name}")
    assert double.tally.throttles == 4  # the first attempt and the SDK's 3 retries, as deployed


def test_write_units_are_one_per_kb_of_an_item_and_twice_that_in_a_transaction(
    endpoint: str, clock: Clock
) -> None:
    double = _double(clock)
    table = contended_table(endpoint, double)

    table.put_item(Item={"pk": PK, "sk": "audit#r1", "body": "x" * 2500})
    table.meta.client.transact_write_items(TransactItems=[_add("total", table)])

    assert double.tally.item_wru[(table.name, PK, "audit#r1")] == 3
    assert double.tally.item_wru[(table.name, PK, "total")] == 2
    assert double.tally.partition_wru[(table.name, PK)] == 5


def test_reads_are_counted_and_never_refused(endpoint: str, clock: Clock) -> None:
    double = _double(clock, item_wru=2, partition_wru=2)
    table = contended_table(endpoint, double)
    table.meta.client.transact_write_items(TransactItems=[_add("total", table)])

    for _ in range(3):
        assert _requests(table, "total") == 1

    assert (double.tally.requests["GetItem"], double.tally.throttles, double.tally.conflicts) == (3, 0, 0)


# The ledger's retries (byom.dal.ledger.UsageTable._transact), against a scripted client


class ScriptedClient:
    """Cancels the first transactions with the reasons it is given, then commits."""

    def __init__(self, *cancellations: list[str]) -> None:
        self.cancellations = list(cancellations)
        self.sent = 0

    def transact_write_items(self, *, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent += 1
        if not self.cancellations:
            return {}
        reasons = [{"Code": code} for code in self.cancellations.pop(0)]
        error = {"Code": "TransactionCanceledException", "Message": "cancelled"}
        raise ClientError({"Error": error, "CancellationReasons": reasons}, "TransactWriteItems")


HOLD = Hold("tnt_a", "2026-11", "r1", "key_1", 50_000, 1_000_000, None, expires_at=100)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The ledger's backoff, recorded instead of slept, each at its longest (no jitter)."""
    slept: list[float] = []
    monkeypatch.setattr(ledger.time, "sleep", slept.append)
    monkeypatch.setattr(ledger.random, "uniform", lambda _low, high: high)
    return slept


def _usage(client: ScriptedClient) -> UsageTable:
    return UsageTable(SimpleNamespace(name="usage", meta=SimpleNamespace(client=client)), client)


def test_a_transaction_cancelled_for_throttling_is_tried_again_after_a_longer_wait(
    waits: list[float],
) -> None:
    client = ScriptedClient(["None", "TransactionConflict"], ["ThrottlingError", "TransactionConflict"])
    usage = _usage(client)

    usage.reserve(HOLD)

    assert client.sent == 3
    assert dict(usage.retries) == {"TransactionConflict": 1, "ThrottlingError": 1}
    assert waits[1] > 2 * waits[0]  # a throttle waits from 0.1 s, a conflict from 0.01 s


def test_a_cancellation_with_a_failed_condition_is_not_tried_again(waits: list[float]) -> None:
    client = ScriptedClient(["ConditionalCheckFailed", "TransactionConflict"])
    usage = _usage(client)

    with pytest.raises(ClientError):
        usage.release(HOLD)

    assert (client.sent, sum(usage.retries.values()), waits) == (1, 0, [])


def test_a_transaction_that_keeps_conflicting_gives_up_within_its_bounds(waits: list[float]) -> None:
    client = ScriptedClient(*[["TransactionConflict"]] * 100)

    with pytest.raises(ClientError):
        _usage(client).release(HOLD)

    assert client.sent <= ledger._TRANSACT_ATTEMPTS
    assert sum(waits) <= ledger._BACKOFF_BUDGET_SECONDS


# 100 concurrent calls of one tenant, through CallMeter


def _assert_exact(outcome: Outcome) -> None:
    """Every answered call metered once, nothing over the budget, nothing left held."""
    assert dict(outcome.escaped) == {}  # no call failed with anything but the budget's 429
    assert outcome.settled + outcome.refused == outcome.calls
    assert (outcome.lost, outcome.double_counted) == (0, 0)
    assert outcome.requests_counted == outcome.markers == outcome.settled
    assert outcome.ledger.spent_micros == outcome.costs_micros == outcome.settled * CALL_COST_MICROS
    assert outcome.ledger.spent_micros <= outcome.limit_micros
    # Committed is spent plus held: back to the spend once no call holds anything.
    assert outcome.ledger.committed_micros == outcome.ledger.spent_micros
    assert outcome.ledger.remaining_micros == outcome.limit_micros - outcome.ledger.spent_micros
    assert outcome.holds_left == 0


def test_a_hundred_concurrent_calls_are_each_metered_once_within_the_budget_under_conflicts_and_throttling(
    endpoint: str,
) -> None:
    # The partition's capacity scaled to the emulator's pace (a few calls a second, not hundreds):
    # the first burst of reservations goes over it, and the calls' retries absorb it.
    double = ContendedDynamoDB(Capacity(item_wru=150, partition_wru=300, service_seconds=SERVICE))
    table = contended_table(endpoint, double)

    outcome = run_calls(table, calls=100, limit_micros=800_000)

    _assert_exact(outcome)
    assert 0 < outcome.settled < outcome.calls  # the budget fits some of the calls, not all
    assert double.tally.conflicts + double.tally.throttles > 0  # the calls did contend
    assert sum(outcome.retries.values()) > 0


def test_a_hundred_concurrent_calls_on_eight_ledger_shards_are_each_metered_once_within_the_budget(
    endpoint: str,
) -> None:
    double = ContendedDynamoDB(Capacity(item_wru=150, partition_wru=300, service_seconds=SERVICE))
    table = contended_table(endpoint, double)

    outcome = run_calls(table, calls=100, limit_micros=800_000, shards=8)

    _assert_exact(outcome)
    assert 0 < outcome.settled < outcome.calls
    # The calls' writes land on eight partition keys, not one.
    assert len({pk for _, pk, _ in double.tally.item_wru}) >= 8
