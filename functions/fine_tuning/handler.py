"""Fine-tuning API Lambda: /v1/files and /v1/fine_tuning/jobs."""

from byom.api.fine_tuning import build_fine_tuning_app
from byom.api.lambda_adapter import lambda_handler
from byom.observability import logger, tracer

serve = lambda_handler(build_fine_tuning_app())


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return serve(event, context)
