"""Tenant isolation: every role of tenant A against every route the apps serve, aimed at tenant B.

The routes come from the apps (tests/isolation_matrix.py), so a new route is called here as soon as
it exists; the matrix's unit test makes sure it has an expectation.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx2
import pytest

from tests.e2e.conftest import LocalStack, client_for
from tests.e2e.test_fine_tuning import consistent_dataset
from tests.isolation_matrix import EXPECTATIONS, MISSING, PARAMETERS, ROLES, Case, Kind, World, fill, routes

pytestmark = pytest.mark.e2e

SERVED = sorted(routes() & EXPECTATIONS.keys())


@pytest.fixture(scope="module")
def world(local_stack: LocalStack, admin: httpx2.Client) -> tuple[World, dict[str, str], str]:
    """Tenant B with one of everything; tenant A with a key per role. Answers the world, A's keys
    by role and B's admin key."""
    a = admin.post("/admin/tenants", json={"name": "tenant-a"}).json()
    b = admin.post("/admin/tenants", json={"name": "tenant-b"}).json()
    base = f"/admin/tenants/{b['id']}"
    b_key = admin.post(f"{base}/keys", json={"name": "b-app", "role": "admin"}).json()
    admin.put(f"{base}/credentials/b-cred", json={"provider": "openai", "api_key": "sk-tenant-b-0000"})
    admin.post(
        f"{base}/models",
        json={"alias": "b-model", "provider": "openai", "model_id": "gpt-4o-mini", "credential": "b-cred"},
    )
    admin.post(
        f"{base}/models",
        json={"alias": "b-fast", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
    )
    admin.put(f"{base}/budget", json={"monthly_limit_usd": 100, "warn_at": [0.5], "hard": True})
    b_client = client_for(local_stack, b_key["key"])
    chat = b_client.post(
        "/v1/chat/completions",
        json={"model": "b-fast", "messages": [{"role": "user", "content": "hello"}], "user": "b-subject"},
    )
    assert chat.status_code == 200, chat.text
    response = b_client.post("/v1/responses", json={"model": "b-fast", "input": "hello", "user": "b-subject"})
    assert response.status_code == 200, response.text
    b_file = b_client.post(
        "/v1/files", files={"file": ("train.jsonl", consistent_dataset())}, data={"purpose": "fine-tune"}
    ).json()
    b_job = b_client.post(
        "/v1/fine_tuning/jobs", json={"model": "b-fast", "training_file": b_file["id"]}
    ).json()
    # Cancelled, so that its record no longer changes while tenant A pokes at it.
    assert b_client.post(f"/v1/fine_tuning/jobs/{b_job['id']}/cancel").status_code == 200
    a_keys = {
        role: admin.post(f"/admin/tenants/{a['id']}/keys", json={"name": role, "role": role}).json()["key"]
        for role in ROLES
    }
    found = World(
        a_id=a["id"],
        b_id=b["id"],
        b_key_id=b_key["id"],
        b_file_id=b_file["id"],
        b_job_id=b_job["id"],
        b_response_id=response.json()["id"],
    )
    return found, a_keys, b_key["key"]


def _call(client: httpx2.Client, method: str, path: str, case: Case, world: World) -> httpx2.Response:
    if case.multipart:
        return client.request(
            method, path, files={"file": ("a.jsonl", b'{"messages": []}\n')}, data={"purpose": "fine-tune"}
        )
    body = case.body(world) if case.body else None
    return client.request(method, path, json=body) if body is not None else client.request(method, path)


def _missing_world(world: World) -> World:
    """Tenant B's resources replaced by ones that exist nowhere."""
    return dataclasses.replace(
        world,
        b_key_id=MISSING["key_id"],
        b_file_id=MISSING["file_id"],
        b_job_id=MISSING["job_id"],
        b_alias=MISSING["alias"],
        b_credential=MISSING["name"],
        b_subject=MISSING["user"],
    )


def _answer(response: httpx2.Response) -> tuple[int, str | None]:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    return response.status_code, error.get("type")


def _snapshot(local_stack: LocalStack, admin: httpx2.Client, world: World, b_key: str) -> dict[str, Any]:
    """Every read of tenant B's resources the matrix knows, as tenant B's owners see them."""
    b_client = client_for(local_stack, b_key)
    seen: dict[str, Any] = {}
    for method, template in SERVED:
        case = EXPECTATIONS[(method, template)]
        if method != "GET" or case.kind is not Kind.TENANT_B or case.volatile:
            continue
        path = fill(template, lambda name: PARAMETERS[name](world))
        reader = admin if path.startswith("/admin/") else b_client
        response = reader.get(path)
        # A file's content is JSONL, not one JSON document.
        json_answer = response.headers.get("content-type", "").split(";")[0].strip() == "application/json"
        seen[path] = (response.status_code, response.json() if json_answer else response.text)
    return seen


def test_the_matrix_calls_routes_of_each_app() -> None:
    for app_prefix in ("/admin/tenants", "/v1/models", "/v1/files", "/v1/fine_tuning"):
        assert any(path.startswith(app_prefix) for _, path in SERVED), app_prefix


@pytest.mark.parametrize("role", ROLES)
def test_every_route_aimed_at_tenant_b_refuses_each_role_of_tenant_a(
    local_stack: LocalStack, admin: httpx2.Client, world: tuple[World, dict[str, str], str], role: str
) -> None:
    found, a_keys, b_key = world
    before = _snapshot(local_stack, admin, found, b_key)
    caller = client_for(local_stack, a_keys[role])

    wrong: dict[str, Any] = {}
    for method, template in SERVED:
        case = EXPECTATIONS[(method, template)]
        route = f"{method} {template}"
        if case.kind is Kind.PUBLIC:
            continue
        response = _call(caller, method, fill(template, lambda name: PARAMETERS[name](found)), case, found)
        answer = _answer(response)
        if case.kind is Kind.PLATFORM:
            expected: Any = (403, "permission_error")
        elif case.kind is Kind.TENANT_B:
            expected = (403, "permission_error") if role in case.role_refused else (404, "not_found_error")
            missing = _answer(_call(caller, method, fill(template, MISSING.__getitem__), case, found))
            if missing != answer:  # B's resource must be indistinguishable from a missing one
                wrong[route + " (vs a missing resource)"] = (answer, missing)
        else:
            # An error may quote what the caller itself sent (the alias it asked for): not a leak.
            sent = json.dumps(case.body(found)) if case.body else ""
            leaked = [marker for marker in found.markers() if marker in response.text and marker not in sent]
            expected = answer
            if case.names_b:
                expected = _answer(_call(caller, method, template, case, _missing_world(found)))
            if leaked or answer[0] >= 500 or (case.names_b and not 400 <= answer[0] < 500):
                wrong[route] = (answer, leaked)
                continue
        if answer != expected:
            wrong[route] = (answer, expected)

    assert wrong == {}, json.dumps(wrong, indent=1)
    assert _snapshot(local_stack, admin, found, b_key) == before


@pytest.mark.parametrize(("role", "expected"), [("admin", 200), ("developer", 403), ("viewer", 403)])
def test_within_its_tenant_only_the_admin_role_manages_keys(
    local_stack: LocalStack, world: tuple[World, dict[str, str], str], role: str, expected: int
) -> None:
    found, a_keys, _ = world
    response = client_for(local_stack, a_keys[role]).get(f"/admin/tenants/{found.a_id}/keys")

    assert response.status_code == expected
