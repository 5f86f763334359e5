"""Batch state machine task: job_state_changed (byom.logic.batches.job_state_changed)."""

from byom.api import batch_tasks
from byom.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return batch_tasks.job_state_changed(event)
