"""The OpenAI-compatible provider against an in-process transport: the real SDK, no sockets."""

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from byom.errors import OutboundRefused, ProviderError
from byom.openai_types import ChatRequest, EmbeddingRequest
from byom.providers import OPENAI_BASE_URL, StreamDelta, Target, Usage
from byom.providers.openai_compat import NO_KEY, OpenAICompatibleProvider

PROVIDER_KEY = "sk-test-CANARY-5b1e7f0c9a"
ROTATED_KEY = "sk-test-ROTATED-77d2e4a1"
TARGET = Target(
    tenant_id="tnt_a",
    alias="smart",
    provider="openai_compatible",
    model_id="meta-llama/Llama-3.1-8B-Instruct",
    credential="vllm",
    base_url="https://llm.example.com/v1",
    has_key=True,
)
COMPLETION = {
    "id": "chatcmpl-upstream",
    "object": "chat.completion",
    "created": 1,
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}


class FakeKeys:
    """The key reader: a cached value, and another one once a refresh is asked for."""

    def __init__(self, cached: str = PROVIDER_KEY, fresh: str | None = None) -> None:
        self.cached = cached
        self.fresh = fresh or cached
        self.reads: list[tuple[str, str, bool]] = []

    def get(self, tenant_id: str, credential: str, *, refresh: bool = False) -> str:
        self.reads.append((tenant_id, credential, refresh))
        return self.fresh if refresh else self.cached


Answer = httpx2.Response | Callable[[httpx2.Request], httpx2.Response]


class Upstream:
    """A MockTransport handler answering in turn and keeping what it was sent."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer

    def body(self, i: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[i].content)


def _resolver(address: str = "93.184.216.34") -> Callable[[str, int], list[tuple[Any, ...]]]:
    return lambda host, port: [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


def _provider(
    upstream: Upstream, keys: FakeKeys | None = None, address: str = "93.184.216.34", **options: Any
) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        keys or FakeKeys(),
        transport=httpx2.MockTransport(upstream),
        resolve=_resolver(address),
        **options,
    )


def _chat(**fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "smart", "messages": [{"role": "user", "content": "Hi"}]} | fields
    )


def _error(status: int, message: str) -> httpx2.Response:
    return httpx2.Response(
        status,
        json={"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}},
    )


def _sse(*chunks: dict[str, Any]) -> httpx2.Response:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
    } | extra


# Chat


def test_the_request_goes_to_the_credentials_base_url() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))

    _provider(upstream).chat(_chat(), TARGET)

    assert str(upstream.requests[0].url) == "https://llm.example.com/v1/chat/completions"


def test_the_provider_key_is_sent_as_the_bearer_token() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))

    _provider(upstream).chat(_chat(), TARGET)

    assert upstream.requests[0].headers["authorization"] == f"Bearer {PROVIDER_KEY}"


def test_the_model_is_the_aliases_model_id() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))

    _provider(upstream).chat(_chat(), TARGET)

    assert upstream.body()["model"] == "meta-llama/Llama-3.1-8B-Instruct"


def test_fields_the_gateway_does_not_read_are_passed_through() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))

    _provider(upstream).chat(_chat(temperature=0.3, seed=7, logit_bias={"50256": -100}), TARGET)

    body = upstream.body()
    assert (body["temperature"], body["seed"], body["logit_bias"]) == (0.3, 7, {"50256": -100})


def test_the_prompt_cache_key_is_sent_as_given() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))

    _provider(upstream).chat(_chat(prompt_cache_key="support-bot-v3"), TARGET)

    assert upstream.body()["prompt_cache_key"] == "support-bot-v3"


def test_the_data_subject_id_is_not_sent_to_the_provider() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))

    _provider(upstream).chat(_chat(user="subject-42"), TARGET)

    assert "user" not in upstream.body()


def test_the_messages_are_sent_as_the_caller_wrote_them() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))

    _provider(upstream).chat(_chat(messages=messages), TARGET)

    assert upstream.body()["messages"] == messages


def test_the_answer_becomes_the_message_finish_reason_and_usage() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))

    result = _provider(upstream).chat(_chat(), TARGET)

    assert (result.message, result.finish_reason, result.usage) == (
        {"role": "assistant", "content": "Hello"},
        "stop",
        Usage(prompt_tokens=9, completion_tokens=2),
    )


def test_tool_calls_in_the_answer_are_kept() -> None:
    call = {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    answer = json.loads(json.dumps(COMPLETION))
    answer["choices"][0] = {
        "index": 0,
        "message": {"role": "assistant", "content": None, "tool_calls": [call]},
        "finish_reason": "tool_calls",
    }
    upstream = Upstream(httpx2.Response(200, json=answer))

    result = _provider(upstream).chat(_chat(), TARGET)

    assert result.message["tool_calls"] == [call]


def test_openai_without_a_base_url_is_called_at_openais_address() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))
    target = Target(
        tenant_id="tnt_a", alias="gpt", provider="openai", model_id="gpt-4o", credential="oai", has_key=True
    )

    _provider(upstream, default_base_url=OPENAI_BASE_URL).chat(_chat(), target)

    assert str(upstream.requests[0].url) == f"{OPENAI_BASE_URL}/chat/completions"


def test_a_credential_without_a_key_reads_no_secret() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))
    keys = FakeKeys()
    keyless = Target(**{**TARGET.__dict__, "has_key": False})

    _provider(upstream, keys).chat(_chat(), keyless)

    assert (keys.reads, upstream.requests[0].headers["authorization"]) == ([], f"Bearer {NO_KEY}")


# Streaming


def test_a_stream_becomes_deltas_finish_and_usage() -> None:
    upstream = Upstream(
        _sse(
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hel"}),
            _chunk({"content": "lo"}),
            _chunk({}, "stop"),
            _chunk(None, usage={"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}),
        )
    )

    events = list(_provider(upstream).stream(_chat(stream=True), TARGET))

    assert events == [
        StreamDelta({"role": "assistant", "content": ""}),
        StreamDelta({"content": "Hel"}),
        StreamDelta({"content": "lo"}),
        StreamDelta({}, finish_reason="stop"),
        Usage(prompt_tokens=4, completion_tokens=2),
    ]


def test_usage_is_always_asked_for_when_streaming() -> None:
    upstream = Upstream(_sse(_chunk({}, "stop")))

    list(_provider(upstream).stream(_chat(stream=True), TARGET))

    assert (upstream.body()["stream"], upstream.body()["stream_options"]) == (True, {"include_usage": True})


def test_a_stream_refused_at_once_raises_from_the_call_itself() -> None:
    upstream = Upstream(_error(429, "Rate limit reached"))

    with pytest.raises(ProviderError) as failed:
        _provider(upstream).stream(_chat(stream=True), TARGET)  # not iterated

    assert failed.value.status == 429


def test_an_error_event_in_the_stream_becomes_a_provider_error() -> None:
    body = 'data: {"error": {"message": "model crashed", "type": "server_error"}}\n\n'
    upstream = Upstream(
        httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())
    )
    stream = _provider(upstream).stream(_chat(stream=True), TARGET)

    with pytest.raises(ProviderError, match="model crashed"):
        list(stream)


# Embeddings


def test_embeddings_are_asked_for_as_floats_whatever_the_caller_wants() -> None:
    answer = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
        "model": "e",
    }
    upstream = Upstream(httpx2.Response(200, json=answer))
    request = EmbeddingRequest.model_validate({"model": "embed", "input": "a", "encoding_format": "base64"})

    _provider(upstream).embed(request, TARGET)

    assert upstream.body()["encoding_format"] == "float"


def test_embedding_vectors_come_back_in_input_order() -> None:
    data = [{"object": "embedding", "index": i, "embedding": [float(i)]} for i in (1, 0)]
    answer = {"object": "list", "data": data, "model": "e", "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    upstream = Upstream(httpx2.Response(200, json=answer))
    request = EmbeddingRequest.model_validate({"model": "embed", "input": ["a", "b"], "dimensions": 1})

    result = _provider(upstream).embed(request, TARGET)

    assert (result.vectors, result.usage.prompt_tokens) == ([[0.0], [1.0]], 3)


def test_an_embeddings_answer_with_too_few_vectors_is_the_providers_fault() -> None:
    answer = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
        "model": "e",
    }
    upstream = Upstream(httpx2.Response(200, json=answer))
    request = EmbeddingRequest.model_validate({"model": "embed", "input": ["a", "b"]})

    with pytest.raises(ProviderError) as failed:
        _provider(upstream).embed(request, TARGET)

    assert (failed.value.status, failed.value.source) == (502, "provider")


# Errors


@pytest.mark.parametrize(
    ("provider_status", "status", "retryable"),
    [
        (429, 429, True),
        (500, 502, True),
        (502, 502, True),
        (503, 503, True),
        (504, 504, True),
        (400, 400, False),
        (422, 400, False),
        (403, 502, False),
        (404, 502, False),
    ],
)
def test_provider_statuses_map_to_gateway_statuses(
    provider_status: int, status: int, retryable: bool
) -> None:
    upstream = Upstream(_error(provider_status, "no"))

    with pytest.raises(ProviderError) as failed:
        _provider(upstream).chat(_chat(), TARGET)

    assert (failed.value.status, failed.value.retryable) == (status, retryable)


def test_the_error_quotes_the_providers_status_and_message() -> None:
    upstream = Upstream(_error(404, "The model `llama-9` does not exist"))

    with pytest.raises(ProviderError) as failed:
        _provider(upstream).chat(_chat(), TARGET)

    assert (
        failed.value.message
        == "The provider at llm.example.com answered 404: The model `llama-9` does not exist"
    )


def test_a_provider_error_is_attributed_to_the_provider() -> None:
    upstream = Upstream(_error(500, "boom"))

    with pytest.raises(ProviderError) as failed:
        _provider(upstream).chat(_chat(), TARGET)

    assert failed.value.source == "provider"


def test_the_provider_key_never_appears_in_an_error_even_when_the_provider_echoes_it() -> None:
    upstream = Upstream(_error(400, f"Invalid key {PROVIDER_KEY} for this project"))

    with pytest.raises(ProviderError) as failed:
        _provider(upstream).chat(_chat(), TARGET)

    assert PROVIDER_KEY not in str(failed.value)
    assert "[redacted]" in failed.value.message  # the message was there to redact


def test_a_timeout_is_a_retryable_gateway_timeout() -> None:
    def hang(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    with pytest.raises(ProviderError) as failed:
        _provider(Upstream(hang)).chat(_chat(), TARGET)

    assert (failed.value.status, failed.value.retryable) == (504, True)


@pytest.mark.parametrize(("timeout", "sent"), [(None, 25.0), (3.5, 3.5), (60.0, 25.0)])
def test_a_call_waits_no_longer_than_the_time_it_is_given(timeout: float | None, sent: float) -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))

    _provider(upstream).chat(_chat(), TARGET, timeout=timeout)

    assert upstream.requests[0].extensions["timeout"]["read"] == sent


def test_a_timeout_names_the_time_the_call_was_given() -> None:
    def hang(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    with pytest.raises(ProviderError) as failed:
        _provider(Upstream(hang)).chat(_chat(), TARGET, timeout=3.5)

    assert failed.value.message == "The provider at llm.example.com did not answer within 3.5 s"


def test_a_connection_failure_is_a_retryable_bad_gateway() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    with pytest.raises(ProviderError) as failed:
        _provider(Upstream(refuse)).chat(_chat(), TARGET)

    assert (failed.value.status, failed.value.retryable) == (502, True)


@pytest.mark.parametrize(
    "answer",
    [
        httpx2.Response(200, content=b"<html>gateway</html>"),
        httpx2.Response(200, json={"object": "chat.completion", "choices": []}),
        httpx2.Response(200, json={"choices": [{"message": "hello"}]}),
    ],
)
def test_a_malformed_answer_is_the_providers_fault(answer: httpx2.Response) -> None:
    with pytest.raises(ProviderError) as failed:
        _provider(Upstream(answer)).chat(_chat(), TARGET)

    assert (failed.value.status, failed.value.source, failed.value.message) == (
        502,
        "provider",
        "The provider at llm.example.com answered a malformed chat completion",
    )


def test_a_redirect_is_not_followed() -> None:
    upstream = Upstream(
        httpx2.Response(307, headers={"location": "http://169.254.169.254/latest/meta-data/"})
    )

    with pytest.raises(ProviderError):
        _provider(upstream).chat(_chat(), TARGET)

    assert len(upstream.requests) == 1


# Key rotation


def test_after_a_401_the_key_is_read_again_and_the_call_retried_once() -> None:
    upstream = Upstream(_error(401, "Incorrect API key provided"), httpx2.Response(200, json=COMPLETION))
    keys = FakeKeys(cached=PROVIDER_KEY, fresh=ROTATED_KEY)

    _provider(upstream, keys).chat(_chat(), TARGET)

    assert [r.headers["authorization"] for r in upstream.requests] == [
        f"Bearer {PROVIDER_KEY}",
        f"Bearer {ROTATED_KEY}",
    ]


def test_the_re_read_skips_the_cache() -> None:
    upstream = Upstream(_error(401, "Incorrect API key provided"), httpx2.Response(200, json=COMPLETION))
    keys = FakeKeys(cached=PROVIDER_KEY, fresh=ROTATED_KEY)

    _provider(upstream, keys).chat(_chat(), TARGET)

    assert keys.reads == [("tnt_a", "vllm", False), ("tnt_a", "vllm", True)]


def test_a_401_with_an_unchanged_key_is_not_retried() -> None:
    upstream = Upstream(_error(401, "Incorrect API key provided"))

    with pytest.raises(ProviderError) as failed:
        _provider(upstream).chat(_chat(), TARGET)

    assert (len(upstream.requests), failed.value.status) == (1, 502)


# Outbound addresses


def test_a_host_resolving_to_the_metadata_service_is_never_called() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))

    with pytest.raises(OutboundRefused):
        _provider(upstream, address="169.254.169.254").chat(_chat(), TARGET)

    assert upstream.requests == []


def test_a_loopback_base_url_is_refused_in_the_cloud() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))
    local = Target(**{**TARGET.__dict__, "base_url": "http://127.0.0.1:11434/v1"})

    with pytest.raises(OutboundRefused):
        _provider(upstream, address="127.0.0.1").chat(_chat(), local)


def test_a_loopback_base_url_is_called_in_the_local_stack() -> None:
    upstream = Upstream(httpx2.Response(200, json=COMPLETION))
    local = Target(**{**TARGET.__dict__, "base_url": "http://127.0.0.1:11434/v1"})

    _provider(upstream, address="127.0.0.1", allow_loopback_http=True).chat(_chat(), local)

    assert str(upstream.requests[0].url) == "http://127.0.0.1:11434/v1/chat/completions"


# Prompt caching (OpenAI's is automatic: only its report is read)


def test_cached_prompt_tokens_are_read_from_the_usage_details() -> None:
    usage = COMPLETION["usage"] | {"prompt_tokens": 2000, "prompt_tokens_details": {"cached_tokens": 1536}}
    upstream = Upstream(httpx2.Response(200, json=COMPLETION | {"usage": usage}))

    result = _provider(upstream).chat(_chat(), TARGET)

    assert result.usage == Usage(prompt_tokens=2000, completion_tokens=2, cached_tokens=1536)


def test_a_server_without_prompt_caching_reports_none_cached() -> None:
    usage = COMPLETION["usage"] | {"prompt_tokens_details": None}
    upstream = Upstream(httpx2.Response(200, json=COMPLETION | {"usage": usage}))

    assert _provider(upstream).chat(_chat(), TARGET).usage.cached_tokens == 0


def test_a_streams_cached_prompt_tokens_come_with_its_usage() -> None:
    usage = {"prompt_tokens": 1100, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1024}}
    upstream = Upstream(_sse(_chunk({"content": "Hi"}), _chunk({}, "stop"), _chunk(None, usage=usage)))

    events = list(_provider(upstream).stream(_chat(stream=True), TARGET))

    assert events[-1] == Usage(prompt_tokens=1100, completion_tokens=2, cached_tokens=1024)
