"""The local stack on the real synthesized template with the real handlers (docs/contracts.md, SPEC §4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from local_stack.stack import LocalStack, StackSettings
from tests.integration.local_stack.conftest import Reply, http

ADMIN_KEY = "real-stack-admin-key"


@pytest.fixture(scope="module")
def stack(real_template: Path) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(port=0, admin_key=ADMIN_KEY, template=real_template)) as running:
        yield running


def call(stack: LocalStack, method: str, path: str, key: str | None, body: object = None) -> Reply:
    headers = {"content-type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    return http(method, stack.url + path, body=data, headers=headers)


def test_health_is_public(stack: LocalStack) -> None:
    reply = call(stack, "GET", "/health", None)
    assert (reply.status, reply.json()) == (200, {"status": "ok"})
    assert reply.headers["x-request-id"]


def test_a_call_without_a_key_is_the_401_gateway_response(stack: LocalStack) -> None:
    reply = call(stack, "GET", "/v1/models", None)
    assert reply.status == 401
    assert reply.json()["error"]["type"] == "authentication_error"
    assert reply.json()["error"]["code"] == "invalid_api_key"
    assert reply.headers["x-byom-error-source"] == "gateway"


def test_an_unknown_key_is_refused_by_the_authorizer(stack: LocalStack) -> None:
    reply = call(stack, "GET", "/v1/models", "byom-not-a-key")
    assert reply.status == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"


def test_an_unknown_route_is_404_in_the_openai_envelope(stack: LocalStack) -> None:
    reply = call(stack, "GET", "/v2/nothing", ADMIN_KEY)
    assert reply.status == 404
    assert reply.json()["error"]["type"] == "not_found_error"


def test_the_platform_admin_key_from_the_template_secret_creates_a_tenant(stack: LocalStack) -> None:
    reply = call(stack, "POST", "/admin/tenants", ADMIN_KEY, {"name": "acme"})
    assert reply.status == 201, reply.body
    assert reply.json()["name"] == "acme"


def test_a_tenant_key_works_at_once_and_its_revocation_too(stack: LocalStack) -> None:
    tenant = call(stack, "POST", "/admin/tenants", ADMIN_KEY, {"name": "revocation"}).json()
    created = call(
        stack, "POST", f"/admin/tenants/{tenant['id']}/keys", ADMIN_KEY, {"name": "k", "role": "developer"}
    )
    assert created.status == 201, created.body
    key = created.json()

    assert call(stack, "GET", "/v1/models", key["key"]).status == 200
    assert call(stack, "DELETE", f"/admin/tenants/{tenant['id']}/keys/{key['id']}", ADMIN_KEY).status in (
        200,
        204,
    )
    assert call(stack, "GET", "/v1/models", key["key"]).status == 401


@pytest.fixture(scope="module")
def tenant_client(stack: LocalStack) -> openai.OpenAI:
    """A tenant whose aliases point at the built-in stand-ins: one OpenAI-compatible, one Bedrock."""
    tenant = call(stack, "POST", "/admin/tenants", ADMIN_KEY, {"name": "stand-ins"}).json()
    base = f"/admin/tenants/{tenant['id']}"
    key = call(stack, "POST", f"{base}/keys", ADMIN_KEY, {"name": "k", "role": "developer"}).json()["key"]
    credential = {"provider": "openai_compatible", "api_key": "sk-local-0000", "base_url": stack.openai_url}
    assert call(stack, "PUT", f"{base}/credentials/local", ADMIN_KEY, credential).status == 200
    aliases = [
        {
            "alias": "chat",
            "provider": "openai_compatible",
            "model_id": "stand-in-chat",
            "pricing": {"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002},
            "credential": "local",
        },
        {
            "alias": "embed",
            "provider": "openai_compatible",
            "model_id": "stand-in-embed",
            "pricing": {"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002},
            "credential": "local",
        },
        {"alias": "claude", "provider": "bedrock", "model_id": "anthropic.claude-3-haiku-20240307-v1:0"},
    ]
    for alias in aliases:
        assert call(stack, "POST", f"{base}/models", ADMIN_KEY, alias).status == 201
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize(("alias", "model_id"), [("chat", "stand-in-chat"), ("claude", "anthropic.claude")])
def test_chat_reaches_the_stand_in_behind_the_alias(
    tenant_client: openai.OpenAI, alias: str, model_id: str
) -> None:
    answer = tenant_client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "hi there"}]
    )
    assert model_id in answer.choices[0].message.content
    assert answer.choices[0].message.content.endswith("You said: hi there")
    assert answer.usage.prompt_tokens == 2


@pytest.mark.parametrize("alias", ["chat", "claude"])
def test_streamed_chat_reaches_the_stand_in(tenant_client: openai.OpenAI, alias: str) -> None:
    stream = tenant_client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "stream it"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.endswith("You said: stream it")


def test_embeddings_reach_the_stand_in(tenant_client: openai.OpenAI) -> None:
    answer = tenant_client.embeddings.create(model="embed", input="hello")
    assert len(answer.data[0].embedding) == 16
