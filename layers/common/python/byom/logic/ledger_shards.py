"""A tenant's month split over ledger shards (docs/scale.md): the arithmetic, without AWS.

One ledger item takes a few dozen metered calls a second (every call writes it twice, in two
transactions). A budget with `ledger_shards: N` splits the month's limit into N shares, each on an
item under a partition key of its own; a call reserves and settles against one shard, chosen by its
request id. The shares always sum to the month's limit, and each shard admits a hold only while its
own share covers it, so N shards never admit more than one would.

A shard short of budget for a call borrows from the others, in the same transaction as the call's
reservation (`moves`); a budget change re-splits what is left (`resplit`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


def shard_of(request_id: str, shards: int) -> int:
    """The shard a call meters on: stable across processes (`hash()` is salted per process), and
    spread evenly by request ids, which are random."""
    if shards <= 1:
        return 0
    return zlib.crc32(request_id.encode()) % shards


def share(amount: int, shards: int, shard: int) -> int:
    """Shard `shard`'s part of `amount` split `shards` ways: the remainder goes to shard 0, so the
    parts sum to `amount` exactly."""
    return amount // shards + (amount % shards if shard == 0 else 0)


@dataclass(frozen=True)
class ShardLedger:
    """One shard's ledger as read. `remaining_micros` None: not written yet this month, so the
    shard still has its share of the limit."""

    shard: int
    spent_micros: int = 0
    committed_micros: int = 0
    remaining_micros: int | None = None

    def remaining(self, limit_micros: int, shards: int) -> int:
        if self.remaining_micros is None:
            return share(limit_micros, shards, self.shard) - self.committed_micros
        return self.remaining_micros


def closes(ledgers: list[ShardLedger], limit_micros: int) -> bool:
    """A limit under what the shards have committed: a re-split closes every shard (`resplit`)."""
    return limit_micros < sum(ledger.committed_micros for ledger in ledgers)


def resplit(ledgers: list[ShardLedger], limit_micros: int, shards: int) -> dict[int, int]:
    """Each shard's new limit, so that the month as a whole has `limit_micros`.

    While the limit covers what is committed, each shard keeps what it committed and gets its share
    of the rest (shards past `shards`, left from a larger split, get none): no shard is left short,
    so none admits more than the month has. When the limit is under what is committed, every shard
    is closed at what it has spent: holds given back then free nothing, so no shard admits a call
    while the month is over. (The month errs on the safe side until the budget is set again.)"""
    if closes(ledgers, limit_micros):
        return {ledger.shard: ledger.spent_micros for ledger in ledgers}
    headroom = limit_micros - sum(ledger.committed_micros for ledger in ledgers)
    return {
        ledger.shard: ledger.committed_micros
        + (share(headroom, shards, ledger.shard) if ledger.shard < shards else 0)
        for ledger in ledgers
    }


def moves(
    ledgers: list[ShardLedger], limit_micros: int, shards: int, to: int, amount_micros: int
) -> dict[int, int] | None:
    """What to move from which shards to shard `to` so that it can hold `amount_micros`; None when
    the shards together cannot. The richest give first, and `to` is topped up to the shards' average
    of what remains when that is more than the call needs, so a busy shard does not borrow again at
    its next call."""
    remaining = {ledger.shard: max(ledger.remaining(limit_micros, shards), 0) for ledger in ledgers}
    own = remaining.pop(to, 0)
    need = amount_micros - own
    if need <= 0:
        return {}
    available = sum(remaining.values())
    if available < need:
        return None
    # What `to` keeps after this call: the average of what the month has left, once it holds it.
    fair = (own + available - amount_micros) // shards
    want = min(need + fair, available)
    taken: dict[int, int] = {}
    for shard, has in sorted(remaining.items(), key=lambda item: (-item[1], item[0])):
        if want <= 0:
            break
        give = min(has, want)
        if give > 0:
            taken[shard] = give
            want -= give
    return taken
