"""A tenant's governance policy (SPEC §4.2, §8): redaction, content logging, retention, rate limits.

Stored one item per tenant in the policies table; read with the alias on every call."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from byom.domain import RedactionMode
from byom.errors import InvalidRequest

# The built-in detector's types (byom.governance.redaction), in the order they are documented.
BUILTIN_TYPES: tuple[str, ...] = (
    "email",
    "phone",
    "payment_card",
    "us_ssn",
    "iban",
    "ipv4",
    "ipv6",
    "aws_access_key_id",
    "aws_secret_access_key",
    "private_key",
    "jwt",
    "api_key",
)

DEFAULT_RETENTION_DAYS = 90
MAX_SUBJECT_LENGTH = 256


def check_subject(user: str) -> str:
    """A data subject's id, as the calls name it and the subjects routes take it (SPEC §7)."""
    if not user or len(user) > MAX_SUBJECT_LENGTH:
        raise InvalidRequest(
            f"user: a data subject id is 1 to {MAX_SUBJECT_LENGTH} characters, not {len(user)}", param="user"
        )
    return user


TypeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomPattern(_Request):
    """A tenant-defined detector: its findings are masked as `<NAME_n>`."""

    name: TypeName
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class GuardrailRef(_Request):
    """An Amazon Bedrock guardrail applied with ApplyGuardrail before the provider call."""

    id: Annotated[
        str,
        StringConstraints(
            pattern=r"^[a-z0-9]{1,64}$|^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:\d{12}:guardrail/[a-z0-9]+$"
        ),
    ]
    version: Annotated[str, StringConstraints(pattern=r"^(DRAFT|[1-9][0-9]{0,7})$")]


def _known_types(types: list[str]) -> list[str]:
    unknown = [t for t in types if t not in BUILTIN_TYPES]
    if unknown:
        raise ValueError(f"unknown type '{unknown[0]}'; the built-in types are: {', '.join(BUILTIN_TYPES)}")
    return list(dict.fromkeys(types))


class Redaction(_Request):
    mode: RedactionMode = "off"
    types: Annotated[list[str], Field(max_length=len(BUILTIN_TYPES) * 2), AfterValidator(_known_types)] = (
        list(BUILTIN_TYPES)
    )
    custom: Annotated[list[CustomPattern], Field(max_length=20)] = []
    restore: bool = False
    guardrail: GuardrailRef | None = None


class RateLimits(_Request):
    requests_per_minute: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] | None = None
    tokens_per_minute: Annotated[int, Field(ge=1, le=1_000_000_000, strict=True)] | None = None


class PutPolicy(_Request):
    redaction: Redaction = Redaction()
    content_logging: bool = False
    retention_days: Annotated[int, Field(ge=1, le=3650, strict=True)] = DEFAULT_RETENTION_DAYS
    rate_limits: RateLimits = RateLimits()


class Policy(PutPolicy):
    """As stored: the request plus who it belongs to and when it was set."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    updated_at: int = 0

    def public(self) -> dict:
        return self.model_dump(exclude={"tenant_id"}) | {"object": "policy"}


def default_policy(tenant_id: str) -> Policy:
    """A tenant that never set one: nothing redacted, no content kept, 90 days of records."""
    return Policy(tenant_id=tenant_id)
