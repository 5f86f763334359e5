"""Evals API Lambda: /v1/evals and its runs (SPEC §10)."""

from byom.api.evals import build_evals_app
from byom.api.lambda_adapter import lambda_handler
from byom.observability import logger, tracer

serve = lambda_handler(build_evals_app())


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return serve(event, context)
