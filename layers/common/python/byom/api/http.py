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
        body={"error": {"message": message, "type": type_, "param": param, "code": code}},
        headers=(headers or {}) | {"x-byom-error-source": source},
    )


# Errors saying a value has the wrong type for one member of a union: the least useful to report
# when another member got further.
_TYPE_MISMATCH = frozenset(
    {
        "string_type",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "literal_error",
        "int_type",
        "int_parsing",
        "float_type",
        "float_parsing",
        "bool_type",
        "bool_parsing",
        "none_required",
        "is_instance_of",
    }
)
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _union_member(part: object) -> bool:
    """Pydantic names the union member it tried ("str", "list[ContentPart]", "NamedToolChoice")
    in an error's location; fields and indexes are never spelled like that."""
    return isinstance(part, str) and (not part.isidentifier() or part[:1].isupper() or part in _TYPE_NAMES)


def _most_specific(errors: list[Any]) -> Any:
    """Of the errors one union produced, the one that got furthest: a list with a bad item says more
    than "Input should be a valid string"."""
    first = errors[0]
    at = next((i for i, part in enumerate(first["loc"]) if _union_member(part)), None)
    if at is None:
        return first
    same_union = [e for e in errors if tuple(e["loc"][:at]) == tuple(first["loc"][:at])]

    def rank(e: Any) -> tuple[bool, int]:
        return not (len(e["loc"]) == at + 1 and e["type"] in _TYPE_MISMATCH), len(e["loc"])

    return max(same_union, key=rank)


def _validation_message(error: ValidationError) -> tuple[str, str | None]:
    """Say what is wrong and where, never echoing the input: it may be a provider key."""
    first = _most_specific(error.errors(include_input=False, include_url=False))
    param = ".".join(str(p) for p in first["loc"] if not _union_member(p)) or None
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "Unknown field"
    return (f"{param}: {message}" if param else message), param


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
        message, param = _validation_message(error)
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
