"""The arithmetic of a month split over ledger shards (byom.logic.ledger_shards)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from byom.logic.ledger_shards import ShardLedger, moves, resplit, shard_of, share


def test_a_request_id_always_lands_on_the_same_shard_and_ids_spread_evenly() -> None:
    ids = [f"req-{uuid.uuid4().hex}" for _ in range(8000)]
    assert [shard_of(i, 8) for i in ids] == [shard_of(i, 8) for i in ids]
    counts = Counter(shard_of(i, 8) for i in ids)
    assert set(counts) == set(range(8))
    assert all(800 < n < 1200 for n in counts.values()), counts
    assert {shard_of(i, 1) for i in ids} == {0}


@pytest.mark.parametrize(("amount", "shards"), [(1_000_000, 4), (1_000_003, 4), (7, 32), (0, 3)])
def test_the_shares_sum_to_the_amount(amount: int, shards: int) -> None:
    parts = [share(amount, shards, i) for i in range(shards)]
    assert sum(parts) == amount
    assert max(parts[1:], default=parts[0]) == amount // shards


def test_a_resplit_keeps_each_shards_commitment_and_shares_the_rest() -> None:
    ledgers = [
        ShardLedger(0, 100, 300),
        ShardLedger(1, 0, 0),
        ShardLedger(2, 50, 500),
        ShardLedger(3, 0, 200),
    ]
    targets = resplit(ledgers, 2_000, 4)
    assert sum(targets.values()) == 2_000
    headroom = 2_000 - 1_000
    assert targets == {
        0: 300 + headroom // 4,
        1: headroom // 4,
        2: 500 + headroom // 4,
        3: 200 + headroom // 4,
    }


def test_shards_left_from_a_larger_split_get_no_share_of_the_rest() -> None:
    ledgers = [ShardLedger(0, 0, 100), ShardLedger(1, 0, 100), ShardLedger(2, 0, 100), ShardLedger(3, 0, 100)]
    targets = resplit(ledgers, 1_000, 2)
    assert targets == {0: 100 + 300, 1: 100 + 300, 2: 100, 3: 100}
    assert sum(targets.values()) == 1_000


def test_a_limit_under_what_is_committed_closes_every_shard_at_its_spend() -> None:
    ledgers = [ShardLedger(0, 100, 400), ShardLedger(1, 250, 300)]
    assert resplit(ledgers, 500, 2) == {0: 100, 1: 250}


def test_a_shard_that_holds_the_call_moves_nothing() -> None:
    ledgers = [ShardLedger(0, 0, 0, 500), ShardLedger(1, 0, 0, 500)]
    assert moves(ledgers, 1_000, 2, 1, 300) == {}


def test_a_short_shard_borrows_from_the_richest_and_keeps_a_fair_part() -> None:
    ledgers = [
        ShardLedger(0, 0, 0, 100),
        ShardLedger(1, 0, 0, 10),
        ShardLedger(2, 0, 0, 600),
        ShardLedger(3, 0, 0, 290),
    ]
    taken = moves(ledgers, 4_000, 4, 1, 50)
    assert taken is not None
    # It lacks 40; what remains after the call is 950, a fair part of which (237) it keeps.
    assert sum(taken.values()) == 40 + 950 // 4
    assert list(taken) == [2]  # the richest alone covers it
    assert taken[2] <= 600


def test_a_shard_not_written_yet_lends_its_share_less_its_commitment() -> None:
    ledgers = [ShardLedger(0, 0, 0, 0), ShardLedger(1)]
    assert ShardLedger(1).remaining(1_000, 2) == 500
    assert moves(ledgers, 1_000, 2, 0, 500) == {1: 500}


def test_a_call_the_shards_together_cannot_hold_is_refused() -> None:
    ledgers = [ShardLedger(0, 0, 0, 100), ShardLedger(1, 0, 0, 100), ShardLedger(2, 0, 0, -50)]
    assert moves(ledgers, 900, 3, 0, 201) is None
    assert moves(ledgers, 900, 3, 0, 200) == {1: 100}
