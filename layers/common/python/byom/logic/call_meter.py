"""Budgets and metering of one call (SPEC §5): reserve, call, settle; release whatever happens.

`CallMeter` is the whole life of a call's money. Used as a context manager, its exit releases a
reservation the call did not settle (a provider failure, a gateway fault, a cancelled call), so
no path leaks one; reservations of a crashed function expire and are swept when they would refuse
a call. The counting itself is the ledger's (byom.dal.ledger): exactly once per request id.

A settle the ledger cannot take once the provider answered (its retries spent: a throttled ledger,
an outage) does not cost the caller the answer the provider already billed: the call's meter and
audit record go to the meter backlog (a durable queue), its hold stays held, and the reconciler
settles it later (`reconcile`), exactly once, turning the hold into the cost (docs/money.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

from byom.domain import Budget, Pricing
from byom.errors import BudgetExceeded, ByomError, StoreUnavailable
from byom.logic.ledger_shards import shard_of
from byom.logic.money import (
    Estimate,
    cost_micros,
    day_of,
    fraction_label,
    month_of,
    threshold_micros,
    thresholds_reached,
    to_micros,
    to_usd,
)
from byom.money import BudgetState, Hold, Metered, Pending, ReservationRefused, Settled
from byom.observability import logger
from byom.providers import Usage

# A hold outlives any call (API Gateway gives up after 29 s); past this a sweep may release it.
HOLD_SECONDS = 300


@dataclass(frozen=True)
class Threshold:
    """A `warn_at` fraction of a tenant's monthly budget that its spend has reached."""

    tenant_id: str
    month: str
    fraction: float
    limit_usd: float
    spent_usd: float

    def detail(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "month": self.month,
            "threshold": self.fraction,
            "limit_usd": self.limit_usd,
            "spent_usd": self.spent_usd,
        }


class SettleRecord(Protocol):
    """The call's audit record, written in the same transaction as its metering
    (byom.governance.trail.Trail): no extra AWS round trip on a warm call."""

    def item(self, input_tokens: int, output_tokens: int, cost_micros: int) -> dict[str, Any] | None: ...

    def settled(self) -> None: ...


class Ledgers(Protocol):
    """The usage table's money operations a call needs (byom.dal.ledger.UsageTable)."""

    def reserve(self, hold: Hold) -> None:
        """Take the hold off the remaining budget, or raise ReservationRefused."""
        ...

    def release(self, hold: Hold) -> bool: ...

    def sweep(self, tenant_id: str, month: str, now: int, shards: int | None = None) -> int:
        """Release the expired holds of calls that never settled, on the month's `shards` ledger
        shards (None: all it has); how many."""
        ...

    def settle(
        self,
        metered: Metered,
        hold: Hold | None,
        spend_guard: int | None = None,
        *,
        also: list[dict[str, Any]] | None = None,
    ) -> Settled: ...

    def mark_warned(self, tenant_id: str, month: str, label: str, threshold_micros: int | None) -> bool:
        """True for exactly one caller per month and threshold; `threshold_micros` None: the
        caller read that the month reached it (a sharded month, `month_spend`)."""
        ...

    def month_spend(self, tenant_id: str, month: str, shards: int) -> tuple[int, frozenset[str]]:
        """A sharded month's spend over its shards, and the thresholds announced."""
        ...


class Backlog(Protocol):
    """Where settles the ledger could not take wait for the reconciler (byom.dal.meter_backlog)."""

    def keep(self, pending: Pending) -> None:
        """Keep it durably, or raise."""
        ...


class ItemWriter(Protocol):
    """Writes the items of a transaction as they were built (byom.dal.meter_backlog)."""

    def write(self, items: list[dict[str, Any]]) -> None: ...


def keep(backlog: Backlog, pending: Pending, what: str, where: dict[str, Any]) -> bool:
    """Put what a table did not take in the backlog; whether it is there. Either way the caller's
    answer stands: a record the backlog refuses too is logged as lost (operators alarm on it)."""
    try:
        backlog.keep(pending)
    except Exception as lost:
        logger.error(
            f"{what} lost: its write and the backlog both failed",
            extra=where | {"backlog_error_type": type(lost).__name__},
        )
        return False
    logger.warning(f"{what} deferred to the meter backlog", extra=where)
    return True


@contextmanager
def store_step(failure: str, message: str) -> Iterator[None]:
    """A step on the gateway's own tables before the provider is called: any failure that is not
    one of the gateway's answers becomes 503 StoreUnavailable (nothing held or spent, safe to try
    again), logged by its type only (AWS messages can carry request data)."""
    try:
        yield
    except ByomError:
        raise
    except Exception as error:
        logger.error(failure, extra={"error_type": type(error).__name__})
        raise StoreUnavailable(message) from None


def reconcile(usage: Ledgers, writer: ItemWriter, pending: Pending) -> bool:
    """Settle what a call could not: exactly once (the ledger's `req#` marker), turning its hold
    into the cost (a hold swept meanwhile: the cost is committed afresh). False when the request
    was metered already (a settle that did land before its answer was lost); a hold it still holds
    then goes back, as CallMeter gives back the hold of a replayed request."""
    if pending.metered is None:
        writer.write(list(pending.also))
        return True
    counted = usage.settle(pending.metered, pending.hold, also=list(pending.also)).counted
    if not counted and pending.hold is not None:
        usage.release(pending.hold)
    return counted


def give_back_ahead(usage: Ledgers, hold: Hold) -> None:
    """Release a hold reserved ahead that its call does not keep; one that cannot be released stays
    held until a sweep gives it back (the budget errs on the safe side)."""
    try:
        usage.release(hold)
    except Exception as error:
        logger.error("hold reserved ahead not given back", extra={"error_type": type(error).__name__})


@dataclass(frozen=True)
class Foreseen:
    """What an environment last read of a tenant's alias: enough to reserve the next call's hold
    before its own read answers."""

    budget: Budget
    pricing: Pricing | None
    """The dearest prices on the alias's fallback chain (what a hard budget reserves at)."""
    max_output_tokens: int | None


class Foresight:
    """The last read of each tenant's alias in this environment (the most recent `size`), so a
    warm call under a hard budget sends its reservation beside its read: one round trip before the
    provider instead of two. Only a guess: the call's read decides (CallMeter.adopt)."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, str], Foreseen] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant_id: str, alias: str) -> Foreseen | None:
        with self._lock:
            return self._seen.get((tenant_id, alias))

    def remember(self, tenant_id: str, alias: str, foreseen: Foreseen | None) -> None:
        """None: the alias's calls reserve nothing (no hard budget), so none is reserved ahead."""
        with self._lock:
            if foreseen is None:
                self._seen.pop((tenant_id, alias), None)
                return
            self._seen[(tenant_id, alias)] = foreseen
            self._seen.move_to_end((tenant_id, alias))
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)


class ThresholdNotifier(Protocol):
    """Announces budget thresholds (byom.dal.notify.Notifier)."""

    def budget_threshold_crossed(self, threshold: Threshold) -> None: ...


class CallMetrics(Protocol):
    """Each call's CloudWatch metrics (byom.metrics.CallMetrics)."""

    def call(
        self,
        *,
        tenant_id: str,
        alias: str,
        input_tokens: int,
        output_tokens: int,
        cost_micros: int,
        latency_ms: int | None,
        provider_error: bool,
        cache_hit: bool,
    ) -> None: ...

    def budget(self, *, tenant_id: str, spent_micros: int, limit_micros: int) -> None: ...


@dataclass
class CallMeter:
    usage: Ledgers
    notifier: ThresholdNotifier | None
    """None: thresholds are recorded in the ledger but announced nowhere."""
    metrics: CallMetrics | None
    """None: no metrics."""
    tenant_id: str
    key_id: str
    request_id: str
    state: BudgetState
    now: Callable[[], int]
    tokens_minute: str | None = None
    """Under a tokens-per-minute limit, the minute whose counter this call's tokens add to."""
    backlog: Backlog | None = None
    """None: a settle the ledger could not take fails the call (tests, tools)."""
    started_at: int = 0
    hold: Hold | None = None
    settled: bool = False

    def __post_init__(self) -> None:
        self.started_at = self.now()
        self.month = month_of(self.started_at)
        self.day = day_of(self.started_at)
        budget = self.state.budget
        # A month split over ledger shards (docs/scale.md): the call reserves and is counted on one.
        self.shards = budget.ledger_shards if budget is not None else 1
        self.shard = shard_of(self.request_id, self.shards)

    def __enter__(self) -> CallMeter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.give_back()

    def give_back(self) -> None:
        """Release a hold the call did not settle."""
        if self.hold is not None and not self.settled:
            self.usage.release(self.hold)
            self.hold = None

    @property
    def hard_limit_micros(self) -> int | None:
        budget = self.state.budget
        return to_micros(budget.monthly_limit_usd) if budget and budget.hard else None

    @property
    def key_limit_micros(self) -> int | None:
        budget = self.state.budget
        if budget is None or not budget.hard or self.key_id not in budget.key_limits:
            return None
        return to_micros(budget.key_limits[self.key_id])

    # Before the provider is called

    def hold_for(self, amount_micros: int) -> Hold | None:
        """The hold this call takes for `amount_micros` under its budget; None without a hard one."""
        limit = self.hard_limit_micros
        if limit is None:
            return None
        return Hold(
            tenant_id=self.tenant_id,
            month=self.month,
            request_id=self.request_id,
            key_id=self.key_id,
            amount_micros=amount_micros,
            limit_micros=limit,
            key_limit_micros=self.key_limit_micros,
            expires_at=self.started_at + HOLD_SECONDS,
            shard=self.shard,
            shards=self.shards,
        )

    def adopt(self, hold: Hold | None) -> None:
        """A hold reserved before the call's read answered (byom.logic.call_meter.Foresight): kept
        when it is what this call's budget, as read, would hold, else given back at once."""
        if hold is None:
            return
        expected = self.hold_for(hold.amount_micros)
        # The same hold but for when it expires (the two meters started a moment apart).
        if expected is not None and replace(hold, expires_at=expected.expires_at) == expected:
            self.hold = hold
            return
        give_back_ahead(self.usage, hold)

    def admit(self, estimate: Estimate) -> None:
        """Reserve the most this call can cost, or refuse it with 429 insufficient_quota. A hold
        reserved ahead that covers the estimate stands; one that does not is given back first."""
        if self.hold is not None:
            if self.hold.amount_micros >= estimate.cost_micros:
                return
            self.give_back()
        hold = self.hold_for(estimate.cost_micros)
        if hold is None:
            return
        # The provider is not called: nothing is spent. A reservation that landed unanswered
        # stays held until a sweep gives it back (the budget errs on the safe side).
        with store_step(
            "reservation failed",
            "The gateway could not reserve this request's budget; nothing was charged. Try again.",
        ):
            try:
                self.usage.reserve(hold)
            except ReservationRefused as refused:
                # Holds of crashed calls are only worth sweeping when they stand in a call's way.
                if not self.usage.sweep(self.tenant_id, self.month, self.now(), self.shards):
                    raise self._refusal(refused, estimate) from None
                try:
                    self.usage.reserve(hold)
                except ReservationRefused as again:
                    raise self._refusal(again, estimate) from None
        self.hold = hold

    def _refusal(self, refused: ReservationRefused, estimate: Estimate) -> BudgetExceeded:
        remaining = max(refused.remaining_micros or 0, 0)
        whose = "this API key's" if refused.scope == "key" else "the tenant's"
        return BudgetExceeded(
            f"Hard budget reached: {whose} monthly budget has ${to_usd(remaining):.6f} remaining, and this "
            f"request may cost up to ${estimate.cost_usd:.6f}. Lower max_tokens, or raise the budget."
        )

    # After the provider answered or failed

    def succeeded(
        self,
        alias: str,
        usage: Usage,
        pricing: Pricing | None,
        *,
        latency_ms: int | None,
        cache_hit: bool = False,
        record: SettleRecord | None = None,
        fell_back_from: tuple[str, ...] = (),
    ) -> int:
        """Count the call with the provider's tokens at the answering model's prices (cache reads and
        writes at theirs); its cost. `fell_back_from`: the aliases that failed before `alias`
        answered, each counted as an error of its own (no cost) in the same write."""
        cost = 0
        if not cache_hit:
            cost = cost_micros(
                pricing,
                usage.prompt_tokens,
                usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                cache_write_tokens=usage.cache_write_tokens,
            )
        metered = self._metered(
            alias,
            input_tokens=0 if cache_hit else usage.prompt_tokens,
            output_tokens=0 if cache_hit else usage.completion_tokens,
            cached_tokens=0 if cache_hit else usage.cached_tokens,
            cost_micros=cost,
            cache_hit=cache_hit,
            latency_ms=latency_ms,
            fell_back_from=fell_back_from,
        )
        settled = self._settle(metered, self._spend_guard(cost), record)
        spent = settled.spent_micros
        if spent is not None and self.shards > 1:
            # The call's shard reached its part of a threshold: has the month reached it?
            spent, warned = self.usage.month_spend(self.tenant_id, self.month, self.shards)
            self._announce_thresholds(spent, warned, checked=True)
        elif spent is not None:
            self._announce_thresholds(spent, settled.warned)
        if spent is None:
            # The spend read before the call; a sharded month read shard 0, a part of about 1/N.
            spent = self.state.ledger.spent_micros * self.shards + cost
        self._budget_metrics(spent)
        return cost

    def failed(self, alias: str, *, latency_ms: int | None, record: SettleRecord | None = None) -> None:
        """A provider failure after retries and fallbacks: an error, not spend."""
        self._settle(self._metered(alias, error=True, latency_ms=latency_ms), None, record)

    def _metered(self, alias: str, **counts: Any) -> Metered:
        return Metered(
            tenant_id=self.tenant_id,
            month=self.month,
            day=self.day,
            request_id=self.request_id,
            key_id=self.key_id,
            alias=alias,
            tokens_minute=self.tokens_minute,
            shard=self.shard,
            shards=self.shards,
            **counts,
        )

    def _settle(self, metered: Metered, spend_guard: int | None, record: SettleRecord | None) -> Settled:
        item = (
            record.item(metered.input_tokens, metered.output_tokens, metered.cost_micros)
            if record is not None
            else None
        )
        also = [item] if item else []
        try:
            settled: Settled = self.usage.settle(metered, self.hold, spend_guard, also=also)
        except Exception as error:
            if self.backlog is None:
                raise
            settled = self._defer(self.backlog, metered, also, error)
        if settled.counted and record is not None and item is not None:
            record.settled()
        if not settled.counted:
            # A request id seen before (a replayed event): counted once, so this hold goes back.
            logger.warning("request already metered", extra={"request_id": self.request_id})
            if self.hold is not None:
                self.usage.release(self.hold)
        self.settled = True
        if self.metrics is not None:
            self.metrics.call(
                tenant_id=self.tenant_id,
                alias=metered.alias,
                input_tokens=metered.input_tokens,
                output_tokens=metered.output_tokens,
                cost_micros=metered.cost_micros,
                latency_ms=metered.latency_ms,
                provider_error=metered.error,
                cache_hit=metered.cache_hit,
            )
        return settled

    def _defer(
        self, backlog: Backlog, metered: Metered, also: list[dict[str, Any]], error: Exception
    ) -> Settled:
        """The settle the ledger refused, kept for the reconciler: the hold stays held and the
        audit record goes with it. Counted as settled here, so nothing gives the hold back."""
        where = {
            "request_id": self.request_id,
            "tenant_id": self.tenant_id,
            "error_type": type(error).__name__,
        }
        pending = Pending(metered, self.hold, tuple(also))
        keep(backlog, pending, "meter record", where | {"cost_micros": metered.cost_micros})
        return Settled(counted=True)

    def _unannounced(self) -> list[float]:
        budget = self.state.budget
        if budget is None:
            return []
        return sorted(f for f in set(budget.warn_at) if fraction_label(f) not in self.state.ledger.warned)

    def _spend_guard(self, cost: int) -> int | None:
        """The spend below which this call reaches no unannounced threshold (see UsageTable.settle).
        On a sharded month, the shard's spend below which it reaches no 1/N of it: while every shard
        is under its part, the month is under the threshold, so the call that takes one past it is
        the one to read the month's spend."""
        pending = self._unannounced()
        if not pending or self.state.budget is None:
            return None
        threshold = threshold_micros(to_micros(self.state.budget.monthly_limit_usd), pending[0])
        return threshold // self.shards - cost

    def _budget_metrics(self, spent: int) -> None:
        budget = self.state.budget
        if self.metrics is None or budget is None:
            return
        self.metrics.budget(
            tenant_id=self.tenant_id, spent_micros=spent, limit_micros=to_micros(budget.monthly_limit_usd)
        )

    def _announce_thresholds(self, spent: int, warned: frozenset[str], *, checked: bool = False) -> None:
        """Each `warn_at` fraction once a month: whoever records it in the ledger announces it.

        `spent` is the month's spend the ledger answered this call's settle with, so the call that
        reaches a threshold is the one that sees it, however many calls overlap. `checked`: `spent`
        was read after the settle, summed over a sharded month's shards."""
        budget = self.state.budget
        if budget is None:
            return
        limit = to_micros(budget.monthly_limit_usd)
        for fraction in thresholds_reached(budget.warn_at, limit, spent, set(warned)):
            label = fraction_label(fraction)
            try:
                marked = self.usage.mark_warned(
                    self.tenant_id, self.month, label, None if checked else threshold_micros(limit, fraction)
                )
            except Exception as error:
                # A transaction holding `total` (TransactionConflictException) or throttling: the
                # call is metered; the threshold stays unmarked, so the next call's settle finds it.
                logger.warning(
                    "budget threshold not marked",
                    extra={"threshold": label, "error_type": type(error).__name__},
                )
                continue
            if not marked:
                continue
            if self.notifier is None:
                continue
            threshold = Threshold(
                self.tenant_id, self.month, fraction, budget.monthly_limit_usd, to_usd(spent)
            )
            try:
                self.notifier.budget_threshold_crossed(threshold)
            except Exception as error:  # the answer is the caller's, whatever the notification does
                logger.error(
                    "budget threshold notification failed",
                    extra={
                        "tenant_id": self.tenant_id,
                        "threshold": label,
                        "error_type": type(error).__name__,
                    },
                )
