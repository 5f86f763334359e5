"""An invocation store with in-memory repositories, a fake clock and providers that fail on cue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from byom.domain import ModelAlias
from byom.errors import ByomError
from byom.logic import invoke
from byom.logic.access import Principal
from byom.logic.resilience import RetryPolicy, Timing
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

from tests.unit.fakes import FakeCalls, FakeClock, FakeResponseCache

DEVELOPER = Principal(key_id="key_1", role="developer", tenant_id="tnt_a")
NOW = 1_700_000_000


class FlakyProvider:
    """Answers after the failures queued for a model id; a queued failure is used up once raised.

    A stream fails after its first delta, as a connection dropped mid-answer would."""

    def __init__(self) -> None:
        self.failures: dict[str, list[ByomError]] = {}
        self.calls: list[tuple[str, str, float | None]] = []  # (kind, model id, timeout)

    def fail(self, model_id: str, *errors: ByomError) -> None:
        self.failures.setdefault(model_id, []).extend(errors)

    def _failure(self, model_id: str) -> ByomError | None:
        queued = self.failures.get(model_id) or []
        return queued.pop(0) if queued else None

    def chat(self, request: ChatRequest, target: Target, *, timeout: float | None = None) -> ChatResult:
        self.calls.append(("chat", target.model_id, timeout))
        failure = self._failure(target.model_id)
        if failure:
            raise failure
        return ChatResult(
            message={"role": "assistant", "content": f"Hello from {target.model_id}"},
            finish_reason="stop",
            usage=Usage(prompt_tokens=5, completion_tokens=3),
        )

    def stream(
        self, request: ChatRequest, target: Target, *, timeout: float | None = None
    ) -> Iterator[StreamEvent]:
        self.calls.append(("stream", target.model_id, timeout))
        return self._events(target, self._failure(target.model_id))

    @staticmethod
    def _events(target: Target, failure: ByomError | None) -> Iterator[StreamEvent]:
        yield StreamDelta({"role": "assistant", "content": ""})
        if failure:
            raise failure
        yield StreamDelta({"content": f"Hello from {target.model_id}"})
        yield StreamDelta({}, finish_reason="stop")
        yield Usage(prompt_tokens=5, completion_tokens=3)

    def embed(
        self, request: EmbeddingRequest, target: Target, *, timeout: float | None = None
    ) -> EmbeddingResult:
        self.calls.append(("embed", target.model_id, timeout))
        failure = self._failure(target.model_id)
        if failure:
            raise failure
        return EmbeddingResult(vectors=[[0.5, float(i)] for i in range(len(request.texts))], usage=Usage(4))


def add_model(store: invoke.InvokeStore, alias: str, **fields: Any) -> None:
    store.calls.models.create(
        ModelAlias.model_validate(
            {
                "tenant_id": "tnt_a",
                "alias": alias,
                "provider": "bedrock",
                "model_id": f"model-{alias}",
                "created_at": 1,
            }
            | fields
        )
    )


def make_store(
    provider: FlakyProvider, clock: FakeClock, cache: FakeResponseCache | None = None
) -> invoke.InvokeStore:
    return invoke.InvokeStore(
        calls=FakeCalls(),
        providers=ProviderRegistry({"bedrock": lambda: provider}),
        now=lambda: NOW,
        cache=cache,
        policy=RetryPolicy(),
        timing=Timing(monotonic=clock.monotonic, sleep=clock.sleep, uniform=clock.uniform),
    )


def chat_request(model: str = "fast", **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": "Hi"}]} | fields
    )


def embedding_request(model: str = "fast", **fields: Any) -> EmbeddingRequest:
    return EmbeddingRequest.model_validate({"model": model, "input": ["a", "b"]} | fields)
