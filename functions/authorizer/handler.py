"""API Gateway REQUEST authorizer: API keys looked up by SHA-256; the platform admin key from Secrets Manager."""

from byom.api.authorizer import authorize_event
from byom.observability import logger


@logger.inject_lambda_context
def handler(event, context):  # type: ignore[no-untyped-def]
    return authorize_event(event)
