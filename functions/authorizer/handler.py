"""API Gateway REQUEST authorizer: tenant keys by SHA-256, the admin key from Secrets Manager."""

from byom.api.authorizer import authorize_event
from byom.observability import logger


@logger.inject_lambda_context
def handler(event, context):  # type: ignore[no-untyped-def]
    return authorize_event(event)
