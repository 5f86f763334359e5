"""Per-tenant spend alarms (docs/contracts.md): created with a budget, deleted with it."""

from __future__ import annotations

from typing import Any

from byom.metrics import SERVICE as METRICS_SERVICE

NAMESPACE = "BYOM"
SPEND_METRIC = "MonthToDateSpendUSD"


class SpendAlarms:
    def __init__(self, cloudwatch: Any, *, prefix: str, topic_arn: str | None) -> None:
        self._cloudwatch = cloudwatch
        self._prefix = prefix
        self._topic = topic_arn

    def name(self, tenant_id: str) -> str:
        return f"{self._prefix}{tenant_id}"

    def put(self, tenant_id: str, limit_usd: float) -> None:
        actions = [self._topic] if self._topic else []
        self._cloudwatch.put_metric_alarm(
            AlarmName=self.name(tenant_id),
            AlarmDescription=f"Month-to-date spend of tenant {tenant_id} reached its ${limit_usd:g} budget",
            Namespace=NAMESPACE,
            MetricName=SPEND_METRIC,
            Dimensions=[
                {"Name": "service", "Value": METRICS_SERVICE},
                {"Name": "tenant_id", "Value": tenant_id},
            ],
            Statistic="Maximum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=limit_usd,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            TreatMissingData="notBreaching",
            AlarmActions=actions,
        )

    def delete(self, tenant_id: str) -> None:
        self._cloudwatch.delete_alarms(AlarmNames=[self.name(tenant_id)])
