"""The built-in price catalog."""

from __future__ import annotations

import json

import pytest
from byom import pricing
from byom.domain import Pricing


def test_the_catalog_says_when_and_where_its_prices_come_from() -> None:
    data = json.loads(pricing._CATALOG.read_text())

    assert data["as_of"] and "openai.com" in data["source"] and "bedrock" in data["source"]


def test_a_cross_region_inference_profile_costs_what_its_model_costs() -> None:
    assert pricing.catalog_price("us.amazon.nova-micro-v1:0") == pricing.catalog_price(
        "amazon.nova-micro-v1:0"
    )


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        (
            "ft:gpt-4o-mini-2024-07-18:acme:tickets:AbC123",
            Pricing(input_per_1k_usd=0.0003, output_per_1k_usd=0.0012, cache_read_per_1k_usd=0.00015),
        ),
        (
            "ft:gpt-4o:acme::xyz",
            Pricing(input_per_1k_usd=0.00375, output_per_1k_usd=0.015, cache_read_per_1k_usd=0.001875),
        ),
    ],
)
def test_an_openai_fine_tuned_model_costs_the_fine_tuned_rate_of_its_base(
    model_id: str, expected: Pricing
) -> None:
    assert pricing.catalog_price(model_id) == expected


def test_unknown_models_have_no_price() -> None:
    assert pricing.catalog_price("acme.mystery-v1") is None
    assert pricing.catalog_price("ft:some-open-model:acme:x:y") is None


def test_capabilities_come_from_the_catalog_or_the_models_name() -> None:
    assert pricing.capabilities("gpt-4o") == {"chat", "tools", "vision"}
    assert pricing.capabilities("my-embed-model") == {"embeddings"}
    assert pricing.capabilities("llama3.2") == {"chat", "tools"}
