"""An OpenAI-shaped upstream on loopback for integration tests, with the fixtures both provider
suites share: the server, a Stubber-backed Bedrock client and the raw gateway handler."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.stub import Stubber

from tests.bedrock_stubs import bedrock_client
from tests.conftest import LambdaContext, api_event
from tests.integration.conftest import _clear_caches, load_handler

USAGE = {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8}


class FakeOpenAI(ThreadingHTTPServer):
    """Accepts one key (any when `accepted_key` is None), answers queued failures first, and
    echoes the caller's key back in an error for the model `echoes-the-key`."""

    def __init__(self, accepted_key: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), FakeOpenAIHandler)
        self.accepted_key = accepted_key
        self.failures: list[tuple[int, str]] = []
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def fail(self, times: int, status: int, message: str) -> None:
        self.failures += [(status, message)] * times


class FakeOpenAIHandler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def log_message(self, *_args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, type_: str = "invalid_request_error") -> None:
        error = {"error": {"message": message, "type": type_, "param": None, "code": None}}
        self._send(status, json.dumps(error).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        authorization = self.headers.get("Authorization", "")
        self.server.requests.append({"path": self.path, "authorization": authorization, "body": body})
        if self.server.accepted_key is not None and authorization != f"Bearer {self.server.accepted_key}":
            return self._error(401, "Incorrect API key provided")
        if self.server.failures:
            status, message = self.server.failures.pop(0)
            return self._error(status, message, "server_error")
        if body["model"] == "echoes-the-key":
            return self._error(400, f"Your key {authorization.removeprefix('Bearer ')} cannot use this model")
        if self.path == "/v1/embeddings":
            data = [
                {"object": "embedding", "index": i, "embedding": [0.5, float(i)]}
                for i in range(len(body["input"]))
            ]
            answer = {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 4}}
            return self._send(200, json.dumps(answer).encode())
        head = {"id": "chatcmpl-upstream", "created": 1, "model": body["model"]}
        if body.get("stream"):
            chunks = [
                head
                | {
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": d, "finish_reason": f}],
                }
                for d, f in (
                    ({"role": "assistant", "content": ""}, None),
                    ({"content": "Hi!"}, None),
                    ({}, "stop"),
                )
            ]
            chunks.append(head | {"object": "chat.completion.chunk", "choices": [], "usage": USAGE})
            events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return self._send(200, events.encode(), "text/event-stream")
        message = {"role": "assistant", "content": "Hi!"}
        answer = head | {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": USAGE,
        }
        return self._send(200, json.dumps(answer).encode())


def serve(server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class Gateway:
    """The gateway handler, answering raw responses (a stream is not JSON)."""

    def __init__(self) -> None:
        self._handler = load_handler("gateway")

    def __call__(self, path: str, body: Any, context: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        response = self._handler(api_event("POST", path, body=body, authorizer=context), LambdaContext())
        headers = dict(response.get("headers") or {})
        headers |= {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items()}
        return response["statusCode"], response["body"], {k.lower(): v for k, v in headers.items()}


@pytest.fixture
def loopback(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The local stack's setting, so the upstream can be on loopback; set before any client is built."""
    monkeypatch.setenv("ALLOW_LOOPBACK_HTTP", "true")
    _clear_caches()


@pytest.fixture
def bedrock(aws: dict[str, str]) -> Iterator[Stubber]:
    client = bedrock_client()
    # Its own patch context: undone before the `aws` fixture clears the real client's cache.
    with pytest.MonkeyPatch.context() as patch, Stubber(client) as stubber:
        patch.setattr("byom.providers.bedrock.runtime_client", lambda timeout_seconds: client)
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def gateway(aws: dict[str, str]) -> Gateway:
    return Gateway()
