import json

import boto3
import pytest
from botocore.stub import Stubber

from tests.integration.conftest import Api, tenant_context

PROVIDER_KEY = "sk-proj-Integration-Secret-9Q2w"


@pytest.fixture
def tenant(admin_api: Api) -> dict:
    status, body, _ = admin_api("POST", "/admin/tenants", {"name": "acme", "monthly_budget_usd": 50})
    assert status == 201
    return body


def _all_items() -> str:
    dynamodb = boto3.client("dynamodb")
    return json.dumps([dynamodb.scan(TableName=t)["Items"] for t in dynamodb.list_tables()["TableNames"]])


def test_a_tenant_is_created_and_read_back(admin_api: Api, tenant: dict) -> None:
    status, body, headers = admin_api("GET", f"/admin/tenants/{tenant['id']}")

    assert status == 200
    assert body == tenant
    assert headers["x-request-id"]


def test_tenants_are_listed_for_the_platform_admin(admin_api: Api, tenant: dict) -> None:
    status, body, _ = admin_api("GET", "/admin/tenants")

    assert status == 200
    assert [t["id"] for t in body["data"]] == [tenant["id"]]


def test_a_key_is_shown_once_and_stored_as_its_hash(admin_api: Api, tenant: dict) -> None:
    status, created, _ = admin_api(
        "POST", f"/admin/tenants/{tenant['id']}/keys", {"name": "ci", "role": "developer"}
    )
    _, listed, _ = admin_api("GET", f"/admin/tenants/{tenant['id']}/keys")

    assert status == 201
    assert created["key"].startswith("byom-")
    assert "key" not in listed["data"][0]
    assert created["key"] not in _all_items()


def test_a_credential_goes_to_secrets_manager_encrypted_with_the_stack_key(
    admin_api: Api, tenant: dict, aws: dict
) -> None:
    status, body, _ = admin_api(
        "PUT",
        f"/admin/tenants/{tenant['id']}/credentials/oai",
        {"provider": "openai", "api_key": PROVIDER_KEY},
    )

    secret = boto3.client("secretsmanager").describe_secret(SecretId=f"byom/test/tenants/{tenant['id']}/oai")
    assert status == 200
    assert body == {
        "name": "oai",
        "provider": "openai",
        "base_url": None,
        "key_last4": "9Q2w",
        "responses": False,
        "updated_at": body["updated_at"],
        "object": "credential",
    }
    assert secret["KmsKeyId"] == aws["KMS_KEY_ID"]
    assert PROVIDER_KEY not in _all_items()


def test_deleting_a_credential_deletes_its_secret(admin_api: Api, tenant: dict) -> None:
    path = f"/admin/tenants/{tenant['id']}/credentials/oai"
    admin_api("PUT", path, {"provider": "openai", "api_key": PROVIDER_KEY})

    status, _, _ = admin_api("DELETE", path)

    names = [s["Name"] for s in boto3.client("secretsmanager").list_secrets()["SecretList"]]
    assert status == 200
    assert not [n for n in names if n.startswith("byom/test/tenants/")]


def test_a_failed_metadata_write_leaves_no_secret_and_no_key_in_the_error(
    admin_api: Api, tenant: dict
) -> None:
    from byom.api.admin import store

    credentials_client = store().credentials._table.meta.client
    with Stubber(credentials_client) as stub:
        stub.add_response("get_item", {})
        stub.add_client_error("put_item", "ProvisionedThroughputExceededException", http_status_code=400)
        status, body, headers = admin_api(
            "PUT",
            f"/admin/tenants/{tenant['id']}/credentials/oai",
            {"provider": "openai", "api_key": PROVIDER_KEY},
        )

    assert status == 500
    assert body["error"]["type"] == "api_error"
    assert headers["x-byom-error-source"] == "gateway"
    assert PROVIDER_KEY not in json.dumps(body)
    assert boto3.client("secretsmanager").list_secrets()["SecretList"][1:] == []  # only the admin key secret


def test_models_list_with_catalog_pricing(admin_api: Api, tenant: dict) -> None:
    base = f"/admin/tenants/{tenant['id']}"
    admin_api("PUT", f"{base}/credentials/oai", {"provider": "openai", "api_key": PROVIDER_KEY})
    status, created, _ = admin_api(
        "POST",
        f"{base}/models",
        {"alias": "fast", "provider": "openai", "model_id": "gpt-4o-mini", "credential": "oai"},
    )
    _, listed, _ = admin_api("GET", f"{base}/models")

    assert status == 201
    assert created["pricing"] == {
        "input_per_1k_usd": 0.00015,
        "output_per_1k_usd": 0.0006,
        "cache_read_per_1k_usd": 0.000075,
        "cache_write_per_1k_usd": None,
        "batch_input_per_1k_usd": 0.000075,
        "batch_output_per_1k_usd": 0.0003,
    }
    assert listed["data"] == [created]


def test_prompt_caching_is_stored_with_the_alias(admin_api: Api, tenant: dict) -> None:
    base = f"/admin/tenants/{tenant['id']}"
    body = {
        "alias": "nova",
        "provider": "bedrock",
        "model_id": "amazon.nova-lite-v1:0",
        "prompt_caching": True,
    }

    status, _, _ = admin_api("POST", f"{base}/models", body)
    _, listed, _ = admin_api("GET", f"{base}/models")

    assert status == 201
    assert listed["data"][0]["prompt_caching"] is True


def test_prompt_caching_on_a_bedrock_model_without_cache_points_is_a_400(
    admin_api: Api, tenant: dict
) -> None:
    body = {
        "alias": "llama",
        "provider": "bedrock",
        "model_id": "meta.llama3-1-8b-instruct-v1:0",
        "prompt_caching": True,
    }

    status, answer, _ = admin_api("POST", f"/admin/tenants/{tenant['id']}/models", body)

    assert (status, answer["error"]["type"], answer["error"]["param"]) == (
        400,
        "invalid_request_error",
        "prompt_caching",
    )


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ("{not json", 400, None),
        ("[1, 2]", 400, None),
        ("", 400, None),
        ({"name": 7}, 400, "name"),
        ({"name": ""}, 400, "name"),
        ({"name": "x", "monthly_budget_usd": -1}, 400, "monthly_budget_usd"),
        # Finite but absurd: once a 500 when its micro-dollars overflowed DynamoDB's numbers.
        ({"name": "x", "monthly_budget_usd": 1.5e308}, 400, "monthly_budget_usd"),
        ({"name": "x", "monthly_budget_usd": 10_000_001}, 400, "monthly_budget_usd"),
        ({"name": "x", "unexpected": True}, 400, "unexpected"),
        ({"name": "x" * 70_000}, 413, None),
    ],
)
def test_bad_tenant_bodies_get_an_openai_error(admin_api: Api, body, status: int, param: str | None) -> None:
    got_status, got, headers = admin_api("POST", "/admin/tenants", body)

    assert got_status == status
    assert got["error"]["type"] == "invalid_request_error"
    assert got["error"]["param"] == param
    assert headers["x-request-id"]


def test_an_oversized_api_key_is_refused_without_echoing_it(admin_api: Api, tenant: dict) -> None:
    key = "sk-" + "A" * 5000

    status, body, _ = admin_api(
        "PUT", f"/admin/tenants/{tenant['id']}/credentials/oai", {"provider": "openai", "api_key": key}
    )

    assert status == 400
    assert body["error"]["param"] == "api_key"
    assert "AAAA" not in json.dumps(body)


def test_a_metadata_base_url_is_refused(admin_api: Api, tenant: dict) -> None:
    status, body, _ = admin_api(
        "PUT",
        f"/admin/tenants/{tenant['id']}/credentials/imds",
        {"provider": "openai_compatible", "base_url": "http://169.254.169.254/latest"},
    )

    assert (status, body["error"]["param"]) == (400, "base_url")


def test_loopback_is_refused_in_the_cloud(admin_api: Api, tenant: dict) -> None:
    status, _, _ = admin_api(
        "PUT",
        f"/admin/tenants/{tenant['id']}/credentials/ollama",
        {"provider": "openai_compatible", "base_url": "http://127.0.0.1:11434/v1"},
    )

    assert status == 400


def test_unknown_routes_are_404_in_the_envelope(admin_api: Api) -> None:
    status, body, _ = admin_api("GET", "/admin/nothing-here")

    assert (status, body["error"]["type"]) == (404, "not_found_error")


def test_a_tenant_admin_sees_its_tenant_and_not_another(admin_api: Api, tenant: dict) -> None:
    _, other, _ = admin_api("POST", "/admin/tenants", {"name": "other"})

    own, _, _ = admin_api("GET", f"/admin/tenants/{tenant['id']}", as_=tenant_context(tenant["id"], "admin"))
    foreign, body, _ = admin_api(
        "GET", f"/admin/tenants/{other['id']}", as_=tenant_context(tenant["id"], "admin")
    )

    assert (own, foreign, body["error"]["type"]) == (200, 404, "not_found_error")


def test_a_request_without_authorizer_context_is_401(admin_api: Api) -> None:
    status, body, _ = admin_api("GET", "/admin/tenants", as_=None)

    assert (status, body["error"]["code"]) == (401, "invalid_api_key")


def test_deleting_a_tenant_removes_its_keys_credentials_models_and_budget(
    admin_api: Api, tenant: dict, aws: dict[str, str]
) -> None:
    base = f"/admin/tenants/{tenant['id']}"
    admin_api("POST", f"{base}/keys", {"name": "ci"})
    admin_api("PUT", f"{base}/credentials/oai", {"provider": "openai", "api_key": PROVIDER_KEY})
    admin_api(
        "POST",
        f"{base}/models",
        {"alias": "m", "provider": "openai", "model_id": "gpt-4o", "credential": "oai"},
    )

    status, _, _ = admin_api("DELETE", base)

    dynamodb = boto3.client("dynamodb")
    assert status == 200
    history = (aws["USAGE_TABLE"], aws["AUDIT_TABLE"])
    state = [t for t in dynamodb.list_tables()["TableNames"] if t not in history]
    assert all(dynamodb.scan(TableName=t)["Count"] == 0 for t in state)
    # Its audit trail stays too, until the tenant's retention expires it: the deletion is on it.
    actions = [i["action"]["S"] for i in dynamodb.scan(TableName=aws["AUDIT_TABLE"])["Items"]]
    assert "DELETE /admin/tenants/{tenant_id}" in actions
    # What the tenant spent stays on record (its month ledgers); its budget goes.
    usage = dynamodb.scan(TableName=aws["USAGE_TABLE"])["Items"]
    assert [i["sk"]["S"] for i in usage if i["pk"]["S"] == tenant["id"]] == []
    assert len(boto3.client("secretsmanager").list_secrets()["SecretList"]) == 1  # the admin key


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "models",
            {
                "alias": "a",
                "provider": "bedrock",
                "model_id": "m",
                "pricing": {"input_per_1k_usd": 1e300, "output_per_1k_usd": 0},
            },
            "pricing.input_per_1k_usd",
        ),
        ("budget", {"monthly_limit_usd": 10, "key_limits": {"key_a": 1.5e308}}, "key_limits.key_a"),
        ("budget", {"monthly_limit_usd": 1.5e308}, "monthly_limit_usd"),
    ],
)
def test_amounts_beyond_any_sane_bound_are_refused_and_nothing_is_stored(
    admin_api: Api, tenant: dict, path: str, body: dict, param: str
) -> None:
    method = "PUT" if path == "budget" else "POST"

    status, answer, _ = admin_api(method, f"/admin/tenants/{tenant['id']}/{path}", body)

    assert (status, answer["error"]["type"], answer["error"]["param"]) == (
        400,
        "invalid_request_error",
        param,
    )
    _, stored, _ = admin_api("GET", f"/admin/tenants/{tenant['id']}/{path}")
    assert "e+" not in json.dumps(stored) and "10000001" not in json.dumps(stored)  # nothing of it kept
