"""An ASGI app served as an ordinary buffered Lambda handler: one API Gateway REST (v1) proxy event
in, one ASGI HTTP request to the app, its answer back as the proxy response.

The functions that need no response stream (admin, fine-tuning) stay plain handlers behind the
API's proxy integration; only the gateway is a web server behind the Lambda Web Adapter. Both
transports give the app its caller the same way: the event's request context, the authorizer's
included, in the `x-amzn-request-context` header, replacing any a client sent (byom.api.web).

Each invocation runs on its own event loop, in its own copy of the calling thread's context, and
keeps nothing outside it: the local stack serves many invocations of one handler at once, on
threads of one process.
"""

from __future__ import annotations

import base64
import contextvars
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import anyio
from fastapi import Request
from starlette.types import ASGIApp, Message

from byom.api.web import REQUEST_CONTEXT_HEADER
from byom.observability import logger

ProxyHandler = Callable[[dict[str, Any], Any], dict[str, Any]]

# Where the app finds the invocation's Lambda context (the key Mangum uses too).
LAMBDA_CONTEXT = "aws.context"
# Set from the body actually forwarded, or dropped: API Gateway frames the message itself.
_FRAMING = frozenset({"content-length", "transfer-encoding"})
_TEXT_TYPES = (
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "application/jsonl",  # a file's content (GET /v1/files/{id}/content)
)
_UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def lambda_handler(app: ASGIApp) -> ProxyHandler:
    """`handler(event, context)` answering each proxy event with `app`."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return contextvars.copy_context().run(_invoke, app, event, context)

    return handler


def lambda_context(request: Request) -> Any:
    """FastAPI dependency: the invocation's Lambda context (None where the app runs elsewhere)."""
    return request.scope.get(LAMBDA_CONTEXT)


def _invoke(app: ASGIApp, event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_context = event.get("requestContext") or {}
    # Logger.inject_lambda_context sets the correlation id for the whole process; here it is this
    # invocation's, on every line it logs, whatever other threads serve meanwhile.
    logger.thread_safe_append_keys(correlation_id=request_context.get("requestId"))
    body = _request_body(event)
    return anyio.run(_exchange, app, _scope(event, body, context), body)


def _merged(multi: dict[str, list[str]] | None, single: dict[str, str] | None) -> list[tuple[str, str]]:
    """A proxy event's two maps as one list of pairs. API Gateway fills both (the single-value one
    with each name's last value): every value of the multi-value map, and from the other only the
    names it lacks (events written by hand)."""
    pairs = [(name, value) for name, values in (multi or {}).items() for value in values or []]
    seen = {name.lower() for name, _ in pairs}
    return pairs + [(name, value) for name, value in (single or {}).items() if name.lower() not in seen]


def _header_bytes(value: str) -> bytes:
    # ASGI headers are bytes; latin-1 round-trips every value Starlette decodes back with it.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _scope(event: dict[str, Any], body: bytes, context: Any) -> dict[str, Any]:
    # The path as API Gateway gives it, percent-encoding included, not decoded as an ASGI server
    # would: routes were written against that (a subject's `%40`), and an encoded `/` stays inside
    # its path segment.
    path = event.get("path") or "/"
    request_context = event.get("requestContext") or {}
    query = _merged(event.get("multiValueQueryStringParameters"), event.get("queryStringParameters"))
    headers = [
        (name.lower(), value)
        for name, value in _merged(event.get("multiValueHeaders"), event.get("headers"))
        if name.lower() not in _FRAMING and name.lower() != REQUEST_CONTEXT_HEADER
    ]
    headers.append((REQUEST_CONTEXT_HEADER, json.dumps(request_context)))
    headers.append(("content-length", str(len(body))))
    source_ip = (request_context.get("identity") or {}).get("sourceIp")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": str(event.get("httpMethod") or "GET").upper(),
        "scheme": "https",
        "path": path,
        "raw_path": path.encode("utf-8"),
        "root_path": "",
        "query_string": urlencode(query).encode("ascii"),
        "headers": [(name.encode("latin-1"), _header_bytes(value)) for name, value in headers],
        "client": (source_ip, 0) if source_ip else None,
        # What Starlette falls back on without a usable Host header.
        "server": (request_context.get("domainName") or "localhost", 443),
        LAMBDA_CONTEXT: context,
    }


def _request_body(event: dict[str, Any]) -> bytes:
    raw = event.get("body") or ""
    # Binary media types (multipart/form-data here) reach Lambda base64-encoded.
    return base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")


async def _exchange(app: ASGIApp, scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    answered = anyio.Event()
    sent_body = False
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        # Nobody disconnects from a buffered answer before it is complete.
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = list(message.get("headers") or [])
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body") or b""))
            if not message.get("more_body", False):
                answered.set()

    try:
        await app(scope, receive, send)
    except Exception:
        # Starlette re-raises an unexpected error after answering it (byom.api.web logged its
        # type); once the answer is complete it stands. Without one the invocation fails.
        if not answered.is_set():
            raise
    if not answered.is_set():
        raise RuntimeError("the app returned without completing its answer")
    return _proxy_response(status, headers, b"".join(chunks))


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return True
    media_type, _, parameters = content_type.partition(";")
    media_type = media_type.strip().lower()
    charset = next(
        (
            value.strip().strip('"').lower()
            for name, _, value in (p.partition("=") for p in parameters.split(";"))
            if name.strip().lower() == "charset"
        ),
        None,
    )
    textual = (
        media_type.startswith("text/") or media_type in _TEXT_TYPES or media_type.endswith(("+json", "+xml"))
    )
    return textual and (charset is None or charset in _UTF8)


def _proxy_response(status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> dict[str, Any]:
    headers: dict[str, list[str]] = {}
    for name, value in raw_headers:
        key = name.decode("latin-1").lower()
        if key not in _FRAMING:
            headers.setdefault(key, []).append(value.decode("latin-1"))
    content_type = headers.get("content-type", [None])[-1]
    if _is_text(content_type):
        try:
            return {
                "statusCode": status,
                "multiValueHeaders": headers,
                "body": body.decode("utf-8"),
                "isBase64Encoded": False,
            }
        except UnicodeDecodeError:
            pass
    return {
        "statusCode": status,
        "multiValueHeaders": headers,
        "body": base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": True,
    }
