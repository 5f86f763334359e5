from tests.integration.conftest import PLATFORM_ADMIN, Api, tenant_context


def test_health_answers_ok(gateway_api: Api) -> None:
    assert gateway_api("GET", "/health", as_=None)[:2] == (200, {"status": "ok"})


def test_models_lists_exactly_the_callers_aliases(admin_api: Api, gateway_api: Api) -> None:
    tenants = []
    for name, aliases in (("a", ["alpha", "beta"]), ("b", ["gamma"])):
        _, tenant, _ = admin_api("POST", "/admin/tenants", {"name": name})
        for alias in aliases:
            admin_api(
                "POST",
                f"/admin/tenants/{tenant['id']}/models",
                {"alias": alias, "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
            )
        tenants.append(tenant)

    status, body, _ = gateway_api("GET", "/v1/models", as_=tenant_context(tenants[0]["id"], "viewer"))

    assert status == 200
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["alpha", "beta"]
    assert body["data"][0] == {
        "id": "alpha",
        "object": "model",
        "created": body["data"][0]["created"],
        "owned_by": "bedrock",
    }


def test_the_platform_admin_key_cannot_call_the_data_plane(gateway_api: Api) -> None:
    status, body, _ = gateway_api("GET", "/v1/models", as_=PLATFORM_ADMIN)

    assert (status, body["error"]["type"]) == (403, "permission_error")
