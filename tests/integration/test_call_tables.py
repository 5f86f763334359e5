"""The first read of a call (byom.dal.calls.CallTables) against moto: one BatchGetItem."""

from __future__ import annotations

from typing import Any

import pytest
from byom.dal.aws import dynamodb, table
from byom.dal.calls import CallTables
from byom.dal.ledger import UsageTable
from byom.dal.policies import PolicyRepository
from byom.dal.repositories import CredentialRepository, ModelRepository
from byom.domain import Budget, Credential, ModelAlias
from byom.governance.policy import Policy, default_policy

TENANT = "tnt_read"
MONTH, MINUTE = "2026-11", "2026-11-23T12:00"


@pytest.fixture
def models_table(aws: dict[str, str]) -> Any:
    return table(aws["MODELS_TABLE"])


@pytest.fixture
def calls(aws: dict[str, str], models_table: Any) -> CallTables:
    credentials = table(aws["CREDENTIALS_TABLE"])
    models = ModelRepository(models_table, credentials)
    CredentialRepository(credentials).put(
        Credential(tenant_id=TENANT, name="llm", provider="openai_compatible", updated_at=1)
    )
    models.create(
        ModelAlias(
            tenant_id=TENANT,
            alias="chat",
            provider="openai_compatible",
            model_id="m",
            credential="llm",
            created_at=1,
        )
    )
    usage = UsageTable(table(aws["USAGE_TABLE"]))
    usage.put_budget(Budget(tenant_id=TENANT, monthly_limit_usd=2, updated_at=1), MONTH, {}, 2_000_000)
    policies = PolicyRepository(table(aws["POLICIES_TABLE"]))
    policies.put(Policy(tenant_id=TENANT, retention_days=7))
    return CallTables(models, usage, policies)


def _batch_gets(monkeypatch: pytest.MonkeyPatch, models_table: Any) -> list[dict[str, Any]]:
    """The RequestItems of each BatchGetItem sent from now on (through the low-level client)."""
    client = dynamodb()
    sent: list[dict[str, Any]] = []
    real = client.batch_get_item

    def batch_get_item(**kwargs: Any) -> Any:
        sent.append(kwargs["RequestItems"])
        return real(**kwargs)

    monkeypatch.setattr(client, "batch_get_item", batch_get_item)
    return sent


def test_a_metered_read_answers_the_alias_credential_budget_and_policy(calls: CallTables) -> None:
    read = calls.read(TENANT, "chat", month=MONTH, minute=MINUTE)

    assert read.model is not None and read.model.alias == "chat"
    assert read.credential is not None and read.credential.name == "llm"
    assert read.state is not None and read.state.budget is not None
    assert read.state.budget.monthly_limit_usd == 2
    assert read.policy.retention_days == 7
    assert read.minute_tokens == 0


def test_a_metered_read_asks_every_table_in_one_batch(
    calls: CallTables, models_table: Any, aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls.read(TENANT, "chat", month=MONTH, minute=MINUTE)  # learns which credential the alias names
    sent = _batch_gets(monkeypatch, models_table)

    calls.read(TENANT, "chat", month=MONTH, minute=MINUTE)

    tables = {aws[name] for name in ("MODELS_TABLE", "CREDENTIALS_TABLE", "USAGE_TABLE", "POLICIES_TABLE")}
    assert len(sent) == 1 and set(sent[0]) == tables


def test_an_unmetered_read_asks_for_neither_budget_nor_policy(calls: CallTables) -> None:
    read = calls.read(TENANT, "chat")

    assert read.credential is not None
    assert read.state is None and read.policy == default_policy(TENANT)
