import pytest
from byom.domain import ApiKey
from byom.logic.authorizer import Unauthorized, api_wildcard_arn, authorize
from byom.security import hash_api_key

from tests.unit.fakes import FakeKeys

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/v1/models"
TENANT_KEY = "byom-tenant-key-0001"


def _keys(revoked_at: int | None = None, usage_key: str | None = None) -> FakeKeys:
    keys = FakeKeys()
    keys.create(
        ApiKey(
            id="key_1",
            tenant_id="tnt_a",
            name="ci",
            role="developer",
            key_hash=hash_api_key(TENANT_KEY),
            last4="0001",
            created_at=1,
            revoked_at=revoked_at,
            usage_key_id="uk1" if usage_key is not None else None,
            usage_key=usage_key,
        )
    )
    return keys


def _admin_key() -> str:
    return "platform-admin-secret"


def test_a_tenant_key_is_allowed_with_its_tenant_and_role_in_the_context() -> None:
    decision = authorize(f"Bearer {TENANT_KEY}", METHOD_ARN, _keys(), _admin_key)

    assert decision["principalId"] == "key_1"
    assert decision["context"] == {
        "principal": "tenant",
        "tenant_id": "tnt_a",
        "key_id": "key_1",
        "role": "developer",
    }
    assert decision["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_the_cached_policy_covers_every_route_of_the_stage() -> None:
    decision = authorize(f"Bearer {TENANT_KEY}", METHOD_ARN, _keys(), _admin_key)

    assert (
        decision["policyDocument"]["Statement"][0]["Resource"]
        == "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*"
    )


def test_the_platform_admin_key_is_allowed_without_a_tenant() -> None:
    decision = authorize("Bearer platform-admin-secret", METHOD_ARN, _keys(), _admin_key)

    assert decision["context"]["role"] == "platform_admin"
    assert decision["context"]["tenant_id"] == ""


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer byom-unknown", "Bearer not-the-admin-key", TENANT_KEY],
)
def test_missing_malformed_or_unknown_keys_are_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized, match=r"^Unauthorized$"):
        authorize(header, METHOD_ARN, _keys(), _admin_key)


def test_a_revoked_key_is_unauthorized() -> None:
    with pytest.raises(Unauthorized):
        authorize(f"Bearer {TENANT_KEY}", METHOD_ARN, _keys(revoked_at=5), _admin_key)


def test_tenant_keys_never_read_the_admin_secret() -> None:
    def admin_key() -> str:
        raise AssertionError("the admin secret must not be fetched for byom- keys")

    authorize(f"Bearer {TENANT_KEY}", METHOD_ARN, _keys(), admin_key)


def test_wildcard_arn_keeps_region_account_api_and_stage() -> None:
    assert api_wildcard_arn("arn:aws:execute-api:eu-west-1:1:api/dev/POST/admin/tenants") == (
        "arn:aws:execute-api:eu-west-1:1:api/dev/*"
    )


def _keys_with_usage_key(usage_key: str | None) -> FakeKeys:
    return _keys(usage_key=usage_key)


def test_a_tenant_key_names_its_usage_plan_key() -> None:
    keys = _keys_with_usage_key("usage-value-0123456789abcdef")

    decision = authorize(f"Bearer {TENANT_KEY}", METHOD_ARN, keys, _admin_key)

    assert decision["usageIdentifierKey"] == "usage-value-0123456789abcdef"
    assert "usage" not in str(decision["context"])


def test_a_tenant_key_without_a_usage_plan_key_names_none() -> None:
    decision = authorize(f"Bearer {TENANT_KEY}", METHOD_ARN, _keys(), _admin_key)

    assert "usageIdentifierKey" not in decision


def test_the_platform_admin_names_the_platform_usage_plan_key() -> None:
    decision = authorize(
        "Bearer platform-admin-secret", METHOD_ARN, _keys(), _admin_key, "byomplatformadmin0123456789"
    )

    assert decision["usageIdentifierKey"] == "byomplatformadmin0123456789"


def test_an_admin_key_with_the_tenant_prefix_is_the_platform_admin() -> None:
    def admin_key() -> str:
        return "byom-chosen-by-the-operator"

    decision = authorize("Bearer byom-chosen-by-the-operator", METHOD_ARN, _keys(), admin_key)

    assert decision["context"]["role"] == "platform_admin"


def test_a_revoked_tenant_key_is_unauthorized_whatever_the_admin_key() -> None:
    def admin_key() -> str:
        return TENANT_KEY

    with pytest.raises(Unauthorized):
        authorize(f"Bearer {TENANT_KEY}", METHOD_ARN, _keys(revoked_at=5), admin_key)
