"""Automation approval state machine task: publish_approved (byom.logic.automations.publish_approved)."""

from byom.api import automation_tasks
from byom.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return automation_tasks.publish_approved(event)
