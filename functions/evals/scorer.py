"""Evals scorer Lambda: grades an eval run's alias when its batch finishes (EventBridge `BatchFinished`)."""

from byom.api.evals import score_finished_batch
from byom.observability import logger, tracer


@logger.inject_lambda_context(correlation_id_path="id")
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return score_finished_batch(event, context.aws_request_id)
