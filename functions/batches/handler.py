"""Batches API Lambda: /v1/batches."""

from byom.api.batches import build_batches_app
from byom.api.lambda_adapter import lambda_handler
from byom.observability import logger, tracer

serve = lambda_handler(build_batches_app())


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return serve(event, context)
