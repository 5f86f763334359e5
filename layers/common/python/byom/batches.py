"""Batches (OpenAI's Batch API, SPEC §10): the batch record, the request body, statuses and the typed
errors of the batch state machine's tasks (their class name is the `errorType` Retry and Catch match)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

BATCH_PURPOSE = "batch"
OUTPUT_PURPOSE = "batch_output"
CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
RESPONSES = "/v1/responses"
Endpoint = Literal["/v1/chat/completions", "/v1/embeddings", "/v1/responses"]

Status = Literal[
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "cancelling",
    "cancelled",
    "expired",
]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled", "expired"})
# Who runs the lines: the provider's own batch service, or the gateway through its invocation path.
Mode = Literal["provider", "gateway"]

MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class CreateBatch(BaseModel):
    """OpenAI's batch request. Unknown fields are refused: a typo is a 400."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    endpoint: Endpoint
    completion_window: Literal["24h"]
    # OpenAI's bounds: at most 16 pairs, keys up to 64 characters, values up to 512.
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None
    # The SDK sends it only when asked; output files here live as long as the tenant's other files.
    output_expires_after: dict[str, Any] | None = None


class BatchError(BaseModel):
    """One entry of a failed batch's `errors` (OpenAI's shape)."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class Batch(BaseModel):
    id: str
    tenant_id: str
    key_id: str
    role: str
    endpoint: str
    input_file_id: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None
    model: str = ""
    """The alias every line names (OpenAI allows one model per batch)."""
    provider: str = ""
    mode: Mode = "gateway"
    status: Status = "validating"
    created_at: int
    expires_at: int
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    invalid: int = 0
    """Of `failed`, the lines refused at validation (they are in the error file, never run)."""
    chunks: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[BatchError] = []
    provider_job_id: str | None = None
    task_token: str | None = None
    cost_micros: int = 0
    # The reservation taken at creation under a hard budget (byom.money.Hold), None without one.
    hold_micros: int | None = None
    hold_month: str | None = None
    hold_limit_micros: int | None = None
    hold_key_limit_micros: int | None = None
    hold_expires_at: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model or None,
            "errors": {"object": "list", "data": [e.model_dump() for e in self.errors]}
            if self.errors
            else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.in_progress_at,
            "expires_at": self.expires_at,
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "expired_at": self.expired_at,
            "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        }


# -- typed errors of the state machine's tasks ------------------------------------------------------


class BatchTaskError(Exception):
    """An error a task raises on purpose; its message is the tenant's to read (no request content)."""

    code = "batch_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BatchClosed(BatchTaskError):
    """The batch ended (cancelled, failed) while a task ran: the task stops quietly."""

    code = "batch_closed"


class ProviderJobFailed(BatchTaskError):
    """The provider's batch job could not be started or ended failed."""

    code = "provider_job_failed"
