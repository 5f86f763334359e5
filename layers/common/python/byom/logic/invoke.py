"""Model invocation (SPEC §4.3): resolve the caller's alias, call its provider, answer in OpenAI's shapes."""

from __future__ import annotations

import base64
import json
import secrets
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from byom import clock
from byom.errors import GatewayMisconfigured, ModelNotFound
from byom.logic.access import Principal, require_tenant_key
from byom.openai_types import ChatRequest, EmbeddingRequest
from byom.providers import ChatResult, EmbeddingResult, StreamEvent, Target, Usage

INVOKE_ROLES = ("admin", "developer")
SSE_DONE = "data: [DONE]\n\n"


@dataclass
class InvokeStore:
    """The collaborators invocation needs; tests pass in-memory fakes."""

    models: Any
    credentials: Any
    providers: Any  # byom.providers.ProviderRegistry or anything with get(name) -> Provider
    now: Callable[[], int] = clock.now


@dataclass(frozen=True)
class Answer:
    target: Target
    body: dict[str, Any]
    usage: Usage


@dataclass(frozen=True)
class StreamAnswer:
    target: Target
    events: Iterator[str]
    """Server-sent events, `data: {chunk}` each, ending with `data: [DONE]`."""


def headers(target: Target) -> dict[str, str]:
    return {"x-byom-provider": target.provider, "x-byom-model": target.model_id}


def resolve_target(store: InvokeStore, tenant_id: str, alias: str) -> Target:
    model = store.models.get(tenant_id, alias)
    if model is None:
        raise ModelNotFound(
            f"The model '{alias}' does not exist or you do not have access to it", param="model"
        )
    credential = None
    if model.credential:
        credential = store.credentials.get(tenant_id, model.credential)
        if credential is None:
            raise GatewayMisconfigured(
                f"Model '{alias}' uses credential '{model.credential}', which does not exist"
            )
    return Target(
        tenant_id=tenant_id,
        alias=alias,
        provider=model.provider,
        model_id=model.model_id,
        credential=model.credential,
        base_url=credential.base_url if credential else None,
        has_key=bool(credential and credential.secret_arn),
    )


def _completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


# Chat completions


def completion_body(result: ChatResult, *, completion_id: str, created: int, model: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": None, "refusal": None} | result.message
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": result.finish_reason}
        ],
        "usage": result.usage.openai(),
    }


def chat(store: InvokeStore, principal: Principal, request: ChatRequest) -> Answer:
    tenant_id = require_tenant_key(principal, INVOKE_ROLES)
    target = resolve_target(store, tenant_id, request.model)
    result = store.providers.get(target.provider).chat(request, target)
    body = completion_body(result, completion_id=_completion_id(), created=store.now(), model=target.alias)
    return Answer(target=target, body=body, usage=result.usage)


def chunks(
    events: Iterable[StreamEvent], *, completion_id: str, created: int, model: str, include_usage: bool
) -> Iterator[dict[str, Any]]:
    """OpenAI `chat.completion.chunk` objects. The usage chunk (no choices) is sent only when the
    caller asked for it, as OpenAI does; every other chunk then carries `usage: null`."""
    head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    for event in events:
        if isinstance(event, Usage):
            if include_usage:
                yield head | {"choices": [], "usage": event.openai()}
            continue
        choice = {"index": 0, "delta": event.delta, "logprobs": None, "finish_reason": event.finish_reason}
        yield head | {"choices": [choice]} | ({"usage": None} if include_usage else {})


def server_sent_events(items: Iterable[dict[str, Any]]) -> Iterator[str]:
    for item in items:
        yield f"data: {json.dumps(item, separators=(',', ':'))}\n\n"
    yield SSE_DONE


def chat_stream(store: InvokeStore, principal: Principal, request: ChatRequest) -> StreamAnswer:
    """The provider is called before this returns, so a refusal is an ordinary error response."""
    tenant_id = require_tenant_key(principal, INVOKE_ROLES)
    target = resolve_target(store, tenant_id, request.model)
    events = store.providers.get(target.provider).stream(request, target)
    items = chunks(
        events,
        completion_id=_completion_id(),
        created=store.now(),
        model=target.alias,
        include_usage=request.include_usage,
    )
    return StreamAnswer(target=target, events=server_sent_events(items))


# Embeddings


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """OpenAI's base64 form is the little-endian float32 array, which the SDK decodes by default."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def embeddings_body(result: EmbeddingResult, *, model: str, encoding_format: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(vector, encoding_format)}
            for i, vector in enumerate(result.vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": result.usage.prompt_tokens, "total_tokens": result.usage.prompt_tokens},
    }


def embed(store: InvokeStore, principal: Principal, request: EmbeddingRequest) -> Answer:
    tenant_id = require_tenant_key(principal, INVOKE_ROLES)
    target = resolve_target(store, tenant_id, request.model)
    result = store.providers.get(target.provider).embed(request, target)
    body = embeddings_body(result, model=target.alias, encoding_format=request.encoding_format)
    return Answer(target=target, body=body, usage=result.usage)
