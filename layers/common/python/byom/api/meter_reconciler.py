"""The meter reconciler's entry point: SQS batches of the meter backlog (byom.dal.meter_backlog),
each message settled exactly once (byom.logic.call_meter.reconcile), answered with partial batch
failures so that only a message that failed goes back to the queue, and after its receives to the
dead-letter queue, whose alarm tells operators."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from byom.dal.aws import table
from byom.dal.ledger import UsageTable
from byom.dal.meter_backlog import TransactWriter, from_message
from byom.logic.call_meter import reconcile
from byom.observability import logger
from byom.settings import reconciler_settings


@lru_cache(maxsize=1)
def _tables() -> tuple[UsageTable, TransactWriter]:
    usage = table(reconciler_settings().usage_table)
    # The audit items name their own table; the resource's client takes them as built.
    return UsageTable(usage), TransactWriter(usage.meta.client)


def settle_record(record: SQSRecord) -> None:
    # A message that is not ours raises too: kept (dead-letter queue), never dropped unread.
    pending = from_message(record.body)
    usage, writer = _tables()
    counted = reconcile(usage, writer, pending)
    metered = pending.metered
    logger.info(
        "meter backlog message settled",
        extra={
            "request_id": metered.request_id if metered else None,
            "tenant_id": metered.tenant_id if metered else None,
            "counted": counted,
        },
    )


def handle_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.SQS)
    answer = process_partial_response(
        event=event, record_handler=settle_record, processor=processor, context=context
    )
    return dict(answer)
