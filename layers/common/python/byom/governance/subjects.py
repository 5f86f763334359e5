"""A data subject's export and erasure (SPEC §4.2, §7).

A subject is the `user` of the calls made for them. What the gateway stores about one: their audit
records (found through the `by_subject` index), the prompts and completions of those calls (under
one prefix per subject), and the response-cache entries and stored responses the calls wrote (named
by the records).

Erasure deletes the content first, then, page by page, each page's cache entries and stored
responses before the records that name them: a request that stops anywhere (the time budget, a
crash) leaves nothing unreachable, and the next request picks up what is left. Only when nothing
is left is the erasure recorded, in a record that names no subject.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from byom.domain import StoredResponse
from byom.governance.audit import AuditRecord
from byom.governance.audit import expires_at as audit_expiry
from byom.governance.audit_query import ContentReader, with_content
from byom.governance.policy import check_subject

# The admin function has 15 s; what is left is for the answer and the last page's round trips.
ERASURE_BUDGET_SECONDS = 10.0
EXPORT_PAGE_RECORDS = 100
ERASURE_ACTION = "DELETE /admin/tenants/{tenant_id}/subjects/{user}"


class SubjectRecords(Protocol):
    """byom.dal.audit.AuditTable."""

    def subject_keys(
        self, tenant_id: str, user: str, page_token: str | None, limit: int = ...
    ) -> tuple[list[str], str | None]: ...

    def get_many(self, tenant_id: str, sks: Sequence[str]) -> list[AuditRecord]: ...

    def delete_many(self, tenant_id: str, sks: Sequence[str]) -> None: ...

    def erasure_progress(self, tenant_id: str, user: str) -> dict[str, int]: ...

    def save_erasure_progress(
        self, tenant_id: str, user: str, erased: dict[str, int], expires_at: int
    ) -> None: ...

    def finish_erasure(self, record: AuditRecord, user: str) -> None: ...


class SubjectContent(ContentReader, Protocol):
    """byom.dal.content.ContentStore."""

    def delete_subject_page(self, tenant_id: str, user: str) -> tuple[int, bool]: ...


class SubjectCache(Protocol):
    """byom.dal.cache.ResponseCacheTable."""

    def get(self, cache_key: str) -> dict[str, Any] | None: ...

    def delete(self, cache_key: str) -> bool: ...


class SubjectResponses(Protocol):
    """byom.dal.responses.ResponseStore."""

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None: ...

    def delete_many(self, tenant_id: str, response_ids: Sequence[str]) -> int: ...


def _stored_response(record: StoredResponse) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude={"tenant_id"}) | {"object": "stored_response"}


def _response_ids(found: Sequence[AuditRecord]) -> list[str]:
    return list(dict.fromkeys(r.response_id for r in found if r.response_id))


def _cache_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "tenant_id"} | {"object": "cache_entry"}


def export(
    tenant_id: str,
    user: str,
    page_token: str | None,
    *,
    records: SubjectRecords,
    content: SubjectContent,
    cache: SubjectCache,
    responses: SubjectResponses,
    page_size: int = EXPORT_PAGE_RECORDS,
) -> dict[str, Any]:
    """One page of everything stored about `user`, oldest first: each audit record with its stored
    content, and the cache entries and stored responses those calls wrote. `next_token` is set
    while there is more."""
    check_subject(user)
    sks, next_token = records.subject_keys(tenant_id, user, page_token, page_size)
    found = sorted(records.get_many(tenant_id, sks), key=lambda r: r.sk)
    entries = []
    for cache_key in dict.fromkeys(r.cache_key for r in found if r.cache_key):
        entry = cache.get(cache_key)
        if entry is not None and entry.get("tenant_id") == tenant_id:
            entries.append(_cache_entry(entry))
    stored = [responses.get(tenant_id, response_id) for response_id in _response_ids(found)]
    return {
        "object": "subject.export",
        "user": user,
        "audit_records": [with_content(r, content) for r in found],
        "cache_entries": entries,
        "stored_responses": [_stored_response(r) for r in stored if r is not None],
        "next_token": next_token,
    }


@dataclass
class Erasure:
    status: Literal["completed", "in_progress"]
    erased: dict[str, int] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        """202 while there is more to erase: the caller repeats the request."""
        return 200 if self.status == "completed" else 202

    def public(self) -> dict[str, Any]:
        return {"object": "subject.erasure", "status": self.status, "erased": self.erased}


def erase(
    tenant_id: str,
    user: str,
    *,
    actor_key_id: str,
    request_id: str,
    retention_days: int,
    records: SubjectRecords,
    content: SubjectContent,
    cache: SubjectCache,
    responses: SubjectResponses,
    budget_seconds: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> Erasure:
    """Erase what is stored about `user`, for up to `budget_seconds` (each request makes progress,
    however small the budget). Counts add up over the requests of one erasure."""
    check_subject(user)
    deadline = monotonic() + (ERASURE_BUDGET_SECONDS if budget_seconds is None else budget_seconds)
    erased = {"audit_records": 0, "content_objects": 0, "cache_entries": 0, "stored_responses": 0}
    for name, count in records.erasure_progress(tenant_id, user).items():
        erased[name] = erased.get(name, 0) + count
    expires_at = audit_expiry(now_ms(), retention_days)

    def pause() -> Erasure:
        records.save_erasure_progress(tenant_id, user, erased, expires_at)
        return Erasure("in_progress", erased)

    done = False
    while not done:
        removed, done = content.delete_subject_page(tenant_id, user)
        erased["content_objects"] += removed
        if not done and monotonic() >= deadline:
            return pause()

    token: str | None = None
    while True:
        sks, token = records.subject_keys(tenant_id, user, token)
        found = records.get_many(tenant_id, sks)
        for cache_key in dict.fromkeys(r.cache_key for r in found if r.cache_key):
            erased["cache_entries"] += cache.delete(cache_key)
        erased["stored_responses"] += responses.delete_many(tenant_id, _response_ids(found))
        records.delete_many(tenant_id, sks)
        erased["audit_records"] += len(found)
        if token is None:
            break
        if monotonic() >= deadline:
            return pause()

    created_at_ms = now_ms()
    records.finish_erasure(
        AuditRecord(
            tenant_id=tenant_id,
            kind="erasure",
            request_id=request_id,
            created_at_ms=created_at_ms,
            expires_at=audit_expiry(created_at_ms, retention_days),
            key_id=actor_key_id,
            action=ERASURE_ACTION,
            status="200",
            http_status=200,
            erased=dict(erased),
        ),
        user,
    )
    return Erasure("completed", erased)
