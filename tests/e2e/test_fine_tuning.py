"""Fine-tuning through the openai SDK against the local stack: upload, job, approval, the new alias
answering; and every way it ends badly (SPEC §4.3, §6)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import boto3
import httpx2
import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e

LABELS = {
    "billing": "charged twice refund invoice payment card",
    "shipping": "parcel delivery late courier tracking package",
    "login": "password reset account locked sign in",
}


def consistent_dataset(count: int = 30) -> bytes:
    """A ticket classifier's data: each label has its own vocabulary, so it can be learnt."""
    lines = []
    for i in range(count):
        label = list(LABELS)[i % 3]
        words = LABELS[label].split()
        prompt = f"Ticket {i}: my {words[i % len(words)]} {words[(i + 1) % len(words)]} problem"
        lines.append(
            json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "Classify the support ticket."},
                        {"role": "user", "content": prompt},
                        {"role": "assistant", "content": label},
                    ]
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


def inconsistent_dataset(count: int = 30) -> bytes:
    """Labels that no prompt predicts: nothing to learn, so held-out examples score low."""
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Ticket number {i} needs help"},
                    {"role": "assistant", "content": f"label-{(i * 7) % 5}"},
                ]
            }
        )
        for i in range(count)
    ]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Tenant:
    id: str
    client: OpenAI
    http: httpx2.Client
    developer: OpenAI


def _tenant(local_stack: LocalStack, admin: httpx2.Client) -> Tenant:
    tenant_id = admin.post("/admin/tenants", json={"name": f"ft-{uuid.uuid4().hex[:6]}"}).json()["id"]
    for alias, provider, model_id in (
        ("fast", "bedrock", "amazon.nova-micro-v1:0"),
        ("claude", "bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ):
        created = admin.post(
            f"/admin/tenants/{tenant_id}/models",
            json={"alias": alias, "provider": provider, "model_id": model_id},
        )
        assert created.status_code == 201, created.text
    keys = {}
    for role in ("admin", "developer"):
        keys[role] = admin.post(f"/admin/tenants/{tenant_id}/keys", json={"name": role, "role": role}).json()[
            "key"
        ]
    return Tenant(
        id=tenant_id,
        client=OpenAI(base_url=local_stack.url + "/v1", api_key=keys["admin"], max_retries=0),
        http=httpx2.Client(
            base_url=local_stack.url, headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=30
        ),
        developer=OpenAI(base_url=local_stack.url + "/v1", api_key=keys["developer"], max_retries=0),
    )


@pytest.fixture
def tenant(local_stack: LocalStack, admin: httpx2.Client) -> Tenant:
    return _tenant(local_stack, admin)


def upload(client: OpenAI, data: bytes, name: str = "train.jsonl") -> str:
    return client.files.create(file=(name, data), purpose="fine-tune").id


def wait_for(client: OpenAI, job_id: str, *statuses: str, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.byom_status in statuses or time.monotonic() > deadline:  # type: ignore[attr-defined]
            return job
        time.sleep(0.3)


def approve(tenant: Tenant, job_id: str, approved: bool, comment: str = "") -> httpx2.Response:
    return tenant.http.post(
        f"/v1/fine_tuning/jobs/{job_id}/approve", json={"approved": approved, "comment": comment}
    )


def test_a_tenant_fine_tunes_a_bedrock_alias_approves_it_and_chats_with_the_result(tenant: Tenant) -> None:
    client = tenant.developer
    training_file = upload(client, consistent_dataset())

    job = client.fine_tuning.jobs.create(model="fast", training_file=training_file, suffix="tickets", seed=3)
    assert job.status == "validating_files"
    job = wait_for(client, job.id, "awaiting_approval", "failed")
    assert job.byom_status == "awaiting_approval", job.error  # type: ignore[attr-defined]
    assert job.status == "running"
    assert job.evaluation["score"] >= 0.9 and job.evaluation["passed"] is True  # type: ignore[attr-defined]

    approved = approve(tenant, job.id, True, "looks right")
    assert approved.status_code == 200, approved.text
    job = wait_for(client, job.id, "succeeded", "failed")
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model and job.fine_tuned_model.startswith("ft:fast:tickets:")
    assert job.fine_tuned_model in [m.id for m in client.models.list()]

    reply = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "the package tracking stopped"}]
    )
    assert reply.choices[0].message.content == "shipping"
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert any(m.startswith("Registered the fine-tuned model") for m in messages)
    assert next(j.id for j in client.fine_tuning.jobs.list()) == job.id


STAND_IN_PRICE = {"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002}


def _openai_aliases(tenant: Tenant, local_stack: LocalStack, admin: httpx2.Client) -> None:
    """An `openai` credential pointed at the local OpenAI stand-in (http on loopback is accepted only
    by the local stack), an alias that trains and one whose training fails."""
    base = f"/admin/tenants/{tenant.id}"
    credential = {
        "provider": "openai",
        "base_url": local_stack.openai_stand_in_url,
        "api_key": "sk-local-5678",
    }
    assert admin.put(f"{base}/credentials/oa", json=credential).status_code == 200
    for alias, model_id in (("oa", "stand-in-chat"), ("oa-broken", "stand-in-chat-fail-training")):
        created = admin.post(
            f"{base}/models",
            json={
                "alias": alias,
                "provider": "openai",
                "model_id": model_id,
                "credential": "oa",
                "pricing": STAND_IN_PRICE,
            },
        )
        assert created.status_code == 201, created.text


def _stand_in_requests(local_stack: LocalStack) -> list[str]:
    base = local_stack.openai_stand_in_url.removesuffix("/v1")
    return [r["api"] for r in httpx2.get(f"{base}/_stand_in/requests").json()["requests"]]


def test_a_tenant_fine_tunes_an_openai_alias_approves_it_and_chats_with_the_result(
    tenant: Tenant, local_stack: LocalStack, admin: httpx2.Client
) -> None:
    _openai_aliases(tenant, local_stack, admin)
    client = tenant.developer
    training_file = upload(client, consistent_dataset())

    job = client.fine_tuning.jobs.create(model="oa", training_file=training_file, suffix="tickets", seed=3)
    job = wait_for(client, job.id, "awaiting_approval", "failed")
    assert job.byom_status == "awaiting_approval", job.error  # type: ignore[attr-defined]
    assert job.evaluation["score"] >= 0.9 and job.evaluation["passed"] is True  # type: ignore[attr-defined]

    approved = approve(tenant, job.id, True, "looks right")
    assert approved.status_code == 200, approved.text
    job = wait_for(client, job.id, "succeeded", "failed")
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model and job.fine_tuned_model.startswith("ft:oa:tickets:")

    reply = client.chat.completions.with_raw_response.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "the package tracking stopped"}]
    )
    assert reply.parse().choices[0].message.content == "shipping"
    assert reply.headers["x-byom-provider"] == "openai"
    assert reply.headers["x-byom-model"].startswith("ft:stand-in-chat:byom-local:tickets:")
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert any(m.startswith("Started OpenAI fine-tuning job ftjob-") for m in messages)
    calls = _stand_in_requests(local_stack)
    assert "fine_tuning POST /files" in calls and "fine_tuning POST /fine_tuning/jobs" in calls


def test_a_failed_openai_job_fails_the_job_with_openai_s_message(
    tenant: Tenant, local_stack: LocalStack, admin: httpx2.Client
) -> None:
    _openai_aliases(tenant, local_stack, admin)
    client = tenant.client
    job = client.fine_tuning.jobs.create(
        model="oa-broken", training_file=upload(client, consistent_dataset())
    )
    job = wait_for(client, job.id, "failed", "awaiting_approval")

    assert job.status == "failed"
    assert job.error.code == "training_failed"
    assert "ended failed" in job.error.message and "training failed" in job.error.message
    assert not any(m.id.startswith("ft:") for m in client.models.list())


def test_a_cancelled_openai_job_is_cancelled_at_openai(
    tenant: Tenant, local_stack: LocalStack, admin: httpx2.Client
) -> None:
    _openai_aliases(tenant, local_stack, admin)
    client = tenant.client
    job = client.fine_tuning.jobs.create(model="oa", training_file=upload(client, consistent_dataset()))
    deadline = time.monotonic() + 30
    while not any(
        e.message.startswith("Started OpenAI") for e in client.fine_tuning.jobs.list_events(job.id)
    ):
        assert time.monotonic() < deadline, "the OpenAI job never started"
        time.sleep(0.2)

    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"

    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert any("OpenAI fine-tuning job cancelled" in m for m in events)
    assert any(
        c.startswith("fine_tuning POST /fine_tuning/jobs/ftjob-") and c.endswith("/cancel")
        for c in _stand_in_requests(local_stack)
    )


def test_only_a_tenant_admin_may_approve(tenant: Tenant, local_stack: LocalStack) -> None:
    job = tenant.developer.fine_tuning.jobs.create(
        model="fast", training_file=upload(tenant.developer, consistent_dataset())
    )
    wait_for(tenant.developer, job.id, "awaiting_approval", "failed")
    with pytest.raises(openai.PermissionDeniedError):
        tenant.developer.post(
            f"/fine_tuning/jobs/{job.id}/approve", body={"approved": True}, cast_to=httpx2.Response
        )
    tenant.client.fine_tuning.jobs.cancel(job.id)


def test_a_rejected_job_fails_and_registers_nothing(tenant: Tenant) -> None:
    client = tenant.client
    job = client.fine_tuning.jobs.create(model="fast", training_file=upload(client, consistent_dataset()))
    wait_for(client, job.id, "awaiting_approval", "failed")

    assert approve(tenant, job.id, False, "wrong tone").status_code == 200
    job = wait_for(client, job.id, "failed", "succeeded")

    assert job.status == "failed"
    assert job.error.code == "approval_rejected" and "wrong tone" in job.error.message
    assert not any(m.id.startswith("ft:") for m in client.models.list())
    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert any("Rejected by key" in m for m in events)


def test_a_cancelled_job_stops_and_stays_cancelled(tenant: Tenant) -> None:
    client = tenant.client
    job = client.fine_tuning.jobs.create(model="fast", training_file=upload(client, consistent_dataset()))

    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    time.sleep(4)  # past the local training time: nothing may bring the job back

    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "cancelled" and job.fine_tuned_model is None
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"


def test_a_score_below_the_threshold_fails_the_job(tenant: Tenant) -> None:
    client = tenant.client
    job = client.fine_tuning.jobs.create(
        model="fast", training_file=upload(client, inconsistent_dataset()), seed=7
    )
    job = wait_for(client, job.id, "failed", "awaiting_approval")

    assert job.status == "failed"
    assert job.error.code == "evaluation_below_threshold"
    assert job.evaluation["score"] < 0.9 and job.evaluation["passed"] is False  # type: ignore[attr-defined]


def test_a_lower_threshold_given_with_the_job_overrides_the_alias(tenant: Tenant) -> None:
    client = tenant.client
    job = client.fine_tuning.jobs.create(
        model="fast",
        training_file=upload(client, inconsistent_dataset()),
        seed=7,
        extra_body={"byom": {"threshold": 0.0}},
    )
    job = wait_for(client, job.id, "awaiting_approval", "failed")
    assert job.byom_status == "awaiting_approval"  # type: ignore[attr-defined]
    assert job.evaluation["overridden"] is True  # type: ignore[attr-defined]
    client.fine_tuning.jobs.cancel(job.id)


def test_a_failed_provider_job_fails_the_job_with_its_message(tenant: Tenant) -> None:
    client = tenant.client
    job = client.fine_tuning.jobs.create(
        model="fast", training_file=upload(client, consistent_dataset()), suffix="fail-training"
    )
    job = wait_for(client, job.id, "failed", "awaiting_approval")

    assert job.status == "failed"
    assert job.error.code == "training_failed"
    assert "training failed" in job.error.message


def test_a_malformed_line_fails_the_job_naming_the_line(tenant: Tenant) -> None:
    client = tenant.client
    data = consistent_dataset().splitlines()
    data[4] = b'{"messages": [{"role": "user", "content": "hi"}'
    job = client.fine_tuning.jobs.create(model="fast", training_file=upload(client, b"\n".join(data)))
    job = wait_for(client, job.id, "failed", "training")

    assert job.status == "failed"
    assert job.error.code == "invalid_training_file"
    assert job.error.message == "line 5: not valid JSON"


def test_too_few_examples_fail_the_job(tenant: Tenant) -> None:
    client = tenant.client
    job = client.fine_tuning.jobs.create(model="fast", training_file=upload(client, consistent_dataset(5)))
    job = wait_for(client, job.id, "failed", "training")
    assert job.error.code == "invalid_training_file" and "at least 10" in job.error.message


def test_bad_requests_are_refused_before_a_job_exists(
    tenant: Tenant, local_stack: LocalStack, admin: httpx2.Client
) -> None:
    client = tenant.client
    good = upload(client, consistent_dataset())
    other = _tenant(local_stack, admin)
    foreign = upload(other.client, consistent_dataset())

    with pytest.raises(openai.BadRequestError) as unknown:
        client.fine_tuning.jobs.create(model="fast", training_file="file-doesnotexist")
    with pytest.raises(openai.BadRequestError) as of_another:
        client.fine_tuning.jobs.create(model="fast", training_file=foreign)
    assert unknown.value.body["message"].replace("file-doesnotexist", "X") == of_another.value.body[
        "message"
    ].replace(foreign, "X")
    with pytest.raises(openai.BadRequestError) as not_tunable:
        client.fine_tuning.jobs.create(model="claude", training_file=good)
    assert not_tunable.value.body["code"] == "model_not_fine_tunable"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.create(model="no-such-alias", training_file=good)
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("empty.jsonl", b""), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("t.jsonl", consistent_dataset()), purpose="assistants")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(foreign)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-doesnotexist")
    assert [f.id for f in client.files.list()] == [good]
    assert client.fine_tuning.jobs.list().data == []


def test_a_file_over_the_limit_is_a_413(tenant: Tenant) -> None:
    with pytest.raises(openai.APIStatusError) as too_large:
        tenant.client.files.create(file=("big.jsonl", b"x" * (4 * 1024 * 1024 + 1)), purpose="fine-tune")
    assert too_large.value.status_code == 413
    assert too_large.value.body["code"] == "request_too_large"


def test_the_same_request_with_the_same_idempotency_key_makes_one_job(tenant: Tenant) -> None:
    client = tenant.client
    training_file = upload(client, consistent_dataset())
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first = client.fine_tuning.jobs.create(model="fast", training_file=training_file, extra_headers=headers)
    second = client.fine_tuning.jobs.create(model="fast", training_file=training_file, extra_headers=headers)
    assert first.id == second.id
    assert len(client.fine_tuning.jobs.list().data) == 1
    client.fine_tuning.jobs.cancel(first.id)


def test_a_viewer_key_may_not_touch_files_or_jobs(
    tenant: Tenant, local_stack: LocalStack, admin: httpx2.Client
) -> None:
    key = admin.post(f"/admin/tenants/{tenant.id}/keys", json={"name": "v", "role": "viewer"}).json()["key"]
    viewer = OpenAI(base_url=local_stack.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        viewer.files.list()
    with pytest.raises(openai.PermissionDeniedError):
        viewer.fine_tuning.jobs.list()


def test_a_files_content_is_the_bytes_uploaded(tenant: Tenant) -> None:
    data = consistent_dataset()
    file_id = upload(tenant.developer, data)

    assert tenant.developer.files.content(file_id).read() == data


def test_a_deleted_file_is_gone_with_every_version_of_its_object(
    tenant: Tenant, local_stack: LocalStack
) -> None:
    file_id = upload(tenant.developer, consistent_dataset())

    deleted = tenant.developer.files.delete(file_id)

    assert (deleted.id, deleted.object, deleted.deleted) == (file_id, "file", True)
    with pytest.raises(openai.NotFoundError):
        tenant.developer.files.retrieve(file_id)
    with pytest.raises(openai.NotFoundError):
        tenant.developer.files.content(file_id)
    with pytest.raises(openai.NotFoundError):
        tenant.developer.files.delete(file_id)
    s3 = boto3.client(
        "s3",
        endpoint_url=local_stack.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if "finetuningdata" in b["Name"].lower())
    left = s3.list_object_versions(Bucket=bucket, Prefix=f"tenants/{tenant.id}/files/{file_id}")
    assert not left.get("Versions") and not left.get("DeleteMarkers")
