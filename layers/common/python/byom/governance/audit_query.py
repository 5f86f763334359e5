"""Reading a tenant's audit records (SPEC §4.2 `GET /admin/tenants/{tenant_id}/audit`)."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from byom.governance.audit import AuditRecord, Kind
from byom.governance.policy import MAX_SUBJECT_LENGTH

# Sort keys hold milliseconds in 13 digits: seconds up to this bound (the year 2286) fit.
MAX_TIMESTAMP = 9_999_999_998
DEFAULT_LIMIT = 20
MAX_LIMIT = 100

_Text = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_Seconds = Annotated[int, Field(ge=0, le=MAX_TIMESTAMP)]


class AuditFilters(BaseModel):
    """Which records: a time range (Unix seconds, both ends included) and exact matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: _Seconds | None = None
    until: _Seconds | None = None
    kind: Kind | None = None
    key_id: _Text | None = None
    model: _Text | None = None
    user: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUBJECT_LENGTH)] | None = None
    status: _Text | None = None

    def matches(self) -> dict[str, str]:
        """The exact-match filters that are set, by attribute name."""
        names = ("kind", "key_id", "model", "user", "status")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class AuditQuery(AuditFilters):
    """The route's query string; values arrive as strings and are converted by pydantic."""

    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    next_token: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None
    include_content: bool = False


class AuditSearch(Protocol):
    """byom.dal.audit.AuditTable."""

    def query(
        self, tenant_id: str, filters: AuditFilters, limit: int, next_token: str | None
    ) -> tuple[list[AuditRecord], str | None]: ...


class ContentReader(Protocol):
    """byom.dal.content.ContentStore."""

    def get(self, tenant_id: str, key: str) -> dict[str, Any] | None: ...


def with_content(record: AuditRecord, content: ContentReader | None) -> dict[str, Any]:
    """The record's public form, with its stored prompt and completion when asked for (None when
    the call kept none, or it is gone)."""
    body = record.public()
    if content is not None:
        body["content"] = content.get(record.tenant_id, record.content_key) if record.content_key else None
    return body


def search(
    tenant_id: str, query: AuditQuery, *, records: AuditSearch, content: ContentReader
) -> dict[str, Any]:
    """One page of the tenant's records, newest first, with their content if asked for."""
    found, next_token = records.query(tenant_id, query, query.limit, query.next_token)
    reader = content if query.include_content else None
    return {"object": "list", "data": [with_content(r, reader) for r in found], "next_token": next_token}
