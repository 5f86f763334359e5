"""Governance through the local stack with the openai SDK: redaction seen from the upstream's side,
restore, block, the audit trail of calls and admin actions, content logging, a data subject's export
and erasure, tokens-per-minute limits, and policies that are refused whole."""

from __future__ import annotations

import hashlib
import json
import time

import boto3
import httpx2
import openai
import pytest

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
PROMPT = f"Please email {EMAIL} the receipt for card {CARD}."
SUBJECT = "subject-e2e-42"
PRICE = {"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002}


def _aws(local_stack: LocalStack, service: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        service,
        endpoint_url=local_stack.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def tenant(local_stack: LocalStack, admin: httpx2.Client) -> dict:
    tenant = admin.post("/admin/tenants", json={"name": "governed"}).json()
    base = f"/admin/tenants/{tenant['id']}"
    credential = {
        "provider": "openai_compatible",
        "base_url": local_stack.openai_stand_in_url,
        "api_key": "sk-local-gov",
    }
    assert admin.put(f"{base}/credentials/local", json=credential).status_code == 200
    for alias in (
        {
            "alias": "chat",
            "provider": "openai_compatible",
            "model_id": "stand-in-chat",
            "credential": "local",
        },
        {"alias": "br", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
        {
            "alias": "embed",
            "provider": "openai_compatible",
            "model_id": "stand-in-embed",
            "credential": "local",
        },
        {
            "alias": "cached",
            "provider": "openai_compatible",
            "model_id": "stand-in-chat",
            "credential": "local",
            "cache_ttl_seconds": 600,
        },
    ):
        assert admin.post(f"{base}/models", json={"pricing": PRICE, **alias}).status_code == 201
    keys = {
        role: admin.post(f"{base}/keys", json={"name": role, "role": role}).json()
        for role in ("admin", "developer")
    }
    return tenant | {"base": base, "keys": keys}


@pytest.fixture(scope="module")
def sdk(local_stack: LocalStack, tenant: dict) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{local_stack.url}/v1", api_key=tenant["keys"]["developer"]["key"], max_retries=0
    )


@pytest.fixture
def upstream(local_stack: LocalStack):  # type: ignore[no-untyped-def]
    """What the OpenAI-compatible stand-in received during the test."""
    url = local_stack.openai_stand_in_url.removesuffix("/v1") + "/_stand_in/requests"
    httpx2.delete(url)

    def seen() -> str:
        return json.dumps(httpx2.get(url).json()["requests"])

    return seen


def _policy(admin: httpx2.Client, tenant: dict, **policy: object) -> httpx2.Response:
    return admin.put(f"{tenant['base']}/policy", json=policy)


def test_masking_keeps_the_values_from_the_upstream_and_restore_brings_them_back(
    admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI, upstream
) -> None:  # type: ignore[no-untyped-def]
    assert _policy(admin, tenant, redaction={"mode": "mask", "restore": True}).status_code == 200

    reply = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": PROMPT}])

    seen = upstream()
    assert EMAIL not in seen and "4111" not in seen
    assert "<EMAIL_1>" in seen and "<PAYMENT_CARD_1>" in seen
    assert EMAIL in (reply.choices[0].message.content or "") and CARD in (
        reply.choices[0].message.content or ""
    )


def test_a_streamed_answer_is_restored_too(
    admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI, upstream
) -> None:  # type: ignore[no-untyped-def]
    assert _policy(admin, tenant, redaction={"mode": "mask", "restore": True}).status_code == 200

    stream = sdk.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert EMAIL in text and CARD in text
    assert EMAIL not in upstream()


def test_bedrock_aliases_are_masked_before_converse(
    admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI
) -> None:
    assert _policy(admin, tenant, redaction={"mode": "mask"}).status_code == 200
    reply = sdk.chat.completions.create(model="br", messages=[{"role": "user", "content": PROMPT}])
    content = reply.choices[0].message.content or ""
    # The stand-in echoes what it was sent: placeholders, not the values (restore is off).
    assert EMAIL not in content and "<EMAIL_1>" in content


def test_embeddings_input_is_masked(admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI, upstream) -> None:  # type: ignore[no-untyped-def]
    assert _policy(admin, tenant, redaction={"mode": "mask"}).status_code == 200
    sdk.embeddings.create(model="embed", input=[f"contact {EMAIL}"])
    assert EMAIL not in upstream()


def test_block_refuses_naming_the_types_never_the_values(
    admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI, upstream
) -> None:  # type: ignore[no-untyped-def]
    assert _policy(admin, tenant, redaction={"mode": "block"}).status_code == 200

    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": PROMPT}])

    assert refused.value.code == "content_policy_violation"
    assert "email" in refused.value.message and "payment_card" in refused.value.message
    assert EMAIL not in refused.value.message and "4111" not in refused.value.message
    assert "stand-in-chat" not in upstream()


def test_a_bedrock_guardrail_masks_what_it_anonymizes_and_blocks_what_it_blocks(
    admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI, upstream
) -> None:  # type: ignore[no-untyped-def]
    # The local stand-in guardrail `localpii` anonymizes email and phone, blocks cards and SSNs.
    policy = {"mode": "mask", "types": [], "restore": True, "guardrail": {"id": "localpii", "version": "1"}}
    assert _policy(admin, tenant, redaction=policy).status_code == 200

    reply = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"mail {EMAIL}"}])
    assert EMAIL not in upstream() and "<EMAIL_1>" in upstream()
    assert EMAIL in (reply.choices[0].message.content or "")

    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"card {CARD}"}])
    assert refused.value.code == "content_policy_violation" and "4111" not in refused.value.message


def test_a_redacted_value_never_reaches_the_logs(local_stack: LocalStack) -> None:
    logs = local_stack.logs()
    assert EMAIL not in logs and "4111 1111" not in logs


@pytest.mark.parametrize(
    ("policy", "param"),
    [
        ({"redaction": {"mode": "mask", "types": ["email", "passport"]}}, "redaction.types"),
        (
            {"redaction": {"mode": "mask", "custom": [{"name": "emp", "pattern": "(a+)+$"}]}},
            "redaction.custom.0.pattern",
        ),
        (
            {"redaction": {"mode": "mask", "custom": [{"name": "emp", "pattern": "(unclosed"}]}},
            "redaction.custom.0.pattern",
        ),
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": 3651}, "retention_days"),
        (
            {"redaction": {"mode": "mask", "guardrail": {"id": "nosuchguardrail", "version": "1"}}},
            "redaction.guardrail",
        ),
        ({"redaction": {"mode": "sometimes"}}, "redaction.mode"),
    ],
)
def test_a_bad_policy_is_refused_whole_naming_the_field(
    admin: httpx2.Client, tenant: dict, policy: dict, param: str
) -> None:
    before = admin.get(f"{tenant['base']}/policy").json()
    refused = _policy(admin, tenant, content_logging=True, **policy)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == param
    after = admin.get(f"{tenant['base']}/policy").json()
    assert after == before


def test_a_custom_pattern_is_masked_with_its_name(
    admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI, upstream
) -> None:  # type: ignore[no-untyped-def]
    policy = {"mode": "mask", "types": [], "custom": [{"name": "employee_id", "pattern": r"EMP-\d{6}"}]}
    assert _policy(admin, tenant, redaction=policy).status_code == 200
    sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "who is EMP-123456?"}])
    assert "EMP-123456" not in upstream() and "<EMPLOYEE_ID_1>" in upstream()


def _audit(admin: httpx2.Client, tenant: dict, **query: object) -> list[dict]:
    answer = admin.get(f"{tenant['base']}/audit", params={"limit": 100, **query})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_every_call_and_admin_action_is_in_the_audit_with_its_outcome(
    admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI
) -> None:
    assert _policy(admin, tenant, redaction={"mode": "mask"}).status_code == 200
    ok = sdk.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": PROMPT}]
    )
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="missing", messages=[{"role": "user", "content": "hi"}])
    sdk.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-byom-dry-run": "true"}
    )

    records = _audit(admin, tenant)
    mine = next(r for r in records if r["request_id"] == ok.headers["x-request-id"])
    assert (
        mine["status"] == "succeeded" and mine["model"] == "chat" and mine["provider"] == "openai_compatible"
    )
    assert mine["redactions"] == {"email": 1, "payment_card": 1}
    assert mine["input_tokens"] > 0 and mine["cost_usd"] > 0
    statuses = {r["status"] for r in records if r["kind"] == "interaction"}
    assert {"succeeded", "invalid_request", "dry_run", "policy_blocked"} <= statuses
    actions = {r["action"] for r in records if r["kind"] == "admin"}
    assert "PUT /admin/tenants/{tenant_id}/policy" in actions
    assert "POST /admin/tenants/{tenant_id}/keys" in actions
    assert "PUT /admin/tenants/{tenant_id}/credentials/{name}" in actions
    assert EMAIL not in json.dumps(records) and "sk-local-gov" not in json.dumps(records)


def test_budget_refusals_and_cache_hits_are_in_the_audit(
    admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI
) -> None:
    assert _policy(admin, tenant).status_code == 200
    for _ in range(2):
        sdk.chat.completions.create(model="cached", messages=[{"role": "user", "content": "same question"}])
    budget = {"monthly_limit_usd": 0.000001, "warn_at": [], "hard": True}
    assert admin.put(f"{tenant['base']}/budget", json=budget).status_code == 200
    try:
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "over budget"}])
        assert refused.value.code == "insufficient_quota"
    finally:
        assert admin.delete(f"{tenant['base']}/budget").status_code == 200

    statuses = [r["status"] for r in _audit(admin, tenant, kind="interaction")]
    assert "budget_refused" in statuses and "cache_hit" in statuses
    (hit, *_) = _audit(admin, tenant, status="cache_hit")
    assert hit["cache_hit"] is True and hit["cost_usd"] == 0


def test_the_audit_filters_by_status_and_kind(admin: httpx2.Client, tenant: dict) -> None:
    assert all(r["status"] == "policy_blocked" for r in _audit(admin, tenant, status="policy_blocked"))
    assert all(r["kind"] == "admin" for r in _audit(admin, tenant, kind="admin"))


def test_content_is_logged_only_when_asked_and_encrypted_at_rest(
    local_stack: LocalStack, admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI
) -> None:
    assert _policy(admin, tenant, redaction={"mode": "mask"}, content_logging=False).status_code == 200
    off = sdk.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "not kept"}]
    )
    assert _policy(admin, tenant, redaction={"mode": "mask"}, content_logging=True).status_code == 200
    on = sdk.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": f"kept {EMAIL}"}]
    )

    records = {r["request_id"]: r for r in _audit(admin, tenant, include_content="true")}
    assert records[off.headers["x-request-id"]]["has_content"] is False
    kept = records[on.headers["x-request-id"]]
    assert kept["has_content"] is True
    assert "kept <EMAIL_1>" in json.dumps(kept["content"])  # what the provider saw: masked
    s3 = _aws(local_stack, "s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if "finetuningdata" in b["Name"].lower())
    objects = s3.list_objects_v2(Bucket=bucket, Prefix=f"tenants/{tenant['id']}/").get("Contents", [])
    stored = [
        s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in objects if "/content/" in o["Key"]
    ]
    assert stored and all(b"kept" not in body for body in stored)


def test_a_subject_is_exported_then_erased_and_nothing_of_them_remains(
    local_stack: LocalStack, admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI
) -> None:
    assert _policy(admin, tenant, redaction={"mode": "mask"}, content_logging=True).status_code == 200
    for text in ("first", "second"):
        sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": text}], user=SUBJECT)
    sdk.chat.completions.create(
        model="cached",
        messages=[{"role": "user", "content": "third"}],
        extra_headers={"x-byom-user": SUBJECT},
    )
    sdk.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "someone else"}], user="other"
    )
    stored = sdk.responses.create(model="chat", input="fourth", user=SUBJECT)

    exported = admin.get(f"{tenant['base']}/subjects/{SUBJECT}")
    assert exported.status_code == 200, exported.text
    assert len(exported.json()["audit_records"]) == 4
    assert len(exported.json()["cache_entries"]) == 1
    assert [r["id"] for r in exported.json()["stored_responses"]] == [stored.id]
    # Each record carries the content its call stored (content logging is on).
    words = set(
        json.dumps([r.get("content") for r in exported.json()["audit_records"]]).replace('"', " ").split()
    )
    assert {"first", "second", "third"} <= words

    erased = admin.delete(f"{tenant['base']}/subjects/{SUBJECT}")
    assert erased.status_code == 200, erased.text
    assert erased.json()["erased"] == {
        "audit_records": 4,
        "content_objects": 4,
        "cache_entries": 1,
        "stored_responses": 1,
    }
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(stored.id)
    s3 = _aws(local_stack, "s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if "finetuningdata" in b["Name"].lower())
    prefix = f"tenants/{tenant['id']}/subjects/{hashlib.sha256(SUBJECT.encode()).hexdigest()}/"
    left = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    assert not left.get("Versions") and not left.get("DeleteMarkers")

    assert admin.get(f"{tenant['base']}/subjects/{SUBJECT}").json()["audit_records"] == []
    assert admin.delete(f"{tenant['base']}/subjects/{SUBJECT}").json()["erased"]["audit_records"] == 0
    dynamodb = _aws(local_stack, "dynamodb")
    everything = json.dumps(
        [dynamodb.scan(TableName=t)["Items"] for t in dynamodb.list_tables()["TableNames"]],
        default=str,  # sealed attributes (stored responses) are bytes
    )
    assert SUBJECT not in everything
    assert "other" in json.dumps(_audit(admin, tenant, user="other"))
    erasures = _audit(admin, tenant, kind="erasure")
    # Newest first: the repeated erasure found nothing left.
    assert [e["erased"]["audit_records"] for e in erasures] == [0, 4]
    assert SUBJECT not in json.dumps(erasures)


def test_a_subject_id_over_256_characters_is_refused(
    sdk: openai.OpenAI, admin: httpx2.Client, tenant: dict
) -> None:
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], user="u" * 257)
    assert admin.get(f"{tenant['base']}/subjects/{'u' * 257}").status_code == 400


def test_tokens_per_minute_are_limited_with_retry_after(
    admin: httpx2.Client, tenant: dict, sdk: openai.OpenAI
) -> None:
    assert _policy(admin, tenant, rate_limits={"tokens_per_minute": 50}).status_code == 200
    # Waiting for a fresh minute keeps the test's own calls in one window.
    if time.gmtime().tm_sec > 45:
        time.sleep(61 - time.gmtime().tm_sec)
    with pytest.raises(openai.RateLimitError) as limited:
        for _ in range(20):
            sdk.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "count my tokens " * 5}]
            )
    assert limited.value.code == "rate_limit_exceeded"
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    assert _policy(admin, tenant).status_code == 200
