"""A provider's own batch service (Bedrock batch inference, OpenAI's Batch API) behind one Protocol.

The gateway hands a provider lines it has already screened; the provider runs them as one job at
its batch prices and hands back each line's outcome in OpenAI terms, matched by `custom_id`.
Providers without a batch service get None from `provider_batches`: the gateway runs their lines
itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from byom.errors import GatewayMisconfigured
from byom.providers import KeyReader, Target, Usage

CHAT_ENDPOINT = "/v1/chat/completions"
EMBEDDINGS_ENDPOINT = "/v1/embeddings"

JobState = Literal["in_progress", "completed", "failed", "cancelled", "expired"]


@dataclass(frozen=True)
class BatchLine:
    """One request line, already screened (redacted) by the gateway."""

    custom_id: str
    body: dict[str, Any]
    """The OpenAI request body for the batch's endpoint (a chat.completions or embeddings request
    as the client sent it, `model` replaced by the target's model id)."""


@dataclass(frozen=True)
class LineOutcome:
    custom_id: str
    status_code: int
    """200 when the model answered."""
    body: dict[str, Any]
    """The OpenAI response body (chat.completion / embeddings list) or, on failure, OpenAI's error
    object {"message", "type", "param", "code"}."""
    usage: Usage | None
    """The provider's token counts; None on failure."""


@dataclass(frozen=True)
class ProviderJob:
    state: JobState
    total: int
    completed: int
    failed: int
    message: str | None = None
    """Why the job failed (never request content)."""


class ProviderBatches(Protocol):
    def submit(
        self, target: Target, endpoint: str, lines: Sequence[BatchLine], *, name: str, s3_prefix: str
    ) -> str:
        """Starts the provider's job; returns the provider's job id (Bedrock: the job ARN).
        `s3_prefix` is `s3://<data bucket>/tenants/<tenant_id>/batches/<batch_id>/` (Bedrock writes
        its input there and has the job write its output under `<s3_prefix>output/`)."""
        ...

    def status(self, target: Target, job_id: str) -> ProviderJob: ...

    def outcomes(self, target: Target, job_id: str) -> Iterator[LineOutcome]:
        """Every line's outcome once the job is completed (or what finished of a stopped one)."""
        ...

    def cancel(self, target: Target, job_id: str) -> None: ...


def error_object(message: str, *, type_: str = "server_error", code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object for a line that failed at the provider."""
    return {"message": message, "type": type_, "param": None, "code": code}


def provider_batches(
    provider: str,
    *,
    role_arn: str | None,
    keys: KeyReader | None = None,
    allow_loopback_http: bool | None = None,
) -> ProviderBatches | None:
    """The batch service of `provider`, or None when the gateway runs that provider's lines itself.

    Bedrock needs `role_arn`: the service role its jobs read and write S3 with. OpenAI reads the
    tenant's key through `keys`; without one given, through Secrets Manager as the gateway function
    does (SECRET_PREFIX, PROVIDER_KEY_MAX_AGE_SECONDS, ALLOW_LOOPBACK_HTTP from the environment).
    Each module is imported only when its provider is asked for."""
    if provider == "bedrock":
        if not role_arn:
            raise GatewayMisconfigured("Bedrock batch inference needs a service role (BYOM_BATCH_ROLE_ARN)")
        from byom.providers.bedrock_batch import BedrockBatches

        return BedrockBatches(role_arn=role_arn)
    if provider == "openai":
        from byom.providers.openai_batch import OpenAIBatches

        return OpenAIBatches.from_env(keys=keys, allow_loopback_http=allow_loopback_http)
    return None
