"""Money, estimates and calendar keys: pure functions."""

from __future__ import annotations

import calendar

import pytest
from byom.domain import Pricing
from byom.logic import money
from byom.openai_types import ChatRequest, EmbeddingRequest

PRICE = Pricing(input_per_1k_usd=0.003, output_per_1k_usd=0.015)


def _chat(content: object = "Hello", **fields: object) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": content}]} | fields
    )


def test_usd_converts_to_whole_micro_dollars() -> None:
    assert (money.to_micros(1), money.to_micros(0.1), money.to_micros(0.0000005)) == (
        1_000_000,
        100_000,
        1,
    )


def test_cost_is_exact_in_micro_dollars() -> None:
    # 1,000 input tokens at $0.003 and 1,000 output tokens at $0.015 per 1K.
    assert money.cost_micros(PRICE, 1000, 1000) == 18_000
    # 0.1 + 0.2 in floats is not 0.3; in micro-dollars it is.
    assert money.cost_micros(Pricing(input_per_1k_usd=0.1, output_per_1k_usd=0.2), 1, 1) == 300


def test_spend_rounds_to_the_nearest_and_reservations_round_up() -> None:
    tiny = Pricing(input_per_1k_usd=0.000035, output_per_1k_usd=0)
    # 10 tokens at $0.000035 per 1K are 0.35 micro-dollars.
    assert money.cost_micros(tiny, 10, 0) == 0
    assert money.cost_micros(tiny, 10, 0, upper=True) == 1


def test_an_unpriced_model_costs_nothing() -> None:
    assert money.cost_micros(None, 1000, 1000) == 0


def test_the_prompt_bound_counts_utf8_bytes_not_characters() -> None:
    ascii_only = money.estimate_chat_input_tokens(_chat("abcd"))
    accented = money.estimate_chat_input_tokens(_chat("äbcd"))  # ä is two bytes

    assert accented == ascii_only + 1


def test_the_prompt_bound_is_at_least_the_text_bytes_plus_overheads() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 20
    bound = money.estimate_chat_input_tokens(_chat(text))

    assert bound == len(text.encode()) + money.MESSAGE_OVERHEAD_TOKENS + money.REQUEST_OVERHEAD_TOKENS


def test_an_image_counts_its_allowance_not_its_base64_bytes() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 500_000}}
    with_image = money.estimate_chat_input_tokens(_chat([{"type": "text", "text": "hi"}, image]))
    without = money.estimate_chat_input_tokens(_chat([{"type": "text", "text": "hi"}]))

    assert with_image - without == money.IMAGE_TOKEN_ALLOWANCE


def test_tools_add_their_definitions_and_the_providers_tool_prompt() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    with_tools = money.estimate_chat_input_tokens(_chat(tools=[tool]))

    assert with_tools - money.estimate_chat_input_tokens(_chat()) > money.TOOLS_OVERHEAD_TOKENS


def test_the_output_bound_is_max_tokens_then_the_alias_cap_then_the_default() -> None:
    assert money.output_cap(_chat(max_tokens=50), 900) == 50
    assert money.output_cap(_chat(max_completion_tokens=60), 900) == 60
    assert money.output_cap(_chat(), 900) == 900
    assert money.output_cap(_chat(), None) == money.DEFAULT_OUTPUT_CAP


def test_a_chat_estimate_prices_both_bounds_rounded_up() -> None:
    estimate = money.estimate_chat(_chat(max_tokens=100), PRICE, None)

    assert estimate.output_tokens == 100
    assert estimate.cost_micros == money.cost_micros(PRICE, estimate.input_tokens, 100, upper=True)


def test_an_embedding_estimate_has_no_output() -> None:
    request = EmbeddingRequest.model_validate({"model": "e", "input": ["ab", "cd"]})
    estimate = money.estimate_embeddings(request, PRICE)

    assert (estimate.input_tokens, estimate.output_tokens) == (4 + 2 * money.MESSAGE_OVERHEAD_TOKENS, 0)


def test_an_answer_bound_counts_text_and_tool_call_bytes() -> None:
    message = {
        "content": "hé",
        "tool_calls": [{"function": {"name": "f", "arguments": '{"a":1}'}}],
    }
    assert money.answer_tokens_bound(message) == 3 + 1 + 7


def test_the_dearest_prices_are_taken_from_each_model() -> None:
    cheap_out = Pricing(input_per_1k_usd=0.01, output_per_1k_usd=0.001)
    cheap_in = Pricing(input_per_1k_usd=0.001, output_per_1k_usd=0.02)

    assert money.highest_pricing([cheap_out, None, cheap_in]) == Pricing(
        input_per_1k_usd=0.01, output_per_1k_usd=0.02
    )
    assert money.highest_pricing([None]) is None


def test_months_and_days_roll_over_at_utc_midnight() -> None:
    last_second = calendar.timegm((2026, 1, 31, 23, 59, 59))

    assert (money.month_of(last_second), money.day_of(last_second)) == ("2026-01", "2026-01-31")
    assert (money.month_of(last_second + 1), money.day_of(last_second + 1)) == ("2026-02", "2026-02-01")


@pytest.mark.parametrize(("fraction", "label"), [(0.5, "0.5"), (0.80, "0.8"), (1.0, "1")])
def test_fractions_have_one_label_each(fraction: float, label: str) -> None:
    assert money.fraction_label(fraction) == label


def test_thresholds_reached_are_those_not_yet_announced_lowest_first() -> None:
    limit = 1_000_000
    assert money.thresholds_reached([0.8, 0.5, 1.0], limit, 850_000, set()) == [0.5, 0.8]
    assert money.thresholds_reached([0.8, 0.5, 1.0], limit, 850_000, {"0.5"}) == [0.8]
    assert money.thresholds_reached([0.5], limit, 499_999, set()) == []
    assert money.thresholds_reached([0.5], limit, 500_000, set()) == [0.5]


# Prompt caching: cache reads and writes at their own rates

CACHED = Pricing(
    input_per_1k_usd=0.003,
    output_per_1k_usd=0.015,
    cache_read_per_1k_usd=0.0003,
    cache_write_per_1k_usd=0.00375,
)


def test_cache_reads_and_writes_are_priced_at_their_own_rates() -> None:
    # 10,000 input tokens: 6,000 read from the cache, 3,000 written to it, 1,000 plain; 100 output.
    cost = money.cost_micros(CACHED, 10_000, 100, cached_tokens=6_000, cache_write_tokens=3_000)

    # 1,000 x 3 + 6,000 x 0.3 + 3,000 x 3.75 + 100 x 15 micro-dollars.
    assert cost == 3_000 + 1_800 + 11_250 + 1_500


def test_cache_rates_left_unset_are_the_input_price() -> None:
    cost = money.cost_micros(PRICE, 1_000, 0, cached_tokens=400, cache_write_tokens=100)

    assert cost == money.cost_micros(PRICE, 1_000, 0)


def test_cached_counts_beyond_the_input_tokens_bill_no_more_than_the_input() -> None:
    written_only = Pricing(input_per_1k_usd=0.001, output_per_1k_usd=0, cache_write_per_1k_usd=0.002)

    assert money.cost_micros(written_only, 100, 0, cache_write_tokens=500) == 200


def test_a_reservation_prices_the_prompt_at_the_cache_write_rate_when_it_is_dearer() -> None:
    request = _chat("Hello", max_tokens=10)
    input_bound = money.estimate_chat_input_tokens(request)

    estimate = money.estimate_chat(request, CACHED, None)

    assert estimate.cost_micros == money.cost_micros(
        CACHED, input_bound, 10, cache_write_tokens=input_bound, upper=True
    )
    assert estimate.cost_micros > money.cost_micros(CACHED, input_bound, 10, upper=True)


def test_the_dearest_cache_rates_are_taken_from_each_model() -> None:
    writes_dear = Pricing(input_per_1k_usd=0.001, output_per_1k_usd=0.001, cache_write_per_1k_usd=0.005)
    no_cache_rates = Pricing(input_per_1k_usd=0.002, output_per_1k_usd=0.001)

    highest = money.highest_pricing([writes_dear, no_cache_rates])

    # No model has a read rate of its own: the chain's input price stands for it (None).
    assert highest is not None
    assert (highest.cache_read_per_1k_usd, highest.cache_write_per_1k_usd) == (None, 0.005)
