"""Batches through the openai SDK against the local stack (SPEC §10): an OpenAI-compatible alias's
batch run by the gateway itself, its output and error files, metering at batch prices, cancel, and
the budget refusal at creation. The upstream is in this process and bills known token counts."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx2
import openai
import pytest
from byom.logic.money import cost_micros
from byom.pricing import catalog_price

from tests.e2e.conftest import LocalStack, client_for
from tests.e2e.test_budgets import MeteredUpstream, micros
from tests.integration.fake_openai import serve

pytestmark = pytest.mark.e2e

# On demand 1 USD / 2 USD per 1K tokens, batch half of it: a batch token costs 500 or 1,000 micro-dollars.
PRICE = {
    "input_per_1k_usd": 1.0,
    "output_per_1k_usd": 2.0,
    "batch_input_per_1k_usd": 0.5,
    "batch_output_per_1k_usd": 1.0,
}
MAX_TOKENS = 10
TERMINAL = ("completed", "failed", "cancelled", "expired")


@pytest.fixture(scope="module")
def upstream() -> Iterator[MeteredUpstream]:
    yield from cast(Iterator[MeteredUpstream], serve(MeteredUpstream()))


@dataclass
class Tenant:
    id: str
    model: str
    sdk: openai.OpenAI
    admin: httpx2.Client

    def usage(self) -> dict[str, Any]:
        answer = self.admin.get(f"/admin/tenants/{self.id}/usage")
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def tenant(local_stack: LocalStack, admin: httpx2.Client, upstream: MeteredUpstream) -> Tenant:
    """A tenant with one OpenAI-compatible alias `bulk` on the upstream, on a model id of its own."""
    created = admin.post("/admin/tenants", json={"name": "batches"}).json()
    base = f"/admin/tenants/{created['id']}"
    credential = {"provider": "openai_compatible", "base_url": upstream.url, "api_key": "sk-upstream"}
    assert admin.put(f"{base}/credentials/up", json=credential).status_code == 200
    model = f"bulk-{uuid.uuid4().hex[:8]}"
    alias = {
        "alias": "bulk",
        "provider": "openai_compatible",
        "credential": "up",
        "model_id": model,
        "pricing": PRICE,
    }
    assert admin.post(f"{base}/models", json=alias).status_code == 201
    key = admin.post(f"{base}/keys", json={"name": "dev", "role": "developer"}).json()["key"]
    sdk = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0, timeout=60)
    return Tenant(created["id"], model, sdk, admin)


def line(custom_id: str, content: str, **overrides: Any) -> dict[str, Any]:
    body = {"model": "bulk", "messages": [{"role": "user", "content": content}], "max_tokens": MAX_TOKENS}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body} | overrides


def upload(tenant: Tenant, lines: list[dict[str, Any]]) -> str:
    data = "".join(json.dumps(item) + "\n" for item in lines).encode()
    return tenant.sdk.files.create(file=("batch.jsonl", io.BytesIO(data)), purpose="batch").id


def wait_until_done(tenant: Tenant, batch_id: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = tenant.sdk.batches.retrieve(batch_id)
        if batch.status in TERMINAL:
            return batch
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} still {batch.status} after {timeout} s")


def jsonl(tenant: Tenant, file_id: str) -> list[dict[str, Any]]:
    text = tenant.sdk.files.content(file_id).text
    return [json.loads(row) for row in text.splitlines() if row.strip()]


def line_cost(content: str) -> int:
    """What the upstream bills a line (its prompt's bytes in, MAX_TOKENS out) at batch prices."""
    return len(content.encode()) * 500 + MAX_TOKENS * 1000


def test_a_batch_of_fifty_lines_completes_with_outputs_matched_by_custom_id(
    tenant: Tenant, upstream: MeteredUpstream
) -> None:
    prompts = {f"req-{i:02d}": f"Summarise log entry number {i}" for i in range(50)}
    lines = [line(custom_id, content) for custom_id, content in prompts.items()]

    batch = tenant.sdk.batches.create(
        input_file_id=upload(tenant, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "logs"},
    )
    done = wait_until_done(tenant, batch.id)

    assert batch.id.startswith("batch_") and batch.object == "batch"
    assert done.status == "completed"
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
        50,
        50,
        0,
    )
    assert done.metadata == {"job": "logs"}
    assert done.error_file_id is None
    output = jsonl(tenant, done.output_file_id)
    assert [row["custom_id"] for row in output] == list(prompts)
    assert all(row["response"]["status_code"] == 200 and row["error"] is None for row in output)
    assert {row["response"]["body"]["choices"][0]["message"]["content"] for row in output} == {"ok"}
    assert len(upstream.served_for(tenant.model)) == 50


def test_bad_lines_land_in_the_error_file_and_the_rest_run(tenant: Tenant, upstream: MeteredUpstream) -> None:
    lines = [
        line("good-1", "first"),
        line("bad-url", "x", url="/v1/embeddings"),
        line("good-1", "a duplicate custom_id"),
        line("bad-model", "x", body={"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        line("good-2", "second"),
    ]

    batch = tenant.sdk.batches.create(
        input_file_id=upload(tenant, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = wait_until_done(tenant, batch.id)

    assert done.status == "completed"
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (5, 2, 3)
    assert [row["custom_id"] for row in jsonl(tenant, done.output_file_id)] == ["good-1", "good-2"]
    errors = jsonl(tenant, done.error_file_id)
    assert [(row["custom_id"], row["error"]["code"]) for row in errors] == [
        ("bad-url", "mismatched_url"),
        ("good-1", "duplicate_custom_id"),
        ("bad-model", "mismatched_model"),
    ]
    assert all(row["response"] is None for row in errors)
    assert len(upstream.served_for(tenant.model)) == 2


def test_each_line_is_metered_once_at_batch_prices(tenant: Tenant) -> None:
    contents = [f"Classify ticket {i}" for i in range(12)]
    lines = [line(f"t{i}", content) for i, content in enumerate(contents)]

    batch = tenant.sdk.batches.create(
        input_file_id=upload(tenant, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_until_done(tenant, batch.id)
    usage = tenant.usage()

    assert usage["total"]["requests"] == 12
    assert usage["total"]["output_tokens"] == 12 * MAX_TOKENS
    assert micros(usage["total"]["cost_usd"]) == sum(line_cost(c) for c in contents)


def test_a_cancelled_batch_settles_what_ran_and_releases_the_rest(tenant: Tenant) -> None:
    tenant.admin.put(f"/admin/tenants/{tenant.id}/budget", json={"monthly_limit_usd": 100.0, "hard": True})
    lines = [line(f"c{i}", f"Cancel me {i}") for i in range(1000)]
    batch = tenant.sdk.batches.create(
        input_file_id=upload(tenant, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    held = tenant.usage()["budget"]

    cancelling = tenant.sdk.batches.cancel(batch.id)
    done = wait_until_done(tenant, batch.id)
    usage = tenant.usage()

    assert micros(held["reserved_usd"]) > 0
    assert cancelling.status in ("cancelling", "cancelled")
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.request_counts.completed < 1000
    assert usage["total"]["requests"] == done.request_counts.completed
    assert usage["budget"]["reserved_usd"] == 0
    assert micros(usage["budget"]["remaining_usd"]) == 100_000_000 - micros(usage["total"]["cost_usd"])


def test_a_batch_over_the_hard_budget_is_refused_at_creation(
    tenant: Tenant, upstream: MeteredUpstream
) -> None:
    tenant.admin.put(f"/admin/tenants/{tenant.id}/budget", json={"monthly_limit_usd": 0.01, "hard": True})
    lines = [
        line(f"r{i}", "a request that together with the others costs more than a cent") for i in range(5)
    ]

    with pytest.raises(openai.RateLimitError) as raised:
        tenant.sdk.batches.create(
            input_file_id=upload(tenant, lines), endpoint="/v1/chat/completions", completion_window="24h"
        )

    assert raised.value.status_code == 429
    assert raised.value.code == "insufficient_quota"
    assert "may cost up to $" in raised.value.message and "$0.010000 remaining" in raised.value.message
    assert tenant.sdk.batches.list().data == []
    assert upstream.served_for(tenant.model) == []


def test_another_tenants_batch_is_not_found(
    tenant: Tenant, local_stack: LocalStack, admin: httpx2.Client
) -> None:
    batch = tenant.sdk.batches.create(
        input_file_id=upload(tenant, [line("one", "hello")]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    other = admin.post("/admin/tenants", json={"name": "other"}).json()
    key = admin.post(f"/admin/tenants/{other['id']}/keys", json={"name": "dev", "role": "developer"}).json()[
        "key"
    ]
    stranger = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0)

    with pytest.raises(openai.NotFoundError):
        stranger.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        stranger.batches.cancel(batch.id)


def test_a_file_uploaded_through_a_presigned_url_is_a_batch_input(
    tenant: Tenant, local_stack: LocalStack
) -> None:
    data = json.dumps(line("big", "uploaded out of band")).encode() + b"\n"
    http = httpx2.Client(base_url=local_stack.url, headers={"Authorization": f"Bearer {tenant.sdk.api_key}"})
    upload = http.post(
        "/v1/files/uploads", json={"filename": "big.jsonl", "purpose": "batch", "bytes": len(data)}
    )
    assert upload.status_code == 200, upload.text

    assert httpx2.put(upload.json()["upload_url"], content=data).status_code == 200
    completed = http.post(f"/v1/files/uploads/{upload.json()['id']}/complete")
    batch = tenant.sdk.batches.create(
        input_file_id=completed.json()["id"], endpoint="/v1/chat/completions", completion_window="24h"
    )

    assert completed.status_code == 200 and completed.json()["purpose"] == "batch"
    assert wait_until_done(tenant, batch.id).request_counts.completed == 1


# -- a Bedrock alias: Bedrock batch inference on the stand-in ------------------------------------------

BEDROCK_MODEL = "amazon.nova-micro-v1:0"
# Long enough prompts that a line costs whole micro-dollars even at Nova Micro's batch prices.
PADDING = " ".join(f"word{i}" for i in range(400))


@pytest.fixture
def bedrock_tenant(local_stack: LocalStack, admin: httpx2.Client) -> Tenant:
    """A tenant with the demo's `fast` alias: Bedrock (the stand-in), on the catalog's prices."""
    created = admin.post("/admin/tenants", json={"name": "bedrock-batches"}).json()
    base = f"/admin/tenants/{created['id']}"
    alias = {"alias": "fast", "provider": "bedrock", "model_id": BEDROCK_MODEL}
    assert admin.post(f"{base}/models", json=alias).status_code == 201
    key = admin.post(f"{base}/keys", json={"name": "dev", "role": "developer"}).json()["key"]
    sdk = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0, timeout=60)
    return Tenant(created["id"], BEDROCK_MODEL, sdk, admin)


def fast_line(custom_id: str, content: str, **overrides: Any) -> dict[str, Any]:
    item = line(custom_id, content, **overrides)
    return item | {"body": {**item["body"], "model": "fast"}} if "body" not in overrides else item


def invocation_jobs(local_stack: LocalStack, batch_id: str) -> list[dict[str, Any]]:
    """The stand-in's batch inference jobs for this batch (their names are the batch's id)."""
    answer = httpx2.get(f"{local_stack.bedrock_stand_in_url}/model-invocation-jobs")
    assert answer.status_code == 200, answer.text
    name = batch_id.replace("_", "-")
    return [job for job in answer.json()["invocationJobSummaries"] if job["jobName"] == name]


def test_a_bedrock_batch_of_fifty_lines_runs_as_a_batch_inference_job(
    bedrock_tenant: Tenant, local_stack: LocalStack
) -> None:
    prompts = {f"req-{i:02d}": f"Summarise log entry number {i}" for i in range(50)}

    batch = bedrock_tenant.sdk.batches.create(
        input_file_id=upload(bedrock_tenant, [fast_line(c, p) for c, p in prompts.items()]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    done = wait_until_done(bedrock_tenant, batch.id)

    assert done.status == "completed", done.errors
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
        50,
        50,
        0,
    )
    jobs = invocation_jobs(local_stack, batch.id)
    assert [(job["modelId"], job["modelInvocationType"]) for job in jobs] == [(BEDROCK_MODEL, "Converse")]
    assert jobs[0]["status"] == "Completed" and jobs[0]["successRecordCount"] == 50
    output = jsonl(bedrock_tenant, done.output_file_id)
    assert [row["custom_id"] for row in output] == list(prompts)
    assert all(row["response"]["status_code"] == 200 and row["error"] is None for row in output)
    assert {row["response"]["body"]["model"] for row in output} == {"fast"}
    assert all(row["response"]["body"]["choices"][0]["message"]["content"] for row in output)


def test_bad_lines_of_a_bedrock_batch_land_in_the_error_file(
    bedrock_tenant: Tenant, local_stack: LocalStack
) -> None:
    lines = [
        fast_line("good-1", "first"),
        fast_line("bad-url", "x", url="/v1/embeddings"),
        fast_line("good-1", "a duplicate custom_id"),
        fast_line("blank", " "),
        fast_line("good-2", "second"),
        # Enough lines for Bedrock's minimum records per job (the local stack's is 10).
        *(fast_line(f"more-{i}", f"more {i}") for i in range(8)),
    ]

    batch = bedrock_tenant.sdk.batches.create(
        input_file_id=upload(bedrock_tenant, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = wait_until_done(bedrock_tenant, batch.id)

    assert done.status == "completed", done.errors
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
        13,
        10,
        3,
    )
    assert [row["custom_id"] for row in jsonl(bedrock_tenant, done.output_file_id)][:2] == [
        "good-1",
        "good-2",
    ]
    assert len(invocation_jobs(local_stack, batch.id)) == 1
    errors = jsonl(bedrock_tenant, done.error_file_id)
    assert [row["custom_id"] for row in errors] == ["bad-url", "good-1", "blank"]
    assert [row["error"]["code"] for row in errors[:2]] == ["mismatched_url", "duplicate_custom_id"]
    assert errors[2]["response"]["status_code"] == 400 and errors[2]["response"]["body"]["error"]


def test_each_line_of_a_bedrock_batch_is_metered_once_at_the_catalogs_batch_price(
    bedrock_tenant: Tenant, local_stack: LocalStack
) -> None:
    contents = [f"Classify ticket {i}: {PADDING}" for i in range(12)]
    batch = bedrock_tenant.sdk.batches.create(
        input_file_id=upload(bedrock_tenant, [fast_line(f"t{i}", c) for i, c in enumerate(contents)]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    done = wait_until_done(bedrock_tenant, batch.id)
    output = jsonl(bedrock_tenant, done.output_file_id)
    answer = client_for(local_stack, bedrock_tenant.sdk.api_key).get("/v1/usage")
    assert answer.status_code == 200, answer.text
    usage = answer.json()

    pricing = catalog_price(BEDROCK_MODEL)
    assert pricing is not None
    tokens = [
        (
            row["response"]["body"]["usage"]["prompt_tokens"],
            row["response"]["body"]["usage"]["completion_tokens"],
        )
        for row in output
    ]
    at_batch = sum(cost_micros(pricing.batch(), i, o) for i, o in tokens)
    on_demand = sum(cost_micros(pricing, i, o) for i, o in tokens)
    assert done.request_counts.completed == 12
    assert usage["total"]["requests"] == 12
    assert usage["total"]["input_tokens"] == sum(i for i, _ in tokens)
    assert micros(usage["total"]["cost_usd"]) == at_batch > 0
    assert abs(2 * at_batch - on_demand) <= len(tokens)


def test_a_cancelled_bedrock_batch_settles_what_ran_and_releases_the_rest(
    bedrock_tenant: Tenant, local_stack: LocalStack
) -> None:
    bedrock_tenant.admin.put(
        f"/admin/tenants/{bedrock_tenant.id}/budget", json={"monthly_limit_usd": 100.0, "hard": True}
    )
    lines = [fast_line(f"c{i}", f"Cancel me {i}") for i in range(200)]
    batch = bedrock_tenant.sdk.batches.create(
        input_file_id=upload(bedrock_tenant, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    held = bedrock_tenant.usage()["budget"]

    cancelling = bedrock_tenant.sdk.batches.cancel(batch.id)
    done = wait_until_done(bedrock_tenant, batch.id)
    usage = bedrock_tenant.usage()

    assert micros(held["reserved_usd"]) > 0
    assert cancelling.status in ("cancelling", "cancelled")
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.request_counts.completed < 200
    assert usage["total"]["requests"] == done.request_counts.completed
    assert usage["budget"]["reserved_usd"] == 0
    assert micros(usage["budget"]["remaining_usd"]) == 100_000_000 - micros(usage["total"]["cost_usd"])
    assert all(job["status"] in ("Stopped", "Completed") for job in invocation_jobs(local_stack, batch.id))


def test_a_bedrock_batch_below_the_minimum_records_is_run_by_the_gateway(
    bedrock_tenant: Tenant, local_stack: LocalStack
) -> None:
    batch = bedrock_tenant.sdk.batches.create(
        input_file_id=upload(bedrock_tenant, [fast_line(f"s{i}", f"small {i}") for i in range(3)]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    done = wait_until_done(bedrock_tenant, batch.id)

    assert done.status == "completed" and done.request_counts.completed == 3
    assert invocation_jobs(local_stack, batch.id) == []
    assert bedrock_tenant.usage()["total"]["requests"] == 3
