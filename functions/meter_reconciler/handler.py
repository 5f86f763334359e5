"""Meter reconciler: settles, exactly once, what the gateway could not write after a provider answered."""

from byom.api import meter_reconciler
from byom.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):  # type: ignore[no-untyped-def]
    return meter_reconciler.handle_batch(event, context)
