import pytest

from tests.conftest import LambdaContext
from tests.integration.conftest import ADMIN_KEY, Api, load_handler

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:api123/prod/GET/v1/models"


def _authorizer_event(authorization: str | None) -> dict:
    headers = {"Authorization": authorization} if authorization else {}
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "headers": headers,
        "httpMethod": "GET",
        "path": "/v1/models",
    }


@pytest.fixture
def authorizer(aws):
    return load_handler("authorizer")


def test_the_platform_admin_key_comes_from_secrets_manager(authorizer) -> None:
    decision = authorizer(_authorizer_event(f"Bearer {ADMIN_KEY}"), LambdaContext())

    assert decision["context"]["role"] == "platform_admin"


def test_a_created_key_is_allowed_until_it_is_revoked(authorizer, admin_api: Api) -> None:
    _, tenant, _ = admin_api("POST", "/admin/tenants", {"name": "acme"})
    _, key, _ = admin_api("POST", f"/admin/tenants/{tenant['id']}/keys", {"name": "ci", "role": "viewer"})

    allowed = authorizer(_authorizer_event(f"Bearer {key['key']}"), LambdaContext())
    admin_api("DELETE", f"/admin/tenants/{tenant['id']}/keys/{key['id']}")

    assert allowed["context"] == {
        "principal": "tenant",
        "tenant_id": tenant["id"],
        "key_id": key["id"],
        "role": "viewer",
    }
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer(_authorizer_event(f"Bearer {key['key']}"), LambdaContext())


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Bearer byom-unknown"])
def test_other_tokens_are_unauthorized(authorizer, authorization: str | None) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer(_authorizer_event(authorization), LambdaContext())
