"""Automation approval state machine task: reject (byom.logic.automations.reject)."""

from byom.api import automation_tasks
from byom.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return automation_tasks.reject(event)
