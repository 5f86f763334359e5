"""The opt-in response cache: keys, expiry, hits that call no provider, streams, failures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from byom.domain import CreateModel
from byom.errors import ProviderError
from byom.logic import invoke, response_cache
from byom.logic.access import Principal
from byom.openai_types import ChatRequest
from byom.providers import ChatResult, StreamDelta, Target, Usage
from pydantic import ValidationError

from tests.unit.fakes import FakeClock, FakeResponseCache
from tests.unit.invoke_fakes import (
    DEVELOPER,
    NOW,
    FlakyProvider,
    add_model,
    chat_request,
    embedding_request,
    make_store,
)

TARGET = Target(
    tenant_id="tnt_a", alias="fast", provider="bedrock", model_id="model-fast", cache_ttl_seconds=60
)


def _key(request: ChatRequest, target: Target = TARGET) -> str:
    return response_cache.cache_key(target, "chat", request)


@pytest.fixture
def provider() -> FlakyProvider:
    return FlakyProvider()


@pytest.fixture
def cache() -> FakeResponseCache:
    return FakeResponseCache()


@pytest.fixture
def store(provider: FlakyProvider, cache: FakeResponseCache) -> invoke.InvokeStore:
    store = make_store(provider, FakeClock(), cache)
    add_model(store, "fast", cache_ttl_seconds=60)
    add_model(store, "plain")
    return store


def _content(answer: invoke.Answer) -> Any:
    return answer.body["choices"][0]["message"]["content"]


def _stream_text(answer: invoke.StreamAnswer) -> str:
    chunks = [json.loads(line.removeprefix("data: ")) for line in list(answer.events)[:-1]]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


# Registration


@pytest.mark.parametrize("ttl", [0, 86_401, -5, 1.5, True, "60"])
def test_a_cache_ttl_outside_one_second_to_one_day_is_refused(ttl: Any) -> None:
    with pytest.raises(ValidationError):
        CreateModel.model_validate(
            {"alias": "a", "provider": "bedrock", "model_id": "m", "cache_ttl_seconds": ttl}
        )


def test_caching_is_off_unless_asked_for() -> None:
    assert (
        CreateModel.model_validate({"alias": "a", "provider": "bedrock", "model_id": "m"}).cache_ttl_seconds
        is None
    )


# The key


def test_the_same_request_has_the_same_key() -> None:
    assert _key(chat_request(temperature=0.5)) == _key(chat_request(temperature=0.5))


@pytest.mark.parametrize(
    "fields",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"user": "subject-42"},
        {"safety_identifier": "subject-42"},
        {"prompt_cache_key": "tenant-shared-prefix"},
        {"temperature": None},
    ],
)
def test_fields_that_do_not_change_the_answer_do_not_change_the_key(fields: dict[str, Any]) -> None:
    assert _key(chat_request(**fields)) == _key(chat_request())


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 0.1},
        {"messages": [{"role": "user", "content": "Hi!"}]},
        {"max_tokens": 5},
        {"seed": 3},  # a field the gateway does not know still changes the answer
    ],
)
def test_fields_that_change_the_answer_change_the_key(fields: dict[str, Any]) -> None:
    assert _key(chat_request(**fields)) != _key(chat_request())


def test_two_tenants_never_share_a_key() -> None:
    theirs = Target(tenant_id="tnt_b", alias="fast", provider="bedrock", model_id="model-fast")

    assert _key(chat_request(), theirs) != _key(chat_request())


def test_another_alias_or_model_behind_it_has_another_key() -> None:
    other_alias = Target(tenant_id="tnt_a", alias="slow", provider="bedrock", model_id="model-fast")
    re_registered = Target(tenant_id="tnt_a", alias="fast", provider="bedrock", model_id="model-new")

    assert (
        len({_key(chat_request()), _key(chat_request(), other_alias), _key(chat_request(), re_registered)})
        == 3
    )


def test_the_key_is_the_tenant_and_a_sha256_digest_that_reveals_nothing_else() -> None:
    key = _key(chat_request())

    tenant_id, _, digest = key.partition("#")
    assert tenant_id == "tnt_a" and len(digest) == 64 and int(digest, 16) >= 0


# Chat


def test_a_miss_calls_the_provider_and_says_miss(store: invoke.InvokeStore, provider: FlakyProvider) -> None:
    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert (len(provider.calls), answer.headers["x-byom-cache"]) == (1, "miss")


def test_a_hit_calls_no_provider_and_says_hit(store: invoke.InvokeStore, provider: FlakyProvider) -> None:
    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert (len(provider.calls), answer.headers["x-byom-cache"], _content(answer)) == (
        1,
        "hit",
        "Hello from model-fast",
    )


def test_a_hit_names_the_model_that_made_the_answer_and_no_attempts(store: invoke.InvokeStore) -> None:
    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert answer.headers == {
        "x-byom-provider": "bedrock",
        "x-byom-model": "model-fast",
        "x-byom-attempts": "0",
        "x-byom-cache": "hit",
    }


def test_a_hit_is_a_new_completion_with_the_stored_answer(store: invoke.InvokeStore) -> None:
    first = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request()).body

    again = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request()).body

    assert again["id"] != first["id"]
    assert {k: v for k, v in again.items() if k != "id"} == {k: v for k, v in first.items() if k != "id"}


def test_an_alias_without_caching_has_no_cache_header_and_no_entries(
    store: invoke.InvokeStore, cache: FakeResponseCache
) -> None:
    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request("plain"))

    assert "x-byom-cache" not in answer.headers
    assert (cache.items, cache.reads) == ({}, [])


def test_without_a_cache_table_nothing_is_cached(provider: FlakyProvider) -> None:
    store = make_store(provider, FakeClock(), cache=None)
    add_model(store, "fast", cache_ttl_seconds=60)

    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())
    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert (len(provider.calls), "x-byom-cache" in answer.headers) == (2, False)


def test_the_entry_expires_after_the_aliases_ttl(store: invoke.InvokeStore, cache: FakeResponseCache) -> None:
    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    (item,) = cache.items.values()
    assert (item["created_at"], item["expires_at"]) == (NOW, NOW + 60)


def test_an_expired_entry_is_a_miss_though_dynamodb_has_not_deleted_it_yet(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())
    store.now = lambda: NOW + 60

    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert (len(provider.calls), answer.headers["x-byom-cache"]) == (2, "miss")


def test_another_tenants_entry_is_never_served(
    store: invoke.InvokeStore, provider: FlakyProvider, cache: FakeResponseCache
) -> None:
    add_model(store, "fast", tenant_id="tnt_b", cache_ttl_seconds=60)
    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    answer = invoke.chat(
        store,
        invoke.Call(Principal(key_id="key_b", role="developer", tenant_id="tnt_b"), "req-1"),
        chat_request(),
    )

    assert (len(provider.calls), answer.headers["x-byom-cache"], len(cache.items)) == (2, "miss", 2)


def test_an_entry_that_does_not_belong_to_the_caller_is_ignored(cache: FakeResponseCache) -> None:
    key = _key(chat_request())
    cache.items[key] = {
        "cache_key": key,
        "tenant_id": "tnt_b",
        "alias": "fast",
        "kind": "chat",
        "provider": "bedrock",
        "model_id": "m",
        "answer": response_cache.encode(ChatResult({"role": "assistant", "content": "x"}, "stop", Usage())),
        "expires_at": NOW + 60,
    }

    assert response_cache.lookup(cache, key, TARGET, "chat", NOW) is None


def test_a_failed_call_is_not_cached(
    store: invoke.InvokeStore, provider: FlakyProvider, cache: FakeResponseCache
) -> None:
    provider.fail("model-fast", ProviderError("The provider answered 400: bad", status=400))

    with pytest.raises(ProviderError):
        invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert cache.items == {}


def test_a_failed_cache_write_does_not_fail_the_call(
    store: invoke.InvokeStore, cache: FakeResponseCache
) -> None:
    cache.fail_writes = True

    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert _content(answer) == "Hello from model-fast"


def test_a_failed_cache_read_is_a_miss(
    store: invoke.InvokeStore, provider: FlakyProvider, cache: FakeResponseCache
) -> None:
    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())
    cache.fail_reads = True

    answer = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert (len(provider.calls), answer.headers["x-byom-cache"]) == (2, "miss")


def test_an_unreadable_entry_is_a_miss(store: invoke.InvokeStore, cache: FakeResponseCache) -> None:
    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())
    for item in cache.items.values():
        item["answer"] = "{not json"

    assert (
        invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request()).headers["x-byom-cache"] == "miss"
    )


def test_an_answer_too_large_for_an_item_is_not_stored(cache: FakeResponseCache) -> None:
    huge = ChatResult({"role": "assistant", "content": "x" * 400_000}, "stop", Usage())

    assert not response_cache.store(cache, "k", TARGET, "chat", huge, TARGET, NOW)
    assert cache.items == {}


# Streams


def test_a_streamed_miss_is_stored_and_answers_a_later_plain_call(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    streamed = invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), chat_request(stream=True))
    list(streamed.events)  # stored once the stream has ended

    plain = invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    assert (streamed.headers["x-byom-cache"], plain.headers["x-byom-cache"]) == ("miss", "hit")
    assert (_content(plain), plain.body["usage"]["total_tokens"], len(provider.calls)) == (
        "Hello from model-fast",
        8,
        1,
    )


def test_a_streamed_miss_answered_by_a_fallback_is_stored_under_the_alias_asked_for(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    add_model(store, "cached", cache_ttl_seconds=60, fallbacks=["plain"])
    provider.fail("model-cached", *[ProviderError("unavailable", status=503, retryable=True)] * 3)

    streamed = invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), chat_request("cached", stream=True))
    list(streamed.events)
    plain = invoke.chat(store, invoke.Call(DEVELOPER, "req-2"), chat_request("cached"))

    # As for a plain call: the alias asked for is cached (60 s), the fallback that answered is not.
    assert (streamed.headers["x-byom-model"], plain.headers["x-byom-cache"]) == ("model-plain", "hit")


def test_a_streamed_hit_replays_the_answer_as_chunks_ending_with_done(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    answer = invoke.chat_stream(store, invoke.Call(DEVELOPER, "req-1"), chat_request(stream=True))
    lines = list(answer.events)

    assert (answer.headers["x-byom-cache"], len(provider.calls)) == ("hit", 1)
    assert _stream_text(invoke.StreamAnswer(answer.target, iter(lines))) == "Hello from model-fast"
    assert lines[-1] == "data: [DONE]\n\n"


def test_a_streamed_hit_sends_usage_when_asked_for(store: invoke.InvokeStore) -> None:
    invoke.chat(store, invoke.Call(DEVELOPER, "req-1"), chat_request())

    answer = invoke.chat_stream(
        store,
        invoke.Call(DEVELOPER, "req-1"),
        chat_request(stream=True, stream_options={"include_usage": True}),
    )

    last = json.loads(list(answer.events)[-2].removeprefix("data: "))
    assert last["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_a_stream_assembles_into_the_answer_it_amounts_to() -> None:
    events = [
        StreamDelta({"role": "assistant", "content": ""}),
        StreamDelta({"content": "Let me "}),
        StreamDelta({"content": "check."}),
        StreamDelta(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get", "arguments": ""},
                    }
                ]
            }
        ),
        StreamDelta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        StreamDelta({"tool_calls": [{"index": 0, "function": {"arguments": ' "Oslo"}'}}]}),
        StreamDelta({}, finish_reason="tool_calls"),
        Usage(prompt_tokens=9, completion_tokens=4),
    ]

    assert response_cache.assemble(events) == ChatResult(
        message={
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        finish_reason="tool_calls",
        usage=Usage(prompt_tokens=9, completion_tokens=4),
    )


def test_a_replayed_answer_assembles_back_into_itself() -> None:
    result = ChatResult(
        message={
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        finish_reason="tool_calls",
        usage=Usage(3, 2),
    )

    assert response_cache.assemble(response_cache.replay(result)) == result


# Embeddings


def test_embeddings_hit_in_whatever_encoding_the_caller_asks_for(
    store: invoke.InvokeStore, provider: FlakyProvider
) -> None:
    invoke.embed(store, invoke.Call(DEVELOPER, "req-1"), embedding_request())

    answer = invoke.embed(store, invoke.Call(DEVELOPER, "req-1"), embedding_request(encoding_format="base64"))

    assert (answer.headers["x-byom-cache"], len(provider.calls)) == ("hit", 1)
    assert isinstance(answer.body["data"][0]["embedding"], str)


def test_chat_and_embeddings_of_one_alias_never_answer_for_each_other(cache: FakeResponseCache) -> None:
    chat_key = response_cache.cache_key(TARGET, "chat", chat_request())
    response_cache.store(
        cache, chat_key, TARGET, "chat", ChatResult({"role": "assistant"}, "stop", Usage()), TARGET, NOW
    )

    assert response_cache.lookup(cache, chat_key, TARGET, "embeddings", NOW) is None


def test_a_stored_answer_keeps_the_providers_prompt_cache_counts() -> None:
    usage = Usage(prompt_tokens=1500, completion_tokens=4, cached_tokens=1200, cache_write_tokens=300)
    result = ChatResult({"role": "assistant", "content": "x"}, "stop", usage)

    assert response_cache.decode("chat", response_cache.encode(result)).usage == usage


def test_a_streams_prompt_cache_counts_survive_its_assembly() -> None:
    usage = Usage(prompt_tokens=50, completion_tokens=1, cached_tokens=40)

    assert response_cache.assemble([StreamDelta({"content": "x"}), usage]).usage == usage


def test_usage_has_the_chat_and_the_responses_shapes() -> None:
    usage = Usage(prompt_tokens=50, completion_tokens=5, cached_tokens=40, cache_write_tokens=10)

    assert (usage.openai(), usage.responses()) == (
        {
            "prompt_tokens": 50,
            "completion_tokens": 5,
            "total_tokens": 55,
            "prompt_tokens_details": {"cached_tokens": 40},
        },
        {
            "input_tokens": 50,
            "input_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 10},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 55,
        },
    )
