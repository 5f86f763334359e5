"""Budget announcements: an EventBridge event for automations, an SNS message for people."""

from __future__ import annotations

import json
from typing import Any

EVENT_SOURCE = "byom"
THRESHOLD_DETAIL_TYPE = "BudgetThresholdCrossed"


class Notifier:
    def __init__(self, events: Any, sns: Any, *, event_bus: str, topic_arn: str | None) -> None:
        self._events = events
        self._sns = sns
        self._bus = event_bus
        self._topic = topic_arn

    def budget_threshold_crossed(self, threshold: Any) -> None:
        """`threshold`: byom.logic.call_meter.Threshold."""
        detail = threshold.detail()
        answer = self._events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": THRESHOLD_DETAIL_TYPE,
                    "Detail": json.dumps(detail),
                    "EventBusName": self._bus,
                    "Resources": [],
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the event: {answer['Entries'][0].get('ErrorCode')}")
        if self._topic:
            percent = round(threshold.fraction * 100)
            self._sns.publish(
                TopicArn=self._topic,
                Subject=f"BYOM budget: tenant {threshold.tenant_id} reached {percent}% of {threshold.month}",
                Message=(
                    f"Tenant {threshold.tenant_id} has spent ${threshold.spent_usd:.2f} of its "
                    f"${threshold.limit_usd:.2f} monthly budget for {threshold.month} "
                    f"({percent}% threshold).\n\n" + json.dumps(detail)
                ),
            )
