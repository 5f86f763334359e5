"""The opt-in response cache (SPEC §4.3): an exact match on the normalised request, per tenant.

An entry is keyed by the SHA-256 of the tenant, the alias, the model the alias points at and the
request in canonical JSON, so entries are never shared across tenants and a re-registered alias
does not serve the old model's answers. What is stored is the provider's answer (message, finish
reason, usage; or vectors), not a response body: a hit gets a fresh id and timestamp, streams are
replayed as chunks, and embeddings are encoded as each caller asks.

Fields that do not change the answer are left out of the key: `stream`, `stream_options`, `user`
(the data subject, who must not be linked to entries) and, for embeddings, `encoding_format`.
Nulls are dropped, so an explicit null and an absent field are the same request.

A cache that cannot be read is a miss and one that cannot be written is skipped: the cache never
fails a call. Errors are never stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from byom.observability import logger
from byom.providers import ChatResult, EmbeddingResult, StreamDelta, StreamEvent, Target, Usage

Kind = Literal["chat", "embeddings"]
Result = ChatResult | EmbeddingResult

HIT = "hit"
MISS = "miss"
CACHE_HEADER = "x-byom-cache"

# DynamoDB items stop at 400 KB; larger answers (big embedding batches) are simply not cached.
MAX_ANSWER_BYTES = 350_000

_IGNORED = {
    "chat": ("stream", "stream_options", "user", "safety_identifier", "prompt_cache_key"),
    "embeddings": ("user", "encoding_format"),
}


class CacheStore(Protocol):
    """Where entries live (byom.dal.cache.ResponseCacheTable, or a fake in tests)."""

    def get(self, cache_key: str) -> dict[str, Any] | None: ...

    def put(self, item: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Hit:
    result: Result
    answered_by: Target
    """The model that produced the stored answer (the alias asked for, or one of its fallbacks)."""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def normalised(request: BaseModel, kind: Kind) -> dict[str, Any]:
    body = request.model_dump(mode="json", exclude_none=True)
    for name in _IGNORED[kind]:
        body.pop(name, None)
    return body


def cache_key(target: Target, kind: Kind, request: BaseModel) -> str:
    # A JSON array, not a concatenation: no tenant/alias pair can be spelled like another.
    material = [
        target.tenant_id,
        target.alias,
        target.provider,
        target.model_id,
        kind,
        normalised(request, kind),
    ]
    # Prefixed with the tenant so that DynamoDB's leading-key condition can scope the entry to its
    # tenant (the erasure deletes it with tenant-scoped credentials); the digest reveals nothing.
    return f"{target.tenant_id}#{hashlib.sha256(_canonical(material).encode()).hexdigest()}"


# Stored answers


def encode(result: Result) -> str:
    usage = {"prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens}
    # The provider's prompt-cache counts, when there were any: a hit answers the usage the
    # provider reported (entries stored before these counts existed read as zero).
    if result.usage.cached_tokens:
        usage["cached_tokens"] = result.usage.cached_tokens
    if result.usage.cache_write_tokens:
        usage["cache_write_tokens"] = result.usage.cache_write_tokens
    if isinstance(result, ChatResult):
        return _canonical({"message": result.message, "finish_reason": result.finish_reason, "usage": usage})
    return _canonical({"vectors": result.vectors, "usage": usage})


def decode(kind: Kind, answer: str) -> Result:
    data = json.loads(answer)
    counts = data["usage"]
    usage = Usage(
        int(counts["prompt_tokens"]),
        int(counts["completion_tokens"]),
        cached_tokens=int(counts.get("cached_tokens", 0)),
        cache_write_tokens=int(counts.get("cache_write_tokens", 0)),
    )
    if kind == "chat":
        if not isinstance(data["message"], dict) or not isinstance(data["finish_reason"], str):
            raise ValueError("not a chat answer")
        return ChatResult(message=data["message"], finish_reason=data["finish_reason"], usage=usage)
    vectors = [[float(x) for x in vector] for vector in data["vectors"]]
    return EmbeddingResult(vectors=vectors, usage=usage)


# Streams: assembled into one answer to store, and a stored answer replayed as stream events


def assemble(events: list[StreamEvent]) -> ChatResult:
    """The answer a stream amounts to: its text, its tool calls joined by index, its finish reason
    and usage."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = "stop"
    usage = Usage()
    for event in events:
        if isinstance(event, Usage):
            usage = event
            continue
        if event.finish_reason:
            finish_reason = event.finish_reason
        if isinstance(event.delta.get("content"), str):
            content.append(event.delta["content"])
        for part in event.delta.get("tool_calls") or []:
            call = calls.setdefault(
                int(part.get("index", 0)),
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            call["id"] = part.get("id") or call["id"]
            function = part.get("function") or {}
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""
    text = "".join(content)
    # Streams open with an empty text delta; an answer of tool calls alone has no content (None).
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return ChatResult(message=message, finish_reason=finish_reason, usage=usage)


def replay(result: ChatResult) -> list[StreamEvent]:
    """A stored answer as the events a provider would have streamed: role and text, tool calls,
    the finish reason, usage."""
    events: list[StreamEvent] = [
        StreamDelta({"role": "assistant", "content": result.message.get("content") or ""})
    ]
    calls = result.message.get("tool_calls") or []
    if calls:
        events.append(StreamDelta({"tool_calls": [{"index": i} | call for i, call in enumerate(calls)]}))
    events += [StreamDelta({}, finish_reason=result.finish_reason), result.usage]
    return events


# Reading and writing


def lookup(cache: CacheStore, key: str, target: Target, kind: Kind, now: int) -> Hit | None:
    try:
        item = cache.get(key)
    except Exception as error:
        logger.warning("response cache read failed", extra={"error_type": type(error).__name__})
        return None
    # DynamoDB deletes expired items lazily, hours late at worst: the expiry is checked here too.
    if not item or int(item.get("expires_at", 0)) <= now:
        return None
    if (item.get("tenant_id"), item.get("alias"), item.get("kind")) != (target.tenant_id, target.alias, kind):
        return None
    try:
        result = decode(kind, item["answer"])
    except (KeyError, TypeError, ValueError):
        return None
    answered_by = Target(
        tenant_id=target.tenant_id,
        alias=str(item.get("answered_alias") or target.alias),
        provider=str(item["provider"]),
        model_id=str(item["model_id"]),
    )
    return Hit(result=result, answered_by=answered_by)


def store(
    cache: CacheStore, key: str, target: Target, kind: Kind, result: Result, answered_by: Target, now: int
) -> bool:
    """Write the entry; False when it was not written. Never raises: the answer is already there."""
    if not target.cache_ttl_seconds:
        return False
    try:
        answer = encode(result)
        if len(answer.encode()) > MAX_ANSWER_BYTES:
            return False
        cache.put(
            {
                "cache_key": key,
                "tenant_id": target.tenant_id,
                "alias": target.alias,
                "kind": kind,
                "answered_alias": answered_by.alias,
                "provider": answered_by.provider,
                "model_id": answered_by.model_id,
                "answer": answer,
                "created_at": now,
                "expires_at": now + target.cache_ttl_seconds,
            }
        )
    except Exception as error:
        logger.warning("response cache write failed", extra={"error_type": type(error).__name__})
        return False
    return True
