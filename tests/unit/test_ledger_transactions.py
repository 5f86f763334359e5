"""The ledger's transactions (byom.dal.ledger) told apart by item label: a cancelled transaction's
reasons are mapped back to the items that failed, wherever in the transaction those items stand.

The fake client cancels a transaction on the items whose key it is told to fail, and answers the
reasons in the order the items were sent, as DynamoDB does."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from byom.dal.aws import untyped, untyped_item
from byom.dal.ledger import Labelled, UsageTable, _failed
from byom.money import Hold, Metered, ReservationRefused

PK = "tnt_a#2026-11"


def _sk(item: dict[str, Any]) -> str:
    operation = next(iter(item.values()))
    return str(untyped((operation.get("Key") or operation.get("Item"))["sk"]))  # sent typed


@dataclass
class CancellingClient:
    """`fail`: the `sk`s whose condition fails, each with the old item DynamoDB answers."""

    fail: dict[str, dict[str, Any]] = field(default_factory=dict)
    once: bool = True
    """Fail only the first transaction (a retry without the failed item then succeeds)."""
    sent: list[list[dict[str, Any]]] = field(default_factory=list)

    def transact_write_items(self, *, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent.append(TransactItems)
        if not self.fail or (self.once and len(self.sent) > 1):
            return {}
        reasons = []
        for item in TransactItems:
            old = self.fail.get(_sk(item))
            if old is None:
                reasons.append({"Code": "None"})
            else:
                typed = {name: {"N": str(value)} for name, value in old.items()}
                reasons.append({"Code": "ConditionalCheckFailed", "Item": typed})
        if all(r["Code"] == "None" for r in reasons):
            return {}
        error = {"Code": "TransactionCanceledException", "Message": "cancelled"}
        raise ClientError({"Error": error, "CancellationReasons": reasons}, "TransactWriteItems")


def _ledger(client: CancellingClient) -> UsageTable:
    return UsageTable(SimpleNamespace(name="usage"), client)


HOLD = Hold("tnt_a", "2026-11", "r1", "key_1", 50_000, 1_000_000, 400_000, expires_at=100)
METERED = Metered("tnt_a", "2026-11", "2026-11-23", "r1", "key_1", "chat", 6, 2, 10_000)
AUDIT = {"Put": {"TableName": "audit", "Item": {"pk": "tnt_a", "sk": "audit#r1"}}}
CONTENT = {"Put": {"TableName": "audit", "Item": {"pk": "tnt_a", "sk": "content#r1"}}}


def test_failed_items_are_named_by_their_labels() -> None:
    items: Labelled = [("first", {}), ("second", {}), ("third", {})]
    reasons = [
        {"Code": "None"},
        {"Code": "ConditionalCheckFailed", "Item": {"n": {"N": "7"}}},
        {"Code": "None"},
    ]
    error = ClientError(
        {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": reasons}, "op"
    )

    assert _failed(error, items) == {"second": {"n": 7}}


def test_a_key_refusal_is_the_keys_whatever_else_the_reservation_writes() -> None:
    client = CancellingClient(fail={"key#key_1": {"remaining_micros": 30_000}})

    with pytest.raises(ReservationRefused) as refused:
        _ledger(client).reserve(HOLD)

    assert (refused.value.scope, refused.value.remaining_micros) == ("key", 30_000)


def test_a_settle_of_a_request_metered_before_counts_nothing_with_items_riding_along() -> None:
    client = CancellingClient(fail={"req#r1": {}})

    settled = _ledger(client).settle(METERED, HOLD, also=[AUDIT, CONTENT])

    assert settled.counted is False


def test_a_settle_whose_hold_was_swept_commits_afresh_though_an_audit_record_follows_it() -> None:
    client = CancellingClient(fail={"hold#r1": {}})

    settled = _ledger(client).settle(METERED, HOLD, also=[AUDIT])

    assert settled.counted is True
    assert [_sk(item) for item in client.sent[1] if "Delete" in item] == []  # retried without the hold


def test_a_spend_guard_reached_answers_the_months_spend() -> None:
    client = CancellingClient(fail={"total": {"cost_micros": 490_000}})

    settled = _ledger(client).settle(METERED, HOLD, spend_guard=480_000, also=[AUDIT])

    assert (settled.counted, settled.spent_micros) == (True, 500_000)


def test_a_hold_already_released_is_not_released_again() -> None:
    client = CancellingClient(fail={"hold#r1": {}})

    assert _ledger(client).release(HOLD) is False


def test_the_models_a_fallback_covered_get_an_error_each_in_the_settles_own_transaction() -> None:
    client = CancellingClient()
    metered = Metered(
        "tnt_a", "2026-11", "2026-11-23", "r1", "key_1", "fast", 6, 2, 10_000, fell_back_from=("smart",)
    )

    _ledger(client).settle(metered, None)

    (sent,) = client.sent
    updates = {
        _sk(item): untyped_item(item["Update"]["ExpressionAttributeValues"])
        for item in sent
        if "Update" in item
    }
    assert updates["model#smart"] == {":errors": 1, ":fallbacks": 1}
    assert (updates["model#fast"][":requests"], ":errors" in updates["model#fast"]) == (1, False)
    assert (updates["key#key_1"][":errors"], updates["key#key_1"][":cost_micros"]) == (1, 10_000)
