"""Batch state machine task: await_job (byom.logic.batches.await_job)."""

from byom.api import batch_tasks
from byom.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return batch_tasks.await_job(event)
