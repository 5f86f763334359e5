"""Budgets and usage reports (SPEC §4.2 budget and usage, §4.3 /v1/usage): a tenant's budget
stored and applied to the month's ledgers, and the month's counters read back as a report. The
money math is byom.logic.money's; a call's own money, byom.logic.call_meter's."""

from __future__ import annotations

import re
from typing import Any, Literal, Protocol

from byom import clock
from byom.domain import ApiKey, Budget, PutBudget
from byom.errors import InvalidRequest, NotFound
from byom.logic.money import month_of, to_micros, to_usd

GroupBy = Literal["model", "key", "day"]
GROUPS: dict[str, str] = {"model": "model#", "key": "key#", "day": "day#"}
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class UsageReader(Protocol):
    """What a usage report reads (byom.dal.ledger.UsageTable, on the tenant's scoped credentials)."""

    def month_items(self, tenant_id: str, month: str) -> list[dict[str, Any]]:
        """The month's ledger and counter items, each with its `sk`."""
        ...

    def get_budget(self, tenant_id: str) -> Budget | None: ...


class BudgetTable(UsageReader, Protocol):
    """The usage table as budgets and reports need it (byom.dal.ledger.UsageTable)."""

    def put_budget(
        self, budget: Budget, month: str, key_limits_micros: dict[str, int], limit_micros: int
    ) -> None: ...

    def delete_budget(self, tenant_id: str) -> None: ...

    def sweep(self, tenant_id: str, month: str, now: int) -> int:
        """Release the expired holds of calls that never settled."""
        ...


class SpendAlarms(Protocol):
    """Per-tenant spend alarms (byom.dal.alarms.SpendAlarms)."""

    def put(self, tenant_id: str, limit_usd: float) -> None: ...

    def delete(self, tenant_id: str) -> None: ...


class KnownKeys(Protocol):
    def get(self, tenant_id: str, key_id: str) -> ApiKey | None: ...


def budget_from(tenant_id: str, body: PutBudget, now: int) -> Budget:
    return Budget(
        tenant_id=tenant_id,
        monthly_limit_usd=body.monthly_limit_usd,
        warn_at=sorted(set(body.warn_at)),
        hard=body.hard,
        key_limits=dict(body.key_limits),
        ledger_shards=body.ledger_shards,
        updated_at=now,
    )


def put_budget(
    usage: BudgetTable, alarms: SpendAlarms | None, keys: KnownKeys, tenant_id: str, body: PutBudget
) -> Budget:
    """Store the budget and apply it to this month at once; (re)create the tenant's spend alarm."""
    unknown = sorted(k for k in body.key_limits if keys.get(tenant_id, k) is None)
    if unknown:
        raise InvalidRequest(f"key_limits names unknown API keys: {', '.join(unknown)}", param="key_limits")
    over = sorted(k for k, usd in body.key_limits.items() if usd > body.monthly_limit_usd)
    if over:
        raise InvalidRequest(
            f"key_limits above the tenant's monthly_limit_usd: {', '.join(over)}", param="key_limits"
        )
    now = clock.now()
    budget = budget_from(tenant_id, body, now)
    usage.put_budget(
        budget,
        month_of(now),
        {k: to_micros(usd) for k, usd in budget.key_limits.items()},
        to_micros(budget.monthly_limit_usd),
    )
    if alarms is not None:
        alarms.put(tenant_id, budget.monthly_limit_usd)
    return budget


def get_budget(usage: UsageReader, tenant_id: str) -> Budget:
    budget = usage.get_budget(tenant_id)
    if budget is None:
        raise NotFound(f"Tenant '{tenant_id}' has no budget")
    return budget


def delete_budget(usage: BudgetTable, alarms: SpendAlarms | None, tenant_id: str) -> None:
    get_budget(usage, tenant_id)
    usage.delete_budget(tenant_id)
    if alarms is not None:
        alarms.delete(tenant_id)


def _month(month: str | None, now: int) -> str:
    if month is None or month == "":
        return month_of(now)
    if not _MONTH.match(month):
        raise InvalidRequest("month must be YYYY-MM", param="month")
    return month


def _group(group_by: str | None) -> str:
    group = group_by or "model"
    if group not in GROUPS:
        raise InvalidRequest("group_by must be one of: model, key, day", param="group_by")
    return group


def counters(item: dict[str, Any] | None) -> dict[str, Any]:
    item = item or {}
    samples = int(item.get("latency_samples", 0))
    return {
        "requests": int(item.get("requests", 0)),
        "input_tokens": int(item.get("input_tokens", 0)),
        "output_tokens": int(item.get("output_tokens", 0)),
        "cached_tokens": int(item.get("cached_tokens", 0)),
        "cost_usd": to_usd(int(item.get("cost_micros", 0))),
        "errors": int(item.get("errors", 0)),
        "fallbacks": int(item.get("fallbacks", 0)),
        "cache_hits": int(item.get("cache_hits", 0)),
        "avg_latency_ms": round(int(item.get("latency_ms_sum", 0)) / samples, 1) if samples else None,
    }


def report(
    usage: BudgetTable,
    tenant_id: str,
    month: str | None,
    group_by: str | None,
    *,
    reader: UsageReader | None = None,
) -> dict[str, Any]:
    """The month's usage of a tenant: totals, one item per model / key / day, and the budget.
    `reader`: the usage table opened with the tenant's own credentials (byom.dal.tenant_scope), which
    every read goes through; `usage` (the function's) only sweeps expired holds."""
    reader = reader if reader is not None else usage
    now = clock.now()
    month = _month(month, now)
    group = _group(group_by)
    if month == month_of(now):
        # Holds of crashed calls would otherwise show as committed until a call sweeps them.
        usage.sweep(tenant_id, month, now)
    items = reader.month_items(tenant_id, month)
    total = next((i for i in items if i["sk"] == "total"), None)
    prefix = GROUPS[group]
    grouped = sorted(
        ({group: i["sk"].removeprefix(prefix)} | counters(i) for i in items if i["sk"].startswith(prefix)),
        key=lambda row: row[group],
    )
    return {
        "object": "usage",
        "month": month,
        "group_by": group,
        "total": counters(total),
        "items": grouped,
        "budget": _budget_view(reader.get_budget(tenant_id), total or {}),
    }


def _budget_view(budget: Budget | None, ledger: dict[str, Any]) -> dict[str, Any] | None:
    if budget is None:
        return None
    limit = to_micros(budget.monthly_limit_usd)
    spent = int(ledger.get("cost_micros", 0))
    committed = int(ledger.get("committed_micros", spent))
    return {
        "limit_usd": budget.monthly_limit_usd,
        "spent_usd": to_usd(spent),
        "reserved_usd": to_usd(max(committed - spent, 0)),
        "remaining_usd": to_usd(max(limit - committed, 0)),
        "hard": budget.hard,
        "warn_at": budget.warn_at,
        "warned": sorted(float(w) for w in ledger.get("warned", ())),
    }
