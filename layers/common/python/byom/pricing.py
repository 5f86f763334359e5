"""The built-in price catalog (byom/data/prices.json): defaults for aliases registered without pricing."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from byom.domain import Pricing

_CATALOG = Path(__file__).with_name("data") / "prices.json"


@lru_cache(maxsize=1)
def _catalog() -> dict[str, dict[str, float]]:
    return json.loads(_CATALOG.read_text())["models"]


def _base_model_id(model_id: str) -> str:
    # Cross-region inference profiles ("us.anthropic...") bill as the underlying model.
    head, _, rest = model_id.partition(".")
    return rest if head in {"us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"} and rest else model_id


def catalog_price(model_id: str) -> Pricing | None:
    entry = _catalog().get(_base_model_id(model_id))
    return Pricing.model_validate(entry) if entry else None
