"""Provider prompt caching end to end: the openai SDK against the local stack, whose Bedrock stand-in
honours Converse cache points (the first call with a prefix writes it, a repeat reads it)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx2
import openai
import pytest

from tests.e2e.conftest import LocalStack, client_for

pytestmark = pytest.mark.e2e

# Per 1K tokens, so a token costs 1,000 (input), 2,000 (output), 100 (read) or 1,250 (written)
# micro-dollars.
PRICE = {
    "input_per_1k_usd": 1.0,
    "output_per_1k_usd": 2.0,
    "cache_read_per_1k_usd": 0.1,
    "cache_write_per_1k_usd": 1.25,
}


def micros(usd: float | str) -> int:
    return int((Decimal(str(usd)) * 1_000_000).to_integral_value())


@pytest.fixture(scope="module")
def tenant(admin: httpx2.Client) -> dict[str, Any]:
    tenant = admin.post("/admin/tenants", json={"name": "caching-team"}).json()
    alias = {
        "alias": "cached-nova",
        "provider": "bedrock",
        "model_id": "amazon.nova-micro-v1:0",
        "prompt_caching": True,
        "pricing": PRICE,
    }
    created = admin.post(f"/admin/tenants/{tenant['id']}/models", json=alias)
    assert created.status_code == 201, created.text
    key = admin.post(f"/admin/tenants/{tenant['id']}/keys", json={"name": "dev", "role": "developer"})
    return tenant | {"key": key.json()["key"]}


@pytest.fixture(scope="module")
def sdk(local_stack: LocalStack, tenant: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=tenant["key"], max_retries=0)


def _messages() -> list[dict[str, str]]:
    """A prompt no other test sends: its first call is sure to write the cache."""
    return [
        {"role": "system", "content": f"You answer questions about document {uuid.uuid4().hex}."},
        {"role": "user", "content": "What does the document say about caching?"},
    ]


def test_a_repeated_prompt_is_read_from_the_cache_and_charged_at_the_read_rate(
    sdk: openai.OpenAI, local_stack: LocalStack, tenant: dict[str, Any]
) -> None:
    messages = _messages()

    first = sdk.chat.completions.with_raw_response.create(model="cached-nova", messages=messages)  # type: ignore[arg-type]
    second = sdk.chat.completions.with_raw_response.create(model="cached-nova", messages=messages)  # type: ignore[arg-type]

    written, repeated = first.parse().usage, second.parse().usage
    assert written is not None and repeated is not None
    assert written.prompt_tokens_details is not None and repeated.prompt_tokens_details is not None
    assert written.prompt_tokens_details.cached_tokens == 0
    cached = repeated.prompt_tokens_details.cached_tokens or 0
    assert cached > 0
    # The cache point ends the last user turn: on a repeat the whole prompt is read from the cache.
    expected = cached * 100 + (repeated.prompt_tokens - cached) * 1000 + repeated.completion_tokens * 2000
    assert micros(second.headers["x-byom-cost-usd"]) == expected
    # The first call wrote the same prefix, at the dearer write rate.
    assert (
        micros(first.headers["x-byom-cost-usd"])
        == written.prompt_tokens * 1250 + written.completion_tokens * 2000
    )

    report = client_for(local_stack, tenant["key"]).get("/v1/usage").json()
    [row] = [item for item in report["items"] if item["model"] == "cached-nova"]
    assert row["cached_tokens"] == cached
    assert micros(row["cost_usd"]) == micros(first.headers["x-byom-cost-usd"]) + expected


def test_a_streamed_repeat_reports_its_cached_tokens(sdk: openai.OpenAI) -> None:
    messages = _messages()
    sdk.chat.completions.create(model="cached-nova", messages=messages)  # type: ignore[arg-type]

    chunks = list(
        sdk.chat.completions.create(
            model="cached-nova",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens
