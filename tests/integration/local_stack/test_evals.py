"""Evals on the local stack from the real template: the evals function behind its routes, its table
created from the template, the openai SDK's `client.evals` unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from local_stack.stack import LocalStack, StackSettings
from tests.integration.local_stack.conftest import http

ADMIN_KEY = "evals-stack-admin-key"


@pytest.fixture(scope="module")
def stack(real_template: Path) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(port=0, admin_key=ADMIN_KEY, template=real_template)) as running:
        yield running


def _client(stack: LocalStack, name: str) -> openai.OpenAI:
    headers = {"content-type": "application/json", "Authorization": f"Bearer {ADMIN_KEY}"}
    tenant = http(
        "POST", stack.url + "/admin/tenants", body=json.dumps({"name": name}).encode(), headers=headers
    )
    tenant_id = tenant.json()["id"]
    body = json.dumps({"name": "k", "role": "developer"}).encode()
    key = http("POST", f"{stack.url}/admin/tenants/{tenant_id}/keys", body=body, headers=headers).json()[
        "key"
    ]
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0)


CRITERIA = [
    {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.expected}}",
        "operation": "eq",
    }
]


def test_an_eval_created_with_the_sdk_is_listed_and_retrieved(stack: LocalStack) -> None:
    client = _client(stack, "evals-a")
    created = client.evals.create(
        name="capitals",
        data_source_config={"type": "custom", "item_schema": {"type": "object"}},
        testing_criteria=CRITERIA,  # type: ignore[list-item]
    )
    assert client.evals.retrieve(created.id).name == "capitals"
    assert [e.id for e in client.evals.list()] == [created.id]


def test_another_tenants_eval_is_not_found(stack: LocalStack) -> None:
    owner, other = _client(stack, "evals-b"), _client(stack, "evals-c")
    created = owner.evals.create(
        name="capitals",
        data_source_config={"type": "custom", "item_schema": {"type": "object"}},
        testing_criteria=CRITERIA,  # type: ignore[list-item]
    )
    with pytest.raises(openai.NotFoundError):
        other.evals.retrieve(created.id)
