"""CloudWatch metrics of invocations as EMF log lines (Powertools), by tenant and model.

One blob per call with the dimensions `service`, `tenant_id` and `model` (the alias); one more per
call of a budgeted tenant with `service` and `tenant_id`, which its spend alarm watches.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from byom.logic.money import to_usd

SERVICE = "byom-gateway"


class CallMetrics:
    def __init__(self, namespace: str = "BYOM") -> None:
        # Ephemeral: nothing else in the function adds to these, and each call flushes its own.
        self._metrics = EphemeralMetrics(namespace=namespace, service=SERVICE)

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
        m = self._metrics
        m.add_dimension("tenant_id", tenant_id)
        m.add_dimension("model", alias)
        m.add_metric(name="Requests", unit=MetricUnit.Count, value=0 if provider_error else 1)
        m.add_metric(name="InputTokens", unit=MetricUnit.Count, value=input_tokens)
        m.add_metric(name="OutputTokens", unit=MetricUnit.Count, value=output_tokens)
        m.add_metric(name="CostUSD", unit=MetricUnit.NoUnit, value=to_usd(cost_micros))
        m.add_metric(name="ProviderErrors", unit=MetricUnit.Count, value=1 if provider_error else 0)
        m.add_metric(name="CacheHits", unit=MetricUnit.Count, value=1 if cache_hit else 0)
        if latency_ms is not None:
            m.add_metric(name="LatencyMs", unit=MetricUnit.Milliseconds, value=latency_ms)
        m.flush_metrics()

    def budget(self, *, tenant_id: str, spent_micros: int, limit_micros: int) -> None:
        m = self._metrics
        m.add_dimension("tenant_id", tenant_id)
        m.add_metric(name="MonthToDateSpendUSD", unit=MetricUnit.NoUnit, value=to_usd(spent_micros))
        m.add_metric(
            name="BudgetUsedPercent", unit=MetricUnit.Percent, value=100 * spent_micros / limit_micros
        )
        m.flush_metrics()
