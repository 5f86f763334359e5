import pytest
from byom.domain import CreateKey, CreateModel, CreateTenant, PutCredential
from byom.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from byom.governance.policy import PutPolicy
from byom.logic import admin
from byom.logic.access import Principal

from tests.unit.fakes import FakeCredentials, FakeKeys, FakeModels, FakePolicies, FakeSecrets, FakeTenants

PLATFORM = Principal(key_id="platform-admin", role="platform_admin")
PROVIDER_KEY = "sk-live-provider-key-7f3a"


@pytest.fixture
def store() -> admin.AdminStore:
    return admin.AdminStore(
        tenants=FakeTenants(),
        keys=FakeKeys(),
        credentials=FakeCredentials(),
        models=FakeModels(),
        secrets=FakeSecrets(),
    )


@pytest.fixture
def tenant_id(store: admin.AdminStore) -> str:
    return admin.create_tenant(store, PLATFORM, CreateTenant(name="acme")).id


def _tenant_key(tenant_id: str, role: str) -> Principal:
    return Principal(key_id=f"key_{role}", role=role, tenant_id=tenant_id)


def _openai_credential(store: admin.AdminStore, tenant_id: str, name: str = "oai") -> None:
    admin.put_credential(
        store, PLATFORM, tenant_id, name, PutCredential(provider="openai", api_key=PROVIDER_KEY)
    )


def _model(alias: str, fallbacks: list[str] | None = None, **extra) -> CreateModel:
    fields = {
        "alias": alias,
        "provider": "bedrock",
        "model_id": "amazon.nova-micro-v1:0",
        "fallbacks": fallbacks or [],
    }
    return CreateModel.model_validate(fields | extra)


# Access


def test_only_the_platform_admin_creates_tenants(store: admin.AdminStore, tenant_id: str) -> None:
    with pytest.raises(PermissionDenied):
        admin.create_tenant(store, _tenant_key(tenant_id, "admin"), CreateTenant(name="evil"))


@pytest.mark.parametrize("role", ["admin", "developer", "viewer"])
def test_another_tenants_resources_are_not_found_whatever_the_role(
    store: admin.AdminStore, tenant_id: str, role: str
) -> None:
    outsider = _tenant_key("tnt_other", role)

    with pytest.raises(NotFound):
        admin.get_tenant(store, outsider, tenant_id)
    with pytest.raises(NotFound):
        admin.list_models(store, outsider, tenant_id)


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_non_admin_roles_cannot_manage_their_tenant(
    store: admin.AdminStore, tenant_id: str, role: str
) -> None:
    with pytest.raises(PermissionDenied):
        admin.create_key(store, _tenant_key(tenant_id, role), tenant_id, CreateKey(name="x"))


@pytest.mark.parametrize("role", ["admin", "developer", "viewer"])
def test_every_role_reads_its_own_models(store: admin.AdminStore, tenant_id: str, role: str) -> None:
    assert admin.list_models(store, _tenant_key(tenant_id, role), tenant_id) == []


def test_a_tenant_admin_cannot_delete_its_own_tenant(store: admin.AdminStore, tenant_id: str) -> None:
    with pytest.raises(PermissionDenied):
        admin.delete_tenant(store, _tenant_key(tenant_id, "admin"), tenant_id)


# Keys


def test_a_key_is_stored_only_as_its_hash(store: admin.AdminStore, tenant_id: str) -> None:
    key, plaintext = admin.create_key(store, PLATFORM, tenant_id, CreateKey(name="ci", role="viewer"))

    assert plaintext.startswith("byom-")
    assert plaintext not in repr(store.keys.items)
    assert key.last4 == plaintext[-4:]


def test_revoking_an_unknown_key_is_not_found(store: admin.AdminStore, tenant_id: str) -> None:
    with pytest.raises(NotFound):
        admin.revoke_key(store, PLATFORM, tenant_id, "key_missing")


# Credentials


def test_a_credential_keeps_only_the_last_four_characters_outside_the_secret_store(
    store: admin.AdminStore, tenant_id: str
) -> None:
    credential = admin.put_credential(
        store, PLATFORM, tenant_id, "oai", PutCredential(provider="openai", api_key=PROVIDER_KEY)
    )

    assert credential.key_last4 == "7f3a"
    assert PROVIDER_KEY not in repr(credential.public())
    assert PROVIDER_KEY not in repr(store.credentials.items)
    assert store.secrets.values[(tenant_id, "oai")] == PROVIDER_KEY


def test_a_failed_metadata_write_removes_the_secret_it_created(
    store: admin.AdminStore, tenant_id: str
) -> None:
    store.credentials.fail_next_put = True

    with pytest.raises(RuntimeError):
        _openai_credential(store, tenant_id)

    assert store.secrets.values == {}
    assert store.credentials.items == {}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"provider": "openai"}, "api_key"),
        ({"provider": "openai_compatible", "api_key": "k"}, "base_url"),
        ({"provider": "openai_compatible", "base_url": "http://example.com"}, "base_url"),
        ({"provider": "openai", "api_key": " padded "}, "api_key"),
    ],
)
def test_incomplete_or_unsafe_credentials_are_refused(
    store: admin.AdminStore, tenant_id: str, body: dict, param: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        admin.put_credential(store, PLATFORM, tenant_id, "c", PutCredential.model_validate(body))

    assert refused.value.param == param
    assert store.secrets.values == {}


def test_loopback_http_is_accepted_when_the_store_allows_it(store: admin.AdminStore, tenant_id: str) -> None:
    store.allow_loopback_http = True
    body = PutCredential(provider="openai_compatible", base_url="http://127.0.0.1:11434/v1")

    assert (
        admin.put_credential(store, PLATFORM, tenant_id, "ollama", body).base_url
        == "http://127.0.0.1:11434/v1"
    )


def test_clearing_the_api_key_deletes_the_secret(store: admin.AdminStore, tenant_id: str) -> None:
    body = PutCredential(
        provider="openai_compatible", base_url="https://vllm.example.com/v1", api_key="k-1234"
    )
    admin.put_credential(store, PLATFORM, tenant_id, "vllm", body)

    admin.put_credential(store, PLATFORM, tenant_id, "vllm", body.model_copy(update={"api_key": None}))

    assert store.secrets.values == {}


def test_a_credential_in_use_cannot_be_deleted(store: admin.AdminStore, tenant_id: str) -> None:
    _openai_credential(store, tenant_id)
    admin.create_model(
        store,
        PLATFORM,
        tenant_id,
        _model("mini", provider="openai", model_id="gpt-4o-mini", credential="oai"),
    )

    with pytest.raises(Conflict):
        admin.delete_credential(store, PLATFORM, tenant_id, "oai")


def test_deleting_a_credential_deletes_its_secret(store: admin.AdminStore, tenant_id: str) -> None:
    _openai_credential(store, tenant_id)

    admin.delete_credential(store, PLATFORM, tenant_id, "oai")

    assert store.secrets.values == {}
    assert admin.list_credentials(store, PLATFORM, tenant_id) == []


def test_bad_credential_names_are_refused(store: admin.AdminStore, tenant_id: str) -> None:
    with pytest.raises(InvalidRequest):
        admin.put_credential(store, PLATFORM, tenant_id, "../escape", PutCredential(provider="bedrock"))


# Models


def test_pricing_defaults_from_the_catalog(store: admin.AdminStore, tenant_id: str) -> None:
    model = admin.create_model(
        store, PLATFORM, tenant_id, _model("nova", model_id="us.amazon.nova-micro-v1:0")
    )

    assert model.pricing is not None
    assert model.pricing.input_per_1k_usd == pytest.approx(0.000035)


def test_given_pricing_overrides_the_catalog(store: admin.AdminStore, tenant_id: str) -> None:
    body = _model("nova", pricing={"input_per_1k_usd": 1, "output_per_1k_usd": 2})

    assert admin.create_model(store, PLATFORM, tenant_id, body).pricing.output_per_1k_usd == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"provider": "openai", "model_id": "gpt-4o"}, "credential"),
        ({"credential": "missing"}, "credential"),
        ({"fallbacks": ["ghost"]}, "fallbacks"),
        ({"fallbacks": ["a", "a"]}, "fallbacks"),
    ],
)
def test_models_must_reference_what_exists(
    store: admin.AdminStore, tenant_id: str, extra: dict, param: str
) -> None:
    admin.create_model(store, PLATFORM, tenant_id, _model("a"))

    with pytest.raises(InvalidRequest) as refused:
        admin.create_model(store, PLATFORM, tenant_id, _model("b", **extra))

    assert refused.value.param == param


def test_a_credential_of_another_provider_is_refused(store: admin.AdminStore, tenant_id: str) -> None:
    _openai_credential(store, tenant_id)

    with pytest.raises(InvalidRequest, match="for provider 'openai'"):
        admin.create_model(store, PLATFORM, tenant_id, _model("b", credential="oai"))


def test_a_model_cannot_fall_back_to_itself(store: admin.AdminStore, tenant_id: str) -> None:
    with pytest.raises(InvalidRequest):
        admin.create_model(store, PLATFORM, tenant_id, _model("a", fallbacks=["a"]))


def test_duplicate_aliases_conflict(store: admin.AdminStore, tenant_id: str) -> None:
    admin.create_model(store, PLATFORM, tenant_id, _model("a"))

    with pytest.raises(Conflict):
        admin.create_model(store, PLATFORM, tenant_id, _model("a"))


def test_an_alias_used_as_a_fallback_cannot_be_deleted(store: admin.AdminStore, tenant_id: str) -> None:
    admin.create_model(store, PLATFORM, tenant_id, _model("a"))
    admin.create_model(store, PLATFORM, tenant_id, _model("b", fallbacks=["a"]))

    with pytest.raises(Conflict):
        admin.delete_model(store, PLATFORM, tenant_id, "a")


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": ["b"], "b": []}, None),
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        ({"a": ["b", "c"], "b": ["c"], "c": ["d"], "d": ["b"]}, ["b", "c", "d", "b"]),
        ({"a": ["a"]}, ["a", "a"]),
        ({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}, None),
    ],
)
def test_find_cycle(graph: dict, cycle: list[str] | None) -> None:
    assert admin.find_cycle(graph) == cycle


# Tenants


def test_deleting_a_tenant_removes_everything_it_owns(store: admin.AdminStore, tenant_id: str) -> None:
    _openai_credential(store, tenant_id)
    admin.create_model(store, PLATFORM, tenant_id, _model("a"))
    admin.create_key(store, PLATFORM, tenant_id, CreateKey(name="ci"))

    admin.delete_tenant(store, PLATFORM, tenant_id)

    assert (
        store.tenants.items,
        store.keys.items,
        store.credentials.items,
        store.models.items,
        store.secrets.values,
    ) == (
        {},
        {},
        {},
        {},
        {},
    )


def test_prompt_caching_on_a_bedrock_model_without_cache_points_is_refused(
    store: admin.AdminStore, tenant_id: str
) -> None:
    body = _model("haiku3", model_id="anthropic.claude-3-haiku-20240307-v1:0", prompt_caching=True)

    with pytest.raises(InvalidRequest) as refused:
        admin.create_model(store, PLATFORM, tenant_id, body)

    assert refused.value.param == "prompt_caching"


def test_prompt_caching_is_stored_and_shown_with_the_catalogs_cache_prices(
    store: admin.AdminStore, tenant_id: str
) -> None:
    body = _model("haiku", model_id="us.anthropic.claude-3-5-haiku-20241022-v1:0", prompt_caching=True)

    admin.create_model(store, PLATFORM, tenant_id, body)

    shown = admin.list_models(store, PLATFORM, tenant_id)[0].public()
    assert shown["prompt_caching"] is True
    assert (shown["pricing"]["cache_read_per_1k_usd"], shown["pricing"]["cache_write_per_1k_usd"]) == (
        0.00008,
        0.001,
    )


def test_prompt_caching_is_accepted_for_openai_which_caches_on_its_own(
    store: admin.AdminStore, tenant_id: str
) -> None:
    _openai_credential(store, tenant_id)
    body = _model("mini", provider="openai", model_id="gpt-4o-mini", credential="oai", prompt_caching=True)

    assert admin.create_model(store, PLATFORM, tenant_id, body).prompt_caching is True


def test_a_policy_put_is_the_policy_read(store: admin.AdminStore, tenant_id: str) -> None:
    store.policies = FakePolicies()
    admin.put_policy(store, PLATFORM, tenant_id, PutPolicy.model_validate({"retention_days": 7}))
    assert admin.get_policy(store, PLATFORM, tenant_id).retention_days == 7


def test_deleting_a_tenant_deletes_its_policy(store: admin.AdminStore, tenant_id: str) -> None:
    store.policies = policies = FakePolicies()
    admin.put_policy(store, PLATFORM, tenant_id, PutPolicy.model_validate({"retention_days": 7}))
    admin.delete_tenant(store, PLATFORM, tenant_id)
    assert tenant_id not in policies.items
