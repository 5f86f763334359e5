"""The provider interface, its value types and the registry keyed by provider name.

A provider translates an OpenAI request for one model and answers in OpenAI terms; it raises
`byom.errors.ProviderError` for every failure of the provider, with `retryable` set when trying
again may help. Adding a provider is one module plus one line in `build_registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from byom.domain import Pricing
from byom.errors import GatewayMisconfigured
from byom.openai_types import ChatRequest, EmbeddingRequest

OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Target:
    """The model one call goes to, as the tenant's alias and credential describe it."""

    tenant_id: str
    alias: str
    provider: str
    model_id: str
    credential: str | None = None
    base_url: str | None = None
    has_key: bool = False
    fallbacks: tuple[str, ...] = ()
    """The alias's fallbacks, tried in order when this model cannot answer."""
    cache_ttl_seconds: int | None = None
    """How long the alias's answers are cached; None: not cached."""
    pricing: Pricing | None = None
    """What the alias's tokens cost (metering)."""
    budget_pricing: Pricing | None = None
    """The dearest prices on its fallback chain (what a hard budget reserves)."""
    max_output_tokens: int | None = None
    """The answer's cap under a hard budget when a request names none."""
    native_responses: bool = False
    """The provider serves OpenAI's Responses API: /v1/responses calls go to it as they are."""
    prompt_caching: bool = False
    """Mark the prompt's stable prefix for the provider's cache (Bedrock cache points); providers
    that cache on their own (OpenAI) need no marks."""


@dataclass(frozen=True)
class Usage:
    """A call's tokens. `prompt_tokens` is every input token, as OpenAI counts them: those read from
    the provider's prompt cache (`cached_tokens`) and those written to it (`cache_write_tokens`)
    included, each priced at its own rate (byom.logic.money)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def openai(self) -> dict[str, Any]:
        """Chat completions' usage; OpenAI always sends the details, zero when nothing was cached."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }

    def responses(self) -> dict[str, Any]:
        """The Responses API's usage (OpenAI's schema has both details, zero when not cached)."""
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {
                "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens,
            },
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class ChatResult:
    """One assistant answer: `message` is an OpenAI assistant message (role, content, tool_calls)."""

    message: dict[str, Any]
    finish_reason: str
    usage: Usage

    def completion(self, *, completion_id: str, created: int, model: str) -> dict[str, Any]:
        """The chat.completion the gateway answers with (a call's, or a batch line's)."""
        message = {"role": "assistant", "content": None, "refusal": None} | self.message
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason}
            ],
            "usage": self.usage.openai(),
        }


@dataclass(frozen=True)
class StreamDelta:
    """One `choices[0]` update of a streamed answer: an OpenAI delta and, at the end, the finish reason."""

    delta: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None


StreamEvent = StreamDelta | Usage


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: list[list[float]]
    usage: Usage


class Provider(Protocol):
    """`timeout` is the most this call may wait for the provider, in seconds, when less than the
    provider's configured timeout is left of the caller's deadline; None means the configured one."""

    def chat(self, request: ChatRequest, target: Target, *, timeout: float | None = None) -> ChatResult: ...

    def stream(
        self, request: ChatRequest, target: Target, *, timeout: float | None = None
    ) -> Iterator[StreamEvent]:
        """Call the provider at once, so a refusal raises here; then iterate its answer."""
        ...

    def embed(
        self, request: EmbeddingRequest, target: Target, *, timeout: float | None = None
    ) -> EmbeddingResult: ...


class ResponsesProvider(Provider, Protocol):
    """A provider that also serves OpenAI's Responses API (`Target.native_responses`). It takes the
    same chat request and answers in chat terms, so metering, caching and screening see one shape."""

    def respond(
        self, request: ChatRequest, target: Target, *, timeout: float | None = None
    ) -> ChatResult: ...

    def respond_stream(
        self, request: ChatRequest, target: Target, *, timeout: float | None = None
    ) -> Iterator[StreamEvent]: ...


class KeyReader(Protocol):
    def get(self, tenant_id: str, credential: str, *, refresh: bool = False) -> str:
        """The provider key of a tenant's credential; `refresh` skips any cache."""
        ...


class ProviderRegistry:
    """Providers by name, each built on first use: a function that only serves Bedrock never
    imports the OpenAI SDK."""

    def __init__(self, factories: Mapping[str, Callable[[], Provider]]) -> None:
        self._factories = dict(factories)
        self._built: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        if name not in self._built:
            factory = self._factories.get(name)
            if factory is None:
                raise GatewayMisconfigured(f"No provider '{name}' is available")
            self._built[name] = factory()
        return self._built[name]


def build_registry(keys: KeyReader, *, timeout_seconds: float, allow_loopback_http: bool) -> ProviderRegistry:
    def bedrock() -> Provider:
        from byom.providers.bedrock import BedrockProvider

        return BedrockProvider(timeout_seconds=timeout_seconds)

    def openai_compatible(default_base_url: str | None) -> Callable[[], Provider]:
        def build() -> Provider:
            from byom.providers.openai_compat import OpenAICompatibleProvider

            return OpenAICompatibleProvider(
                keys,
                timeout_seconds=timeout_seconds,
                allow_loopback_http=allow_loopback_http,
                default_base_url=default_base_url,
            )

        return build

    return ProviderRegistry(
        {
            "bedrock": bedrock,
            "openai": openai_compatible(OPENAI_BASE_URL),
            "openai_compatible": openai_compatible(None),
        }
    )
