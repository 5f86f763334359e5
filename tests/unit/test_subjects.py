"""Data-subject export and erasure, and the governance routes' access rules, with in-memory fakes
that implement the same Protocols as the audit table, the content store and the cache table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from byom.domain import StoredResponse, Tenant
from byom.errors import InvalidRequest, NotFound, PermissionDenied
from byom.governance import subjects, tenant_data
from byom.governance.audit import AuditRecord, subject_key
from byom.governance.audit_query import AuditFilters
from byom.governance.policy import Policy
from byom.governance.subjects import Erasure
from byom.governance.tenant_data import GovernanceStore, TenantData
from byom.logic.access import Principal

ALICE = "alice@example.com"
BOB = "bob@example.com"
ADMIN = Principal(key_id="key_admin", role="admin", tenant_id="tnt_a")


class FakeRecords:
    """byom.dal.audit.AuditTable in memory; pages of the subject index are `page` keys long."""

    def __init__(self, log: list[str], page: int = 10) -> None:
        self.items: dict[tuple[str, str], AuditRecord] = {}
        self.progress: dict[tuple[str, str], dict[str, int]] = {}
        self.log = log
        self.page = page
        self.fail_next_delete = False

    def add(self, record: AuditRecord) -> None:
        self.items[(record.tenant_id, record.sk)] = record

    def query(
        self, tenant_id: str, filters: AuditFilters, limit: int, next_token: str | None
    ) -> tuple[list[AuditRecord], str | None]:
        found = sorted(
            (r for (t, _), r in self.items.items() if t == tenant_id), key=lambda r: r.sk, reverse=True
        )
        start = int(next_token or 0)
        more = start + limit < len(found)
        return found[start : start + limit], str(start + limit) if more else None

    def subject_keys(
        self, tenant_id: str, user: str, page_token: str | None, limit: int = 100
    ) -> tuple[list[str], str | None]:
        """As DynamoDB pages: the token is the last key read, so deletions do not shift pages."""
        subject = subject_key(tenant_id, user)
        sks = sorted(
            sk
            for (t, sk), r in self.items.items()
            if t == tenant_id and r.user and subject_key(t, r.user) == subject and sk > (page_token or "")
        )
        page = sks[: min(limit, self.page)]
        return page, page[-1] if len(sks) > len(page) else None

    def get_many(self, tenant_id: str, sks: Sequence[str]) -> list[AuditRecord]:
        return [self.items[(tenant_id, sk)] for sk in sks if (tenant_id, sk) in self.items]

    def delete_many(self, tenant_id: str, sks: Sequence[str]) -> None:
        if self.fail_next_delete:
            self.fail_next_delete = False
            raise ConnectionError("the function stopped")
        self.log.append(f"records:{len(sks)}")
        for sk in sks:
            self.items.pop((tenant_id, sk), None)

    def erasure_progress(self, tenant_id: str, user: str) -> dict[str, int]:
        return dict(self.progress.get((tenant_id, user), {}))

    def save_erasure_progress(
        self, tenant_id: str, user: str, erased: dict[str, int], expires_at: int
    ) -> None:
        self.progress[(tenant_id, user)] = dict(erased)

    def finish_erasure(self, record: AuditRecord, user: str) -> None:
        self.add(record)
        self.progress.pop((record.tenant_id, user), None)


class FakeContent:
    """byom.dal.content.ContentStore in memory: objects by key, deleted `page` at a time."""

    def __init__(self, log: list[str], page: int = 1000) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.log = log
        self.page = page

    def put(self, tenant_id: str, request_id: str, content: dict[str, Any], user: str | None) -> str:
        key = f"tenants/{tenant_id}/subjects/{user}/content/{request_id}.json"
        self.objects[key] = content
        return key

    def get(self, tenant_id: str, key: str) -> dict[str, Any] | None:
        return self.objects.get(key)

    def delete_subject_page(self, tenant_id: str, user: str) -> tuple[int, bool]:
        prefix = f"tenants/{tenant_id}/subjects/{user}/"
        keys = [k for k in self.objects if k.startswith(prefix)][: self.page]
        for key in keys:
            del self.objects[key]
        self.log.append(f"content:{len(keys)}")
        return len(keys), not any(k.startswith(prefix) for k in self.objects)


class FakeCache:
    def __init__(self, log: list[str]) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self.log = log

    def get(self, cache_key: str) -> dict[str, Any] | None:
        return self.entries.get(cache_key)

    def delete(self, cache_key: str) -> bool:
        self.log.append("cache")
        return self.entries.pop(cache_key, None) is not None


class FakeResponses:
    """byom.dal.responses.ResponseStore in memory, by tenant and id."""

    def __init__(self, log: list[str]) -> None:
        self.records: dict[tuple[str, str], StoredResponse] = {}
        self.log = log

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        return self.records.get((tenant_id, response_id))

    def delete_many(self, tenant_id: str, response_ids: Sequence[str]) -> int:
        self.log.append(f"responses:{len(response_ids)}")
        return sum(self.records.pop((tenant_id, i), None) is not None for i in response_ids)


class World:
    def __init__(self, index_page: int = 10, content_page: int = 1000) -> None:
        self.log: list[str] = []
        self.records = FakeRecords(self.log, index_page)
        self.content = FakeContent(self.log, content_page)
        self.cache = FakeCache(self.log)
        self.responses = FakeResponses(self.log)

    def call(
        self,
        n: int,
        user: str | None,
        *,
        content: bool = False,
        cached: bool = False,
        stored: bool = False,
        tenant_id: str = "tnt_a",
    ) -> AuditRecord:
        record = AuditRecord(
            tenant_id="tnt_a",
            kind="interaction",
            request_id=f"req-{n:04d}",
            created_at_ms=1_750_000_000_000 + n,
            expires_at=1_760_000_000,
            key_id="key_dev",
            user=user,
            content_key=self.content.put("tnt_a", f"req-{n:04d}", {"n": n}, user) if content else None,
            cache_key=f"ck-{n}" if cached else None,
            response_id=f"resp_{n}" if stored else None,
        )
        if stored:
            self.responses.records[(tenant_id, f"resp_{n}")] = StoredResponse(
                id=f"resp_{n}",
                tenant_id=tenant_id,
                created_at=1_750_000_000,
                response={"id": f"resp_{n}", "object": "response"},
                input_items=[{"id": f"msg_{n}", "type": "message", "role": "user", "content": []}],
                context=[{"role": "user", "content": f"question {n}"}],
                user=user,
            )
        if cached:
            self.cache.entries[f"ck-{n}"] = {"cache_key": f"ck-{n}", "tenant_id": "tnt_a", "answer": "{}"}
        self.records.add(record)
        return record

    def erase(self, user: str = ALICE, *, budget: float = 10.0, clock: list[float] | None = None) -> Erasure:
        ticks = clock if clock is not None else [0.0]

        def monotonic() -> float:
            ticks[0] += 1.0
            return ticks[0]

        return subjects.erase(
            "tnt_a",
            user,
            actor_key_id="key_admin",
            request_id="req-erase",
            retention_days=30,
            records=self.records,
            content=self.content,
            cache=self.cache,
            responses=self.responses,
            budget_seconds=budget,
            monotonic=monotonic,
            now_ms=lambda: 1_750_100_000_000,
        )

    def export(self, user: str = ALICE, token: str | None = None) -> dict[str, Any]:
        return subjects.export(
            "tnt_a",
            user,
            token,
            records=self.records,
            content=self.content,
            cache=self.cache,
            responses=self.responses,
            page_size=10,
        )


def erasures(world: World) -> list[AuditRecord]:
    return [r for r in world.records.items.values() if r.kind == "erasure"]


# -------------------------------------------------------------------------------------- export


def test_an_export_holds_the_subjects_records_content_and_cache_entries() -> None:
    world = World()
    world.call(1, ALICE, content=True, cached=True)
    world.call(2, BOB, content=True, cached=True)

    body = world.export()

    assert [r["request_id"] for r in body["audit_records"]] == ["req-0001"]
    assert body["audit_records"][0]["content"] == {"n": 1}
    assert body["cache_entries"] == [{"cache_key": "ck-1", "answer": "{}", "object": "cache_entry"}]
    assert body["next_token"] is None


def test_an_export_is_paginated_oldest_first() -> None:
    world = World()
    for n in range(25):
        world.call(n, ALICE)

    pages = [world.export()]
    while pages[-1]["next_token"]:
        pages.append(world.export(token=pages[-1]["next_token"]))

    assert [len(p["audit_records"]) for p in pages] == [10, 10, 5]
    assert [r["request_id"] for p in pages for r in p["audit_records"]] == [f"req-{n:04d}" for n in range(25)]


def test_another_tenants_cache_entry_is_not_exported() -> None:
    world = World()
    world.call(1, ALICE, cached=True)
    world.cache.entries["ck-1"]["tenant_id"] = "tnt_b"

    assert world.export()["cache_entries"] == []


def test_an_export_holds_the_stored_responses_the_subjects_calls_wrote() -> None:
    world = World()
    world.call(1, ALICE, stored=True)
    world.call(2, BOB, stored=True)

    (stored,) = world.export()["stored_responses"]

    assert stored["object"] == "stored_response" and stored["id"] == "resp_1"
    assert stored["context"] == [{"role": "user", "content": "question 1"}]
    assert stored["input_items"][0]["id"] == "msg_1" and "tenant_id" not in stored


def test_a_stored_response_already_gone_is_left_out_of_the_export() -> None:
    world = World()
    world.call(1, ALICE, stored=True)
    world.responses.records.clear()

    assert world.export()["stored_responses"] == []


# ------------------------------------------------------------------------------------- erasure


def test_an_erasure_deletes_the_subjects_stored_responses_and_counts_them() -> None:
    world = World()
    for n in range(3):
        world.call(n, ALICE, stored=True)
    world.call(9, BOB, stored=True)

    erasure = world.erase()

    assert erasure.erased["stored_responses"] == 3
    assert list(world.responses.records) == [("tnt_a", "resp_9")]


def test_stored_responses_go_before_the_records_naming_them() -> None:
    world = World(index_page=2)
    for n in range(4):
        world.call(n, ALICE, stored=True)

    world.erase()

    assert world.log == ["content:0", "responses:2", "records:2", "responses:2", "records:2"]


def test_an_erasure_removes_content_cache_entries_and_records() -> None:
    world = World()
    for n in range(12):
        world.call(n, ALICE, content=n % 2 == 0, cached=n % 3 == 0)
    world.call(99, BOB, content=True, cached=True)

    erasure = world.erase()

    assert (erasure.status, erasure.http_status) == ("completed", 200)
    assert erasure.erased == {
        "audit_records": 12,
        "content_objects": 6,
        "cache_entries": 4,
        "stored_responses": 0,
    }
    assert world.export()["audit_records"] == []
    assert len(world.export(BOB)["audit_records"]) == 1
    assert list(world.cache.entries) == ["ck-99"]


def test_content_and_cache_entries_go_before_the_records_naming_them() -> None:
    world = World(index_page=5)
    for n in range(10):
        world.call(n, ALICE, content=True, cached=True)

    world.erase()

    assert world.log == [
        "content:10",
        *(["cache"] * 5),
        "responses:0",
        "records:5",
        *(["cache"] * 5),
        "responses:0",
        "records:5",
    ]


def test_a_completed_erasure_writes_one_record_without_the_subject() -> None:
    world = World()
    world.call(1, ALICE, content=True)

    world.erase()

    (record,) = erasures(world)
    assert record.user is None and ALICE not in record.model_dump_json()
    assert record.action == "DELETE /admin/tenants/{tenant_id}/subjects/{user}"
    assert record.key_id == "key_admin"
    assert record.erased == {
        "audit_records": 1,
        "content_objects": 1,
        "cache_entries": 0,
        "stored_responses": 0,
    }
    assert record.expires_at == 1_750_100_000 + 30 * 86_400


def test_an_erasure_out_of_time_answers_in_progress_and_the_next_request_goes_on() -> None:
    world = World(index_page=10)
    for n in range(35):
        world.call(n, ALICE)

    first = world.erase(budget=2.5)  # the deadline passes after the second page
    statuses = [first.status]
    while statuses[-1] == "in_progress":
        statuses.append(world.erase(budget=2.5).status)

    assert (first.http_status, first.public()["object"]) == (202, "subject.erasure")
    assert erasures(world)[0].erased == {
        "audit_records": 35,
        "content_objects": 0,
        "cache_entries": 0,
        "stored_responses": 0,
    }
    assert statuses == ["in_progress", "completed"]
    assert world.records.progress == {}


def test_every_request_makes_progress_however_small_the_budget() -> None:
    world = World(index_page=10, content_page=3)
    for n in range(12):
        world.call(n, ALICE, content=True)

    answers = [world.erase(budget=0.0)]
    while answers[-1].status == "in_progress":
        answers.append(world.erase(budget=0.0))

    # Three pages of content; the fourth empties the prefix, and its request goes on to a page of records.
    assert [a.erased["content_objects"] for a in answers] == [3, 6, 9, 12, 12]
    assert answers[-1].erased == {
        "audit_records": 12,
        "content_objects": 12,
        "cache_entries": 0,
        "stored_responses": 0,
    }


def test_an_erasure_repeated_after_a_crash_completes() -> None:
    world = World(index_page=5)
    for n in range(10):
        world.call(n, ALICE, cached=True)
    world.records.fail_next_delete = True

    with pytest.raises(ConnectionError):
        world.erase()
    erasure = world.erase()

    assert erasure.status == "completed"
    assert world.export()["audit_records"] == [] and world.cache.entries == {}
    # The crashed request's cache deletions were not saved as progress: only what this one found counts.
    assert erasure.erased["audit_records"] == 10


def test_a_second_erasure_erases_nothing_and_is_recorded_too() -> None:
    world = World()
    world.call(1, ALICE, content=True, cached=True)
    world.erase()

    again = world.erase()

    assert again.erased == {
        "audit_records": 0,
        "content_objects": 0,
        "cache_entries": 0,
        "stored_responses": 0,
    }
    assert len(erasures(world)) == 1  # the same request id: one sort key per erasure request


@pytest.mark.parametrize("user", ["", "u" * 257])
def test_a_subject_id_empty_or_over_256_characters_is_refused(user: str) -> None:
    world = World()

    with pytest.raises(InvalidRequest) as refused:
        world.erase(user)
    with pytest.raises(InvalidRequest):
        world.export(user)

    assert refused.value.param == "user"


# -------------------------------------------------------------------------------------- access


class FakeTenants:
    def get(self, tenant_id: str) -> Tenant | None:
        return Tenant(id=tenant_id, name="acme", created_at=0) if tenant_id == "tnt_a" else None


class FakePolicies:
    def get(self, tenant_id: str) -> Policy:
        return Policy(tenant_id=tenant_id, retention_days=7)


def governance_store(world: World, opened: list[str]) -> GovernanceStore:
    def open_tenant(tenant_id: str) -> TenantData:
        opened.append(tenant_id)
        return TenantData(
            records=world.records, content=world.content, cache=world.cache, responses=world.responses
        )

    return GovernanceStore(tenants=FakeTenants(), policies=FakePolicies(), open_tenant=open_tenant)


@pytest.mark.parametrize(
    ("principal", "tenant_id", "error"),
    [
        (Principal(key_id="k", role="admin", tenant_id="tnt_b"), "tnt_a", NotFound),
        (Principal(key_id="k", role="developer", tenant_id="tnt_a"), "tnt_a", PermissionDenied),
        (Principal(key_id="platform-admin", role="platform_admin"), "tnt_missing", NotFound),
    ],
)
def test_the_tenants_data_is_opened_only_for_its_admin(
    principal: Principal, tenant_id: str, error: type
) -> None:
    world, opened = World(), list[str]()

    with pytest.raises(error):
        tenant_data.list_audit(governance_store(world, opened), principal, tenant_id, {"limit": "bad"})

    assert opened == []


def test_the_erasure_record_keeps_the_tenants_retention() -> None:
    world, opened = World(), list[str]()
    world.call(1, ALICE)

    erasure = tenant_data.erase_subject(governance_store(world, opened), ADMIN, "tnt_a", ALICE, "req-x")

    (record,) = erasures(world)
    assert erasure.status == "completed" and opened == ["tnt_a"]
    assert record.expires_at - record.created_at_ms // 1000 == 7 * 86_400


def test_include_content_adds_each_records_content() -> None:
    world, opened = World(), list[str]()
    world.call(1, ALICE, content=True)
    world.call(2, None)

    listed = tenant_data.list_audit(
        governance_store(world, opened), ADMIN, "tnt_a", {"include_content": "true"}
    )
    plain = tenant_data.list_audit(governance_store(world, opened), ADMIN, "tnt_a", {})

    assert [r.get("content") for r in listed["data"]] == [None, {"n": 1}]
    assert all("content" not in r for r in plain["data"])


@pytest.mark.parametrize(
    ("retention_days", "tier"), [(1, 1), (6, 1), (7, 7), (90, 90), (100, 90), (3650, 3650)]
)
def test_logged_content_is_kept_no_longer_than_its_tenants_retention(retention_days: int, tier: int) -> None:
    from byom.dal.content import retention_tier

    assert retention_tier(retention_days) == tier
