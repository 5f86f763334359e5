"""The gateway's reader of provider keys against moto's Secrets Manager, written by the admin's store."""

from __future__ import annotations

import boto3
import pytest
from byom.dal.secrets import ProviderKeys, SecretStore
from byom.errors import GatewayMisconfigured


@pytest.fixture
def store(aws: dict[str, str]) -> SecretStore:
    return SecretStore(boto3.client("secretsmanager"), aws["SECRET_PREFIX"], aws["KMS_KEY_ID"])


@pytest.fixture
def keys(aws: dict[str, str]) -> ProviderKeys:
    return ProviderKeys(aws["SECRET_PREFIX"], max_age_seconds=300)


def test_the_key_of_a_tenants_credential_is_read(store: SecretStore, keys: ProviderKeys) -> None:
    store.put("tnt_a", "oai", "sk-a")

    assert keys.get("tnt_a", "oai") == "sk-a"


def test_two_tenants_with_the_same_credential_name_get_their_own_keys(
    store: SecretStore, keys: ProviderKeys
) -> None:
    store.put("tnt_a", "oai", "sk-a")
    store.put("tnt_b", "oai", "sk-b")

    assert (keys.get("tnt_a", "oai"), keys.get("tnt_b", "oai")) == ("sk-a", "sk-b")


def test_a_key_is_cached_for_its_max_age(store: SecretStore, keys: ProviderKeys) -> None:
    store.put("tnt_a", "oai", "sk-old")
    keys.get("tnt_a", "oai")
    store.put("tnt_a", "oai", "sk-new")

    assert keys.get("tnt_a", "oai") == "sk-old"


def test_a_refresh_reads_the_current_key(store: SecretStore, keys: ProviderKeys) -> None:
    store.put("tnt_a", "oai", "sk-old")
    keys.get("tnt_a", "oai")
    store.put("tnt_a", "oai", "sk-new")

    assert keys.get("tnt_a", "oai", refresh=True) == "sk-new"


def test_a_missing_secret_is_a_configuration_error_naming_only_the_credential(keys: ProviderKeys) -> None:
    with pytest.raises(GatewayMisconfigured) as failed:
        keys.get("tnt_a", "gone")

    assert failed.value.message == "The key of credential 'gone' could not be read"
