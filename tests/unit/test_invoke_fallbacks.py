"""Retries and fallbacks as invocations see them: headers, streams, embeddings, timeouts."""

from __future__ import annotations

import dataclasses
import json

import pytest
from byom.errors import ProviderError
from byom.logic import invoke
from byom.logic.resilience import ATTEMPTS_HEADER
from byom.providers import StreamDelta

from tests.unit.fakes import FakeClock
from tests.unit.invoke_fakes import (
    DEVELOPER,
    FlakyProvider,
    add_model,
    chat_request,
    embedding_request,
    make_store,
)


def unavailable() -> ProviderError:
    return ProviderError("Bedrock answered 503 ServiceUnavailableException: busy", status=503, retryable=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider() -> FlakyProvider:
    return FlakyProvider()


@pytest.fixture
def store(provider: FlakyProvider, clock: FakeClock) -> invoke.InvokeStore:
    store = make_store(provider, clock)
    add_model(store, "backup", provider="bedrock", model_id="model-backup")
    add_model(store, "fast", fallbacks=["backup"])
    return store


def test_a_call_that_succeeds_after_a_retry_answers_normally(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    provider.fail("model-fast", unavailable())

    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert answer.body["choices"][0]["message"]["content"] == "Hello from model-fast"
    assert answer.headers[ATTEMPTS_HEADER] == "2"


def test_the_headers_name_the_fallback_that_answered(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    provider.fail("model-fast", unavailable(), unavailable(), unavailable())

    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert answer.headers == {
        "x-byom-provider": "bedrock",
        "x-byom-model": "model-backup",
        ATTEMPTS_HEADER: "4",
    }


def test_the_answer_keeps_the_alias_the_caller_asked_for(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    provider.fail("model-fast", unavailable(), unavailable(), unavailable())

    assert invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request()).body["model"] == "fast"


def test_each_provider_call_gets_a_timeout_within_the_deadline(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    provider.fail("model-fast", unavailable())

    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert [timeout for _, _, timeout in provider.calls] == [25.0, 25.0]  # the clock barely moved


def test_a_stream_that_breaks_off_is_retried_whole(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    provider.fail("model-fast", unavailable())

    answer = invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), chat_request(stream=True))

    deltas = [
        json.loads(line.removeprefix("data: "))["choices"][0]["delta"] for line in list(answer.events)[:-1]
    ]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hello from model-fast"}, {}]
    assert answer.headers[ATTEMPTS_HEADER] == "2"


def test_a_stream_falls_back_like_any_call(store: invoke.InvokeStore, provider: FlakyProvider) -> None:
    provider.fail("model-fast", unavailable(), unavailable(), unavailable())

    answer = invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), chat_request(stream=True))

    assert answer.headers["x-byom-model"] == "model-backup"
    assert "Hello from model-backup" in "".join(answer.events)


def test_a_stream_that_has_not_begun_its_answer_by_the_deadline_is_a_provider_timeout(
    store: invoke.InvokeStore, provider: FlakyProvider, clock: FakeClock
) -> None:
    def silent_events(request, target, *, timeout=None):  # type: ignore[no-untyped-def]
        for _ in range(10):
            clock.advance(10)
            yield StreamDelta({"role": "assistant", "content": ""})

    provider.stream = silent_events  # type: ignore[method-assign]
    start = clock.now

    with pytest.raises(ProviderError) as failed:
        invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), chat_request(stream=True))

    assert (failed.value.status, failed.value.source) == (504, "provider")
    assert clock.now - start == 30  # the third event came past the 27 s deadline: no more reading


def test_a_stream_still_running_past_its_limit_ends_with_an_error_event(
    store: invoke.InvokeStore, provider: FlakyProvider, clock: FakeClock
) -> None:
    def slow_events(request, target, *, timeout=None):  # type: ignore[no-untyped-def]
        for event in FlakyProvider._events(target, None):
            clock.advance(10)
            yield event

    provider.stream = slow_events  # type: ignore[method-assign]
    store.policy = dataclasses.replace(store.policy, stream_seconds=25)

    answer = invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), chat_request(stream=True))
    events = [json.loads(line.removeprefix("data: ")) for line in answer.events]

    assert "Hello from model-fast" in json.dumps(events[:-1])
    assert events[-1]["error"]["type"] == "provider_error"
    assert "still answering after 25 s" in events[-1]["error"]["message"]


def test_embeddings_are_retried_and_fall_back_too(store: invoke.InvokeStore, provider: FlakyProvider) -> None:
    provider.fail("model-fast", unavailable(), unavailable(), unavailable())

    answer = invoke.embed(store, invoke.Call(DEVELOPER, "req-1"), embedding_request())

    assert (answer.headers["x-byom-model"], answer.body["model"]) == ("model-backup", "fast")


def test_when_every_model_fails_the_error_counts_the_attempts(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    provider.fail("model-fast", *[unavailable()] * 3)
    provider.fail("model-backup", *[unavailable()] * 3)

    with pytest.raises(ProviderError) as failed:
        invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert (failed.value.status, failed.value.headers) == (503, {ATTEMPTS_HEADER: "6"})
