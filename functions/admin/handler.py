"""Admin API Lambda: tenants, API keys, provider credentials, model aliases, policies, audit."""

from byom.api.admin import build_admin_app
from byom.api.lambda_adapter import lambda_handler
from byom.observability import logger, tracer

serve = lambda_handler(build_admin_app())


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return serve(event, context)
