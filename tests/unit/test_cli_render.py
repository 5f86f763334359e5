"""How the admin CLI shows the API's answers: the usage table, the budget bar, the pipeline."""

from __future__ import annotations

from typing import Any

from byom_cli import render
from rich.console import Console


def text_of(renderable: Any) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


REPORT = {
    "object": "usage",
    "month": "2026-12",
    "group_by": "model",
    "total": {"requests": 3, "input_tokens": 30, "output_tokens": 12, "cost_usd": 0.5, "errors": 0},
    "items": [
        {"model": "fast", "requests": 2, "input_tokens": 20, "output_tokens": 8, "cost_usd": 0.25},
        {"model": "smart", "requests": 1, "input_tokens": 10, "output_tokens": 4, "cost_usd": 0.25},
    ],
    "budget": {"limit_usd": 1.0, "spent_usd": 0.5, "reserved_usd": 0.0, "remaining_usd": 0.5, "hard": True},
}


def test_half_the_budget_spent_fills_half_the_bar() -> None:
    bar = render.budget_bar(5, 10, width=10).plain

    assert bar == "[█████░░░░░]  50%"


def test_a_bar_past_its_limit_stays_its_width() -> None:
    bar = render.budget_bar(30, 10, width=10).plain

    assert bar.count("█") == 10
    assert "300%" in bar


def test_a_zero_limit_reads_as_full_not_a_division_error() -> None:
    assert render.budget_bar(0, 0, width=4).plain.startswith("[████]")


def test_the_usage_table_has_a_row_per_model_and_the_total() -> None:
    shown = text_of(render.usage(REPORT))

    rows = {line.split("│")[1].strip() for line in shown.splitlines() if line.count("│") > 2}
    assert {"fast", "smart", "total"} <= rows


def test_the_usage_table_shows_the_fallbacks_of_a_model_that_failed() -> None:
    failed = {"model": "down", "requests": 0, "cost_usd": 0, "errors": 2, "fallbacks": 2}
    report = REPORT | {"items": [*REPORT["items"], failed]}  # type: ignore[list-item]

    shown = text_of(render.usage(report))

    header = next(line for line in shown.splitlines() if "fallbacks" in line)
    row = next(line for line in shown.splitlines() if line.startswith("│ down "))
    columns = [cell.strip() for cell in header.split("┃")[1:-1]]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert (cells[columns.index("errors")], cells[columns.index("fallbacks")]) == ("2", "2")


def test_the_usage_table_shows_the_budget_bar_and_what_is_left() -> None:
    shown = text_of(render.usage(REPORT))

    assert "Budget [" in shown
    assert "$0.50 left" in shown
    assert "(hard)" in shown


def test_a_tenant_without_a_budget_says_so() -> None:
    assert "No budget set" in text_of(render.usage(REPORT | {"budget": None}))


def test_small_costs_keep_their_digits() -> None:
    assert render.usd(0.000125) == "$0.000125"


def test_cents_keep_their_fractions() -> None:
    assert render.usd(0.035) == "$0.035"


def test_a_training_job_has_validation_done_and_training_current() -> None:
    shown = text_of(render.pipeline({"id": "ftjob-1", "byom_status": "training"}, []))

    assert "✓ │ validating" in shown
    assert "▶ │ training" in shown
    assert "· │ evaluating" in shown


def test_a_failed_job_shows_its_error() -> None:
    job = {"id": "ftjob-1", "byom_status": "failed", "error": {"message": "line 3 is not JSON"}}

    shown = text_of(render.pipeline(job, []))

    assert "✗ │ failed" in shown
    assert "Error: line 3 is not JSON" in shown


def test_the_latest_events_read_oldest_first() -> None:
    newest_first = [{"created_at": 2, "message": "second"}, {"created_at": 1, "message": "first"}]

    shown = text_of(render.pipeline({"id": "j", "byom_status": "training"}, newest_first))

    assert shown.index("first") < shown.index("second")


def test_times_print_in_utc() -> None:
    assert render.when(1) == "1970-01-01 00:00:01"


def test_a_time_never_set_prints_blank() -> None:
    assert render.when(0) == ""


def test_an_admin_record_shows_its_action_where_a_call_shows_its_route() -> None:
    records = [
        {"kind": "interaction", "route": "chat.completions", "model": "fast", "input_tokens": 2},
        {"kind": "admin", "action": "PUT /admin/tenants/{tenant_id}/budget", "status": "200"},
    ]

    shown = text_of(render.audit(records))

    assert "chat.completions" in shown
    assert "PUT /admin/tenants/{tenant_id}/budget" in shown


def test_a_budgets_warn_at_fractions_are_shown_not_taken_for_a_time() -> None:
    text = text_of(render.record({"warn_at": [0.5, 0.8], "updated_at": 1_796_178_177}))

    assert "0.5, 0.8" in text
    assert "2026-12-02" in text
