"""/v1/chat/completions and /v1/embeddings through the gateway handler, against moto.

Bedrock aliases reach a real bedrock-runtime client under Stubber; OpenAI-compatible aliases reach
a small OpenAI-shaped HTTP server on loopback through the real SDK, with the key read from
(moto's) Secrets Manager.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from tests.bedrock_stubs import (
    add_stream_response,
    converse_answer,
    invoke_answer,
    stream_events,
)
from tests.integration.conftest import Api, tenant_context
from tests.integration.fake_openai import FakeOpenAI, Gateway, bedrock, gateway, loopback, serve

__all__ = ["bedrock", "gateway", "loopback"]  # shared fixtures

PROVIDER_KEY = "sk-integration-CANARY-3f9d1c"
ROTATED_KEY = "sk-integration-ROTATED-88a0b2"
NOVA = "amazon.nova-micro-v1:0"
ATTEMPTS = 3  # RETRY_MAX_ATTEMPTS' default: a retryable error is tried this often per model


@pytest.fixture
def openai_server(loopback: None) -> Iterator[FakeOpenAI]:
    yield from serve(FakeOpenAI(accepted_key=PROVIDER_KEY))


def _tenant(admin_api: Api, *models: dict[str, Any], credential: dict[str, Any] | None = None) -> str:
    status, tenant, _ = admin_api("POST", "/admin/tenants", {"name": "acme"})
    assert status == 201
    if credential is not None:
        status, _, _ = admin_api("PUT", f"/admin/tenants/{tenant['id']}/credentials/llm", credential)
        assert status == 200
    for model in models:
        status, _, _ = admin_api("POST", f"/admin/tenants/{tenant['id']}/models", model)
        assert status == 201
    return tenant["id"]


def _bedrock_tenant(admin_api: Api) -> dict[str, str]:
    tenant_id = _tenant(
        admin_api,
        {"alias": "fast", "provider": "bedrock", "model_id": NOVA},
        {"alias": "embed", "provider": "bedrock", "model_id": "amazon.titan-embed-text-v2:0"},
    )
    return tenant_context(tenant_id, "developer")


def _compatible_tenant(admin_api: Api, server: FakeOpenAI) -> dict[str, str]:
    credential = {"provider": "openai_compatible", "api_key": PROVIDER_KEY, "base_url": server.url}
    models = [
        {
            "alias": alias,
            "provider": "openai_compatible",
            "model_id": model_id,
            "credential": "llm",
            "pricing": {"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002},
        }
        for alias, model_id in (("local", "llama3.2"), ("leaky", "echoes-the-key"))
    ]
    return tenant_context(_tenant(admin_api, *models, credential=credential), "developer")


def _chat(model: str = "fast", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello"}]} | fields


def _events(body: str) -> list[str]:
    return [line.removeprefix("data: ") for line in body.split("\n\n") if line]


# Bedrock


def test_a_bedrock_alias_answers_a_chat_completion(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    bedrock.add_response("converse", converse_answer([{"text": "Hi!"}], input_tokens=6, output_tokens=2))

    status, body, _ = gateway("/v1/chat/completions", _chat(), caller)

    answer = json.loads(body)
    assert (status, answer["object"], answer["model"]) == (200, "chat.completion", "fast")
    assert answer["choices"][0]["message"]["content"] == "Hi!"
    assert answer["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": 2,
        "total_tokens": 8,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_a_bedrock_call_goes_to_the_aliases_model_with_converse_parameters(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    expected = {
        "modelId": NOVA,
        "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 20},
    }
    bedrock.add_response("converse", converse_answer(), expected)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]

    status, _, _ = gateway("/v1/chat/completions", _chat(messages=messages, max_tokens=20), caller)

    assert status == 200  # and the stub asserted the parameters


def test_a_prompt_caching_alias_sends_cache_points_and_is_charged_at_the_cache_rates(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    price = {
        "input_per_1k_usd": 1.0,
        "output_per_1k_usd": 2.0,
        "cache_read_per_1k_usd": 0.1,
        "cache_write_per_1k_usd": 1.25,
    }
    model = {
        "alias": "cached",
        "provider": "bedrock",
        "model_id": NOVA,
        "prompt_caching": True,
        "pricing": price,
    }
    caller = tenant_context(_tenant(admin_api, model), "developer")
    point = {"cachePoint": {"type": "default"}}
    expected = {
        "modelId": NOVA,
        "messages": [{"role": "user", "content": [{"text": "Hello"}, point]}],
        "system": [{"text": "Be brief."}, point],
    }
    answer = converse_answer(input_tokens=3, output_tokens=10)
    answer["usage"] |= {"cacheReadInputTokens": 600, "cacheWriteInputTokens": 100}
    bedrock.add_response("converse", answer, expected)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]

    status, body, headers = gateway("/v1/chat/completions", _chat("cached", messages=messages), caller)

    usage = json.loads(body)["usage"]
    assert (status, usage["prompt_tokens"], usage["prompt_tokens_details"]) == (
        200,
        703,
        {"cached_tokens": 600},
    )
    # 3 plain x 1,000 + 600 read x 100 + 100 written x 1,250 + 10 output x 2,000 micro-dollars.
    assert headers["x-byom-cost-usd"] == "0.208000"


def test_an_invocation_names_its_provider_and_model_in_headers(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    bedrock.add_response("converse", converse_answer())

    _, _, headers = gateway("/v1/chat/completions", _chat(), caller)

    assert (headers["x-byom-provider"], headers["x-byom-model"]) == ("bedrock", NOVA)


def test_a_bedrock_stream_is_server_sent_events_ending_with_done(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    add_stream_response(bedrock, stream_events(["Hi", "!"]))

    status, body, headers = gateway("/v1/chat/completions", _chat(stream=True), caller)

    events = _events(body)
    assert (status, headers["content-type"].split(";")[0]) == (200, "text/event-stream")
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "Hi!"
    assert events[-1] == "[DONE]"


def test_a_streamed_answer_ends_with_usage_when_asked_for(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    add_stream_response(bedrock, stream_events(["Hi"], input_tokens=6, output_tokens=1))
    request = _chat(stream=True, stream_options={"include_usage": True})

    _, body, _ = gateway("/v1/chat/completions", request, caller)

    assert json.loads(_events(body)[-2])["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": 1,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_bedrock_throttling_is_a_429_from_the_provider(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    for _ in range(ATTEMPTS):
        bedrock.add_client_error("converse", "ThrottlingException", "Too many requests, please wait.", 429)

    status, body, headers = gateway("/v1/chat/completions", _chat(), caller)

    assert (status, json.loads(body)["error"]["type"], headers["x-byom-error-source"]) == (
        429,
        "rate_limit_exceeded",
        "provider",
    )


def test_a_provider_error_quotes_the_providers_status_and_message(
    admin_api: Api, gateway: Gateway, bedrock: Stubber
) -> None:
    caller = _bedrock_tenant(admin_api)
    for _ in range(ATTEMPTS):
        bedrock.add_client_error("converse", "ServiceUnavailableException", "Bedrock is unavailable", 503)

    status, body, _ = gateway("/v1/chat/completions", _chat(), caller)

    assert (status, json.loads(body)["error"]["message"]) == (
        503,
        "Bedrock answered 503 ServiceUnavailableException: Bedrock is unavailable",
    )


def test_a_titan_alias_answers_embeddings(admin_api: Api, gateway: Gateway, bedrock: Stubber) -> None:
    caller = _bedrock_tenant(admin_api)
    bedrock.add_response("invoke_model", invoke_answer({"embedding": [0.1, 0.2], "inputTextTokenCount": 3}))

    status, body, _ = gateway("/v1/embeddings", {"model": "embed", "input": "Hello"}, caller)

    answer = json.loads(body)
    assert (status, answer["data"][0]["embedding"], answer["usage"]["prompt_tokens"]) == (200, [0.1, 0.2], 3)


# OpenAI-compatible


def test_an_openai_compatible_alias_answers_through_the_sdk(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)

    status, body, headers = gateway("/v1/chat/completions", _chat("local"), caller)

    assert (status, json.loads(body)["choices"][0]["message"]["content"]) == (200, "Hi!")
    assert (headers["x-byom-provider"], headers["x-byom-model"]) == ("openai_compatible", "llama3.2")


def test_the_provider_receives_the_tenants_key_and_the_model_id(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)

    gateway("/v1/chat/completions", _chat("local"), caller)

    sent = openai_server.requests[-1]
    assert (sent["authorization"], sent["body"]["model"]) == (f"Bearer {PROVIDER_KEY}", "llama3.2")


def test_an_openai_compatible_stream_is_relayed(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)

    status, body, _ = gateway("/v1/chat/completions", _chat("local", stream=True), caller)

    events = _events(body)
    assert (status, events[-1]) == (200, "[DONE]")
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "Hi!"


def test_an_openai_compatible_alias_answers_embeddings(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)

    status, body, _ = gateway("/v1/embeddings", {"model": "local", "input": ["a", "b"]}, caller)

    assert (status, [d["embedding"] for d in json.loads(body)["data"]]) == (200, [[0.5, 0.0], [0.5, 1.0]])


def test_a_rotated_key_is_picked_up_after_the_provider_refuses_the_cached_one(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)
    assert gateway("/v1/chat/completions", _chat("local"), caller)[0] == 200  # the key is now cached
    rotated = {"provider": "openai_compatible", "api_key": ROTATED_KEY, "base_url": openai_server.url}
    admin_api("PUT", f"/admin/tenants/{caller['tenant_id']}/credentials/llm", rotated)
    openai_server.accepted_key = ROTATED_KEY

    status, _, _ = gateway("/v1/chat/completions", _chat("local"), caller)

    assert status == 200


def test_the_provider_key_never_reaches_the_caller_or_the_logs(
    admin_api: Api, gateway: Gateway, openai_server: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    caller = _compatible_tenant(admin_api, openai_server)

    status, body, headers = gateway("/v1/chat/completions", _chat("leaky"), caller)

    assert status == 400  # the provider's refusal, which quoted the key
    assert PROVIDER_KEY not in body + json.dumps(headers)
    assert PROVIDER_KEY not in capsys.readouterr().out


# Refusals by the gateway


def test_an_unknown_alias_is_model_not_found(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api)

    status, body, _ = gateway("/v1/chat/completions", _chat("nope"), caller)

    assert (status, json.loads(body)["error"]["code"], json.loads(body)["error"]["param"]) == (
        404,
        "model_not_found",
        "model",
    )


def test_a_viewer_may_not_invoke(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api) | {"role": "viewer"}

    status, body, _ = gateway("/v1/chat/completions", _chat(), caller)

    assert (status, json.loads(body)["error"]["type"]) == (403, "permission_error")


def test_empty_messages_are_a_400_naming_the_field(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api)

    status, body, headers = gateway("/v1/chat/completions", _chat(messages=[]), caller)

    error = json.loads(body)["error"]
    assert (status, error["type"], error["param"], headers["x-byom-error-source"]) == (
        400,
        "invalid_request_error",
        "messages",
        "gateway",
    )


def test_more_than_one_choice_is_a_400(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api)

    status, body, _ = gateway("/v1/chat/completions", _chat(n=3), caller)

    assert (status, json.loads(body)["error"]["param"]) == (400, "n")


def test_a_body_that_is_not_json_is_a_400(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api)

    status, body, _ = gateway("/v1/chat/completions", "{not json", caller)

    assert (status, json.loads(body)["error"]["type"]) == (400, "invalid_request_error")


def test_a_body_over_6_mb_is_a_413(admin_api: Api, gateway: Gateway) -> None:
    caller = _bedrock_tenant(admin_api)

    status, body, _ = gateway("/v1/chat/completions", _chat(padding="x" * (6 * 1024 * 1024)), caller)

    assert (status, json.loads(body)["error"]["code"]) == (413, "request_too_large")
