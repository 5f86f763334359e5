"""The AWS Lambda Web Adapter, emulated: functions whose handler is a web server.

A function with `AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap` (the adapter's layer) runs its handler
script, which starts a web server; the adapter turns each invocation's API Gateway event into an
HTTP request to it (the request context in `x-amzn-request-context`, replacing any a client sent)
and, in `response_stream` mode, streams the answer back as it is written. Here the function's
ASGI app (`app:app` in its code, what its run.sh hands uvicorn) is served by uvicorn on loopback in
this process, and `forward` does the adapter's part, the body read chunk by chunk.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from local_stack.logs import running_as

log = logging.getLogger(__name__)

EXEC_WRAPPER = "/opt/bootstrap"
# What a web-adapter function's run.sh serves: module `app` in its code directory, attribute `app`.
APP_MODULE, APP_ATTRIBUTE = "app", "app"
REQUEST_CONTEXT_HEADER = "x-amzn-request-context"
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "expect"}
# Set by the server that answers the client (API Gateway here), not passed on from the app.
_SERVER_SET = {"date", "server"}
_READ_SIZE = 64 * 1024


def is_web_adapter(environment: dict[str, str]) -> bool:
    return environment.get("AWS_LAMBDA_EXEC_WRAPPER") == EXEC_WRAPPER


def streams(environment: dict[str, str]) -> bool:
    """response_stream mode: the function must be invoked with InvokeWithResponseStream."""
    return environment.get("AWS_LWA_INVOKE_MODE", "buffered").lower() == "response_stream"


@dataclass(frozen=True)
class ForwardedRequest:
    """The HTTP request the adapter sends the app for one API Gateway event."""

    method: str
    target: str  # path and query string
    headers: list[tuple[str, str]]
    body: bytes


def forwarded_request(
    event: dict[str, Any], lambda_context: dict[str, Any] | None = None
) -> ForwardedRequest:
    path = quote(event.get("path") or "/", safe="/%:@!$&'()*+,;=-._~")
    query = event.get("multiValueQueryStringParameters") or {
        k: [v] for k, v in (event.get("queryStringParameters") or {}).items()
    }
    target = path + ("?" + urlencode([(k, v) for k, vs in query.items() for v in vs]) if query else "")
    headers: list[tuple[str, str]] = []
    multi = event.get("multiValueHeaders") or {k: [v] for k, v in (event.get("headers") or {}).items()}
    for name, values in multi.items():
        if name.lower() in _HOP_BY_HOP or name.lower() in (REQUEST_CONTEXT_HEADER, LAMBDA_CONTEXT_HEADER):
            continue
        headers.extend((name, value) for value in values)
    headers.append((REQUEST_CONTEXT_HEADER, json.dumps(event.get("requestContext") or {})))
    headers.append((LAMBDA_CONTEXT_HEADER, json.dumps(lambda_context or {})))
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    return ForwardedRequest(event.get("httpMethod", "GET"), target, headers, body)


class _Body:
    """The app's body, chunk by chunk as it arrives; closing it (read to its end, or a client gone
    before that, even before the first chunk) closes the connection, so the app sees the end."""

    def __init__(self, response: http.client.HTTPResponse, connection: http.client.HTTPConnection) -> None:
        self._response, self._connection = response, connection

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        data = self._response.read1(_READ_SIZE)
        if not data:
            self.close()
            raise StopIteration
        return data

    def close(self) -> None:
        self._connection.close()


@dataclass
class StreamedAnswer:
    """The app's answer: status and headers at once, the body as it arrives."""

    status: int
    headers: list[tuple[str, str]]
    chunks: Iterator[bytes]


class AppStartError(Exception):
    """The web app did not become ready."""


class WebApp:
    """One web-adapter function's app, served by uvicorn on a loopback port in a thread."""

    def __init__(
        self, logical_id: str, app: Any, readiness_path: str = "/", service: str | None = None
    ) -> None:
        import uvicorn

        self.logical_id = logical_id
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # Streams in flight when the stack stops are cut at once: their clients see the end.
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._readiness_path = readiness_path
        self._service = service
        self._thread = threading.Thread(target=self._serve, name=f"web-{logical_id}", daemon=True)

    def _serve(self) -> None:
        # The event loop starts from this thread's context: every request's task inherits it.
        with running_as(self._service):
            self._server.run(sockets=[self._socket])

    def start(self, timeout: float = 10.0) -> WebApp:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The adapter's readiness check: any answer from the app counts.
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                connection.request("GET", self._readiness_path)
                connection.getresponse().read()
                connection.close()
                return self
            time.sleep(0.02)
        raise AppStartError(f"{self.logical_id}: the web app was not ready after {timeout} s")

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._socket.close()

    def forward(
        self, event: dict[str, Any], timeout: float, lambda_context: dict[str, Any]
    ) -> StreamedAnswer:
        """The adapter's part of one invocation. `timeout`: how long the app may stay silent."""
        request = forwarded_request(event, lambda_context)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        connection.putrequest(request.method, request.target, skip_accept_encoding=True)
        for name, value in request.headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(request.body)))
        connection.endheaders(request.body)
        response = connection.getresponse()
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | _SERVER_SET]
        return StreamedAnswer(response.status, headers, _Body(response, connection))


class LocalWebFunctions:
    """The stack's web-adapter functions, each app served on its own port (LocalApiGateway's WebFunctions)."""

    def __init__(self, functions: Iterable[Any]) -> None:
        self._functions = {f.logical_id: f for f in functions if f.web_adapter}
        self._apps: dict[str, WebApp] = {}

    def start(self) -> LocalWebFunctions:
        for logical_id, function in self._functions.items():
            readiness = function.environment.get("AWS_LWA_READINESS_CHECK_PATH", "/")
            self._apps[logical_id] = WebApp(logical_id, function.entry, readiness, function.service).start()
        return self

    def stop(self) -> None:
        for app in self._apps.values():
            app.stop()
        self._apps.clear()

    def serves(self, function_id: str) -> bool:
        return function_id in self._functions

    def streams(self, function_id: str) -> bool:
        return streams(self._functions[function_id].environment)

    def forward(self, function_id: str, event: dict[str, Any], timeout: float) -> StreamedAnswer:
        function = self._functions[function_id]
        lambda_context = {
            "request_id": str(uuid.uuid4()),
            "deadline": int((time.time() + function.timeout_seconds) * 1000),
            "invoked_function_arn": function.arn,
            "env_config": {
                "function_name": function.function_name,
                "memory": function.memory_mb,
                "version": "$LATEST",
            },
        }
        return self._apps[function_id].forward(event, timeout, lambda_context)
