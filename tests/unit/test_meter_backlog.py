"""A meter backlog message holds a pending settle exactly: the meter, the hold and the typed items."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from byom.dal.meter_backlog import from_message, to_message
from byom.money import Hold, Metered, Pending

# On shard 3 of 8 (byom.logic.ledger_shards): the reconciler settles it where it was held.
HOLD = Hold(
    "tnt_a", "2026-09", "req-1", "key_1", 200_000, 1_000_000, 500_000, 1_790_000_300, shard=3, shards=8
)
METERED = Metered(
    "tnt_a",
    "2026-09",
    "2026-09-21",
    "req-1",
    "key_1",
    "smart",
    input_tokens=10,
    output_tokens=5,
    cost_micros=20_000,
    latency_ms=12,
    tokens_minute="2026-09-21T10:00",
    fell_back_from=("fast",),
    shard=3,
    shards=8,
)
AUDIT = {
    "Put": {
        "TableName": "byom-audit",
        "Item": {"tenant_id": "tnt_a", "cost_usd": Decimal("0.02"), "redactions": {"email": Decimal(2)}},
    }
}


def test_a_pending_settle_survives_its_message() -> None:
    pending = Pending(METERED, HOLD, (AUDIT,))

    assert from_message(to_message(pending)) == pending


def test_an_audit_record_on_its_own_survives_its_message() -> None:
    pending = Pending(None, None, (AUDIT,))

    assert from_message(to_message(pending)) == pending


@pytest.mark.parametrize(
    "body",
    ["not json", "[]", json.dumps({"v": 99}), json.dumps({"v": 1, "metered": 3, "hold": None, "also": []})],
)
def test_a_message_that_is_not_ours_is_a_value_error(body: str) -> None:
    with pytest.raises(ValueError):
        from_message(body)
