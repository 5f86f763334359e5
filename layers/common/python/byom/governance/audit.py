"""The audit record (SPEC §7): one per model interaction and per admin action. Pure data."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Kind = Literal["interaction", "admin", "erasure"]

# What happened to a model interaction.
InteractionStatus = Literal[
    "succeeded",
    "cache_hit",
    "dry_run",
    "provider_error",
    "budget_refused",
    "policy_blocked",
    "rate_limited",
    "invalid_request",
    "gateway_error",
    "client_disconnected",
]

PLATFORM_ADMIN_ACTOR = "platform-admin"
DAY_SECONDS = 86_400


def expires_at(created_at_ms: int, retention_days: int) -> int:
    """A record's DynamoDB TTL: its tenant's retention after it was made."""
    return created_at_ms // 1000 + retention_days * DAY_SECONDS


def sort_key(created_at_ms: int, request_id: str, kind: Kind) -> str:
    """Newest first when read backwards; unique per request and kind."""
    return f"{created_at_ms:013d}#{kind}#{request_id}"


def subject_key(tenant_id: str, user: str) -> str:
    """The `by_subject` index's partition key: a subject is always a tenant's."""
    return f"{tenant_id}#{user}"


class AuditRecord(BaseModel):
    tenant_id: str
    kind: Kind
    request_id: str
    created_at_ms: int
    expires_at: int
    """DynamoDB TTL (Unix seconds): created_at + the tenant's retention_days."""
    key_id: str | None = None
    """The caller: an API key id, or `platform-admin`."""
    user: str | None = None
    """The data subject (the request's `user` / `safety_identifier` / `x-byom-user`)."""
    # Interactions
    route: str | None = None
    """`chat.completions`, `embeddings`, `fine_tuning.validation`, ..."""
    model: str | None = None
    provider: str | None = None
    provider_model: str | None = None
    status: str | None = None
    """InteractionStatus for interactions; the HTTP status as a string for admin actions."""
    http_status: int | None = None
    error_source: str | None = None
    error_code: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    latency_ms: int | None = None
    cache_hit: bool = False
    redactions: dict[str, int] = {}
    content_key: str | None = None
    """The S3 key of the encrypted prompt and completion, when the tenant logs content."""
    cache_key: str | None = None
    """The response-cache entry this call wrote (erased with its subject)."""
    response_id: str | None = None
    """The stored response this call wrote (`POST /v1/responses` with `store`; erased with its subject)."""
    # Admin actions
    action: str | None = None
    """Method and route template, e.g. `PUT /admin/tenants/{tenant_id}/policy`."""
    target: str | None = None
    """The resource acted on (a key id, an alias, a credential name); never a subject id or a secret."""
    erased: dict[str, int] | None = None
    """On an erasure: how many items of each kind were removed."""

    @property
    def sk(self) -> str:
        return sort_key(self.created_at_ms, self.request_id, self.kind)

    @property
    def id(self) -> str:
        return self.sk

    def public(self) -> dict:
        body = self.model_dump(
            exclude={"cache_key", "content_key", "expires_at", "cost_micros"}, exclude_none=True
        )
        return body | {
            "object": "audit_record",
            "id": self.id,
            "created_at": self.created_at_ms // 1000,
            "cost_usd": self.cost_micros / 1_000_000,
            "has_content": self.content_key is not None,
        }
