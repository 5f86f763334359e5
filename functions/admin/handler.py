"""Admin API Lambda: tenants, API keys, provider credentials, model aliases, policies, audit."""

from byom.api.admin import build_admin_app, serve_audited
from byom.observability import logger, tracer

app = build_admin_app()


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return serve_audited(app, event, context)
