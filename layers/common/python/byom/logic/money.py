"""Money, token estimates and calendar keys of metering and budgets: pure functions, no AWS.

Money is integer micro-dollars everywhere it is stored or compared (SPEC §5): floats never meet a
budget. Prices are per 1,000 tokens, so a token costs `price * 1000` micro-dollars.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from byom.domain import Pricing
from byom.openai_types import ChatRequest, EmbeddingRequest

MICROS_PER_USD = 1_000_000

# When a request names no max_tokens and its alias no max_output_tokens, a hard budget caps the
# answer here: a reservation needs a bound on what the provider can bill.
DEFAULT_OUTPUT_CAP = 4096

# An upper bound on what one image can be billed as input. The largest per-image charge among the
# catalog's models is gpt-4o-mini's (its image tokens are multiplied for billing, up to ~37K for a
# large high-detail image); Claude and Nova stay under 2K.
IMAGE_TOKEN_ALLOWANCE = 40_000
# Chat templates add a few tokens per message (role markers, separators) and tool use adds a
# provider-written system prompt (a few hundred tokens on Claude).
MESSAGE_OVERHEAD_TOKENS = 16
REQUEST_OVERHEAD_TOKENS = 16
TOOLS_OVERHEAD_TOKENS = 1000


def to_micros(usd: float) -> int:
    """A limit or a price total in micro-dollars, rounded to the nearest."""
    return int((Decimal(str(usd)) * MICROS_PER_USD).to_integral_value(ROUND_HALF_UP))


def to_usd(micros: int) -> float:
    return micros / MICROS_PER_USD


def _token_micros(price_per_1k_usd: float) -> Decimal:
    return Decimal(str(price_per_1k_usd)) * 1000


def cost_micros(
    pricing: Pricing | None,
    input_tokens: int,
    output_tokens: int,
    *,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    upper: bool = False,
) -> int:
    """What these tokens cost: rounded to the nearest micro-dollar when settling what was spent,
    rounded up (`upper`) when reserving what may be spent.

    `input_tokens` is every input token; of them, `cached_tokens` were read from the provider's
    prompt cache and `cache_write_tokens` written to it, each at its own rate, the rest at the
    input price. The parts are clamped to the whole, so a provider's odd counts never bill more
    input tokens than it reported."""
    if pricing is None:
        return 0
    cached = min(max(cached_tokens, 0), input_tokens)
    written = min(max(cache_write_tokens, 0), input_tokens - cached)
    exact = (
        _token_micros(pricing.input_per_1k_usd) * (input_tokens - cached - written)
        + _token_micros(cache_read_price(pricing)) * cached
        + _token_micros(cache_write_price(pricing)) * written
        + _token_micros(pricing.output_per_1k_usd) * output_tokens
    )
    return int(exact.to_integral_value(ROUND_CEILING if upper else ROUND_HALF_UP))


def cache_read_price(pricing: Pricing) -> float:
    return (
        pricing.input_per_1k_usd if pricing.cache_read_per_1k_usd is None else pricing.cache_read_per_1k_usd
    )


def cache_write_price(pricing: Pricing) -> float:
    return (
        pricing.input_per_1k_usd if pricing.cache_write_per_1k_usd is None else pricing.cache_write_per_1k_usd
    )


def input_bound_price(pricing: Pricing) -> float:
    """The most one input token can cost: a reservation cannot know which tokens the provider
    will read from or write to its cache, and a cache write may cost more than plain input."""
    return max(pricing.input_per_1k_usd, cache_read_price(pricing), cache_write_price(pricing))


def _bound_cost(pricing: Pricing | None, input_tokens: int, output_tokens: int) -> int:
    if pricing is None:
        return 0
    bound = pricing.model_copy(update={"input_per_1k_usd": input_bound_price(pricing)})
    return cost_micros(bound, input_tokens, output_tokens, upper=True)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def estimate_chat_input_tokens(request: ChatRequest) -> int:
    """An upper bound on the prompt's tokens without a tokenizer: every token of a byte-level BPE
    tokenizer (GPT, Claude, Llama 3, Nova) is at least one byte of UTF-8, so the bytes of the text
    bound its tokens; images count a fixed allowance instead of their (base64) bytes."""
    tokens = REQUEST_OVERHEAD_TOKENS
    for message in request.messages:
        tokens += MESSAGE_OVERHEAD_TOKENS
        content = message.content
        if isinstance(content, str):
            tokens += _utf8_len(content)
        elif content is not None:
            for part in content:
                if part.image_url is not None:
                    tokens += IMAGE_TOKEN_ALLOWANCE
                elif part.text is not None:
                    tokens += _utf8_len(part.text)
        for call in message.tool_calls or ():
            tokens += _utf8_len(call.function.name) + _utf8_len(call.function.arguments)
        tokens += _utf8_len(message.name or "") + _utf8_len(message.tool_call_id or "")
    if request.tools:
        tools = json.dumps([tool.model_dump(mode="json", exclude_none=True) for tool in request.tools])
        tokens += TOOLS_OVERHEAD_TOKENS + _utf8_len(tools)
    if request.response_format is not None:
        tokens += _utf8_len(request.response_format.model_dump_json(exclude_none=True))
    return tokens


def answer_tokens_bound(message: dict[str, Any]) -> int:
    """An upper bound on an answer's tokens (its text and tool-call bytes), for a provider that
    reports no usage: such a call is metered at this bound, never at zero."""
    tokens = _utf8_len(message.get("content") or "")
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        tokens += _utf8_len(function.get("name") or "") + _utf8_len(function.get("arguments") or "")
    return tokens


def estimate_embedding_input_tokens(request: EmbeddingRequest) -> int:
    return sum(_utf8_len(text) + MESSAGE_OVERHEAD_TOKENS for text in request.texts)


@dataclass(frozen=True)
class Estimate:
    """The most a call can cost: what a hard budget reserves, and what a dry run answers."""

    input_tokens: int
    output_tokens: int
    cost_micros: int

    @property
    def cost_usd(self) -> float:
        return to_usd(self.cost_micros)


def output_cap(request: ChatRequest, alias_cap: int | None) -> int:
    return request.max_output_tokens or alias_cap or DEFAULT_OUTPUT_CAP


def estimate_chat(request: ChatRequest, pricing: Pricing | None, alias_cap: int | None) -> Estimate:
    input_tokens = estimate_chat_input_tokens(request)
    output_tokens = output_cap(request, alias_cap)
    return Estimate(input_tokens, output_tokens, _bound_cost(pricing, input_tokens, output_tokens))


def estimate_embeddings(request: EmbeddingRequest, pricing: Pricing | None) -> Estimate:
    input_tokens = estimate_embedding_input_tokens(request)
    return Estimate(input_tokens, 0, _bound_cost(pricing, input_tokens, 0))


def highest_pricing(prices: list[Pricing | None]) -> Pricing | None:
    """The dearest input, output and cache prices among these (each may come from another model)."""
    known = [p for p in prices if p is not None]
    if not known:
        return None
    return Pricing(
        input_per_1k_usd=max(p.input_per_1k_usd for p in known),
        output_per_1k_usd=max(p.output_per_1k_usd for p in known),
        # None where no model has a rate of its own: the chain's input price stands for it.
        cache_read_per_1k_usd=_highest(known, "cache_read_per_1k_usd", cache_read_price),
        cache_write_per_1k_usd=_highest(known, "cache_write_per_1k_usd", cache_write_price),
    )


def _highest(prices: list[Pricing], field: str, rate: Callable[[Pricing], float]) -> float | None:
    if all(getattr(p, field) is None for p in prices):
        return None
    return max(rate(p) for p in prices)


# Calendar keys: usage is kept per UTC month, so a month rolls over by key, with no job to run.


def month_of(timestamp: int) -> str:
    return time.strftime("%Y-%m", time.gmtime(timestamp))


def day_of(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def minute_of(timestamp: int) -> str:
    """The minute a tokens-per-minute counter counts (UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(timestamp))


def threshold_micros(limit_micros: int, fraction: float) -> int:
    return math.ceil(Decimal(limit_micros) * Decimal(str(fraction)))


def fraction_label(fraction: float) -> str:
    """How a `warn_at` fraction is named in the ledger's `warned` set: `0.5`, `0.8`, `1`."""
    return format(Decimal(str(fraction)).normalize(), "f")


def thresholds_reached(
    warn_at: list[float], limit_micros: int, spent_micros: int, warned: set[str]
) -> list[float]:
    """The `warn_at` fractions this spend has reached that were not announced yet, lowest first."""
    return [
        fraction
        for fraction in sorted(set(warn_at))
        if spent_micros >= threshold_micros(limit_micros, fraction) and fraction_label(fraction) not in warned
    ]
