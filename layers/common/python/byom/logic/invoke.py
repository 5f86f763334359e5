"""Model invocation (SPEC §4.3): resolve the caller's alias, call its provider, answer in OpenAI's shapes."""

from __future__ import annotations

import base64
import json
import secrets
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from byom import clock
from byom.errors import GatewayMisconfigured, ModelNotFound, ProviderError
from byom.logic import response_cache
from byom.logic.access import Principal, require_tenant_key
from byom.logic.resilience import (
    ATTEMPTS_HEADER,
    Deadline,
    Outcome,
    RetryPolicy,
    Timing,
    call_with_fallbacks,
)
from byom.openai_types import ChatRequest, EmbeddingRequest
from byom.providers import ChatResult, EmbeddingResult, StreamEvent, Target, Usage

T = TypeVar("T")

INVOKE_ROLES = ("admin", "developer")
SSE_DONE = "data: [DONE]\n\n"


@dataclass
class InvokeStore:
    """The collaborators invocation needs; tests pass in-memory fakes."""

    models: Any
    credentials: Any
    providers: Any  # byom.providers.ProviderRegistry or anything with get(name) -> Provider
    now: Callable[[], int] = clock.now
    cache: response_cache.CacheStore | None = None
    """The response cache; None turns caching off whatever the aliases say."""
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timing: Timing = field(default_factory=Timing)


@dataclass(frozen=True)
class Answer:
    target: Target
    """The model that answered: the alias asked for or one of its fallbacks."""
    body: dict[str, Any]
    usage: Usage
    attempts: int = 1
    """Provider calls made for this answer; 0 when it came from the cache."""
    cache: str | None = None
    """`hit` or `miss` when the alias is cached, else None."""

    @property
    def headers(self) -> dict[str, str]:
        return _headers(self.target, self.attempts, self.cache)


@dataclass(frozen=True)
class StreamAnswer:
    target: Target
    events: Iterator[str]
    """Server-sent events, `data: {chunk}` each, ending with `data: [DONE]`."""
    attempts: int = 1
    cache: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return _headers(self.target, self.attempts, self.cache)


def headers(target: Target) -> dict[str, str]:
    return {"x-byom-provider": target.provider, "x-byom-model": target.model_id}


def _headers(target: Target, attempts: int, cache: str | None) -> dict[str, str]:
    extra = {ATTEMPTS_HEADER: str(attempts)}
    if cache:
        extra[response_cache.CACHE_HEADER] = cache
    return headers(target) | extra


def _alias_and_credential(store: InvokeStore, tenant_id: str, alias: str) -> tuple[Any, Any]:
    """The alias and the credential it names: in one read where the repository offers it
    (`get_with_credential`, one BatchGetItem on a warm call), else one after the other."""
    read_both = getattr(store.models, "get_with_credential", None)
    if read_both is not None:
        return read_both(tenant_id, alias)
    model = store.models.get(tenant_id, alias)
    if model is None or not model.credential:
        return model, None
    return model, store.credentials.get(tenant_id, model.credential)


def resolve_target(store: InvokeStore, tenant_id: str, alias: str) -> Target:
    model, credential = _alias_and_credential(store, tenant_id, alias)
    if model is None:
        raise ModelNotFound(
            f"The model '{alias}' does not exist or you do not have access to it", param="model"
        )
    if model.credential and credential is None:
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
        fallbacks=tuple(model.fallbacks),
        cache_ttl_seconds=model.cache_ttl_seconds,
    )


def _completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def _resilient(
    store: InvokeStore, deadline: Deadline, first: Target, call: Callable[[Any, Target, float], T]
) -> Outcome[T]:
    """`call(provider, target, timeout)` with retries, then the fallbacks of `first`."""
    return call_with_fallbacks(
        first,
        lambda alias: resolve_target(store, first.tenant_id, alias),
        lambda target, timeout: call(store.providers.get(target.provider), target, timeout),
        policy=store.policy,
        timing=store.timing,
        deadline=deadline,
    )


def _cache_key(
    store: InvokeStore, target: Target, kind: response_cache.Kind, request: BaseModel
) -> str | None:
    if store.cache is None or not target.cache_ttl_seconds:
        return None
    return response_cache.cache_key(target, kind, request)


def _cached(
    store: InvokeStore, key: str | None, target: Target, kind: response_cache.Kind
) -> response_cache.Hit | None:
    if key is None or store.cache is None:
        return None
    return response_cache.lookup(store.cache, key, target, kind, store.now())


def _remember(
    store: InvokeStore,
    key: str | None,
    target: Target,
    kind: response_cache.Kind,
    result: response_cache.Result,
    answered_by: Target,
) -> None:
    if key is not None and store.cache is not None:
        response_cache.store(store.cache, key, target, kind, result, answered_by, store.now())


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
    deadline = Deadline(store.timing, store.policy.deadline_seconds)
    target = resolve_target(store, tenant_id, request.model)
    key = _cache_key(store, target, "chat", request)
    hit = _cached(store, key, target, "chat")
    if hit is not None and isinstance(hit.result, ChatResult):
        body = completion_body(
            hit.result, completion_id=_completion_id(), created=store.now(), model=target.alias
        )
        return Answer(hit.answered_by, body, hit.result.usage, attempts=0, cache=response_cache.HIT)
    outcome = _resilient(
        store, deadline, target, lambda provider, t, timeout: provider.chat(request, t, timeout=timeout)
    )
    result: ChatResult = outcome.value
    _remember(store, key, target, "chat", result, outcome.target)
    body = completion_body(result, completion_id=_completion_id(), created=store.now(), model=target.alias)
    return Answer(
        outcome.target, body, result.usage, attempts=outcome.attempts, cache=key and response_cache.MISS
    )


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


def _drained(events: Iterator[StreamEvent], target: Target, deadline: Deadline) -> list[StreamEvent]:
    """The whole stream, read before anything is sent: a stream that breaks off can then be retried
    or fall back like any failed call. One still running at the deadline is a timeout."""
    collected: list[StreamEvent] = []
    try:
        for event in events:
            collected.append(event)
            if deadline.remaining() <= 0:
                raise ProviderError(
                    f"The {target.provider} model '{target.model_id}' did not finish its answer in time",
                    status=504,
                    retryable=True,
                )
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    return collected


def chat_stream(store: InvokeStore, principal: Principal, request: ChatRequest) -> StreamAnswer:
    """The provider's whole stream is read before this returns (streams are buffered, decision 19),
    so a refusal or a broken stream is an ordinary error response, after retries and fallbacks."""
    tenant_id = require_tenant_key(principal, INVOKE_ROLES)
    deadline = Deadline(store.timing, store.policy.deadline_seconds)
    target = resolve_target(store, tenant_id, request.model)
    key = _cache_key(store, target, "chat", request)
    hit = _cached(store, key, target, "chat")
    if hit is not None and isinstance(hit.result, ChatResult):
        return StreamAnswer(
            hit.answered_by,
            _sse(response_cache.replay(hit.result), store, target, request),
            attempts=0,
            cache=response_cache.HIT,
        )
    outcome = _resilient(
        store,
        deadline,
        target,
        lambda provider, t, timeout: _drained(provider.stream(request, t, timeout=timeout), t, deadline),
    )
    events: list[StreamEvent] = outcome.value
    _remember(store, key, target, "chat", response_cache.assemble(events), outcome.target)
    return StreamAnswer(
        outcome.target,
        _sse(events, store, target, request),
        attempts=outcome.attempts,
        cache=key and response_cache.MISS,
    )


def _sse(
    events: Iterable[StreamEvent], store: InvokeStore, target: Target, request: ChatRequest
) -> Iterator[str]:
    items = chunks(
        events,
        completion_id=_completion_id(),
        created=store.now(),
        model=target.alias,
        include_usage=request.include_usage,
    )
    return server_sent_events(items)


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
    deadline = Deadline(store.timing, store.policy.deadline_seconds)
    target = resolve_target(store, tenant_id, request.model)
    key = _cache_key(store, target, "embeddings", request)
    hit = _cached(store, key, target, "embeddings")
    if hit is not None and isinstance(hit.result, EmbeddingResult):
        body = embeddings_body(hit.result, model=target.alias, encoding_format=request.encoding_format)
        return Answer(hit.answered_by, body, hit.result.usage, attempts=0, cache=response_cache.HIT)
    outcome = _resilient(
        store, deadline, target, lambda provider, t, timeout: provider.embed(request, t, timeout=timeout)
    )
    result: EmbeddingResult = outcome.value
    _remember(store, key, target, "embeddings", result, outcome.target)
    body = embeddings_body(result, model=target.alias, encoding_format=request.encoding_format)
    return Answer(
        outcome.target, body, result.usage, attempts=outcome.attempts, cache=key and response_cache.MISS
    )
