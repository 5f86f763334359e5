"""The stored-responses store against moto (DynamoDB, versioned S3, KMS with encryption contexts),
the table made as the stack makes it; and a data subject's erasure and export through the admin route."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import Binary
from byom.dal.audit import AuditTable
from byom.dal.responses import ResponseStore, body_key
from byom.domain import StoredResponse
from byom.governance.audit import AuditRecord
from cryptography.exceptions import InvalidTag

from tests.conftest import LambdaContext, api_event
from tests.integration.conftest import DATA_BUCKET, PLATFORM_ADMIN, load_handler

NOW = 1_750_000_000
SECRET = "the launch code is 0000-AURORA"
ALICE = "alice@example.com"


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(aws: dict[str, str]) -> Any:
    return boto3.resource("dynamodb").Table(aws["RESPONSES_TABLE"])


def make_store(aws: dict[str, str], clock: Clock, **kw: Any) -> ResponseStore:
    table = boto3.resource("dynamodb").Table(aws["RESPONSES_TABLE"])
    s3, kms = boto3.client("s3"), boto3.client("kms")
    return ResponseStore(
        lambda _t: table, lambda _t: s3, lambda _t: kms, DATA_BUCKET, aws["KMS_KEY_ID"], now=clock, **kw
    )


@pytest.fixture
def store(aws: dict[str, str], clock: Clock) -> ResponseStore:
    return make_store(aws, clock)


def response(
    rid: str = "resp_1", tenant: str = "tnt_a", *, text: str = SECRET, user: str | None = None
) -> StoredResponse:
    return StoredResponse(
        id=rid,
        tenant_id=tenant,
        created_at=NOW,
        response={
            "id": rid,
            "object": "response",
            "output": [{"type": "message", "content": [{"text": text}]}],
        },
        input_items=[{"id": "msg_1", "type": "message", "role": "user", "content": [{"text": text}]}],
        context=[{"role": "user", "content": text}, {"role": "assistant", "content": text}],
        user=user,
    )


def versions(key: str) -> list[Any]:
    page = boto3.client("s3").list_object_versions(Bucket=DATA_BUCKET, Prefix=key)
    return page.get("Versions", []) + page.get("DeleteMarkers", [])


def test_a_stored_response_reads_back_as_it_was_stored(store: ResponseStore) -> None:
    record = response(user=ALICE)

    store.put(record, retention_days=30)

    assert store.get("tnt_a", "resp_1") == record.model_copy(update={"expires_at": NOW + 30 * 86_400})


def test_the_item_holds_no_plaintext_of_the_response_nor_the_subject(
    store: ResponseStore, table: Any
) -> None:
    store.put(response(user=ALICE), retention_days=30)

    (item,) = table.scan()["Items"]

    raw = json.dumps(item, default=lambda v: v.value.decode("latin-1") if isinstance(v, Binary) else str(v))
    assert SECRET not in raw and "AURORA" not in raw and ALICE not in raw
    assert {"tenant_id", "id", "created_at", "expires_at", "ciphertext"} <= set(item)


def test_another_tenants_id_is_none(store: ResponseStore) -> None:
    store.put(response(tenant="tnt_b"), retention_days=30)

    assert store.get("tnt_a", "resp_1") is None


def test_a_body_moved_to_another_response_does_not_open(store: ResponseStore, table: Any) -> None:
    store.put(response("resp_1"), retention_days=30)
    store.put(response("resp_2", text="other"), retention_days=30)
    first = table.get_item(Key={"tenant_id": "tnt_a", "id": "resp_1"})["Item"]
    table.put_item(Item=first | {"id": "resp_2"})

    with pytest.raises(InvalidTag):
        store.get("tnt_a", "resp_2")


def test_an_expired_response_is_none_before_the_ttl_sweeps_it(
    store: ResponseStore, clock: Clock, table: Any
) -> None:
    store.put(response(), retention_days=1)
    clock.now = NOW + 86_400

    assert store.get("tnt_a", "resp_1") is None
    assert table.get_item(Key={"tenant_id": "tnt_a", "id": "resp_1"}).get("Item") is not None


def test_a_response_without_retention_does_not_expire(store: ResponseStore, clock: Clock) -> None:
    store.put(response(), retention_days=None)
    clock.now = NOW + 10 * 365 * 86_400

    found = store.get("tnt_a", "resp_1")
    assert found is not None and found.expires_at is None


def test_a_large_body_goes_sealed_to_the_tenants_prefix_and_reads_back(
    aws: dict[str, str], clock: Clock, table: Any
) -> None:
    store = make_store(aws, clock, max_inline_bytes=1024)
    record = response(text=SECRET + "x" * 4000)

    store.put(record, retention_days=100)

    (item,) = table.scan()["Items"]
    obj = boto3.client("s3").get_object(Bucket=DATA_BUCKET, Key=body_key("tnt_a", "resp_1"))
    tags = boto3.client("s3").get_object_tagging(Bucket=DATA_BUCKET, Key=body_key("tnt_a", "resp_1"))
    assert item["body_key"] == "tenants/tnt_a/responses/resp_1.json" and "ciphertext" not in item
    assert SECRET not in obj["Body"].read().decode()
    # Its tier is 90 days (the largest not above 100): item and body expire together.
    assert tags["TagSet"] == [{"Key": "byom-retention-days", "Value": "90"}]
    assert int(item["expires_at"]) == NOW + 90 * 86_400
    assert store.get("tnt_a", "resp_1") == record.model_copy(update={"expires_at": NOW + 90 * 86_400})


def test_a_body_over_the_item_limit_is_stored_with_the_default_limit(
    store: ResponseStore, table: Any
) -> None:
    record = response(text="y" * 200_000)  # three copies: over 350 KB sealed

    store.put(record, retention_days=30)

    (item,) = table.scan()["Items"]
    assert "body_key" in item
    assert store.get("tnt_a", "resp_1") == record.model_copy(update={"expires_at": NOW + 30 * 86_400})


def test_delete_removes_the_item_and_every_version_of_its_body(
    aws: dict[str, str], clock: Clock, table: Any
) -> None:
    store = make_store(aws, clock, max_inline_bytes=1024)
    store.put(response(text="z" * 4000), retention_days=30)

    deleted = store.delete("tnt_a", "resp_1")

    assert deleted is True
    assert table.scan()["Items"] == []
    assert versions(body_key("tnt_a", "resp_1")) == []
    assert store.get("tnt_a", "resp_1") is None


def test_a_response_kept_in_its_item_without_retention_is_deleted(store: ResponseStore, table: Any) -> None:
    store.put(response(), retention_days=None)

    assert store.delete("tnt_a", "resp_1") is True
    assert table.scan()["Items"] == []


def test_deleting_an_expired_response_removes_it_but_answers_false(
    store: ResponseStore, clock: Clock, table: Any
) -> None:
    store.put(response(), retention_days=1)
    clock.now = NOW + 2 * 86_400

    assert store.delete("tnt_a", "resp_1") is False
    assert table.scan()["Items"] == []


def test_deleting_an_absent_or_another_tenants_response_is_false(store: ResponseStore) -> None:
    store.put(response(tenant="tnt_b"), retention_days=30)

    assert (store.delete("tnt_a", "resp_1"), store.delete("tnt_a", "resp_404")) == (False, False)
    assert store.get("tnt_b", "resp_1") is not None


def test_an_id_that_cannot_be_ours_is_absent_not_an_error(store: ResponseStore) -> None:
    assert store.get("tnt_a", "r" * 2000) is None
    assert store.delete("tnt_a", "../x") is False


def test_delete_many_removes_the_named_responses_and_counts_them(
    aws: dict[str, str], clock: Clock, table: Any
) -> None:
    store = make_store(aws, clock, max_inline_bytes=1024)
    for n in range(30):
        store.put(response(f"resp_{n}", text="w" * (4000 if n % 10 == 0 else 10)), retention_days=30)
    store.put(response("resp_0", tenant="tnt_b"), retention_days=30)

    removed = store.delete_many("tnt_a", [f"resp_{n}" for n in range(28)] + ["resp_404", "resp_0"])

    left = sorted(i["id"] for i in table.scan()["Items"] if i["tenant_id"] == "tnt_a")
    assert removed == 28
    assert left == ["resp_28", "resp_29"]
    assert versions("tenants/tnt_a/responses/") == []
    assert store.get("tnt_b", "resp_0") is not None


# ------------------------------------------------------------------------- erasure and export


def admin_call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    event = api_event(method, path, body=body, authorizer=PLATFORM_ADMIN)
    answer = load_handler("admin")(event, LambdaContext())
    return answer["statusCode"], json.loads(answer["body"])


def test_a_subjects_stored_responses_are_exported_then_gone_after_erasure(aws: dict[str, str]) -> None:
    _, tenant = admin_call("POST", "/admin/tenants", {"name": "acme"})
    tenant_id = tenant["id"]
    clock = Clock()
    clock.now = time.time()  # the admin function reads expiry by the real clock
    store = make_store(aws, clock)
    audit = AuditTable(boto3.resource("dynamodb").Table(aws["AUDIT_TABLE"]))
    for n, user in enumerate([ALICE, ALICE, "bob"]):
        record = response(f"resp_{n}", tenant_id, user=user).model_copy(update={"created_at": int(clock.now)})
        store.put(record, retention_days=30)
        audit.write(
            AuditRecord(
                tenant_id=tenant_id,
                kind="interaction",
                request_id=f"req-{n}",
                created_at_ms=int(clock.now * 1000) + n,
                expires_at=int(clock.now) + 30 * 86_400,
                user=user,
                route="responses",
                response_id=f"resp_{n}",
            )
        )
    path = f"/admin/tenants/{tenant_id}/subjects/alice%40example.com"

    exported_status, exported = admin_call("GET", path)
    erased_status, erased = admin_call("DELETE", path)

    assert exported_status == 200
    assert [r["id"] for r in exported["stored_responses"]] == ["resp_0", "resp_1"]
    assert exported["stored_responses"][0]["context"][0] == {"role": "user", "content": SECRET}
    assert (erased_status, erased["erased"]["stored_responses"]) == (200, 2)
    assert store.get(tenant_id, "resp_0") is None and store.get(tenant_id, "resp_1") is None
    assert store.get(tenant_id, "resp_2") is not None
    assert admin_call("GET", path)[1]["stored_responses"] == []
