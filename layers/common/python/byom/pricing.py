"""The built-in price catalog (byom/data/prices.json): defaults for aliases registered without pricing."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from byom.domain import Pricing

_CATALOG = Path(__file__).with_name("data") / "prices.json"


@lru_cache(maxsize=1)
def _catalog() -> dict[str, dict[str, Any]]:
    return json.loads(_CATALOG.read_text())["models"]


_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def _base_model_id(model_id: str) -> str:
    # OpenAI's fine-tuned models ("ft:gpt-4o-mini-2024-07-18:org:suffix:id") bill at the rates of
    # fine-tuned models of their base, listed as "ft:gpt-4o-mini".
    if model_id.startswith("ft:"):
        base = model_id[3:].split(":", 1)[0]
        return "ft:" + _DATED.sub("", base)
    # Cross-region inference profiles ("us.anthropic...") bill as the underlying model.
    head, _, rest = model_id.partition(".")
    return rest if head in {"us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"} and rest else model_id


def catalog_price(model_id: str) -> Pricing | None:
    entry = _catalog().get(_base_model_id(model_id))
    if not entry:
        return None
    return Pricing(
        input_per_1k_usd=entry["input_per_1k_usd"],
        output_per_1k_usd=entry["output_per_1k_usd"],
        cache_read_per_1k_usd=entry.get("cache_read_per_1k_usd"),
        cache_write_per_1k_usd=entry.get("cache_write_per_1k_usd"),
        batch_input_per_1k_usd=entry.get("batch_input_per_1k_usd"),
        batch_output_per_1k_usd=entry.get("batch_output_per_1k_usd"),
    )


def cache_points(model_id: str) -> frozenset[str]:
    """Where a Bedrock model takes Converse cache points (`system`, `messages`, `tools`): the
    catalog's word, and none for a model it does not list (Bedrock refuses a cache point the
    model does not support, so guessing would fail calls)."""
    entry = _catalog().get(_base_model_id(model_id)) or {}
    return frozenset(entry.get("cache_points", ()))


def capabilities(model_id: str) -> set[str]:
    """What a model can do (`chat`, `tools`, `vision`, `embeddings`): the catalog's word for the
    models it lists; for others, embedding models by name and chat with tools for the rest."""
    entry = _catalog().get(_base_model_id(model_id))
    if entry:
        return set(entry["capabilities"])
    return {"embeddings"} if "embed" in model_id.lower() else {"chat", "tools"}
