"""Records and request bodies of the admin API. Requests forbid unknown fields: a typo is a 400."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

if TYPE_CHECKING:  # value types of other modules that import this one
    from byom.governance.policy import Policy
    from byom.money import BudgetState

Role = Literal["admin", "developer", "viewer"]
RedactionMode = Literal["off", "mask", "block"]
Provider = Literal["openai", "openai_compatible", "bedrock"]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
Alias = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


# The most any amount in a request may be: a monthly budget, a key's limit, a price per 1K tokens.
# Beyond it a value is a mistake, and bounded it stays exact in micro-dollars and fits DynamoDB's
# numbers (38 digits); unbounded, 1.5e308 passed validation and failed on the write.
MAX_USD = 10_000_000
# DynamoDB takes 100 items a transaction: a reservation borrowing across two scopes of this many
# shards (byom.logic.ledger_shards) fits.
MAX_LEDGER_SHARDS = 32

Money = Annotated[float, Field(ge=0, le=MAX_USD), AfterValidator(_finite)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class CreateTenant(_Request):
    name: Name
    monthly_budget_usd: Money | None = None


class CreateKey(_Request):
    name: Name
    role: Role = "developer"


class PutCredential(_Request):
    provider: Provider
    api_key: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    base_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None
    # The endpoint serves OpenAI's Responses API too: /v1/responses calls go to it natively rather
    # than translated onto chat completions (OpenAI's own API always does).
    responses: bool = False


class Pricing(_Request):
    input_per_1k_usd: Money
    output_per_1k_usd: Money
    # Input tokens read from / written to the provider's prompt cache; None: the input price.
    cache_read_per_1k_usd: Money | None = None
    cache_write_per_1k_usd: Money | None = None
    # Batch lines (POST /v1/batches): both providers publish half of on-demand; None: on-demand.
    batch_input_per_1k_usd: Money | None = None
    batch_output_per_1k_usd: Money | None = None

    def batch(self) -> Pricing:
        """The prices a batch line is metered at (no prompt-cache rates: a batch bills plain tokens)."""
        return Pricing(
            input_per_1k_usd=self.input_per_1k_usd
            if self.batch_input_per_1k_usd is None
            else self.batch_input_per_1k_usd,
            output_per_1k_usd=self.output_per_1k_usd
            if self.batch_output_per_1k_usd is None
            else self.batch_output_per_1k_usd,
        )


class CreateModel(_Request):
    alias: Alias
    provider: Provider
    model_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
    credential: Slug | None = None
    pricing: Pricing | None = None
    fallbacks: Annotated[list[Alias], Field(max_length=5)] = []
    # Opt-in response cache: identical requests within this many seconds get the stored answer.
    cache_ttl_seconds: Annotated[int, Field(ge=1, le=86_400, strict=True)] | None = None
    # Under a hard budget a request without max_tokens is capped at this (the reservation's bound).
    max_output_tokens: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] | None = None
    # Fine-tuning: the held-out score a model fine-tuned from this alias needs before promotion.
    eval_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    # Overrides the tenant policy's redaction mode for this alias (e.g. "off" for an in-account model).
    redaction_mode: RedactionMode | None = None
    # Mark the prompt's stable prefix for the provider's cache (Bedrock cache points, where the
    # catalog says the model takes them); OpenAI caches on its own, so there it changes nothing.
    prompt_caching: Annotated[bool, Field(strict=True)] = False


Fraction = Annotated[float, Field(gt=0, le=1), AfterValidator(_finite)]


class PutBudget(_Request):
    monthly_limit_usd: Annotated[float, Field(gt=0, le=MAX_USD), AfterValidator(_finite)]
    warn_at: Annotated[list[Fraction], Field(max_length=10)] = [0.5, 0.8]
    hard: bool = True
    # Optional limits per API key id, within the tenant's.
    key_limits: Annotated[dict[Slug, Money], Field(max_length=1000)] = {}
    # How many ledger items the month's money is split over (docs/scale.md): about 50 metered calls
    # a second each under a hard budget.
    ledger_shards: Annotated[int, Field(ge=1, le=MAX_LEDGER_SHARDS)] = 1


class Budget(BaseModel):
    tenant_id: str
    monthly_limit_usd: float
    warn_at: list[float] = []
    hard: bool = True
    key_limits: dict[str, float] = {}
    ledger_shards: int = 1
    updated_at: int

    def public(self) -> dict:
        return self.model_dump(exclude={"tenant_id"}) | {"object": "budget"}


class Tenant(BaseModel):
    id: str
    name: str
    monthly_budget_usd: float | None = None
    created_at: int
    # The tenant's API Gateway usage plan (byom.governance.rate_limits), set on first need with
    # its own conditional update; excluded from dumps, so no route shows it.
    usage_plan_id: str | None = Field(default=None, exclude=True)


class ApiKey(BaseModel):
    """An API key as stored: the digest, never the key."""

    id: str
    tenant_id: str
    name: str
    role: Role
    key_hash: str
    last4: str
    created_at: int
    revoked_at: int | None = None
    # The key's API Gateway API key (byom.governance.rate_limits.UsageKey): the authorizer returns
    # the value as usageIdentifierKey. Stored, never shown.
    usage_key_id: str | None = None
    usage_key: str | None = None

    def public(self) -> dict:
        hidden = {"key_hash", "usage_key_id", "usage_key"}
        return self.model_dump(exclude=hidden) | {"object": "api_key"}


class Credential(BaseModel):
    """Credential metadata. The key itself lives only in Secrets Manager."""

    tenant_id: str
    name: str
    provider: Provider
    base_url: str | None = None
    key_last4: str | None = None
    secret_arn: str | None = None
    responses: bool = False
    updated_at: int

    def public(self) -> dict:
        shown = {"name", "provider", "base_url", "key_last4", "responses", "updated_at"}
        return self.model_dump(include=shown) | {"object": "credential"}


class ModelAlias(BaseModel):
    tenant_id: str
    alias: str
    provider: Provider
    model_id: str
    credential: str | None = None
    pricing: Pricing | None = None
    fallbacks: list[str] = []
    cache_ttl_seconds: int | None = None
    max_output_tokens: int | None = None
    eval_threshold: float | None = None
    redaction_mode: RedactionMode | None = None
    prompt_caching: bool = False
    budget_pricing: Pricing | None = None
    """The highest input and output prices on the alias's fallback chain, fixed at registration
    (aliases are immutable and a fallback cannot be deleted while used): what a reservation prices."""
    created_at: int

    def public(self) -> dict:
        return self.model_dump(exclude={"tenant_id", "budget_pricing"}) | {"object": "model_alias"}


class StoredResponse(BaseModel):
    """A Responses API call kept for `GET /v1/responses/{id}` and `previous_response_id` (SPEC §4.3):
    stored sealed, in its tenant's partition, for the tenant's retention (byom.dal.responses)."""

    id: str
    """`resp_...`, as the Response object's own id."""
    tenant_id: str
    created_at: int
    """Unix seconds."""
    response: dict[str, Any]
    """The OpenAI Response object as it was returned to the client."""
    input_items: list[dict[str, Any]]
    """This request's input items as OpenAI's input_items list shows them, each with an `id`."""
    context: list[dict[str, Any]]
    """The conversation so far as chat-completions messages, the assistant's answer included: what a
    later call naming this one as `previous_response_id` continues, for stateless providers."""
    user: str | None = None
    """The data subject, whose erasure deletes this record."""
    expires_at: int | None = None
    """Unix seconds; None: kept until deleted."""


@dataclass(frozen=True)
class CallRead:
    """What a call knows before its provider is asked."""

    model: ModelAlias | None
    credential: Credential | None
    state: BudgetState | None
    """None when the call is not metered (no usage table, or no month asked for)."""
    policy: Policy
    minute_tokens: int = 0
    """The tenant's tokens settled in the call's minute (tokens-per-minute limits)."""
