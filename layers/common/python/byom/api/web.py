"""The web apps' framework: FastAPI, served by uvicorn behind the AWS Lambda Web Adapter.

A Python managed runtime cannot write a Lambda response stream, so a function that streams is a
web server the adapter forwards each invocation to (docs/decisions.md). The adapter puts API
Gateway's request context, the authorizer's included, in the `x-amzn-request-context` header,
replacing any a client sent; the local stack's emulation of the adapter does the same. Nothing
here keeps per-request state outside the request: one process serves requests on many threads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from byom.api.errors import envelope, validation_message
from byom.errors import ByomError, InvalidRequest, PayloadTooLarge
from byom.logic.access import Principal
from byom.observability import logger

Body = TypeVar("Body", bound=BaseModel)

REQUEST_CONTEXT_HEADER = "x-amzn-request-context"
REQUEST_ID_HEADER = "x-request-id"
_SCOPE_KEY = "byom.context"


@dataclass(frozen=True)
class RequestContext:
    """What API Gateway knows of a request beyond HTTP: its id and the authorizer's context."""

    request_id: str
    authorizer: dict[str, Any]

    @classmethod
    def of(cls, request: Request) -> RequestContext:
        return cls.of_scope(request.scope)

    @classmethod
    def of_scope(cls, scope: Scope) -> RequestContext:
        """Parsed once per request and kept in its scope: the middleware and the routes read it."""
        cached = scope.get(_SCOPE_KEY)
        if isinstance(cached, RequestContext):
            return cached
        header = next((v for k, v in scope["headers"] if k == REQUEST_CONTEXT_HEADER.encode()), None)
        context = cls.parse(header.decode("latin-1") if header else None)
        scope[_SCOPE_KEY] = context
        return context

    @classmethod
    def parse(cls, header: str | None) -> RequestContext:
        """No header or an unreadable one: a request with no identity (refused as unauthenticated)."""
        try:
            context = json.loads(header) if header else {}
        except ValueError:
            context = {}
        if not isinstance(context, dict):
            context = {}
        authorizer = context.get("authorizer")
        authorizer = authorizer if isinstance(authorizer, dict) else {}
        # An HTTP API nests a Lambda authorizer's context under "lambda"; a REST API does not.
        if isinstance(authorizer.get("lambda"), dict):
            authorizer = authorizer["lambda"]
        request_id = context.get("requestId")
        return cls(request_id if isinstance(request_id, str) else "", authorizer)

    @property
    def principal(self) -> Principal:
        return Principal.from_authorizer(self.authorizer)


def context(request: Request) -> RequestContext:
    """FastAPI dependency: the request's context."""
    return RequestContext.of(request)


def error_response(
    status: int,
    message: str,
    type_: str,
    *,
    code: str | None = None,
    param: str | None = None,
    source: str = "gateway",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        envelope(message, type_, code=code, param=param),
        status_code=status,
        headers=(headers or {}) | {"x-byom-error-source": source},
    )


def _byom_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ByomError)
    return error_response(
        error.status,
        error.message,
        error.type,
        code=error.code,
        param=error.param,
        source=error.source,
        headers=error.headers,
    )


def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ValidationError)
    message, param = validation_message(error.errors(include_input=False, include_url=False))
    return error_response(400, message, "invalid_request_error", param=param)


def _request_validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [e | {"loc": tuple(e.get("loc", ()))[1:]} for e in error.errors()]  # drop "body"/"query"
    message, param = validation_message(errors)
    return error_response(400, message, "invalid_request_error", param=param)


def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if error.status_code in (404, 405):
        # Powertools' resolver answered a known path with another method the same way.
        return error_response(404, f"Unknown route: {request.method} {request.url.path}", "not_found_error")
    return error_response(error.status_code, str(error.detail), "invalid_request_error")


def _internal_error(request_id: str) -> JSONResponse:
    return error_response(500, f"Internal error (request {request_id})", "api_error")


def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # Log the type only: messages of AWS and provider errors can carry request data.
    logger.error("unhandled error", extra={"error_type": type(error).__name__})
    return _internal_error(RequestContext.of(request).request_id)


class _StampRequestId:
    """Every answer carries the request id API Gateway gave the request (SPEC §4), streams too:
    stamped on the response's start, so nothing is buffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = RequestContext.of_scope(scope).request_id

        started = False

        async def stamped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k != REQUEST_ID_HEADER.encode()]
                message = {
                    **message,
                    "headers": [*headers, (REQUEST_ID_HEADER.encode(), request_id.encode())],
                }
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        except Exception:
            # Starlette answers an unexpected error outside the app's middleware, so unstamped:
            # answered here, stamped; then raised on, for `_unexpected` to log and the server to see.
            if not started:
                await _internal_error(request_id)(scope, receive, stamped)
            raise


class _TrailingSlashes:
    """`/a/b/` (or `/a/b//`) served as `/a/b` when that is a route for the method; anything else is
    left as sent, so a 404 names the path asked for."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            stripped = path.rstrip("/") or "/"
            if any(
                isinstance(route.original_route, APIRoute)
                and scope["method"] in (route.methods or ())
                and route.path_regex.match(stripped)
                for route in iter_route_contexts(self.routes)
            ):
                scope = {**scope, "path": stripped}
        await self.app(scope, receive, send)


def ignore_trailing_slashes(app: FastAPI) -> FastAPI:
    """Match routes the way Powertools' REST resolver did for the APIs that were served by it
    (admin, fine-tuning): trailing slashes ignored, never a redirect."""
    app.router.redirect_slashes = False
    app.add_middleware(_TrailingSlashes, routes=app.routes)
    return app


def build_app(title: str) -> FastAPI:
    """An app with the OpenAI error envelope for every failure and the request id on every answer.
    Its own OpenAPI document is not served: byom.api.openapi serves one for the three apps."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.openapi = lambda: _openapi_with_bodies(app)  # type: ignore[method-assign]
    app.add_exception_handler(ByomError, _byom_error)
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(_StampRequestId)
    return app


async def raw_body(request: Request) -> bytes:
    """FastAPI dependency: the body as sent (read on the event loop, before a sync route runs)."""
    return await request.body()


# The models `json_body` documented, by name: their schemas go into the apps' OpenAPI components.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], max_bytes: int) -> dict[str, Any]:
    """`openapi_extra` of a route that reads its body with `parse_json(raw, model, max_bytes)`.

    The route parses the body itself rather than FastAPI before it, for rules the framework does
    not express: the size limit is checked (413) before any parsing, a JSON body is read as JSON
    whatever Content-Type it came with (`curl -d` sends a form type; FastAPI would refuse it), and
    a missing, unreadable or non-object body gets one plain message. Validation is still the model's
    (pydantic), and the document still says what the body is: the model's schema, its size limit.
    """
    _BODY_MODELS[model.__name__] = model
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        },
        "x-byom-max-body-bytes": max_bytes,
    }


def _openapi_with_bodies(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of `app`, with the schemas of the bodies `json_body` documented."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    referenced = {
        content["schema"]["$ref"].rsplit("/", 1)[1]
        for operations in document.get("paths", {}).values()
        for operation in operations.values()
        for content in operation.get("requestBody", {}).get("content", {}).values()
        if "$ref" in content.get("schema", {})
    }
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (_BODY_MODELS[name], "validation") for name in sorted(referenced) if name in _BODY_MODELS
    ]
    if models:
        _, schemas = models_json_schema(models, ref_template="#/components/schemas/{model}")
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in schemas.get("$defs", {}).items():
            components.setdefault(name, schema)
    app.openapi_schema = document
    return document


def parse_json(raw: bytes, model: type[Body], max_bytes: int) -> Body:
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"Request body is {len(raw)} bytes; the limit is {max_bytes}")
    if not raw:
        raise InvalidRequest("Request body must be a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object")
    return model.model_validate(data)


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


_END = object()


class EventStream(StreamingResponse):
    """Server-sent events from a synchronous iterator, each item sent as soon as it is produced.

    The iterator is advanced on a worker thread, one item at a time. When the client goes away the
    iterator is closed once the item in hand is done, so its cleanup runs at once (the provider's
    stream closed, the call settled); Starlette's StreamingResponse would leave a synchronous
    iterator to the garbage collector, and uvicorn drops writes to a closed connection silently.
    """

    media_type = "text/event-stream"

    def __init__(self, events: Iterator[str], headers: dict[str, str] | None = None) -> None:
        super().__init__(iter(()), headers=(headers or {}) | {"cache-control": "no-cache"})
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = anyio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            try:
                await send(
                    {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
                )
                while not gone.is_set():
                    item = await anyio.to_thread.run_sync(next, self.events, _END)
                    if not isinstance(item, str) or gone.is_set():
                        break
                    await send({"type": "http.response.body", "body": item.encode(), "more_body": True})
                if not gone.is_set():
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                with anyio.CancelScope(shield=True):
                    close = getattr(self.events, "close", None)
                    if close is not None:
                        await anyio.to_thread.run_sync(close)
                tasks.cancel_scope.cancel()
