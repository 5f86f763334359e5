"""Gateway Lambda: the OpenAI-compatible data plane and /health."""

from byom.api.gateway import build_gateway_app
from byom.api.http import serve
from byom.observability import logger, tracer

app = build_gateway_app()


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return serve(app, event, context)
