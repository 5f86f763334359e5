"""Resolver construction, request parsing and the OpenAI error envelope, shared by every HTTP function."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any, TypeVar, cast

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from pydantic import BaseModel, ValidationError

from byom.api.errors import envelope, validation_message
from byom.errors import ByomError, InvalidRequest, PayloadTooLarge
from byom.logic.access import Principal
from byom.observability import logger

Body = TypeVar("Body", bound=BaseModel)

MAX_ADMIN_BODY_BYTES = 64 * 1024


def error_response(
    status: int,
    message: str,
    type_: str,
    *,
    code: str | None = None,
    param: str | None = None,
    source: str = "gateway",
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=envelope(message, type_, code=code, param=param),
        headers=(headers or {}) | {"x-byom-error-source": source},
    )


def build_resolver() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver()

    @app.exception_handler(ByomError)
    def _byom_error(error: ByomError) -> Response:
        return error_response(
            error.status,
            error.message,
            error.type,
            code=error.code,
            param=error.param,
            source=error.source,
            headers=error.headers,
        )

    @app.exception_handler(ValidationError)
    def _validation_error(error: ValidationError) -> Response:
        message, param = validation_message(error.errors(include_input=False, include_url=False))
        return error_response(400, message, "invalid_request_error", param=param)

    @app.not_found
    def _not_found(_: NotFoundError) -> Response:
        event = app.current_event
        return error_response(404, f"Unknown route: {event.http_method} {event.path}", "not_found_error")

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        # Log the type only: messages of AWS and provider errors can carry request data.
        logger.error("unhandled error", extra={"error_type": type(error).__name__})
        request_id = app.current_event.request_context.request_id
        return error_response(500, f"Internal error (request {request_id})", "api_error")

    return app


# The resolver keeps the request being served in class attributes (`BaseRouter.current_event`)
# shared by every resolver in the process. Lambda serves one request at a time per execution
# environment, so in the cloud this lock is never contended; where one process serves requests
# on several threads (the local stack, in-process tests) it keeps one request from reading another's
# event, and so another's caller.
_ONE_REQUEST_AT_A_TIME = threading.Lock()


def serve(app: APIGatewayRestResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Resolve, then stamp the request id on every answer (SPEC §4)."""
    with _ONE_REQUEST_AT_A_TIME:
        response = app.resolve(event, context)
    request_id = (event.get("requestContext") or {}).get("requestId", "")
    if response.get("multiValueHeaders") is not None:
        response["multiValueHeaders"]["x-request-id"] = [request_id]
    else:
        response.setdefault("headers", {})["x-request-id"] = request_id
    return response


def _event(router: BaseRouter) -> APIGatewayProxyEvent:
    return cast(APIGatewayProxyEvent, router.current_event)


def json_body(router: BaseRouter, model: type[Body], max_bytes: int = MAX_ADMIN_BODY_BYTES) -> Body:
    event = _event(router)
    raw: bytes | str = event.body or ""
    if event.is_base64_encoded and raw:
        raw = base64.b64decode(raw)
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise PayloadTooLarge(f"Request body is {size} bytes; the limit is {max_bytes}")
    if not raw:
        raise InvalidRequest("Request body must be a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object")
    return model.model_validate(data)


def query(router: BaseRouter, name: str) -> str | None:
    return _event(router).get_query_string_value(name)


def header(router: BaseRouter, name: str) -> str | None:
    return _event(router).headers.get(name)


def request_id(router: BaseRouter) -> str:
    return _event(router).request_context.request_id


def principal(router: BaseRouter) -> Principal:
    return Principal.from_authorizer(_event(router).request_context.authorizer.raw_event)


def ok(body: Any, status: int = 200) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": items}
