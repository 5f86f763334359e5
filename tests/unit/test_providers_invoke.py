"""Invocation logic with in-memory repositories and a scripted provider."""

import base64
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from byom.domain import Credential, ModelAlias
from byom.errors import GatewayMisconfigured, ModelNotFound, PermissionDenied
from byom.logic import invoke
from byom.logic.access import Principal
from byom.openai_types import ChatRequest, EmbeddingRequest
from byom.providers import (
    ChatResult,
    EmbeddingResult,
    ProviderRegistry,
    StreamDelta,
    StreamEvent,
    Target,
    Usage,
)

from tests.unit.fakes import FakeCalls, FakeCredentials, FakeModels

DEVELOPER = Principal(key_id="key_1", role="developer", tenant_id="tnt_a")


class ScriptedProvider:
    """Answers what it is told to and remembers the targets it was called for."""

    def __init__(self) -> None:
        self.targets: list[Target] = []
        self.result = ChatResult(
            message={"role": "assistant", "content": "Hello"},
            finish_reason="stop",
            usage=Usage(prompt_tokens=5, completion_tokens=1),
        )
        self.events: list[StreamEvent] = [
            StreamDelta({"role": "assistant", "content": ""}),
            StreamDelta({"content": "Hello"}),
            StreamDelta({}, finish_reason="stop"),
            Usage(prompt_tokens=5, completion_tokens=1),
        ]
        self.vectors = [[0.25, -1.0], [0.5, 2.0]]

    def chat(self, request: ChatRequest, target: Target, *, timeout: float | None = None) -> ChatResult:
        self.targets.append(target)
        return self.result

    def stream(
        self, request: ChatRequest, target: Target, *, timeout: float | None = None
    ) -> Iterator[StreamEvent]:
        self.targets.append(target)
        return iter(self.events)

    def embed(
        self, request: EmbeddingRequest, target: Target, *, timeout: float | None = None
    ) -> EmbeddingResult:
        self.targets.append(target)
        return EmbeddingResult(vectors=self.vectors[: len(request.texts)], usage=Usage(prompt_tokens=3))


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
def store(provider: ScriptedProvider) -> invoke.InvokeStore:
    models, credentials = FakeModels(), FakeCredentials()
    credentials.put(
        Credential(
            tenant_id="tnt_a",
            name="vllm",
            provider="openai_compatible",
            base_url="https://llm.example.com/v1",
            key_last4="abcd",
            secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
            updated_at=1,
        )
    )
    for tenant_id, alias, kind, model_id, credential in (
        ("tnt_a", "fast", "bedrock", "amazon.nova-micro-v1:0", None),
        ("tnt_a", "smart", "openai_compatible", "llama-3", "vllm"),
        ("tnt_b", "theirs", "bedrock", "amazon.nova-pro-v1:0", None),
    ):
        models.create(
            ModelAlias.model_validate(
                {
                    "tenant_id": tenant_id,
                    "alias": alias,
                    "provider": kind,
                    "model_id": model_id,
                    "credential": credential,
                    "created_at": 1,
                }
            )
        )
    registry = ProviderRegistry({"bedrock": lambda: provider, "openai_compatible": lambda: provider})
    return invoke.InvokeStore(
        calls=FakeCalls(models, credentials), providers=registry, now=lambda: 1_700_000_000
    )


def _chat(model: str = "fast", **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": "Hi"}]} | fields
    )


def _sse_chunks(answer: invoke.StreamAnswer) -> list[Any]:
    lines = list(answer.events)
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


# Who may call which model


@pytest.mark.parametrize("role", ["admin", "developer"])
def test_admins_and_developers_may_invoke(store: invoke.InvokeStore, role: str) -> None:
    answer = invoke.chat(
        store, invoke.Call(Principal(key_id="k", role=role, tenant_id="tnt_a"), "req-1"), _chat()
    )

    assert answer.body["choices"][0]["message"]["content"] == "Hello"


def test_a_viewer_may_not_invoke(store: invoke.InvokeStore) -> None:
    with pytest.raises(PermissionDenied):
        invoke.chat(
            store, invoke.Call(Principal(key_id="k", role="viewer", tenant_id="tnt_a"), "req-1"), _chat()
        )


def test_an_unknown_alias_is_openais_model_not_found(store: invoke.InvokeStore) -> None:
    with pytest.raises(ModelNotFound) as missing:
        invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), _chat("nope"))

    assert (missing.value.status, missing.value.type, missing.value.code, missing.value.param) == (
        404,
        "invalid_request_error",
        "model_not_found",
        "model",
    )


def test_another_tenants_alias_is_not_found(store: invoke.InvokeStore) -> None:
    with pytest.raises(ModelNotFound):
        invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), _chat("theirs"))


def test_the_target_carries_the_aliases_model_and_credential(
    store: invoke.InvokeStore, provider: ScriptedProvider
) -> None:
    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), _chat("smart"))

    assert provider.targets == [
        Target(
            tenant_id="tnt_a",
            alias="smart",
            provider="openai_compatible",
            model_id="llama-3",
            credential="vllm",
            base_url="https://llm.example.com/v1",
            has_key=True,
        )
    ]


def test_an_alias_whose_credential_is_gone_is_a_configuration_error(store: invoke.InvokeStore) -> None:
    store.calls.credentials.delete("tnt_a", "vllm")

    with pytest.raises(GatewayMisconfigured):
        invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), _chat("smart"))


def test_a_provider_name_without_a_provider_is_a_configuration_error(store: invoke.InvokeStore) -> None:
    store.providers = ProviderRegistry({})

    with pytest.raises(GatewayMisconfigured):
        invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), _chat())


def test_the_answer_names_the_provider_and_model_in_headers(store: invoke.InvokeStore) -> None:
    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), _chat())

    assert invoke.headers(answer.target) == {
        "x-byom-provider": "bedrock",
        "x-byom-model": "amazon.nova-micro-v1:0",
    }


# Chat completion


def test_a_chat_answer_is_an_openai_chat_completion(store: invoke.InvokeStore) -> None:
    body = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), _chat()).body

    assert body == {
        "id": body["id"],
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fast",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 1,
            "total_tokens": 6,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_completion_ids_have_openais_prefix(store: invoke.InvokeStore) -> None:
    assert invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), _chat()).body["id"].startswith("chatcmpl-")


# Streaming


def test_a_stream_is_server_sent_data_events(store: invoke.InvokeStore) -> None:
    lines = list(invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), _chat(stream=True)).events)

    assert all(line.startswith("data: ") and line.endswith("\n\n") for line in lines)


def test_a_stream_ends_with_done(store: invoke.InvokeStore) -> None:
    lines = list(invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), _chat(stream=True)).events)

    assert lines[-1] == "data: [DONE]\n\n"


def test_stream_chunks_share_one_id(store: invoke.InvokeStore) -> None:
    chunks = _sse_chunks(invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), _chat(stream=True)))

    assert len({c["id"] for c in chunks}) == 1


def test_stream_chunks_carry_the_deltas_and_the_finish_reason(store: invoke.InvokeStore) -> None:
    chunks = _sse_chunks(invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), _chat(stream=True)))

    assert [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks] == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hello"}, None),
        ({}, "stop"),
    ]


def test_stream_chunks_are_openai_chunk_objects_for_the_alias(store: invoke.InvokeStore) -> None:
    chunk = _sse_chunks(invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), _chat(stream=True)))[0]

    assert (chunk["object"], chunk["model"], chunk["created"]) == (
        "chat.completion.chunk",
        "fast",
        1_700_000_000,
    )


def test_the_usage_chunk_is_left_out_unless_asked_for(store: invoke.InvokeStore) -> None:
    chunks = _sse_chunks(invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), _chat(stream=True)))

    assert all("usage" not in c for c in chunks)


def test_the_usage_chunk_comes_last_without_choices_when_asked_for(store: invoke.InvokeStore) -> None:
    request = _chat(stream=True, stream_options={"include_usage": True})

    last = _sse_chunks(invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), request))[-1]

    assert (last["choices"], last["usage"]) == (
        [],
        {
            "prompt_tokens": 5,
            "completion_tokens": 1,
            "total_tokens": 6,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    )


# Embeddings


def test_embeddings_are_an_openai_list_for_the_alias(store: invoke.InvokeStore) -> None:
    request = EmbeddingRequest.model_validate({"model": "fast", "input": ["a", "b"]})

    body = invoke.embed(store, invoke.Call(DEVELOPER, "req-1"), request).body

    assert body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.25, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.5, 2.0]},
        ],
        "model": "fast",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


def test_base64_embeddings_are_little_endian_float32_as_the_sdk_decodes_them(
    store: invoke.InvokeStore,
) -> None:
    request = EmbeddingRequest.model_validate({"model": "fast", "input": "a", "encoding_format": "base64"})

    encoded = invoke.embed(store, invoke.Call(DEVELOPER, "req-1"), request).body["data"][0]["embedding"]

    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.25, -1.0)
