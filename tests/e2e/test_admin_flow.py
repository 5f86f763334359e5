"""A platform team's first minutes with the local stack, over HTTP, with the openai SDK for /v1."""

from __future__ import annotations

import httpx2
import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, LocalStack, client_for

pytestmark = pytest.mark.e2e


def test_health_needs_no_key(local_stack: LocalStack) -> None:
    response = httpx2.get(f"{local_stack.url}/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


def test_the_api_documentation_needs_no_key_locally(local_stack: LocalStack) -> None:
    document = httpx2.get(f"{local_stack.url}/openapi.json")
    page = httpx2.get(f"{local_stack.url}/docs")

    assert document.status_code == 200 and document.json()["openapi"].startswith("3.1")
    assert "/v1/responses" in document.json()["paths"] and "/admin/tenants" in document.json()["paths"]
    assert page.status_code == 200 and "swagger" in page.text.lower()


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key", "Bearer byom-not-a-real-key", "Basic abc"]
)
def test_missing_or_unknown_keys_get_401_in_the_openai_envelope(
    local_stack: LocalStack, authorization
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    response = httpx2.get(f"{local_stack.url}/admin/tenants", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["x-request-id"]


def test_unknown_routes_are_404(admin: httpx2.Client) -> None:
    response = admin.get("/nowhere")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_a_tenant_key_lists_exactly_its_aliases_through_the_openai_sdk(
    local_stack: LocalStack, admin: httpx2.Client
) -> None:
    keys = {}
    for name, aliases in (("red", ["r1", "r2"]), ("blue", ["b1"])):
        tenant = admin.post("/admin/tenants", json={"name": name}).json()
        for alias in aliases:
            created = admin.post(
                f"/admin/tenants/{tenant['id']}/models",
                json={"alias": alias, "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
            )
            assert created.status_code == 201, created.text
        keys[name] = admin.post(
            f"/admin/tenants/{tenant['id']}/keys", json={"name": "app", "role": "viewer"}
        ).json()["key"]

    sdk = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=keys["red"])

    assert sorted(m.id for m in sdk.models.list()) == ["r1", "r2"]


def test_the_sdk_raises_its_authentication_error_for_a_bad_key(local_stack: LocalStack) -> None:
    sdk = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key="byom-bogus", max_retries=0)

    with pytest.raises(openai.AuthenticationError):
        sdk.models.list()


def test_a_revoked_key_is_refused_at_once(local_stack: LocalStack, admin: httpx2.Client) -> None:
    tenant = admin.post("/admin/tenants", json={"name": "revocable"}).json()
    key = admin.post(f"/admin/tenants/{tenant['id']}/keys", json={"name": "temp", "role": "developer"}).json()
    caller = client_for(local_stack, key["key"])
    assert caller.get("/v1/models").status_code == 200

    revoked = admin.delete(f"/admin/tenants/{tenant['id']}/keys/{key['id']}")

    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    assert caller.get("/v1/models").status_code == 401


def test_loopback_http_base_urls_are_accepted_locally(admin: httpx2.Client) -> None:
    tenant = admin.post("/admin/tenants", json={"name": "ollama-user"}).json()

    response = admin.put(
        f"/admin/tenants/{tenant['id']}/credentials/ollama",
        json={"provider": "openai_compatible", "base_url": "http://127.0.0.1:11434/v1"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["base_url"] == "http://127.0.0.1:11434/v1"


def test_metadata_base_urls_are_refused_locally_too(admin: httpx2.Client) -> None:
    tenant = admin.post("/admin/tenants", json={"name": "ssrf"}).json()

    response = admin.put(
        f"/admin/tenants/{tenant['id']}/credentials/imds",
        json={"provider": "openai_compatible", "base_url": "http://169.254.169.254/latest/meta-data"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "base_url"


def test_malformed_json_is_a_400(admin: httpx2.Client) -> None:
    response = admin.post("/admin/tenants", content=b"{oops", headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_platform_admin_key_is_the_configured_one(local_stack: LocalStack) -> None:
    assert client_for(local_stack, ADMIN_KEY).get("/admin/tenants").status_code == 200
