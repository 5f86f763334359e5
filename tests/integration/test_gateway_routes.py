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


def test_a_model_is_retrieved_by_its_alias_and_only_by_its_own_tenant(
    admin_api: Api, gateway_api: Api
) -> None:
    tenants = []
    for name in ("a", "b"):
        _, tenant, _ = admin_api("POST", "/admin/tenants", {"name": name})
        admin_api(
            "POST",
            f"/admin/tenants/{tenant['id']}/models",
            {"alias": f"only-{name}", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
        )
        tenants.append(tenant)
    caller = tenant_context(tenants[0]["id"], "viewer")

    status, model, headers = gateway_api("GET", "/v1/models/only-a", as_=caller)
    other = gateway_api("GET", "/v1/models/only-b", as_=caller)
    missing = gateway_api("GET", "/v1/models/nothing", as_=caller)
    recommend = gateway_api("GET", "/v1/models/recommend", as_=caller)

    assert status == 200 and headers["x-request-id"]
    assert model == {"id": "only-a", "object": "model", "created": model["created"], "owned_by": "bedrock"}
    # Another tenant's alias answers exactly as one that does not exist (SPEC §4).
    assert other[0] == missing[0] == 404
    assert other[1]["error"]["code"] == missing[1]["error"]["code"] == "model_not_found"
    assert other[1]["error"]["message"].replace("only-b", "x") == missing[1]["error"]["message"].replace(
        "nothing", "x"
    )
    assert recommend[0] == 200 and recommend[1]["object"] == "list"
