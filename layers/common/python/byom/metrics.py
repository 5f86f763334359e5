"""CloudWatch metrics of invocations as EMF log lines, by tenant and model.

One blob per call with the dimensions `tenant_id`, `model` (the alias) and `service`; one more per
call of a budgeted tenant with `tenant_id` and `service`, which its spend alarm watches.

The blobs are the ones Powertools' EphemeralMetrics prints (same keys, same order, values as
one-element lists), written here in one `json.dumps`: its per-metric validation and bookkeeping
cost a warm call more than the rest of its metrics, and every name, unit and dimension here is
this module's own. Powertools' switches still apply (`POWERTOOLS_METRICS_DISABLED`,
`POWERTOOLS_DEV`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from byom.logic.money import to_usd

SERVICE = "byom-gateway"

# (name, CloudWatch unit) of each metric of a call's blob, in the order they are written.
_CALL_METRICS = (
    ("Requests", "Count"),
    ("InputTokens", "Count"),
    ("OutputTokens", "Count"),
    ("CostUSD", "None"),
    ("ProviderErrors", "Count"),
    ("CacheHits", "Count"),
)
_LATENCY = ("LatencyMs", "Milliseconds")
_BUDGET_METRICS = (("MonthToDateSpendUSD", "None"), ("BudgetUsedPercent", "Percent"))


def emf_blob(
    namespace: str, dimensions: dict[str, str], metrics: list[tuple[str, str, float]], timestamp_ms: int
) -> dict[str, Any]:
    """One EMF document: `metrics` as (name, unit, value), all under the one dimension set."""
    blob: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit, _ in metrics],
                }
            ],
        },
        **dimensions,
    }
    for name, _, value in metrics:
        blob[name] = [float(value)]
    return blob


class CallMetrics:
    def __init__(self, namespace: str = "BYOM") -> None:
        self._namespace = namespace

    def _write(self, dimensions: dict[str, str], metrics: list[tuple[str, str, float]]) -> None:
        if is_metrics_disabled():
            return
        blob = emf_blob(self._namespace, dimensions | {"service": SERVICE}, metrics, int(time.time() * 1000))
        # The function's log stream; Lambda ships stdout to CloudWatch Logs, which extracts the metrics.
        sys.stdout.write(json.dumps(blob, separators=(",", ":")) + "\n")
        sys.stdout.flush()

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
    ) -> None:
        values = (
            0 if provider_error else 1,
            input_tokens,
            output_tokens,
            to_usd(cost_micros),
            1 if provider_error else 0,
            1 if cache_hit else 0,
        )
        metrics = [(name, unit, value) for (name, unit), value in zip(_CALL_METRICS, values, strict=True)]
        if latency_ms is not None:
            metrics.append((*_LATENCY, latency_ms))
        self._write({"tenant_id": tenant_id, "model": alias}, metrics)

    def budget(self, *, tenant_id: str, spent_micros: int, limit_micros: int) -> None:
        values = (to_usd(spent_micros), 100 * spent_micros / limit_micros)
        metrics = [(name, unit, value) for (name, unit), value in zip(_BUDGET_METRICS, values, strict=True)]
        self._write({"tenant_id": tenant_id}, metrics)
