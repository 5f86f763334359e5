"""Entry points of the automation runner (SQS, partial batch responses) and of the approval state
machine's tasks: the event in, one logic call, the output out."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from byom.api.gateway import invoke_store
from byom.automations import DeliveryMalformed
from byom.dal.automations import AutomationResults, AutomationTable
from byom.dal.aws import client, table
from byom.dal.fine_tuning import Workflow
from byom.logic import automations as logic
from byom.logic import invoke
from byom.observability import logger
from byom.settings import automation_settings


def _results() -> AutomationResults:
    settings = automation_settings()
    return AutomationResults(
        client("events"),
        client("sns"),
        event_bus=settings.event_bus_name,
        topic_arn=settings.alerts_topic_arn,
    )


@lru_cache(maxsize=1)
def runner_store() -> logic.RunnerStore:
    settings = automation_settings()
    return logic.RunnerStore(
        automations=AutomationTable(table(settings.automations_table)),
        # The data plane's own invocation path and collaborators (byom.api.gateway).
        chat=lambda call, request: invoke.chat(invoke_store(), call, request),
        publisher=_results(),
        workflow=Workflow(client("stepfunctions"), settings.approval_state_machine_arn)
        if settings.approval_state_machine_arn
        else None,
        max_receive_count=settings.automation_max_receive_count,
        approval_timeout_seconds=settings.approval_timeout_seconds,
    )


def _run_record(record: SQSRecord) -> None:
    try:
        delivery = logic.parse_delivery(record.body, record.message_id, record.attributes.raw_event)
    except DeliveryMalformed as error:
        # Not ours to run and never will be: acknowledged, so it does not cycle to the DLQ.
        logger.warning("automation message dropped", extra={"reason": str(error)})
        return
    logic.handle(runner_store(), delivery)


def run_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The records that raised (RetryLater, or anything unexpected) go back to the queue alone."""
    processor = BatchProcessor(event_type=EventType.SQS)
    answer = process_partial_response(
        event=event, record_handler=_run_record, processor=processor, context=context
    )
    return dict(answer)


@lru_cache(maxsize=1)
def approval_store() -> logic.ApprovalStore:
    settings = automation_settings()
    return logic.ApprovalStore(
        automations=AutomationTable(table(settings.automations_table)), publisher=_results()
    )


def await_approval(event: dict[str, Any]) -> dict[str, Any]:
    return logic.await_approval(approval_store(), event, event["task_token"])


def publish_approved(event: dict[str, Any]) -> dict[str, Any]:
    return logic.publish_approved(approval_store(), event)


def reject(event: dict[str, Any]) -> dict[str, Any]:
    return logic.reject(approval_store(), event)
