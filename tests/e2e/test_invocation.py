"""Application developers calling models through the local stack with the official openai SDK, unchanged."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e

CHAT_ALIASES = ["oa-chat", "br-chat"]
EMBED_ALIASES = ["oa-embed", "br-embed"]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
STAND_IN_PRICE = {"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002}


@pytest.fixture(scope="module")
def tenant(local_stack: LocalStack, admin: httpx2.Client) -> dict:
    tenant = admin.post("/admin/tenants", json={"name": "app-team"}).json()
    base = f"/admin/tenants/{tenant['id']}"
    credential = {
        "provider": "openai_compatible",
        "base_url": local_stack.openai_stand_in_url,
        "api_key": "sk-local-1234",
    }
    assert admin.put(f"{base}/credentials/local", json=credential).status_code == 200
    local = {"provider": "openai_compatible", "credential": "local"}
    aliases = [
        {"alias": "oa-chat", "model_id": "stand-in-chat", **local},
        {"alias": "br-chat", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
        {"alias": "oa-embed", "model_id": "stand-in-embed", **local},
        {"alias": "br-embed", "provider": "bedrock", "model_id": "amazon.titan-embed-text-v2:0"},
        {"alias": "oa-down", "model_id": "stand-in-fail-503", **local},
    ]
    for alias in aliases:
        created = admin.post(f"{base}/models", json={"pricing": STAND_IN_PRICE, **alias})
        assert created.status_code == 201, created.text
    keys = {
        role: admin.post(f"{base}/keys", json={"name": role, "role": role}).json()["key"]
        for role in ("developer", "viewer")
    }
    return tenant | {"keys": keys}


@pytest.fixture(scope="module")
def sdk(local_stack: LocalStack, tenant: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=tenant["keys"]["developer"], max_retries=0)


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_chat_answers_in_openai_shape_with_usage(sdk: openai.OpenAI, alias: str) -> None:
    completion = sdk.chat.completions.create(
        model=alias,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello gateway"}],
        max_tokens=100,
    )

    assert completion.model == alias
    assert completion.choices[0].message.role == "assistant"
    assert "hello gateway" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_the_response_says_which_provider_answered(sdk: openai.OpenAI, alias: str) -> None:
    messages = [{"role": "user", "content": "hi"}]
    raw = sdk.chat.completions.with_raw_response.create(model=alias, messages=messages)  # type: ignore[arg-type]

    assert raw.headers["x-byom-provider"] == {"oa-chat": "openai_compatible", "br-chat": "bedrock"}[alias]
    assert raw.headers["x-byom-model"]
    assert raw.headers["x-request-id"]


def test_models_retrieve_answers_the_alias_and_a_404_for_any_other(sdk: openai.OpenAI) -> None:
    model = sdk.models.retrieve("oa-chat")

    assert (model.id, model.object, model.owned_by) == ("oa-chat", "model", "openai_compatible")
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("not-an-alias")


def test_chat_accepts_safety_identifier_and_prompt_cache_key(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="oa-chat",
        messages=[{"role": "user", "content": "hello"}],
        safety_identifier="subject-7",
        prompt_cache_key="greeting-v1",
    )

    assert "hello" in (completion.choices[0].message.content or "")


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_streaming_works_with_the_sdk_iterator(sdk: openai.OpenAI, alias: str) -> None:
    stream = sdk.chat.completions.create(
        model=alias,
        messages=[{"role": "user", "content": "stream these words please"}],
        stream=True,
        stream_options={"include_usage": True},
    )

    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert "stream these words please" in text
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_a_tool_call_round_trip(sdk: openai.OpenAI, alias: str) -> None:
    messages: list = [{"role": "user", "content": "Use get_weather for Paris"}]

    first = sdk.chat.completions.create(model=alias, messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})},
    ]
    second = sdk.chat.completions.create(model=alias, messages=messages, tools=[WEATHER_TOOL])

    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    assert "temp_c" in (second.choices[0].message.content or "")


@pytest.mark.parametrize("alias", EMBED_ALIASES)
def test_embeddings(sdk: openai.OpenAI, alias: str) -> None:
    result = sdk.embeddings.create(model=alias, input=["first text", "second text"])

    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) > 0
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens > 0


def test_an_unknown_alias_raises_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.chat.completions.create(model="no-such-alias", messages=[{"role": "user", "content": "hi"}])

    assert raised.value.code == "model_not_found"


def test_empty_messages_raise_bad_request(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="oa-chat", messages=[])

    assert raised.value.param == "messages"


def test_a_viewer_key_cannot_invoke(local_stack: LocalStack, tenant: dict) -> None:
    viewer = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=tenant["keys"]["viewer"], max_retries=0)

    with pytest.raises(openai.PermissionDeniedError):
        viewer.chat.completions.create(model="oa-chat", messages=[{"role": "user", "content": "hi"}])


def test_a_failing_provider_is_attributed_to_the_provider(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.chat.completions.create(model="oa-down", messages=[{"role": "user", "content": "hi"}])

    assert raised.value.status_code == 503
    assert raised.value.response.headers["x-byom-error-source"] == "provider"
    assert "503" in raised.value.message


@pytest.fixture(scope="module")
def resilient(local_stack: LocalStack, admin: httpx2.Client, tenant: dict) -> dict:
    """Aliases on fault-injecting stand-ins (429 twice then fine; always 5xx), with fallbacks and a cache."""
    base = f"/admin/tenants/{tenant['id']}/models"
    local = {"provider": "openai_compatible", "credential": "local", "pricing": STAND_IN_PRICE}
    for alias in (
        {"alias": "oa-flaky", "model_id": "stand-in-chat-flaky-429-2", **local},
        {"alias": "down-then-bedrock", "model_id": "stand-in-fail-503", "fallbacks": ["br-chat"], **local},
        {"alias": "all-down", "model_id": "stand-in-fail-502", "fallbacks": ["oa-down"], **local},
        {"alias": "cached", "model_id": "stand-in-chat", "cache_ttl_seconds": 600, **local},
    ):
        created = admin.post(base, json=alias)
        assert created.status_code == 201, created.text
    return tenant


def test_throttling_is_retried_until_the_provider_answers(sdk: openai.OpenAI, resilient: dict) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="oa-flaky", messages=[{"role": "user", "content": "retry me"}]
    )

    assert raw.headers["x-byom-attempts"] == "3"
    assert "retry me" in (raw.parse().choices[0].message.content or "")


def test_a_failing_alias_falls_back_to_another_provider(
    sdk: openai.OpenAI, admin: httpx2.Client, resilient: dict
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="down-then-bedrock", messages=[{"role": "user", "content": "fall back"}]
    )

    usage = admin.get(f"/admin/tenants/{resilient['id']}/usage", params={"group_by": "model"}).json()
    failed = next(row for row in usage["items"] if row["model"] == "down-then-bedrock")
    assert raw.headers["x-byom-provider"] == "bedrock"
    assert "fall back" in (raw.parse().choices[0].message.content or "")
    # The alias that failed is in the report as an error its fallback covered, at no cost.
    assert (failed["requests"], failed["errors"], failed["fallbacks"], failed["cost_usd"]) == (0, 1, 1, 0)


def test_when_every_fallback_fails_the_last_provider_error_is_reported(
    sdk: openai.OpenAI, resilient: dict
) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.chat.completions.create(model="all-down", messages=[{"role": "user", "content": "hi"}])

    assert raised.value.status_code == 503
    assert raised.value.response.headers["x-byom-error-source"] == "provider"
    assert int(raised.value.response.headers["x-byom-attempts"]) > 2


def test_a_cached_alias_answers_the_same_request_from_the_cache(sdk: openai.OpenAI, resilient: dict) -> None:
    messages = [{"role": "user", "content": "cache this answer"}]

    first = sdk.chat.completions.with_raw_response.create(model="cached", messages=messages)  # type: ignore[arg-type]
    second = sdk.chat.completions.with_raw_response.create(model="cached", messages=messages)  # type: ignore[arg-type]

    assert (first.headers["x-byom-cache"], second.headers["x-byom-cache"]) == ("miss", "hit")
    assert second.headers["x-byom-attempts"] == "0"
    assert first.parse().choices[0].message.content == second.parse().choices[0].message.content
