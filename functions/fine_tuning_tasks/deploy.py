"""Fine-tuning state machine task: deploy (byom.logic.fine_tuning_pipeline.deploy)."""

from byom.api import fine_tuning_tasks
from byom.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return fine_tuning_tasks.deploy(event)
