"""The web apps' framework: FastAPI, served by uvicorn behind the AWS Lambda Web Adapter.

A Python managed runtime cannot write a Lambda response stream, so a function that streams is a
web server the adapter forwards each invocation to (docs/decisions.md). The adapter puts API
Gateway's request context, the authorizer's included, in the `x-amzn-request-context` header,
replacing any a client sent; the local stack's emulation of the adapter does the same. Nothing
here keeps per-request state outside the request: one process serves requests on many threads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from byom.api.errors import envelope, validation_message
from byom.errors import ByomError, InvalidRequest, PayloadTooLarge
from byom.logic.access import Principal
from byom.observability import logger

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


def _unreadable_body(errors: Sequence[Any]) -> str | None:
    """One plain message for a body that is not a JSON object at all, rather than pydantic's
    "Field required" (no body) or "Input should be a valid dictionary" (`[1]`, `"x"`)."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return "Request body is not valid JSON"
    if any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        return "Request body must be a JSON object"
    return None


def _request_validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    if (unreadable := _unreadable_body(error.errors())) is not None:
        return error_response(400, unreadable, "invalid_request_error")
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


class _JsonRequest(Request):
    """A request whose body FastAPI reads as JSON whatever Content-Type it came with: `curl -d`
    sends a form type, and FastAPI would hand the route the bytes unparsed."""

    @property
    def headers(self) -> Headers:
        if not hasattr(self, "_headers"):
            raw = [(k, v) for k, v in self.scope["headers"] if k != b"content-type"]
            self._headers = Headers(raw=[*raw, (b"content-type", b"application/json")])
        return self._headers

    async def json(self) -> Any:
        # Bytes that are not text are unreadable JSON too (FastAPI would answer a bare
        # "There was an error parsing the body"): raised as its decode error, one message for both.
        try:
            return await super().json()
        except UnicodeDecodeError as error:
            raise json.JSONDecodeError("not UTF-8", "", error.start) from None


def _declared_length(request: Request) -> int | None:
    """The Content-Length sent, when it is a plain number (no longer than any real body's)."""
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() and len(value) <= 15 else None


class JsonBodyRoute(APIRoute):
    """A route whose body FastAPI validates from its pydantic model, with two rules the framework
    does not express: the size limit is checked (413) before any parsing, and the body is read as
    JSON whatever its Content-Type. Routes without a body model are served as FastAPI serves them.
    The limit is the router's (`APIRouter(route_class=JsonBodyRoute.limited(n))`) and is documented
    on each operation as `x-byom-max-body-bytes`."""

    max_body_bytes: ClassVar[int] = 64 * 1024

    @classmethod
    def limited(cls, max_bytes: int) -> type[JsonBodyRoute]:
        return type(f"JsonBodyRoute{max_bytes}", (cls,), {"max_body_bytes": max_bytes})

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if self.body_field is not None:
            self.openapi_extra = (self.openapi_extra or {}) | {"x-byom-max-body-bytes": self.max_body_bytes}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        limit = self.max_body_bytes

        async def sized_json(request: Request) -> Response:
            request = _JsonRequest(request.scope, request.receive)
            # A declared length over the limit is refused unread, any other body once read.
            declared = _declared_length(request)
            size = declared if declared is not None and declared > limit else len(await request.body())
            if size > limit:
                raise PayloadTooLarge(f"Request body is {size} bytes; the limit is {limit}")
            return await handler(request)

        return sized_json


def page_limit(raw: str | None) -> int:
    """The `limit` query parameter of OpenAI's cursor-paged lists (files, jobs, batches, evals)."""
    if raw is None:
        return 20
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest("limit must be a whole number", param="limit") from None
    if not 1 <= value <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")
    return value


def list_page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's list object for one page of a cursor-paged list."""
    return {
        "object": "list",
        "data": items,
        "has_more": has_more,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
    }


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
