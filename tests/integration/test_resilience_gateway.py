"""Retries, fallbacks and the response cache through the gateway handler, against moto.

The OpenAI-compatible upstream is a loopback server that fails a set number of calls before it
answers; Bedrock is a real bedrock-runtime client under Stubber. Retries wait milliseconds here
(the `aws` fixture sets RETRY_BASE_SECONDS).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import EventStreamError
from botocore.stub import Stubber

from tests.bedrock_stubs import add_stream_response, converse_answer, stream_events
from tests.integration.conftest import TABLES, Api, tenant_context
from tests.integration.fake_openai import FakeOpenAI, Gateway, bedrock, gateway, loopback, serve

__all__ = ["bedrock", "gateway", "loopback"]  # shared fixtures

PROVIDER_KEY = "sk-integration-resilience-1c7e"
NOVA = "amazon.nova-micro-v1:0"
NOVA_LITE = "amazon.nova-lite-v1:0"


@pytest.fixture(autouse=True)
def _loopback(loopback: None) -> None:
    """Every upstream here is on loopback."""


@pytest.fixture
def upstream(loopback: None) -> Iterator[FakeOpenAI]:
    yield from serve(FakeOpenAI())


def _tenant(admin_api: Api, *models: dict[str, Any], base_url: str | None = None) -> dict[str, str]:
    status, tenant, _ = admin_api("POST", "/admin/tenants", {"name": "acme"})
    assert status == 201
    if base_url:
        credential = {"provider": "openai_compatible", "api_key": PROVIDER_KEY, "base_url": base_url}
        assert admin_api("PUT", f"/admin/tenants/{tenant['id']}/credentials/llm", credential)[0] == 200
    for model in models:
        status, body, _ = admin_api("POST", f"/admin/tenants/{tenant['id']}/models", model)
        assert status == 201, body
    return tenant_context(tenant["id"], "developer")


def _compatible(alias: str = "local", **fields: Any) -> dict[str, Any]:
    return {
        "alias": alias,
        "provider": "openai_compatible",
        "model_id": "llama3.2",
        "pricing": {"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002},
        "credential": "llm",
    } | fields


def _chat(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello"}]} | fields


def _text(body: str) -> str:
    events = [line.removeprefix("data: ") for line in body.split("\n\n") if line][:-1]
    return "".join(
        json.loads(e)["choices"][0]["delta"].get("content", "") for e in events if json.loads(e)["choices"]
    )


# Retries


def test_an_upstream_that_fails_twice_then_answers_is_retried_to_an_answer(
    admin_api: Api, gateway: Gateway, upstream: FakeOpenAI
) -> None:
    caller = _tenant(admin_api, _compatible(), base_url=upstream.url)
    upstream.fail(2, 503, "overloaded")

    status, body, headers = gateway("/v1/chat/completions", _chat("local"), caller)

    assert (status, json.loads(body)["choices"][0]["message"]["content"]) == (200, "Hi!")
    assert (len(upstream.requests), headers["x-byom-attempts"]) == (3, "3")


def test_bedrock_throttling_is_retried_to_an_answer(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _tenant(admin_api, {"alias": "fast", "provider": "bedrock", "model_id": NOVA})
    bedrock.add_client_error("converse", "ThrottlingException", "Too many requests", 429)
    bedrock.add_response("converse", converse_answer([{"text": "Hi!"}]))

    status, _, headers = gateway("/v1/chat/completions", _chat("fast"), caller)

    assert (status, headers["x-byom-attempts"]) == (200, "2")


def _broken() -> EventStreamError:
    return EventStreamError(
        {"Error": {"Code": "ModelStreamErrorException", "Message": "stream broke"}}, "ConverseStream"
    )


def test_a_bedrock_stream_that_breaks_before_its_first_event_is_retried(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _tenant(admin_api, {"alias": "fast", "provider": "bedrock", "model_id": NOVA})
    add_stream_response(bedrock, [], then=_broken())
    add_stream_response(bedrock, stream_events(["Hello", "!"]))

    status, body, headers = gateway("/v1/chat/completions", _chat("fast", stream=True), caller)

    assert (status, _text(body), headers["x-byom-attempts"]) == (200, "Hello!", "2")


def test_a_bedrock_stream_that_breaks_midway_ends_with_an_error_event_and_is_metered(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _tenant(admin_api, {"alias": "fast", "provider": "bedrock", "model_id": NOVA})
    add_stream_response(bedrock, stream_events(["Hel"])[:2], then=_broken())

    status, body, headers = gateway("/v1/chat/completions", _chat("fast", stream=True), caller)

    events = [json.loads(line.removeprefix("data: ")) for line in body.split("\n\n") if line]
    assert (status, headers["x-byom-attempts"]) == (200, "1")
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "Hel"
    assert events[-1]["error"]["type"] == "provider_error"
    assert "stream broke" in events[-1]["error"]["message"]
    status, usage, _ = admin_api("GET", f"/admin/tenants/{caller['tenant_id']}/usage")
    # Bedrock reported no usage before it broke: the call is metered at its reservation's bound.
    assert usage["total"]["requests"] == 1
    assert usage["total"]["input_tokens"] > 0 and usage["total"]["output_tokens"] > 0


# Fallbacks


def test_a_failing_bedrock_model_falls_back_to_the_next_alias(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _tenant(
        admin_api,
        {"alias": "backup", "provider": "bedrock", "model_id": NOVA_LITE},
        {"alias": "fast", "provider": "bedrock", "model_id": NOVA, "fallbacks": ["backup"]},
    )
    for _ in range(3):
        bedrock.add_client_error("converse", "ServiceUnavailableException", "unavailable", 503)
    bedrock.add_response(
        "converse",
        converse_answer([{"text": "from lite"}]),
        {"modelId": NOVA_LITE, "messages": [{"role": "user", "content": [{"text": "Hello"}]}]},
    )

    status, body, headers = gateway("/v1/chat/completions", _chat("fast"), caller)

    answer = json.loads(body)
    assert (status, answer["model"], answer["choices"][0]["message"]["content"]) == (200, "fast", "from lite")
    assert (headers["x-byom-provider"], headers["x-byom-model"], headers["x-byom-attempts"]) == (
        "bedrock",
        NOVA_LITE,
        "4",
    )


def test_a_bedrock_outage_falls_back_to_an_openai_compatible_alias(
    admin_api: Api, gateway: Gateway, bedrock: Stubber, upstream: FakeOpenAI
) -> None:
    caller = _tenant(
        admin_api,
        _compatible(),
        {"alias": "fast", "provider": "bedrock", "model_id": NOVA, "fallbacks": ["local"]},
        base_url=upstream.url,
    )
    for _ in range(3):
        bedrock.add_client_error("converse", "InternalServerException", "internal", 500)

    status, _, headers = gateway("/v1/chat/completions", _chat("fast"), caller)

    assert (status, headers["x-byom-provider"], headers["x-byom-model"]) == (
        200,
        "openai_compatible",
        "llama3.2",
    )


def test_a_provider_400_is_answered_without_a_fallback(
    admin_api: Api, gateway: Gateway, bedrock: Stubber, upstream: FakeOpenAI
) -> None:
    caller = _tenant(
        admin_api,
        {"alias": "backup", "provider": "bedrock", "model_id": NOVA},
        _compatible(fallbacks=["backup"]),
        base_url=upstream.url,
    )
    upstream.fail(1, 400, "max_tokens is too large")

    status, body, headers = gateway("/v1/chat/completions", _chat("local"), caller)

    assert (status, headers["x-byom-error-source"], headers["x-byom-attempts"]) == (400, "provider", "1")
    assert (
        json.loads(body)["error"]["message"]
        == "The provider at 127.0.0.1 answered 400: max_tokens is too large"
    )
    # and the Stubber, given no Bedrock answer, saw no call


def test_when_every_model_fails_the_last_providers_error_is_answered(
    admin_api: Api, gateway: Gateway, bedrock: Stubber, upstream: FakeOpenAI
) -> None:
    caller = _tenant(
        admin_api,
        _compatible(),
        {"alias": "fast", "provider": "bedrock", "model_id": NOVA, "fallbacks": ["local"]},
        base_url=upstream.url,
    )
    for _ in range(3):
        bedrock.add_client_error("converse", "ServiceUnavailableException", "unavailable", 503)
    upstream.fail(3, 502, "bad gateway upstream")

    status, body, headers = gateway("/v1/chat/completions", _chat("fast"), caller)

    error = json.loads(body)["error"]
    assert (status, error["type"], headers["x-byom-error-source"], headers["x-byom-attempts"]) == (
        502,
        "provider_error",
        "provider",
        "6",
    )
    assert error["message"] == "The provider at 127.0.0.1 answered 502: bad gateway upstream"


def test_throttling_everywhere_stays_a_429_rate_limit_error(
    admin_api: Api, gateway: Gateway, upstream: FakeOpenAI
) -> None:
    caller = _tenant(admin_api, _compatible(), base_url=upstream.url)
    upstream.fail(3, 429, "Rate limit reached")

    status, body, headers = gateway("/v1/chat/completions", _chat("local"), caller)

    assert (status, json.loads(body)["error"]["code"], headers["x-byom-error-source"]) == (
        429,
        "rate_limit_exceeded",
        "provider",
    )


# Response cache


def test_a_cached_alias_is_registered_with_its_ttl(admin_api: Api, upstream: FakeOpenAI) -> None:
    caller = _tenant(admin_api, _compatible(cache_ttl_seconds=300), base_url=upstream.url)

    _, listed, _ = admin_api("GET", f"/admin/tenants/{caller['tenant_id']}/models")

    assert [m["cache_ttl_seconds"] for m in listed["data"]] == [300]


def test_a_cache_ttl_of_zero_is_refused(admin_api: Api, upstream: FakeOpenAI) -> None:
    status, tenant, _ = admin_api("POST", "/admin/tenants", {"name": "acme"})
    admin_api(
        "PUT",
        f"/admin/tenants/{tenant['id']}/credentials/llm",
        {"provider": "openai_compatible", "api_key": PROVIDER_KEY, "base_url": upstream.url},
    )

    status, body, _ = admin_api(
        "POST", f"/admin/tenants/{tenant['id']}/models", _compatible(cache_ttl_seconds=0)
    )

    assert (status, body["error"]["param"]) == (400, "cache_ttl_seconds")


def test_a_cache_hit_reaches_no_provider(admin_api: Api, gateway: Gateway, upstream: FakeOpenAI) -> None:
    caller = _tenant(admin_api, _compatible(cache_ttl_seconds=300), base_url=upstream.url)

    first = gateway("/v1/chat/completions", _chat("local"), caller)
    second = gateway("/v1/chat/completions", _chat("local", user="subject-1"), caller)

    assert (first[0], first[2]["x-byom-cache"]) == (200, "miss")
    assert (
        second[0],
        second[2]["x-byom-cache"],
        json.loads(second[1])["choices"][0]["message"]["content"],
    ) == (
        200,
        "hit",
        "Hi!",
    )
    assert len(upstream.requests) == 1


def test_a_cached_answer_is_replayed_to_a_stream(
    admin_api: Api, gateway: Gateway, upstream: FakeOpenAI
) -> None:
    caller = _tenant(admin_api, _compatible(cache_ttl_seconds=300), base_url=upstream.url)
    gateway("/v1/chat/completions", _chat("local"), caller)

    status, body, headers = gateway("/v1/chat/completions", _chat("local", stream=True), caller)

    assert (status, headers["x-byom-cache"], _text(body), body.endswith("data: [DONE]\n\n")) == (
        200,
        "hit",
        "Hi!",
        True,
    )
    assert len(upstream.requests) == 1


def test_the_cache_entry_is_scoped_to_the_tenant_and_expires(
    admin_api: Api, gateway: Gateway, upstream: FakeOpenAI
) -> None:
    caller = _tenant(admin_api, _compatible(cache_ttl_seconds=300), base_url=upstream.url)

    gateway("/v1/chat/completions", _chat("local"), caller)

    (item,) = boto3.resource("dynamodb").Table(TABLES["CACHE_TABLE"][0]).scan()["Items"]
    assert (item["tenant_id"], item["alias"], int(item["expires_at"]) - int(item["created_at"])) == (
        caller["tenant_id"],
        "local",
        300,
    )
    assert "Hello" not in json.dumps(item, default=str)  # the prompt is not stored, only its hash


def test_another_tenant_with_the_same_alias_and_request_gets_no_hit(
    admin_api: Api, gateway: Gateway, upstream: FakeOpenAI
) -> None:
    first = _tenant(admin_api, _compatible(cache_ttl_seconds=300), base_url=upstream.url)
    second = _tenant(admin_api, _compatible(cache_ttl_seconds=300), base_url=upstream.url)

    gateway("/v1/chat/completions", _chat("local"), first)
    _, _, headers = gateway("/v1/chat/completions", _chat("local"), second)

    assert (headers["x-byom-cache"], len(upstream.requests)) == ("miss", 2)


def test_an_unavailable_cache_never_fails_the_call(
    admin_api: Api, gateway: Gateway, upstream: FakeOpenAI
) -> None:
    caller = _tenant(admin_api, _compatible(cache_ttl_seconds=300), base_url=upstream.url)
    boto3.client("dynamodb").delete_table(TableName=TABLES["CACHE_TABLE"][0])

    status, _, headers = gateway("/v1/chat/completions", _chat("local"), caller)

    assert (status, headers["x-byom-cache"]) == (200, "miss")


def test_an_alias_without_caching_has_no_cache_header(
    admin_api: Api, gateway: Gateway, upstream: FakeOpenAI
) -> None:
    caller = _tenant(admin_api, _compatible(), base_url=upstream.url)

    _, _, headers = gateway("/v1/chat/completions", _chat("local"), caller)

    assert "x-byom-cache" not in headers
