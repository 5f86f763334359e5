"""The audit table, the stored content and the governance admin routes against moto (DynamoDB, S3
with versioning, KMS with encryption contexts), the tables made as the stack makes them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from byom.dal import audit as audit_dal
from byom.dal import envelope as envelope_dal
from byom.dal.audit import AuditTable
from byom.dal.cache import ResponseCacheTable
from byom.dal.content import ContentStore, subject_prefix
from byom.dal.responses import ResponseStore
from byom.errors import InvalidRequest
from byom.governance import subjects
from byom.governance.audit import AuditRecord
from byom.governance.audit_query import AuditFilters

from tests.conftest import LambdaContext, api_event
from tests.integration.conftest import DATA_BUCKET, PLATFORM_ADMIN, TABLES, load_handler, tenant_context

T0_MS = 1_750_000_000_000
ALICE = "alice@example.com"
BOB = "bob@example.com"
PROMPT = "my card number is 4111 1111 1111 1111 and my name is Alice Liddell"


def record(tenant: str, n: int, **fields: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "tenant_id": tenant,
        "kind": "interaction",
        "request_id": f"req-{n:05d}",
        "created_at_ms": T0_MS + n * 1000,
        "expires_at": T0_MS // 1000 + 90 * 86_400,
        "key_id": "key_a",
        "route": "chat.completions",
        "model": "fast",
        "status": "succeeded",
    }
    return AuditRecord.model_validate(values | fields)


@pytest.fixture
def audit(aws: dict[str, str]) -> AuditTable:
    return AuditTable(boto3.resource("dynamodb").Table(aws["AUDIT_TABLE"]))


@pytest.fixture
def store(aws: dict[str, str]) -> ContentStore:
    return ContentStore(boto3.client("s3"), boto3.client("kms"), DATA_BUCKET, aws["KMS_KEY_ID"])


@pytest.fixture
def cache(aws: dict[str, str]) -> ResponseCacheTable:
    return ResponseCacheTable(boto3.resource("dynamodb").Table(aws["CACHE_TABLE"]))


@pytest.fixture
def responses(aws: dict[str, str]) -> ResponseStore:
    table = boto3.resource("dynamodb").Table(aws["RESPONSES_TABLE"])
    s3, kms = boto3.client("s3"), boto3.client("kms")
    return ResponseStore(lambda _t: table, lambda _t: s3, lambda _t: kms, DATA_BUCKET, aws["KMS_KEY_ID"])


def put_all(audit: AuditTable, records: list[AuditRecord]) -> None:
    with boto3.resource("dynamodb").Table(audit.name).batch_writer() as batch:
        for r in records:
            batch.put_item(Item=audit.item(r))


def all_pages(audit: AuditTable, tenant: str, filters: AuditFilters, limit: int) -> list[AuditRecord]:
    found, token = audit.query(tenant, filters, limit, None)
    while token:
        page, token = audit.query(tenant, filters, limit, token)
        found += page
    return found


def versions_under(prefix: str) -> list[dict[str, Any]]:
    page = boto3.client("s3").list_object_versions(Bucket=DATA_BUCKET, Prefix=prefix)
    return page.get("Versions", []) + page.get("DeleteMarkers", [])


# ------------------------------------------------------------------------------- the audit table


def test_a_record_round_trips_with_its_sort_key_and_subject(audit: AuditTable) -> None:
    written = record("tnt_a", 1, user=ALICE, redactions={"email": 2}, cache_key="ck1")
    audit.write(written)

    item = boto3.client("dynamodb").get_item(
        TableName=audit.name, Key={"tenant_id": {"S": "tnt_a"}, "sk": {"S": written.sk}}
    )["Item"]
    (read,), _ = audit.query("tnt_a", AuditFilters(), 10, None)
    assert item["subject"] == {"S": f"tnt_a#{ALICE}"}
    assert item["redactions"] == {"M": {"email": {"N": "2"}}}
    assert "NULL" not in json.dumps(item)
    assert read == written


def test_a_record_without_a_subject_stays_out_of_the_subject_index(audit: AuditTable) -> None:
    audit.write(record("tnt_a", 1))

    assert "subject" not in audit.item(record("tnt_a", 1))
    assert audit.subject_keys("tnt_a", ALICE, None) == ([], None)


def test_transact_put_commits_inside_the_usage_tables_transaction(audit: AuditTable, aws: dict) -> None:
    usage = boto3.resource("dynamodb").Table(aws["USAGE_TABLE"])
    written = record("tnt_a", 1, user=ALICE)

    usage.meta.client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": usage.name, "Item": {"pk": "tnt_a#2025-06", "sk": "req#req-00001"}}},
            audit.transact_put(written),
        ]
    )

    assert audit.get_many("tnt_a", [written.sk]) == [written]


def test_records_are_filtered_by_kind_model_key_user_and_status(audit: AuditTable) -> None:
    put_all(
        audit,
        [
            record("tnt_a", 1),
            record("tnt_a", 2, model="smart", status="provider_error"),
            record("tnt_a", 3, model="smart", user=ALICE),
            record("tnt_a", 4, kind="admin", action="PUT /admin/tenants/{tenant_id}/policy", model=None),
            record("tnt_a", 5, key_id="key_b"),
        ],
    )

    def ids(**filters: Any) -> list[str]:
        found, _ = audit.query("tnt_a", AuditFilters(**filters), 100, None)
        return [r.request_id for r in found]

    assert ids(kind="admin") == ["req-00004"]
    assert ids(model="smart") == ["req-00003", "req-00002"]
    assert ids(model="smart", status="provider_error") == ["req-00002"]
    assert ids(user=ALICE) == ["req-00003"]
    assert ids(key_id="key_b") == ["req-00005"]


def test_since_and_until_are_seconds_with_both_ends_included(audit: AuditTable) -> None:
    put_all(audit, [record("tnt_a", n) for n in range(1, 6)])
    start = T0_MS // 1000

    found, _ = audit.query("tnt_a", AuditFilters(since=start + 2, until=start + 4), 100, None)

    assert [r.request_id for r in found] == ["req-00004", "req-00003", "req-00002"]


def test_pages_are_newest_first_without_gaps_or_repeats(audit: AuditTable) -> None:
    put_all(audit, [record("tnt_a", n) for n in range(45)])

    first, token = audit.query("tnt_a", AuditFilters(), 20, None)
    found = all_pages(audit, "tnt_a", AuditFilters(), 20)

    assert token is not None
    assert [r.request_id for r in first] == [f"req-{n:05d}" for n in range(44, 24, -1)]
    assert [r.request_id for r in found] == [f"req-{n:05d}" for n in range(44, -1, -1)]


def test_a_sparse_filter_answers_after_a_bounded_read_and_resumes(
    audit: AuditTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_dal, "MAX_PAGES", 2)
    monkeypatch.setattr(audit_dal, "FILTERED_PAGE_ITEMS", 10)
    put_all(audit, [record("tnt_a", n, model="smart" if n % 25 == 0 else "fast") for n in range(100)])

    first, token = audit.query("tnt_a", AuditFilters(model="smart"), 20, None)
    found = all_pages(audit, "tnt_a", AuditFilters(model="smart"), 20)

    assert len(first) < 20 and token is not None
    assert [r.request_id for r in found] == ["req-00075", "req-00050", "req-00025", "req-00000"]


def test_another_tenants_token_is_refused(audit: AuditTable) -> None:
    put_all(audit, [record("tnt_b", n) for n in range(5)] + [record("tnt_a", n) for n in range(5)])
    _, token = audit.query("tnt_b", AuditFilters(), 2, None)
    assert token is not None

    with pytest.raises(InvalidRequest) as refused:
        audit.query("tnt_a", AuditFilters(), 2, token)

    assert refused.value.param == "next_token"


@pytest.mark.parametrize("token", ["not-base64!", "eyJ4IjoxfQ", "W10", "eyJ0IjoidG50X2EiLCJzayI6IngifQ"])
def test_a_malformed_token_is_refused(audit: AuditTable, token: str) -> None:
    with pytest.raises(InvalidRequest):
        audit.query("tnt_a", AuditFilters(), 2, token)


# ------------------------------------------------------------------------------- stored content


def test_content_is_tagged_to_expire_within_its_tenants_retention(store: ContentStore) -> None:
    key = store.put("tnt_a", "req-9", {"request": {}}, None, retention_days=100)

    tags = boto3.client("s3").get_object_tagging(Bucket=DATA_BUCKET, Key=key)["TagSet"]
    assert tags == [{"Key": "byom-retention-days", "Value": "90"}]


def test_content_is_encrypted_at_rest_and_read_back(store: ContentStore) -> None:
    content = {"request": {"messages": [{"role": "user", "content": PROMPT}]}, "response": {"text": "ok"}}

    key = store.put("tnt_a", "req-1", content, ALICE)

    raw = boto3.client("s3").get_object(Bucket=DATA_BUCKET, Key=key)["Body"].read()
    assert key.startswith(subject_prefix("tnt_a", ALICE))
    assert ALICE not in key
    assert b"4111" not in raw and b"Alice" not in raw
    assert set(json.loads(raw)) == {"v", "key", "nonce", "ciphertext"}
    assert store.get("tnt_a", key) == content


def test_content_without_a_subject_goes_under_the_tenants_content_prefix(store: ContentStore) -> None:
    assert (
        store.put("tnt_a", "req-1", {"request": {}, "response": {}}, None)
        == "tenants/tnt_a/content/req-1.json"
    )


class CountingKms:
    def __init__(self, kms: Any) -> None:
        self._kms = kms
        self.generated = 0

    def generate_data_key(self, **kwargs: Any) -> Any:
        self.generated += 1
        return self._kms.generate_data_key(**kwargs)

    def decrypt(self, **kwargs: Any) -> Any:
        return self._kms.decrypt(**kwargs)


def test_a_data_key_is_reused_per_tenant_within_its_age_and_uses(
    aws: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(envelope_dal, "DATA_KEY_MAX_USES", 3)
    kms = CountingKms(boto3.client("kms"))
    now = [0.0]
    store = ContentStore(boto3.client("s3"), kms, DATA_BUCKET, aws["KMS_KEY_ID"], monotonic=lambda: now[0])

    for n in range(3):
        store.put("tnt_a", f"req-{n}", {"n": n}, None)
    after_three = kms.generated
    store.put("tnt_a", "req-3", {"n": 3}, None)  # the fourth use
    store.put("tnt_b", "req-4", {"n": 4}, None)  # another tenant
    now[0] = 301.0
    store.put("tnt_a", "req-5", {"n": 5}, None)  # too old

    assert (after_three, kms.generated) == (1, 4)
    assert store.get("tnt_a", "tenants/tnt_a/content/req-0.json") == {"n": 0}


def test_a_data_key_does_not_open_with_another_tenants_context(store: ContentStore) -> None:
    key = store.put("tnt_a", "req-1", {"request": PROMPT, "response": None}, None)
    envelope = json.loads(boto3.client("s3").get_object(Bucket=DATA_BUCKET, Key=key)["Body"].read())
    with pytest.raises(ClientError) as refused:
        boto3.client("kms").decrypt(
            CiphertextBlob=base64.b64decode(envelope["key"]),
            EncryptionContext={"tenant_id": "tnt_b", "purpose": "audit-content"},
        )
    assert refused.value.response["Error"]["Code"] == "InvalidCiphertextException"


def test_an_envelope_copied_under_another_tenant_does_not_open(store: ContentStore) -> None:
    key = store.put("tnt_a", "req-1", {"request": PROMPT, "response": None}, None)
    s3 = boto3.client("s3")
    s3.copy_object(
        Bucket=DATA_BUCKET,
        Key="tenants/tnt_b/content/req-1.json",
        CopySource={"Bucket": DATA_BUCKET, "Key": key},
    )

    with pytest.raises(ClientError):
        store.get("tnt_b", "tenants/tnt_b/content/req-1.json")
    with pytest.raises(ValueError):
        store.get("tnt_b", key)


def test_deleting_a_subject_removes_every_version(store: ContentStore) -> None:
    key = store.put("tnt_a", "req-1", {"v": 1}, ALICE)
    store.put("tnt_a", "req-1", {"v": 2}, ALICE)  # a second version of the same object
    boto3.client("s3").delete_object(Bucket=DATA_BUCKET, Key=store.put("tnt_a", "req-2", {"v": 1}, ALICE))
    kept = store.put("tnt_a", "req-3", {"v": 1}, BOB)

    removed, done = store.delete_subject_page("tnt_a", ALICE)

    assert (removed, done) == (1, True)  # req-1; req-2 was already deleted (its versions and marker left)
    assert versions_under(subject_prefix("tnt_a", ALICE)) == []
    assert store.get("tnt_a", key) is None
    assert store.get("tnt_a", kept) == {"v": 1}


# ------------------------------------------------------------------------ a subject's 3,000 records


def populate(audit: AuditTable, store: ContentStore, cache: ResponseCacheTable, count: int) -> dict[str, Any]:
    """`count` records of Alice (every third with content, every tenth with a cache entry), three
    of Bob's with both, and five calls without a subject."""
    records = []
    for n in range(count):
        fields: dict[str, Any] = {"user": ALICE}
        if n % 3 == 0:
            fields["content_key"] = store.put("tnt_a", f"req-{n:05d}", {"request": PROMPT, "n": n}, ALICE)
        if n % 10 == 0:
            fields["cache_key"] = f"tnt_a-ck-{n}"
            cache.put({"cache_key": f"tnt_a-ck-{n}", "tenant_id": "tnt_a", "answer": "{}"})
        records.append(record("tnt_a", n, **fields))
    bob = [
        record(
            "tnt_a",
            5000 + n,
            user=BOB,
            content_key=store.put("tnt_a", f"req-{5000 + n}", {"n": n}, BOB),
            cache_key=f"tnt_a-bob-{n}",
        )
        for n in range(3)
    ]
    for r in bob:
        cache.put({"cache_key": r.cache_key, "tenant_id": "tnt_a", "answer": "{}"})
    put_all(audit, records + bob + [record("tnt_a", 6000 + n) for n in range(5)])
    return {"alice": records, "bob": bob}


@pytest.fixture
def populated(audit: AuditTable, store: ContentStore, cache: ResponseCacheTable) -> dict[str, Any]:
    return populate(audit, store, cache, 3000)


@pytest.fixture
def few(audit: AuditTable, store: ContentStore, cache: ResponseCacheTable) -> dict[str, Any]:
    return populate(audit, store, cache, 30)


def erase_until_done(
    audit: AuditTable, store: ContentStore, cache: ResponseCacheTable, responses: ResponseStore, **kw: Any
) -> list[Any]:
    answers: list[subjects.Erasure] = []
    clock = [0.0]

    def tick() -> float:
        clock[0] += 1.0
        return clock[0]

    while not answers or answers[-1].status == "in_progress":
        answers.append(
            subjects.erase(
                "tnt_a",
                ALICE,
                actor_key_id="key_admin",
                request_id=f"erase-{len(answers)}",
                retention_days=30,
                records=audit,
                content=store,
                cache=cache,
                responses=responses,
                budget_seconds=8.0,
                monotonic=tick,
                **kw,
            )
        )
    return answers


def test_a_subjects_3000_records_are_exported_page_by_page(
    populated: dict,
    audit: AuditTable,
    store: ContentStore,
    cache: ResponseCacheTable,
    responses: ResponseStore,
) -> None:
    stores = {"records": audit, "content": store, "cache": cache, "responses": responses}
    pages = [subjects.export("tnt_a", ALICE, None, **stores)]
    while pages[-1]["next_token"]:
        pages.append(subjects.export("tnt_a", ALICE, pages[-1]["next_token"], **stores))

    exported = [r for page in pages for r in page["audit_records"]]
    with_content = [r for r in exported if r["content"] is not None]
    assert [r["request_id"] for r in exported] == [r.request_id for r in populated["alice"]]
    assert len(with_content) == 1000
    assert with_content[1]["content"] == {"request": PROMPT, "n": 3}
    assert sum(len(page["cache_entries"]) for page in pages) == 300


def test_a_subject_is_erased_completely_across_in_progress_requests(
    populated: dict,
    audit: AuditTable,
    store: ContentStore,
    cache: ResponseCacheTable,
    responses: ResponseStore,
) -> None:
    answers = erase_until_done(audit, store, cache, responses)

    assert len(answers) > 1 and {a.status for a in answers[:-1]} == {"in_progress"}
    assert answers[-1].erased == {
        "audit_records": 3000,
        "content_objects": 1000,
        "cache_entries": 300,
        "stored_responses": 0,
    }
    assert audit.subject_keys("tnt_a", ALICE, None) == ([], None)
    assert versions_under(subject_prefix("tnt_a", ALICE)) == []
    assert all(cache.get(r.cache_key) is None for r in populated["alice"] if r.cache_key)


def test_erasure_leaves_one_record_without_personal_data_and_no_progress(
    few: dict, audit: AuditTable, store: ContentStore, cache: ResponseCacheTable, responses: ResponseStore
) -> None:
    erase_until_done(audit, store, cache, responses)

    (erasure,), _ = audit.query("tnt_a", AuditFilters(kind="erasure"), 10, None)
    items = boto3.resource("dynamodb").Table(audit.name).scan()["Items"]
    assert erasure.erased == {
        "audit_records": 30,
        "content_objects": 10,
        "cache_entries": 3,
        "stored_responses": 0,
    }
    assert erasure.action == "DELETE /admin/tenants/{tenant_id}/subjects/{user}"
    assert erasure.key_id == "key_admin" and erasure.user is None
    assert ALICE not in json.dumps(items, default=str)
    assert not [i for i in items if str(i["sk"]).startswith("!")]


def test_another_subject_is_untouched_by_an_erasure(
    few: dict, audit: AuditTable, store: ContentStore, cache: ResponseCacheTable, responses: ResponseStore
) -> None:
    erase_until_done(audit, store, cache, responses)

    bob = few["bob"]
    sks, _ = audit.subject_keys("tnt_a", BOB, None)
    assert sorted(sks) == sorted(r.sk for r in bob)
    assert all(store.get("tnt_a", r.content_key) is not None for r in bob if r.content_key)
    assert all(cache.get(r.cache_key) is not None for r in bob if r.cache_key)
    found, _ = audit.query("tnt_a", AuditFilters(kind="interaction"), 100, None)
    assert len(found) == 8


def test_a_second_erasure_erases_nothing(
    few: dict, audit: AuditTable, store: ContentStore, cache: ResponseCacheTable, responses: ResponseStore
) -> None:
    erase_until_done(audit, store, cache, responses)

    (again,) = erase_until_done(audit, store, cache, responses)

    assert again.status == "completed"
    assert again.erased == {
        "audit_records": 0,
        "content_objects": 0,
        "cache_entries": 0,
        "stored_responses": 0,
    }


# ------------------------------------------------------------------------------------ the routes


class Admin:
    def __init__(self) -> None:
        self._handler = load_handler("admin")

    def __call__(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        *,
        as_: dict[str, str] = PLATFORM_ADMIN,
        body: Any = None,
    ) -> tuple[int, Any]:
        event = api_event(method, path, body=body, authorizer=as_, query=query)
        response = self._handler(event, LambdaContext())
        return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def admin(aws: dict) -> Iterator[Admin]:
    yield Admin()


@pytest.fixture
def tenant(admin: Admin) -> str:
    status, body = admin("POST", "/admin/tenants", body={"name": "acme"})
    assert status == 201
    return str(body["id"])


@pytest.fixture
def tenant_records(tenant: str, audit: AuditTable, store: ContentStore) -> list[AuditRecord]:
    records = [
        record(
            tenant, n, user=ALICE, content_key=store.put(tenant, f"req-{n:05d}", {"request": PROMPT}, ALICE)
        )
        for n in range(3)
    ]
    put_all(audit, records)
    return records


def test_the_audit_route_lists_newest_first_for_the_tenants_admin(
    admin: Admin, tenant: str, tenant_records: list[AuditRecord]
) -> None:
    # The tenant's creation is in its audit too (an admin action): the interactions are asked for.
    status, body = admin(
        "GET",
        f"/admin/tenants/{tenant}/audit",
        {"limit": "2", "kind": "interaction"},
        as_=tenant_context(tenant, "admin"),
    )
    _, rest = admin(
        "GET", f"/admin/tenants/{tenant}/audit", {"next_token": body["next_token"], "kind": "interaction"}
    )

    assert status == 200
    assert [r["request_id"] for r in body["data"] + rest["data"]] == ["req-00002", "req-00001", "req-00000"]
    assert rest["next_token"] is None
    assert body["data"][0]["has_content"] is True and "content" not in body["data"][0]


def test_include_content_adds_the_decrypted_content(
    admin: Admin, tenant: str, tenant_records: list[AuditRecord]
) -> None:
    status, body = admin(
        "GET",
        f"/admin/tenants/{tenant}/audit",
        {"include_content": "true", "limit": "1", "kind": "interaction"},
    )

    assert status == 200
    assert body["data"][0]["content"] == {"request": PROMPT}


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"kind": "other"}, "kind"),
        ({"user": "u" * 257}, "user"),
        ({"include_content": "maybe"}, "include_content"),
        ({"next_token": "forged"}, "next_token"),
    ],
)
def test_a_bad_query_parameter_is_a_400_naming_it(admin: Admin, tenant: str, query: dict, param: str) -> None:
    status, body = admin("GET", f"/admin/tenants/{tenant}/audit", query)

    assert status == 400
    assert body["error"]["param"] == param


def test_another_tenants_key_gets_a_404_and_a_developer_a_403(admin: Admin, tenant: str) -> None:
    other, _ = admin(
        "GET", f"/admin/tenants/{tenant}/audit", {"limit": "0"}, as_=tenant_context("tnt_other", "admin")
    )
    developer, _ = admin(
        "GET", f"/admin/tenants/{tenant}/subjects/x", as_=tenant_context(tenant, "developer")
    )
    erase, _ = admin(
        "DELETE", f"/admin/tenants/{tenant}/subjects/x", as_=tenant_context("tnt_other", "admin")
    )

    assert (other, developer, erase) == (404, 403, 404)


def test_a_subject_is_exported_through_the_route_with_its_id_url_decoded(
    admin: Admin, tenant: str, tenant_records: list[AuditRecord]
) -> None:
    status, body = admin("GET", f"/admin/tenants/{tenant}/subjects/alice%40example.com")

    assert status == 200
    assert body["object"] == "subject.export" and body["user"] == ALICE
    assert [r["content"] for r in body["audit_records"]] == [{"request": PROMPT}] * 3


def test_a_subject_is_erased_through_the_route_with_202_until_done(
    admin: Admin, tenant: str, audit: AuditTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subjects, "ERASURE_BUDGET_SECONDS", 0.0)  # one step per request
    put_all(audit, [record(tenant, n, user=ALICE) for n in range(250)])
    path = f"/admin/tenants/{tenant}/subjects/alice%40example.com"

    answers = [admin("DELETE", path, as_=tenant_context(tenant, "admin", key_id="key_admin"))]
    while answers[-1][0] == 202:
        answers.append(admin("DELETE", path))

    assert [status for status, _ in answers] == [202, 202, 200]
    assert answers[-1][1] == {
        "object": "subject.erasure",
        "status": "completed",
        "erased": {
            "audit_records": 250,
            "content_objects": 0,
            "cache_entries": 0,
            "stored_responses": 0,
        },
    }
    assert audit.subject_keys(tenant, ALICE, None) == ([], None)


@pytest.mark.parametrize("user", ["u" * 257, "%C3%A9" * 257])
def test_a_subject_id_over_256_characters_is_a_400(admin: Admin, tenant: str, user: str) -> None:
    status, body = admin("DELETE", f"/admin/tenants/{tenant}/subjects/{user}")

    assert status == 400
    assert body["error"]["param"] == "user"


def test_the_route_reads_the_tenants_retention_for_the_erasure_record(
    admin: Admin, tenant: str, audit: AuditTable, aws: dict
) -> None:
    boto3.resource("dynamodb").Table(TABLES["POLICIES_TABLE"][0]).put_item(
        Item={"tenant_id": tenant, "retention_days": 7}
    )

    admin("DELETE", f"/admin/tenants/{tenant}/subjects/bob")

    (erasure,), _ = audit.query(tenant, AuditFilters(kind="erasure"), 10, None)
    assert erasure.expires_at - erasure.created_at_ms // 1000 == 7 * 86_400
