"""A provider's own batch service (Bedrock batch inference, OpenAI's Batch API) behind one Protocol
(docs/batches.md). The declarations of the batch contract; the implementations live beside them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from byom.providers import Target, Usage


@dataclass(frozen=True)
class BatchLine:
    """One request line, already screened (redacted) by the gateway."""

    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class LineOutcome:
    custom_id: str
    status_code: int
    body: dict[str, Any]
    usage: Usage | None


@dataclass(frozen=True)
class ProviderJob:
    state: Literal["in_progress", "completed", "failed", "cancelled", "expired"]
    total: int
    completed: int
    failed: int
    message: str | None = None


class ProviderBatches(Protocol):
    def submit(
        self, target: Target, endpoint: str, lines: Sequence[BatchLine], *, name: str, s3_prefix: str
    ) -> str: ...

    def status(self, target: Target, job_id: str) -> ProviderJob: ...

    def outcomes(self, target: Target, job_id: str) -> Iterator[LineOutcome]: ...

    def cancel(self, target: Target, job_id: str) -> None: ...


def provider_batches(provider: str, *, role_arn: str | None) -> ProviderBatches | None:
    """The batch service of `provider`; None: the gateway runs the lines itself."""
    return None
