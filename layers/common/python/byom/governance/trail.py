"""The audit record of one model interaction, gathered while the call runs (SPEC §7).

A `Trail` is filled in as the call goes (who, which model, what was redacted, what it cost) and
turned into one `AuditRecord` at the end, whatever the outcome. Where the call is metered, the
record is written in the metering transaction itself (no extra AWS round trip on a warm call);
otherwise, on refusals before any provider call, on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from byom.errors import (
    BudgetExceeded,
    ByomError,
    ContentPolicyViolation,
    ModelNotFound,
    ProviderError,
    RateLimited,
)
from byom.governance.audit import AuditRecord, expires_at
from byom.governance.policy import DEFAULT_RETENTION_DAYS, check_subject


class AuditLog(Protocol):
    """Where audit records go (byom.dal.audit.AuditTable)."""

    def write(self, record: AuditRecord) -> None: ...

    def transact_put(self, record: AuditRecord) -> dict[str, Any]: ...


def subject_of(*candidates: str | None) -> str | None:
    """The data subject: the first of `user`, `safety_identifier`, `x-byom-user` that is set."""
    subject = next((c for c in candidates if c), None)
    return check_subject(subject) if subject is not None else None


def _status_of(error: ByomError) -> str:
    if isinstance(error, ProviderError):
        return "provider_error"
    if isinstance(error, BudgetExceeded):
        return "budget_refused"
    if isinstance(error, ContentPolicyViolation):
        return "policy_blocked"
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, ModelNotFound) or error.status < 500:
        return "invalid_request"
    return "gateway_error"


@dataclass
class Trail:
    tenant_id: str
    key_id: str
    request_id: str
    route: str
    model: str
    user: str | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    status: str = "succeeded"
    http_status: int = 200
    provider: str | None = None
    provider_model: str | None = None
    error_source: str | None = None
    error_code: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    cache_hit: bool = False
    redactions: dict[str, int] = field(default_factory=dict)
    content_key: str | None = None
    cache_key: str | None = None
    response_id: str | None = None
    created_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    started: float = field(default_factory=time.perf_counter)
    log: AuditLog | None = None
    written: bool = False

    def failed(self, error: ByomError) -> None:
        if isinstance(error, ContentPolicyViolation):
            self.redactions = error.found
        self.status = _status_of(error)
        self.http_status = error.status
        self.error_source = error.source
        self.error_code = error.code or error.type

    def crashed(self) -> None:
        self.status, self.http_status, self.error_source = "gateway_error", 500, "gateway"

    def record(self) -> AuditRecord:
        return AuditRecord(
            tenant_id=self.tenant_id,
            kind="interaction",
            request_id=self.request_id,
            created_at_ms=self.created_at_ms,
            expires_at=expires_at(self.created_at_ms, self.retention_days),
            key_id=self.key_id,
            user=self.user,
            route=self.route,
            model=self.model,
            provider=self.provider,
            provider_model=self.provider_model,
            status=self.status,
            http_status=self.http_status,
            error_source=self.error_source,
            error_code=self.error_code,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_micros=self.cost_micros,
            latency_ms=round((time.perf_counter() - self.started) * 1000),
            cache_hit=self.cache_hit,
            redactions=self.redactions,
            content_key=self.content_key,
            cache_key=self.cache_key,
            response_id=self.response_id,
        )

    # The metering transaction's side (byom.logic.call_meter.SettleRecord)

    def item(self, input_tokens: int, output_tokens: int, cost_micros: int) -> dict[str, Any] | None:
        """The record as an item of the settle transaction; None when there is no audit log."""
        if self.log is None:
            return None
        self.input_tokens, self.output_tokens, self.cost_micros = input_tokens, output_tokens, cost_micros
        return self.log.transact_put(self.record())

    def settled(self) -> None:
        self.written = True

    def write(self) -> None:
        """On its own, when the metering transaction did not carry it."""
        if self.log is not None and not self.written:
            self.log.write(self.record())
            self.written = True
