"""The money of a tenant's month, as values (SPEC §5): ledgers, holds, a call's metered usage, what
settling it answered. Plain dataclasses: the usage table stores them (byom.dal.ledger), the call's
meter moves them (byom.logic.call_meter), and neither needs the other to read them.

Every amount is integer micro-dollars (byom.logic.money); months and days are UTC keys
(`YYYY-MM`, `YYYY-MM-DD`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from byom.domain import Budget


class ReservationRefused(Exception):
    """Not enough budget left for a reservation: `scope` is `tenant` or `key`."""

    def __init__(self, scope: str, remaining_micros: int | None) -> None:
        super().__init__(f"{scope} budget exhausted")
        self.scope = scope
        self.remaining_micros = remaining_micros


@dataclass(frozen=True)
class Ledger:
    """A month's money on one item (the tenant's `total`, or a key's): what was spent, what is
    committed (spent and still held) and, under a limit, what remains."""

    spent_micros: int = 0
    committed_micros: int = 0
    remaining_micros: int | None = None
    warned: frozenset[str] = frozenset()


@dataclass(frozen=True)
class BudgetState:
    """What a call needs to know about money, read with the alias in one request."""

    budget: Budget | None
    ledger: Ledger


@dataclass(frozen=True)
class Hold:
    """A reservation: `amount_micros` taken off `remaining_micros` until the call settles."""

    tenant_id: str
    month: str
    request_id: str
    key_id: str
    amount_micros: int
    limit_micros: int
    key_limit_micros: int | None
    expires_at: int
    shard: int = 0
    """The ledger shard the hold is on (byom.logic.ledger_shards), of `shards`; the limits above are
    the month's, split over the shards by the ledger."""
    shards: int = 1


@dataclass(frozen=True)
class Metered:
    """One call's usage, counted once under its request id."""

    tenant_id: str
    month: str
    day: str
    request_id: str
    key_id: str
    alias: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    error: bool = False
    cache_hit: bool = False
    latency_ms: int | None = None
    tokens_minute: str | None = None
    """Under a tokens-per-minute limit: the minute (`YYYY-MM-DDTHH:MM`) whose counter this adds to."""
    cached_tokens: int = 0
    """Of `input_tokens`, those read from the provider's prompt cache."""
    fell_back_from: tuple[str, ...] = ()
    """The aliases that failed before `alias` answered (a fallback covered them), none twice and
    never `alias` itself: an error each, at no cost."""
    shard: int = 0
    """The ledger shard the call is counted on (its hold's, when it has one), of `shards`."""
    shards: int = 1

    def counters(self) -> dict[str, int]:
        """What the call adds to the month's total and to its key's and day's counters: the
        answer, and one error (and one fallback) per alias that failed before it."""
        fell_back = len(self.fell_back_from)
        return {
            "requests": 0 if self.error else 1,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_micros": self.cost_micros,
            "errors": (1 if self.error else 0) + fell_back,
            "fallbacks": fell_back,
            "cache_hits": 1 if self.cache_hit else 0,
            "latency_ms_sum": self.latency_ms or 0,
            "latency_samples": 0 if self.latency_ms is None else 1,
        }

    def model_counters(self) -> dict[str, int]:
        """What the call adds to the counters of the model that answered (or failed last): its own
        outcome; the failures before it are their own models'."""
        return self.counters() | {"errors": 1 if self.error else 0, "fallbacks": 0}


# What an alias that failed and was covered by a fallback adds to its model's counters.
FELL_BACK = {"errors": 1, "fallbacks": 1}


@dataclass(frozen=True)
class Pending:
    """A settle the ledger could not take after the provider answered: kept durably (the meter
    backlog) and settled later, exactly once, by the reconciler. `hold` stays held meanwhile, so
    the budget errs on the safe side. `also`: the transaction's other items (the audit record).
    With no `metered`, only `also` is left to write (an audit record written on its own)."""

    metered: Metered | None
    hold: Hold | None = None
    also: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Settled:
    counted: bool
    """False when the request was metered before."""
    spent_micros: int | None = None
    """The spend with this call of the call's ledger shard (the month's, unsharded), when its spend
    guard was reached; else not read."""
    warned: frozenset[str] = frozenset()
    """The thresholds already announced, when the spend was read."""
