"""How the API's JSON reads in a terminal: tables, the budget bar, the pipeline's progress.
Pure functions from JSON to rich renderables, so they are tested without a server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 30
# The fine-tuning pipeline's states in the order a job passes them (SPEC §4.3 `byom_status`).
PIPELINE = ("validating", "training", "evaluating", "awaiting_approval", "registering", "succeeded")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# How many of a job's latest events the live display shows.
EVENT_LINES = 5


def _field(name: str, value: Any) -> str:
    """A field's value: `*_at` numbers as UTC times (`warn_at`, a list of fractions, is no time)."""
    return when(value) if name.endswith("_at") and not isinstance(value, list) else cell(value)


def when(seconds: Any) -> str:
    """A UTC time; 0 is how the API says "never set"."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def usd(amount: Any) -> str:
    if not isinstance(amount, int | float) or isinstance(amount, bool):
        return ""
    # Calls cost fractions of a cent: the digits that tell amounts apart, to the micro-dollar the
    # ledger keeps, and no trailing zeros past the cents.
    whole, _, fraction = f"{amount:,.6f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> Table:
    """A list of API objects, one row each, `*_at` fields as UTC times."""
    out = Table(title=title, show_lines=False)
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*(_field(c, row.get(c)) for c in columns))
    return out


def record(body: dict[str, Any], title: str | None = None) -> Table:
    """One API object as field / value lines."""
    out = Table(title=title, show_header=False)
    out.add_column("field", style="bold")
    out.add_column("value", overflow="fold")
    for name, value in body.items():
        out.add_row(name, _field(name, value))
    return out


def budget_bar(spent: float, limit: float, width: int = BAR_WIDTH) -> Text:
    """`[█████░░░░░]  42%`: green, yellow past 80 %, red at the limit; a bar never overflows."""
    fraction = spent / limit if limit > 0 else 1.0
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    colour = "red" if fraction >= 1 else "yellow" if fraction >= 0.8 else "green"
    bar = Text("[")
    bar.append("█" * filled, style=colour)
    bar.append("░" * (width - filled), style="dim")
    bar.append(f"] {fraction:4.0%}")
    return bar


def budget_line(budget: dict[str, Any] | None) -> Text:
    if not budget:
        return Text("No budget set", style="dim")
    limit = float(budget.get("limit_usd") or 0)
    spent = float(budget.get("spent_usd") or 0)
    line = Text("Budget ")
    line.append_text(budget_bar(spent + float(budget.get("reserved_usd") or 0), limit))
    line.append(f"  {usd(spent)} spent of {usd(limit)}")
    if budget.get("reserved_usd"):
        line.append(f", {usd(budget['reserved_usd'])} reserved")
    line.append(f", {usd(budget.get('remaining_usd'))} left")
    line.append(" (hard)" if budget.get("hard") else " (soft)")
    return line


USAGE_COLUMNS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "errors",
    "fallbacks",
    "avg_latency_ms",
)


def usage(report: dict[str, Any]) -> Group:
    """The usage route's report: one row per model / key / day, the month's total, the budget bar."""
    group = str(report.get("group_by") or "model")
    out = Table(title=f"Usage {report.get('month', '')} by {group}")
    out.add_column(group, overflow="fold")
    for column in USAGE_COLUMNS:
        out.add_column(column.replace("_", " "), justify="right")
    for item in report.get("items") or []:
        out.add_row(cell(item.get(group)), *_counters(item))
    out.add_section()
    out.add_row(Text("total", style="bold"), *_counters(report.get("total") or {}))
    return Group(out, budget_line(report.get("budget")))


def _counters(item: dict[str, Any]) -> list[str]:
    values = []
    for column in USAGE_COLUMNS:
        value = item.get(column)
        if column == "cost_usd":
            values.append(usd(value or 0))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values.append(f"{value:,}")
        else:
            values.append(cell(value))
    return values


def audit(records: list[dict[str, Any]], with_content: bool = False) -> Table:
    """Audit records, one line each: an interaction names its route and model, an admin action its
    method and route template."""
    out = Table(title="Audit records")
    for column in ("time", "kind", "key", "what", "model", "status", "tokens in/out", "cost"):
        out.add_column(column, overflow="fold")
    if with_content:
        out.add_column("content", overflow="fold")
    for r in records:
        row = [
            when(r.get("created_at")),
            cell(r.get("kind")),
            cell(r.get("key_id")),
            cell(r.get("route") or r.get("action")),
            cell(r.get("model")),
            cell(r.get("status")),
            f"{r.get('input_tokens', 0)}/{r.get('output_tokens', 0)}",
            usd(r.get("cost_usd") or 0),
        ]
        out.add_row(*row, cell(r.get("content"))) if with_content else out.add_row(*row)
    return out


def pipeline(job: dict[str, Any], events: list[dict[str, Any]]) -> Group:
    """A fine-tuning job's place in the pipeline: done ✓, current ▶, ahead ·, and where it ended."""
    status = str(job.get("byom_status") or "validating")
    steps = Table(title=f"Fine-tuning job {job.get('id', '')}", show_header=False)
    steps.add_column("mark")
    steps.add_column("state")
    reached = PIPELINE.index(status) if status in PIPELINE else None
    for i, state in enumerate(PIPELINE):
        if status == "succeeded" or (reached is not None and i < reached):
            steps.add_row(Text("✓", style="green"), state)
        elif i == reached:
            steps.add_row(Text("▶", style="bold cyan"), Text(state, style="bold"))
        else:
            steps.add_row(Text("·", style="dim"), Text(state, style="dim"))
    if status in ("failed", "cancelled"):
        steps.add_row(Text("✗", style="red"), Text(status, style="bold red"))
    parts: list[Any] = [steps]
    if job.get("evaluation"):
        parts.append(Text(f"Evaluation: {cell(job['evaluation'])}"))
    if status == "awaiting_approval":
        parts.append(Text(f"Waiting for approval: byom jobs approve {job.get('id', 'ID')}", style="yellow"))
    if job.get("fine_tuned_model"):
        parts.append(Text(f"Fine-tuned model: {job['fine_tuned_model']}", style="green"))
    error = job.get("error")
    if isinstance(error, dict) and error.get("message"):
        parts.append(Text(f"Error: {error['message']}", style="red"))
    # The events route answers newest first; the display reads top to bottom, oldest first.
    for event in reversed(events[:EVENT_LINES]):
        parts.append(Text(f"{when(event.get('created_at'))}  {cell(event.get('message'))}", style="dim"))
    return Group(*parts)
