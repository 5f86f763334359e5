"""Tenant-scoped sessions against moto's STS: assumed per tenant, cached, renewed before expiry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from byom.dal import aws, tenant_scope
from moto import mock_aws

ROLE_ARN = "arn:aws:iam::123456789012:role/TenantDataAccessRole"


@pytest.fixture
def sts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", tenant_scope.ROLE_ARN_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        for cached in (aws.session, aws.client, aws.table):
            cached.cache_clear()
        tenant_scope.clear()
        yield
        tenant_scope.clear()
        for cached in (aws.session, aws.client, aws.table):
            cached.cache_clear()


@pytest.fixture
def role(sts: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(tenant_scope.ROLE_ARN_ENV, ROLE_ARN)
    return ROLE_ARN


def _access_key(session: object) -> str:
    return session.get_credentials().access_key  # type: ignore[attr-defined]


def test_without_a_role_the_functions_own_session_is_used(sts: None) -> None:
    assert tenant_scope.scoped_session("tnt_a") is aws.session()


def test_the_session_is_the_role_assumed_for_the_tenant(role: str) -> None:
    session = tenant_scope.scoped_session("tnt_a")

    identity = session.client("sts").get_caller_identity()
    assert identity["Arn"].endswith(":assumed-role/TenantDataAccessRole/tenant-tnt_a")
    assert _access_key(session) != "testing"


def test_a_tenants_session_is_reused_until_it_nears_expiry(role: str) -> None:
    first = tenant_scope.scoped_session("tnt_a")

    assert tenant_scope.scoped_session("tnt_a") is first
    assert tenant_scope.scoped_session("tnt_b") is not first


def test_a_session_within_two_minutes_of_expiry_is_renewed(role: str) -> None:
    first = tenant_scope.scoped_session("tnt_a")
    entry = tenant_scope._scoped[(role, "tnt_a")]
    entry.expires_at = entry.expires_at - tenant_scope.SESSION_SECONDS + 100  # 100 s left

    renewed = tenant_scope.scoped_session("tnt_a")

    assert renewed is not first and _access_key(renewed) != _access_key(first)


def test_scoped_tables_and_clients_sign_with_the_tenants_credentials(role: str) -> None:
    key = _access_key(tenant_scope.scoped_session("tnt_a"))

    table = tenant_scope.scoped_table("tnt_a", "byom-audit")
    s3 = tenant_scope.scoped_client("tnt_a", "s3")

    assert table.name == "byom-audit"
    assert table.meta.client._request_signer._credentials.access_key == key
    assert s3._request_signer._credentials.access_key == key
    assert tenant_scope.scoped_client("tnt_a", "s3") is s3


def test_a_session_name_longer_than_sts_allows_is_cut_to_64_characters(role: str) -> None:
    session = tenant_scope.scoped_session("t" * 80)

    arn = session.client("sts").get_caller_identity()["Arn"]
    assert arn.rsplit("/", 1)[-1] == ("tenant-" + "t" * 80)[:64]


def test_an_empty_tenant_id_is_refused(role: str) -> None:
    with pytest.raises(ValueError, match="tenant id"):
        tenant_scope.scoped_session("")
