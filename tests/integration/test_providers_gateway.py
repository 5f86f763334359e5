"""/v1/chat/completions and /v1/embeddings through the gateway handler, against moto.

Bedrock aliases reach a real bedrock-runtime client under Stubber; OpenAI-compatible aliases reach
a small OpenAI-shaped HTTP server on loopback through the real SDK, with the key read from
(moto's) Secrets Manager.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.stub import Stubber

from tests.bedrock_stubs import (
    add_stream_response,
    bedrock_client,
    converse_answer,
    invoke_answer,
    stream_events,
)
from tests.conftest import LambdaContext, api_event
from tests.integration.conftest import Api, _clear_caches, load_handler, tenant_context

PROVIDER_KEY = "sk-integration-CANARY-3f9d1c"
ROTATED_KEY = "sk-integration-ROTATED-88a0b2"
NOVA = "amazon.nova-micro-v1:0"
ATTEMPTS = 3  # RETRY_MAX_ATTEMPTS' default: a retryable error is tried this often per model


class Gateway:
    """The gateway handler, answering raw responses (a stream is not JSON)."""

    def __init__(self) -> None:
        self._handler = load_handler("gateway")

    def __call__(self, path: str, body: Any, context: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        response = self._handler(api_event("POST", path, body=body, authorizer=context), LambdaContext())
        headers = dict(response.get("headers") or {})
        headers |= {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items()}
        return response["statusCode"], response["body"], {k.lower(): v for k, v in headers.items()}


class FakeOpenAI(ThreadingHTTPServer):
    """An OpenAI-shaped server: accepts one key, and fails on purpose for some model names."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FakeOpenAIHandler)
        self.accepted_key = PROVIDER_KEY
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _FakeOpenAIHandler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def log_message(self, *_args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        error = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        self._send(status, json.dumps(error).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        authorization = self.headers.get("Authorization", "")
        self.server.requests.append({"path": self.path, "authorization": authorization, "body": body})
        if authorization != f"Bearer {self.server.accepted_key}":
            return self._error(401, "Incorrect API key provided")
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
            usage = {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8}
            chunks.append(head | {"object": "chat.completion.chunk", "choices": [], "usage": usage})
            events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return self._send(200, events.encode(), "text/event-stream")
        answer = head | {
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8},
        }
        return self._send(200, json.dumps(answer).encode())


@pytest.fixture
def loopback(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The local stack's setting: http:// base URLs on loopback are allowed."""
    monkeypatch.setenv("ALLOW_LOOPBACK_HTTP", "true")
    _clear_caches()


@pytest.fixture
def openai_server(loopback: None) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


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


def _tenant(admin_api: Api, *models: dict[str, Any], credential: dict[str, Any] | None = None) -> str:
    status, tenant, _ = admin_api("POST", "/admin/tenants", {"name": "acme"})
    assert status == 201
    if credential is not None:
        status, _, _ = admin_api("PUT", f"/admin/tenants/{tenant['id']}/credentials/llm", credential)
        assert status == 200
    for model in models:
        status, _, _ = admin_api("POST", f"/admin/tenants/{tenant['id']}/models", model)
        assert status == 201
    return tenant["id"]


def _bedrock_tenant(admin_api: Api) -> dict[str, str]:
    tenant_id = _tenant(
        admin_api,
        {"alias": "fast", "provider": "bedrock", "model_id": NOVA},
        {"alias": "embed", "provider": "bedrock", "model_id": "amazon.titan-embed-text-v2:0"},
    )
    return tenant_context(tenant_id, "developer")


def _compatible_tenant(admin_api: Api, server: FakeOpenAI) -> dict[str, str]:
    credential = {"provider": "openai_compatible", "api_key": PROVIDER_KEY, "base_url": server.url}
    models = [
        {"alias": alias, "provider": "openai_compatible", "model_id": model_id, "credential": "llm"}
        for alias, model_id in (("local", "llama3.2"), ("leaky", "echoes-the-key"))
    ]
    return tenant_context(_tenant(admin_api, *models, credential=credential), "developer")


def _chat(model: str = "fast", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello"}]} | fields


def _events(body: str) -> list[str]:
    return [line.removeprefix("data: ") for line in body.split("\n\n") if line]


# Bedrock


def test_a_bedrock_alias_answers_a_chat_completion(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    bedrock.add_response("converse", converse_answer([{"text": "Hi!"}], input_tokens=6, output_tokens=2))

    status, body, _ = gateway("/v1/chat/completions", _chat(), caller)

    answer = json.loads(body)
    assert (status, answer["object"], answer["model"]) == (200, "chat.completion", "fast")
    assert answer["choices"][0]["message"]["content"] == "Hi!"
    assert answer["usage"] == {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8}


def test_a_bedrock_call_goes_to_the_aliases_model_with_converse_parameters(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    expected = {
        "modelId": NOVA,
        "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 20},
    }
    bedrock.add_response("converse", converse_answer(), expected)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]

    status, _, _ = gateway("/v1/chat/completions", _chat(messages=messages, max_tokens=20), caller)

    assert status == 200  # and the stub asserted the parameters


def test_an_invocation_names_its_provider_and_model_in_headers(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    bedrock.add_response("converse", converse_answer())

    _, _, headers = gateway("/v1/chat/completions", _chat(), caller)

    assert (headers["x-byom-provider"], headers["x-byom-model"]) == ("bedrock", NOVA)


def test_a_bedrock_stream_is_server_sent_events_ending_with_done(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    add_stream_response(bedrock, stream_events(["Hi", "!"]))

    status, body, headers = gateway("/v1/chat/completions", _chat(stream=True), caller)

    events = _events(body)
    assert (status, headers["content-type"].split(";")[0]) == (200, "text/event-stream")
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "Hi!"
    assert events[-1] == "[DONE]"


def test_a_streamed_answer_ends_with_usage_when_asked_for(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    add_stream_response(bedrock, stream_events(["Hi"], input_tokens=6, output_tokens=1))
    request = _chat(stream=True, stream_options={"include_usage": True})

    _, body, _ = gateway("/v1/chat/completions", request, caller)

    assert json.loads(_events(body)[-2])["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": 1,
        "total_tokens": 7,
    }


def test_bedrock_throttling_is_a_429_from_the_provider(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    for _ in range(ATTEMPTS):
        bedrock.add_client_error("converse", "ThrottlingException", "Too many requests, please wait.", 429)

    status, body, headers = gateway("/v1/chat/completions", _chat(), caller)

    assert (status, json.loads(body)["error"]["type"], headers["x-byom-error-source"]) == (
        429,
        "rate_limit_exceeded",
        "provider",
    )


def test_a_provider_error_quotes_the_providers_status_and_message(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    for _ in range(ATTEMPTS):
        bedrock.add_client_error("converse", "ServiceUnavailableException", "Bedrock is unavailable", 503)

    status, body, _ = gateway("/v1/chat/completions", _chat(), caller)

    assert (status, json.loads(body)["error"]["message"]) == (
        503,
        "Bedrock answered 503 ServiceUnavailableException: Bedrock is unavailable",
    )


def test_a_titan_alias_answers_embeddings(admin_api: Api, gateway: Gateway, bedrock: Stubber) -> None:
    caller = _bedrock_tenant(admin_api)
    bedrock.add_response("invoke_model", invoke_answer({"embedding": [0.1, 0.2], "inputTextTokenCount": 3}))

    status, body, _ = gateway("/v1/embeddings", {"model": "embed", "input": "Hello"}, caller)

    answer = json.loads(body)
    assert (status, answer["data"][0]["embedding"], answer["usage"]["prompt_tokens"]) == (200, [0.1, 0.2], 3)


# OpenAI-compatible


def test_an_openai_compatible_alias_answers_through_the_sdk(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)

    status, body, headers = gateway("/v1/chat/completions", _chat("local"), caller)

    assert (status, json.loads(body)["choices"][0]["message"]["content"]) == (200, "Hi!")
    assert (headers["x-byom-provider"], headers["x-byom-model"]) == ("openai_compatible", "llama3.2")


def test_the_provider_receives_the_tenants_key_and_the_model_id(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)

    gateway("/v1/chat/completions", _chat("local"), caller)

    sent = openai_server.requests[-1]
    assert (sent["authorization"], sent["body"]["model"]) == (f"Bearer {PROVIDER_KEY}", "llama3.2")


def test_an_openai_compatible_stream_is_relayed(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)

    status, body, _ = gateway("/v1/chat/completions", _chat("local", stream=True), caller)

    events = _events(body)
    assert (status, events[-1]) == (200, "[DONE]")
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "Hi!"


def test_an_openai_compatible_alias_answers_embeddings(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)

    status, body, _ = gateway("/v1/embeddings", {"model": "local", "input": ["a", "b"]}, caller)

    assert (status, [d["embedding"] for d in json.loads(body)["data"]]) == (200, [[0.5, 0.0], [0.5, 1.0]])


def test_a_rotated_key_is_picked_up_after_the_provider_refuses_the_cached_one(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)
    assert gateway("/v1/chat/completions", _chat("local"), caller)[0] == 200  # the key is now cached
    rotated = {"provider": "openai_compatible", "api_key": ROTATED_KEY, "base_url": openai_server.url}
    admin_api("PUT", f"/admin/tenants/{caller['tenant_id']}/credentials/llm", rotated)
    openai_server.accepted_key = ROTATED_KEY

    status, _, _ = gateway("/v1/chat/completions", _chat("local"), caller)

    assert status == 200


def test_the_provider_key_never_reaches_the_caller_or_the_logs(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)

    status, body, headers = gateway("/v1/chat/completions", _chat("leaky"), caller)

    assert status == 400  # the provider's refusal, which quoted the key
    assert PROVIDER_KEY not in body + json.dumps(headers)
    assert PROVIDER_KEY not in capsys.readouterr().out


# Refusals by the gateway


def test_an_unknown_alias_is_model_not_found(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api)

    status, body, _ = gateway("/v1/chat/completions", _chat("nope"), caller)

    assert (status, json.loads(body)["error"]["code"], json.loads(body)["error"]["param"]) == (
        404,
        "model_not_found",
        "model",
    )


def test_a_viewer_may_not_invoke(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api) | {"role": "viewer"}

    status, body, _ = gateway("/v1/chat/completions", _chat(), caller)

    assert (status, json.loads(body)["error"]["type"]) == (403, "permission_error")


def test_empty_messages_are_a_400_naming_the_field(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api)

    status, body, headers = gateway("/v1/chat/completions", _chat(messages=[]), caller)

    error = json.loads(body)["error"]
    assert (status, error["type"], error["param"], headers["x-byom-error-source"]) == (
        400,
        "invalid_request_error",
        "messages",
        "gateway",
    )


def test_more_than_one_choice_is_a_400(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api)

    status, body, _ = gateway("/v1/chat/completions", _chat(n=3), caller)

    assert (status, json.loads(body)["error"]["param"]) == (400, "n")


def test_a_body_that_is_not_json_is_a_400(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api)

    status, body, _ = gateway("/v1/chat/completions", "{not json", caller)

    assert (status, json.loads(body)["error"]["type"]) == (400, "invalid_request_error")


def test_a_body_over_6_mb_is_a_413(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api)

    status, body, _ = gateway("/v1/chat/completions", _chat(padding="x" * (6 * 1024 * 1024)), caller)

    assert (status, json.loads(body)["error"]["code"]) == (413, "request_too_large")
