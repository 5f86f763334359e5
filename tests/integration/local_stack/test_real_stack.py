"""The local stack on the real synthesized template with the real handlers (docs/contracts.md, SPEC §4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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
