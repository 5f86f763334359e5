"""Automation runner: SQS batches of trigger deliveries, answered with partial batch failures."""

from byom.api import automation_tasks
from byom.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return automation_tasks.run_batch(event, context)
