"""An eval run over two aliases on the local stack, through the openai SDK, ranks them, and
`/v1/models/recommend?task=` follows it (SPEC §10). Each alias's lines run as a batch (a Bedrock
batch inference job on the stand-in), whose `BatchFinished` event wakes the scorer."""

from __future__ import annotations

import json
import time
import uuid

import httpx2
import pytest
from openai import OpenAI

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e

# The Bedrock stand-ins answer with their model id: only the `claude` alias's answers contain it.
ITEMS = [{"question": f"Question {n}", "expected": "claude"} for n in range(5)]


def _tenant(local_stack: LocalStack, admin: httpx2.Client) -> tuple[OpenAI, httpx2.Client]:
    tenant_id = admin.post("/admin/tenants", json={"name": f"evals-{uuid.uuid4().hex[:6]}"}).json()["id"]
    for alias, model_id in (
        ("fast", "amazon.nova-micro-v1:0"),
        ("claude", "anthropic.claude-3-haiku-20240307-v1:0"),
    ):
        created = admin.post(
            f"/admin/tenants/{tenant_id}/models",
            json={"alias": alias, "provider": "bedrock", "model_id": model_id},
        )
        assert created.status_code == 201, created.text
    key = admin.post(f"/admin/tenants/{tenant_id}/keys", json={"name": "dev", "role": "developer"}).json()[
        "key"
    ]
    client = OpenAI(base_url=local_stack.url + "/v1", api_key=key, max_retries=0)
    http = httpx2.Client(base_url=local_stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return client, http


def test_an_eval_run_over_two_aliases_ranks_them_and_recommendations_follow(
    local_stack: LocalStack, admin: httpx2.Client
) -> None:
    client, http = _tenant(local_stack, admin)
    data = "".join(json.dumps({"item": item}) + "\n" for item in ITEMS).encode()
    test_set = client.files.create(file=("capitals.jsonl", data), purpose="evals")
    created = client.evals.create(
        name="names-the-model",
        data_source_config={
            "type": "custom",
            "item_schema": {"type": "object"},
            "include_sample_schema": True,
        },
        testing_criteria=[
            {
                "type": "string_check",
                "name": "says-claude",
                "input": "{{sample.output_text}}",
                "reference": "{{item.expected}}",
                "operation": "ilike",
            }
        ],
    )
    run = client.evals.runs.create(
        created.id,
        data_source={
            "type": "completions",
            "model": "fast",
            # The BYOM extension: more aliases in the same run (the SDK passes the key through).
            "models": ["claude"],
            "input_messages": {
                "type": "template",
                "template": [{"role": "user", "content": "{{item.question}}"}],
            },
            "source": {"type": "file_id", "id": test_set.id},
        },  # type: ignore[typeddict-unknown-key]
    )
    deadline = time.monotonic() + 120
    while run.status not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.25)  # the run ends within seconds of its batch: a second's poll was mostly waiting
        run = client.evals.runs.retrieve(run.id, eval_id=created.id)
    assert run.status == "completed"
    per_alias = run.model_extra["byom_per_alias"]  # type: ignore[index]
    assert per_alias["claude"]["score"] == 1.0 and per_alias["fast"]["score"] == 0.0

    items = list(client.evals.runs.output_items.list(run.id, eval_id=created.id))
    assert len(items) == 2 * len(ITEMS)

    ranked = http.get("/v1/models/recommend", params={"task": "names-the-model"}).json()["data"]
    assert [row["id"] for row in ranked] == ["claude", "fast"]
    assert all(row["reasons"] for row in ranked)
