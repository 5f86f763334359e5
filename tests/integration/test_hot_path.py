"""AWS requests on an invocation's path, counted with a botocore `before-send` hook against moto.

A warm /v1/chat/completions call may make at most two sequential AWS requests (issue 3): the
provider key is cached, and an alias and its credential are read in one BatchGetItem.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS
from botocore import handlers
from byom.dal.aws import table
from byom.dal.repositories import CredentialRepository, ModelRepository
from byom.domain import Credential, ModelAlias

from local_stack.httpbase import BackgroundServer
from local_stack.models.servers import openai_stand_in
from tests.integration.conftest import Api, _clear_caches, tenant_context

TENANT = "tnt_hot"


@pytest.fixture
def aws_requests(aws: dict[str, str]) -> Iterator[list[str]]:
    """The AWS requests sent from now on, as `service.Operation`, by clients created from now on
    (ask for it before fixtures that make clients)."""
    sent: list[str] = []

    def count(event_name: str, **_: object) -> None:
        sent.append(event_name.removeprefix("before-send."))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(handlers, "BUILTIN_HANDLERS", [("before-send", count), *handlers.BUILTIN_HANDLERS])
        # Clients made before the hook existed would not report: every one is made again.
        patch.delitem(DEFAULT_PROVIDERS, "secrets", raising=False)
        _clear_caches()
        yield sent
    _clear_caches()


@pytest.fixture
def stand_in(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[BackgroundServer]:
    monkeypatch.setenv("ALLOW_LOOPBACK_HTTP", "true")
    server = openai_stand_in().start()
    yield server
    server.stop()


def _compatible_alias(admin_api: Api, base_url: str) -> dict[str, str]:
    status, tenant, _ = admin_api("POST", "/admin/tenants", {"name": "hot"})
    assert status == 201
    credential = {"provider": "openai_compatible", "api_key": "sk-hot-path", "base_url": base_url}
    status, _, _ = admin_api("PUT", f"/admin/tenants/{tenant['id']}/credentials/llm", credential)
    assert status == 200
    model = {
        "alias": "chat",
        "provider": "openai_compatible",
        "model_id": "stand-in-chat",
        "pricing": {"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002},
        "credential": "llm",
    }
    status, _, _ = admin_api("POST", f"/admin/tenants/{tenant['id']}/models", model)
    assert status == 201
    return tenant_context(tenant["id"], "developer")


def test_a_warm_chat_completion_makes_at_most_two_aws_requests(
    admin_api: Api, gateway_api: Api, stand_in: BackgroundServer, aws_requests: list[str]
) -> None:
    caller = _compatible_alias(admin_api, stand_in.url + "/v1")
    chat = {"model": "chat", "messages": [{"role": "user", "content": "Hello"}]}
    status, _, _ = gateway_api("POST", "/v1/chat/completions", chat, as_=caller)
    assert status == 200
    assert "secrets-manager.GetSecretValue" in aws_requests  # the hook sees the gateway's clients
    aws_requests.clear()

    status, _, _ = gateway_api("POST", "/v1/chat/completions", chat, as_=caller)

    assert status == 200
    assert 1 <= len(aws_requests) <= 2, aws_requests


# The repository read behind it


@pytest.fixture
def repositories(aws: dict[str, str]) -> tuple[ModelRepository, CredentialRepository]:
    credentials = table(aws["CREDENTIALS_TABLE"])
    return ModelRepository(table(aws["MODELS_TABLE"]), credentials), CredentialRepository(credentials)


def _credential(name: str) -> Credential:
    return Credential(
        tenant_id=TENANT,
        name=name,
        provider="openai_compatible",
        base_url=f"https://{name}.example",
        updated_at=1,
    )


def _alias(credential: str | None) -> ModelAlias:
    return ModelAlias(
        tenant_id=TENANT,
        alias="chat",
        provider="openai_compatible",
        model_id="m",
        credential=credential,
        created_at=1,
    )


def test_an_alias_is_read_with_its_credential(
    repositories: tuple[ModelRepository, CredentialRepository],
) -> None:
    models, credentials = repositories
    credentials.put(_credential("a"))
    models.create(_alias("a"))

    assert models.get_for_call(TENANT, "chat")[:2] == (_alias("a"), _credential("a"))


def test_a_warm_read_of_an_alias_and_its_credential_is_one_request(
    aws_requests: list[str], repositories: tuple[ModelRepository, CredentialRepository]
) -> None:
    models, credentials = repositories
    credentials.put(_credential("a"))
    models.create(_alias("a"))
    models.get_for_call(TENANT, "chat")
    aws_requests.clear()

    models.get_for_call(TENANT, "chat")

    assert aws_requests == ["dynamodb.BatchGetItem"]


def test_an_alias_created_again_with_another_credential_is_read_with_the_new_one(
    repositories: tuple[ModelRepository, CredentialRepository],
) -> None:
    models, credentials = repositories
    credentials.put(_credential("a"))
    credentials.put(_credential("b"))
    models.create(_alias("a"))
    models.get_for_call(TENANT, "chat")
    models.delete(TENANT, "chat")
    models.create(_alias("b"))

    assert models.get_for_call(TENANT, "chat")[:2] == (_alias("b"), _credential("b"))


def test_a_deleted_credential_is_not_read_from_memory(
    repositories: tuple[ModelRepository, CredentialRepository],
) -> None:
    models, credentials = repositories
    credentials.put(_credential("a"))
    models.create(_alias("a"))
    models.get_for_call(TENANT, "chat")
    credentials.delete(TENANT, "a")

    assert models.get_for_call(TENANT, "chat")[:2] == (_alias("a"), None)


def test_an_alias_without_a_credential_is_read_alone(
    repositories: tuple[ModelRepository, CredentialRepository],
) -> None:
    models, _ = repositories
    models.create(_alias(None))

    assert models.get_for_call(TENANT, "chat")[:2] == (_alias(None), None)


def test_an_unknown_alias_is_neither_model_nor_credential(
    repositories: tuple[ModelRepository, CredentialRepository],
) -> None:
    models, _ = repositories

    assert models.get_for_call(TENANT, "nothing")[:2] == (None, None)
