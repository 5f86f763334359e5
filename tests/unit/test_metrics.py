"""The EMF lines of a call (byom.metrics): what CloudWatch extracts metrics from."""

from __future__ import annotations

import json

import pytest
from byom.metrics import CallMetrics


def _call(metrics: CallMetrics, *, latency_ms: int | None = 12) -> None:
    metrics.call(
        tenant_id="tnt_a",
        alias="chat",
        input_tokens=3,
        output_tokens=5,
        cost_micros=1234,
        latency_ms=latency_ms,
        provider_error=False,
        cache_hit=False,
    )


def test_a_calls_line_names_each_metric_under_tenant_model_and_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _call(CallMetrics())

    (line,) = capsys.readouterr().out.splitlines()
    blob = json.loads(line)
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["tenant_id", "model", "service"]]
    names = [m["Name"] for m in directive["Metrics"]]
    assert {name: blob[name] for name in names} == {
        "Requests": [1.0],
        "InputTokens": [3.0],
        "OutputTokens": [5.0],
        "CostUSD": [0.001234],
        "ProviderErrors": [0.0],
        "CacheHits": [0.0],
        "LatencyMs": [12.0],
    }
    assert (blob["tenant_id"], blob["model"], blob["service"]) == ("tnt_a", "chat", "byom-gateway")


def test_a_call_without_a_latency_has_no_latency_metric(capsys: pytest.CaptureFixture[str]) -> None:
    _call(CallMetrics(), latency_ms=None)

    blob = json.loads(capsys.readouterr().out)
    assert "LatencyMs" not in blob and all(
        m["Name"] != "LatencyMs" for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    )


def test_the_budget_line_is_by_tenant_and_service_only(capsys: pytest.CaptureFixture[str]) -> None:
    CallMetrics().budget(tenant_id="tnt_a", spent_micros=5_000, limit_micros=100_000)

    blob = json.loads(capsys.readouterr().out)
    assert blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["tenant_id", "service"]]
    assert (blob["MonthToDateSpendUSD"], blob["BudgetUsedPercent"]) == ([0.005], [5.0])


def test_powertools_switch_turns_the_lines_off(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    _call(CallMetrics())

    assert capsys.readouterr().out == ""
