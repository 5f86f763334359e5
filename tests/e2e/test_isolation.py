"""Tenant isolation: every role of tenant A against every route of tenant B answers 404."""

from __future__ import annotations

import httpx2
import pytest

from tests.e2e.conftest import LocalStack, client_for

pytestmark = pytest.mark.e2e

ROLES = ("admin", "developer", "viewer")


@pytest.fixture(scope="module")
def world(local_stack: LocalStack, admin: httpx2.Client) -> dict:
    """Tenant B with one of everything; tenant A with a key per role."""
    a = admin.post("/admin/tenants", json={"name": "tenant-a"}).json()
    b = admin.post("/admin/tenants", json={"name": "tenant-b"}).json()
    b_key = admin.post(f"/admin/tenants/{b['id']}/keys", json={"name": "b-app", "role": "admin"}).json()
    admin.put(
        f"/admin/tenants/{b['id']}/credentials/b-cred",
        json={"provider": "openai", "api_key": "sk-tenant-b-0000"},
    )
    admin.post(
        f"/admin/tenants/{b['id']}/models",
        json={"alias": "b-model", "provider": "openai", "model_id": "gpt-4o-mini", "credential": "b-cred"},
    )
    a_keys = {
        role: admin.post(f"/admin/tenants/{a['id']}/keys", json={"name": role, "role": role}).json()["key"]
        for role in ROLES
    }
    return {"a": a, "b": b, "b_key_id": b_key["id"], "a_keys": a_keys}


def _tenant_b_routes(world: dict) -> list[tuple[str, str, dict | None]]:
    base = f"/admin/tenants/{world['b']['id']}"
    return [
        ("GET", base, None),
        ("DELETE", base, None),
        ("POST", f"{base}/keys", {"name": "intruder", "role": "admin"}),
        ("GET", f"{base}/keys", None),
        ("DELETE", f"{base}/keys/{world['b_key_id']}", None),
        ("PUT", f"{base}/credentials/stolen", {"provider": "openai", "api_key": "sk-intruder"}),
        ("PUT", f"{base}/credentials/b-cred", {"provider": "openai", "api_key": "sk-overwrite"}),
        ("GET", f"{base}/credentials", None),
        ("DELETE", f"{base}/credentials/b-cred", None),
        (
            "POST",
            f"{base}/models",
            {"alias": "intruder", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
        ),
        ("GET", f"{base}/models", None),
        ("DELETE", f"{base}/models/b-model", None),
    ]


def _snapshot(admin: httpx2.Client, tenant_id: str) -> list:
    base = f"/admin/tenants/{tenant_id}"
    return [
        admin.get(path).json() for path in (base, f"{base}/keys", f"{base}/credentials", f"{base}/models")
    ]


@pytest.mark.parametrize("role", ROLES)
def test_every_tenant_b_route_is_404_for_each_role_of_tenant_a(
    local_stack: LocalStack, admin: httpx2.Client, world: dict, role: str
) -> None:
    before = _snapshot(admin, world["b"]["id"])
    caller = client_for(local_stack, world["a_keys"][role])

    answers = {f"{m} {p}": caller.request(m, p, json=body) for m, p, body in _tenant_b_routes(world)}

    statuses = {route: (r.status_code, r.json()["error"]["type"]) for route, r in answers.items()}
    assert statuses == {route: (404, "not_found_error") for route in answers}
    assert _snapshot(admin, world["b"]["id"]) == before


@pytest.mark.parametrize("role", ROLES)
def test_tenant_keys_cannot_use_platform_routes(local_stack: LocalStack, world: dict, role: str) -> None:
    caller = client_for(local_stack, world["a_keys"][role])

    assert caller.get("/admin/tenants").status_code == 403
    assert caller.post("/admin/tenants", json={"name": "rogue"}).status_code == 403


@pytest.mark.parametrize("role", ROLES)
def test_v1_models_never_lists_another_tenants_aliases(
    local_stack: LocalStack, world: dict, role: str
) -> None:
    response = client_for(local_stack, world["a_keys"][role]).get("/v1/models")

    assert response.status_code == 200
    assert "b-model" not in response.text


@pytest.mark.parametrize(("role", "expected"), [("admin", 200), ("developer", 403), ("viewer", 403)])
def test_within_its_tenant_only_the_admin_role_manages_keys(
    local_stack: LocalStack, world: dict, role: str, expected: int
) -> None:
    response = client_for(local_stack, world["a_keys"][role]).get(f"/admin/tenants/{world['a']['id']}/keys")

    assert response.status_code == expected
