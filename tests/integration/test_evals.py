"""Evals against moto: the API function in-process with API Gateway events, the evals table and the
data bucket for real, the scorer handler with a `BatchFinished` event. The batches path (batch
contract §3) is the one fake: batches are built in parallel and wired at merge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from byom.fine_tuning import FileRecord

from tests.conftest import LambdaContext, api_event
from tests.integration.conftest import ROOT, _module, load_handler, tenant_context
from tests.unit.evals_fakes import FakeBatches

EVALS_TABLE = "byom-evals"
FILES_TABLE = "byom-files"
TENANT = "tnt_a"
ITEMS = [{"q": "Capital of France?", "expected": "Paris"}, {"q": "Capital of Italy?", "expected": "Rome"}]


@pytest.fixture
def evals(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, FakeBatches]]:
    from byom import settings
    from byom.api import evals as api
    from byom.dal.fine_tuning import FileRepository

    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=EVALS_TABLE,
        KeySchema=[
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "tenant_id", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.create_table(
        TableName=FILES_TABLE,
        KeySchema=[{"AttributeName": "file_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "file_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("EVALS_TABLE", EVALS_TABLE)
    monkeypatch.setenv("FILES_TABLE", FILES_TABLE)
    batches = FakeBatches()
    monkeypatch.setattr(api, "ContractBatches", lambda: batches)
    settings.eval_settings.cache_clear()
    api.store.cache_clear()
    body = "".join(json.dumps({"item": i}) + "\n" for i in ITEMS).encode()
    key = f"tenants/{TENANT}/files/file-evals.jsonl"
    boto3.client("s3").put_object(Bucket=aws["DATA_BUCKET"], Key=key, Body=body)
    FileRepository(boto3.resource("dynamodb").Table(FILES_TABLE)).create(
        FileRecord(
            id="file-evals",
            tenant_id=TENANT,
            filename="t.jsonl",
            purpose="evals",
            bytes=len(body),
            created_at=1,
            s3_key=key,
        )
    )
    _alias("fast")
    _alias("smart")
    yield load_handler("evals"), batches
    settings.eval_settings.cache_clear()
    api.store.cache_clear()


def _alias(name: str) -> None:
    boto3.resource("dynamodb").Table("byom-models").put_item(
        Item={
            "tenant_id": TENANT,
            "alias": name,
            "provider": "openai_compatible",
            "model_id": name,
            "created_at": 1,
        }
    )


def call(handler: Any, method: str, path: str, body: Any = None, tenant: str = TENANT) -> tuple[int, Any]:
    event = api_event(method, path, body=body, authorizer=tenant_context(tenant, "developer"))
    response = handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


EVAL = {
    "name": "capitals",
    "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
    "testing_criteria": [
        {
            "type": "string_check",
            "name": "exact",
            "input": "{{sample.output_text}}",
            "reference": "{{item.expected}}",
            "operation": "eq",
        }
    ],
}
RUN = {
    "data_source": {
        "type": "completions",
        "model": "fast",
        "models": ["smart"],
        "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.q}}"}]},
        "source": {"type": "file_id", "id": "file-evals"},
    }
}


def _scorer() -> Any:
    return _module("evals_scorer", Path(ROOT) / "functions" / "evals" / "scorer.py").handler


def _finished(batch: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "event-1",
        "source": "byom.batches",
        "detail-type": "BatchFinished",
        "detail": {
            "tenant_id": TENANT,
            "batch_id": batch["id"],
            "status": "completed",
            "metadata": batch["metadata"],
        },
    }


def test_an_eval_is_stored_and_read_back_in_openais_shape(evals: tuple[Any, FakeBatches]) -> None:
    handler, _ = evals
    status, created = call(handler, "POST", "/v1/evals", EVAL)
    assert status == 200 and created["object"] == "eval"
    status, read = call(handler, "GET", f"/v1/evals/{created['id']}")
    assert status == 200 and read == created
    status, listed = call(handler, "GET", "/v1/evals")
    assert [e["id"] for e in listed["data"]] == [created["id"]]


def test_another_tenants_eval_is_a_404(evals: tuple[Any, FakeBatches]) -> None:
    handler, _ = evals
    _, created = call(handler, "POST", "/v1/evals", EVAL)
    status, body = call(handler, "GET", f"/v1/evals/{created['id']}", tenant="tnt_b")
    assert status == 404 and body["error"]["type"] == "not_found_error"


def test_a_malformed_criterion_is_a_400_in_openais_envelope(evals: tuple[Any, FakeBatches]) -> None:
    handler, _ = evals
    bad = EVAL | {"testing_criteria": [{"type": "string_check", "name": "x", "operation": "regex"}]}
    status, body = call(handler, "POST", "/v1/evals", bad)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


def test_the_scorer_completes_a_run_once_both_aliases_are_graded(evals: tuple[Any, FakeBatches]) -> None:
    handler, batches = evals
    _, created = call(handler, "POST", "/v1/evals", EVAL)
    status, run = call(handler, "POST", f"/v1/evals/{created['id']}/runs", RUN)
    assert status == 200 and run["status"] == "in_progress"
    batches.finish("batch_0", ["Paris", "Milan"])
    batches.finish("batch_1", ["Paris", "Rome"])
    scorer = _scorer()
    for batch in batches.submitted:
        scorer(_finished(batch), LambdaContext())
    _, graded = call(handler, "GET", f"/v1/evals/{created['id']}/runs/{run['id']}")
    assert graded["status"] == "completed"
    assert {a: v["score"] for a, v in graded["byom_per_alias"].items()} == {"fast": 0.5, "smart": 1.0}
    _, items = call(handler, "GET", f"/v1/evals/{created['id']}/runs/{run['id']}/output_items")
    assert len(items["data"]) == 4


def test_graded_output_lands_under_the_tenants_eval_prefix(
    evals: tuple[Any, FakeBatches], aws: dict[str, str]
) -> None:
    handler, batches = evals
    _, created = call(handler, "POST", "/v1/evals", EVAL)
    _, run = call(
        handler,
        "POST",
        f"/v1/evals/{created['id']}/runs",
        RUN | {"data_source": RUN["data_source"] | {"models": None}},
    )
    batches.finish("batch_0", ["Paris", "Rome"])
    _scorer()(_finished(batches.submitted[0]), LambdaContext())
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=aws["DATA_BUCKET"])["Contents"]]
    prefix = f"tenants/{TENANT}/evals/{created['id']}/runs/{run['id']}/"
    assert sorted(k for k in keys if k.startswith(prefix)) == [
        prefix + "items.jsonl",
        prefix + "output/fast.jsonl",
    ]


def test_a_run_graded_from_a_provider_batch_job_reads_back_without_latencies(
    evals: tuple[Any, FakeBatches],
) -> None:
    """A provider's batch job times no line: the stored summary has no latency, and the run reads back."""
    handler, batches = evals
    _, created = call(handler, "POST", "/v1/evals", EVAL)
    _, run = call(
        handler,
        "POST",
        f"/v1/evals/{created['id']}/runs",
        RUN | {"data_source": RUN["data_source"] | {"models": None}},
    )
    batches.finish("batch_0", ["Paris", "Rome"], latency=None)
    _scorer()(_finished(batches.submitted[0]), LambdaContext())
    status, graded = call(handler, "GET", f"/v1/evals/{created['id']}/runs/{run['id']}")
    assert status == 200 and graded["status"] == "completed"
    assert graded["byom_per_alias"]["fast"]["latency_p50_ms"] is None
