"""Automations' AWS side: their records, their EventBridge rules and Scheduler schedules (named under
the stack's prefix, which is all the admin function's IAM reaches), the run queue and the results."""

from __future__ import annotations

import builtins
import json
from dataclasses import asdict, fields
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from byom.automations import Automation, Run
from byom.dal.aws import error_code, from_item, to_item
from byom.errors import InvalidRequest
from byom.logic.automations import RESULT_DETAIL_TYPE, RESULT_SOURCE, delivery_message, scheduled_event

_AUTOMATION = "automation#"
_RUN = "run#"
# Runs are kept for a quarter (DynamoDB TTL); the automation itself until it is deleted.
RUN_RETENTION_SECONDS = 90 * 24 * 3600


def _from(cls: type[Any], item: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in from_item(item).items() if k in names})


class AutomationTable:
    """One partition per tenant: `automation#{id}` items and their `run#{automation_id}#{run_id}` items,
    whose run ids sort by when the run was triggered."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def put(self, automation: Automation) -> None:
        item = asdict(automation) | {"sk": f"{_AUTOMATION}{automation.id}"}
        self._table.put_item(Item=to_item(item))

    def get(self, tenant_id: str, automation_id: str) -> Automation | None:
        item = self._table.get_item(Key={"tenant_id": tenant_id, "sk": f"{_AUTOMATION}{automation_id}"}).get(
            "Item"
        )
        return _from(Automation, item) if item else None

    def _query(
        self, tenant_id: str, prefix: str, *, newest_first: bool = False, limit: int | None = None
    ) -> list[Any]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("tenant_id").eq(tenant_id) & Key("sk").begins_with(prefix),
            "ScanIndexForward": not newest_first,
        }
        items: list[dict[str, Any]] = []
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - len(items)
            page = self._table.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page or (limit is not None and len(items) >= limit):
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def list(self, tenant_id: str) -> list[Automation]:
        return [_from(Automation, i) for i in self._query(tenant_id, _AUTOMATION)]

    def delete(self, tenant_id: str, automation_id: str) -> None:
        self._table.delete_item(Key={"tenant_id": tenant_id, "sk": f"{_AUTOMATION}{automation_id}"})

    def put_run(self, run: Run) -> None:
        item = asdict(run) | {
            "sk": f"{_RUN}{run.automation_id}#{run.id}",
            "expires_at": run.started_at + RUN_RETENTION_SECONDS,
        }
        self._table.put_item(Item=to_item(item))

    def get_run(self, tenant_id: str, automation_id: str, run_id: str) -> Run | None:
        item = self._table.get_item(
            Key={"tenant_id": tenant_id, "sk": f"{_RUN}{automation_id}#{run_id}"}
        ).get("Item")
        return _from(Run, item) if item else None

    def list_runs(self, tenant_id: str, automation_id: str, limit: int) -> builtins.list[Run]:
        items = self._query(tenant_id, f"{_RUN}{automation_id}#", newest_first=True, limit=limit)
        return [_from(Run, i) for i in items]


class AutomationTriggers:
    """An event pattern is a rule on the bus the tenant names, whose target is the run queue; a
    schedule is a Scheduler schedule sending to the same queue. Both are named `{prefix}{automation_id}`."""

    def __init__(
        self,
        events: Any,
        scheduler: Any,
        *,
        prefix: str,
        queue_arn: str,
        scheduler_role_arn: str,
        schedule_group: str = "default",
    ) -> None:
        self._events = events
        self._scheduler = scheduler
        self._prefix = prefix
        self._queue_arn = queue_arn
        self._role_arn = scheduler_role_arn
        self._group = schedule_group

    def name(self, automation: Automation) -> str:
        return f"{self._prefix}{automation.id}"

    def create(self, automation: Automation) -> None:
        if automation.is_scheduled:
            self._create_schedule(automation)
        else:
            self._create_rule(automation)

    def _create_rule(self, automation: Automation) -> None:
        bus = automation.trigger.get("event_bus") or "default"
        name = self.name(automation)
        # The event as EventBridge delivered it, wrapped with the automation it is for: the queue's
        # one message shape (byom.logic.automations.delivery_message).
        template = json.dumps(delivery_message(automation, {})).replace(
            '"event": {}', '"event": <aws.events.event.json>'
        )
        try:
            self._events.put_rule(
                Name=name,
                EventBusName=bus,
                EventPattern=json.dumps(automation.trigger["event_pattern"]),
                State="ENABLED" if automation.enabled else "DISABLED",
                Description=f"BYOM automation {automation.id} of tenant {automation.tenant_id}",
            )
            self._events.put_targets(
                Rule=name,
                EventBusName=bus,
                Targets=[
                    {
                        "Id": "run-queue",
                        "Arn": self._queue_arn,
                        "InputTransformer": {"InputPathsMap": {}, "InputTemplate": template},
                    }
                ],
            )
        except ClientError as error:
            code = error_code(error)
            message = str(error.response.get("Error", {}).get("Message", ""))[:300]
            if code == "ResourceNotFoundException":
                raise InvalidRequest(f"No event bus named '{bus}'", param="trigger.event_bus") from None
            if code in ("InvalidEventPatternException", "ValidationException"):
                raise InvalidRequest(
                    f"EventBridge refused the event pattern: {message}", param="trigger.event_pattern"
                ) from None
            raise

    def _schedule_target(self, automation: Automation) -> dict[str, Any]:
        message = delivery_message(automation, scheduled_event("<aws.scheduler.scheduled-time>"))
        return {"Arn": self._queue_arn, "RoleArn": self._role_arn, "Input": json.dumps(message)}

    def _create_schedule(self, automation: Automation) -> None:
        try:
            self._scheduler.create_schedule(**self._schedule(automation))
        except ClientError as error:
            if error_code(error) == "ValidationException":
                message = str(error.response.get("Error", {}).get("Message", ""))[:300]
                raise InvalidRequest(
                    f"EventBridge Scheduler refused the schedule: {message}", param="trigger.schedule"
                ) from None
            raise

    def _schedule(self, automation: Automation) -> dict[str, Any]:
        return {
            "Name": self.name(automation),
            "GroupName": self._group,
            "ScheduleExpression": automation.trigger["schedule"],
            "ScheduleExpressionTimezone": automation.trigger.get("timezone") or "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if automation.enabled else "DISABLED",
            "Target": self._schedule_target(automation),
            "Description": f"BYOM automation {automation.id} of tenant {automation.tenant_id}",
        }

    def set_enabled(self, automation: Automation) -> None:
        if automation.is_scheduled:
            self._scheduler.update_schedule(**self._schedule(automation))
            return
        bus = automation.trigger.get("event_bus") or "default"
        change = self._events.enable_rule if automation.enabled else self._events.disable_rule
        change(Name=self.name(automation), EventBusName=bus)

    def delete(self, automation: Automation) -> None:
        name = self.name(automation)
        try:
            if automation.is_scheduled:
                self._scheduler.delete_schedule(Name=name, GroupName=self._group)
                return
            bus = automation.trigger.get("event_bus") or "default"
            self._events.remove_targets(Rule=name, EventBusName=bus, Ids=["run-queue"])
            self._events.delete_rule(Name=name, EventBusName=bus)
        except ClientError as error:
            if error_code(error) != "ResourceNotFoundException":  # already gone: what was asked
                raise


class SqsRunQueue:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def send(self, message: dict[str, Any]) -> None:
        self._sqs.send_message(QueueUrl=self._url, MessageBody=json.dumps(message))


class AutomationResults:
    """`AutomationResult` events on the platform bus (archived, replayable) and the alerts topic."""

    def __init__(self, events: Any, sns: Any, *, event_bus: str, topic_arn: str | None) -> None:
        self._events = events
        self._sns = sns
        self._bus = event_bus
        self._topic = topic_arn

    def publish(self, detail: dict[str, Any]) -> None:
        answer = self._events.put_events(
            Entries=[
                {
                    "Source": RESULT_SOURCE,
                    "DetailType": RESULT_DETAIL_TYPE,
                    "Detail": json.dumps(detail),
                    "EventBusName": self._bus,
                    "Resources": [],
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the result: {answer['Entries'][0].get('ErrorCode')}")

    def notify(self, subject: str, message: str) -> None:
        if self._topic:
            # SNS takes 256 KB; the run's output is bounded well below it.
            # SNS subjects are ASCII on one line, at most 100 characters.
            plain = " ".join(subject.encode("ascii", "ignore").decode().split())[:100] or "BYOM automation"
            self._sns.publish(TopicArn=self._topic, Subject=plain, Message=message or "(empty answer)")
