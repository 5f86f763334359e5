"""`GET /v1/models/recommend`: the tenant's aliases ranked by price, observed latency and errors.

Price is the blended price of 1,000 tokens at three input tokens to one output token (the usual
shape of chat traffic). Each alias gets its rank on price, on average latency and on error rate
this month; the ranking is by the sum of the three (ties: the cheaper first). An alias with no
traffic yet ranks in the middle on latency and errors, so it is neither favoured nor buried.
"""

from __future__ import annotations

from typing import Any

from byom.domain import ModelAlias
from byom.errors import InvalidRequest
from byom.logic.budgets import counters
from byom.pricing import capabilities

NEEDS = ("tools", "vision", "embeddings")


def blended_per_1k(model: ModelAlias) -> float | None:
    if model.pricing is None:
        return None
    return (3 * model.pricing.input_per_1k_usd + model.pricing.output_per_1k_usd) / 4


def _parse(max_cost: str | None, need: str | None) -> tuple[float | None, str | None]:
    limit = None
    if max_cost not in (None, ""):
        try:
            limit = float(max_cost)  # type: ignore[arg-type]
        except ValueError:
            raise InvalidRequest(
                "max_cost_per_1k_usd must be a number", param="max_cost_per_1k_usd"
            ) from None
        if not limit >= 0:
            raise InvalidRequest("max_cost_per_1k_usd must be 0 or more", param="max_cost_per_1k_usd")
    if need not in (None, "") and need not in NEEDS:
        raise InvalidRequest(f"need must be one of: {', '.join(NEEDS)}", param="need")
    return limit, need or None


def _ranks(values: list[float | None]) -> list[float]:
    """Rank 1 for the lowest; unknown values share the middle rank."""
    known = sorted(v for v in values if v is not None)
    middle = (len(values) + 1) / 2
    return [known.index(v) + 1 if v is not None else middle for v in values]


def recommend(
    models: list[ModelAlias], month_items: list[dict[str, Any]], max_cost: str | None, need: str | None
) -> list[dict[str, Any]]:
    limit, need_ = _parse(max_cost, need)
    observed = {
        i["sk"].removeprefix("model#"): counters(i) for i in month_items if i["sk"].startswith("model#")
    }
    wanted = need_ or "chat"
    rows: list[dict[str, Any]] = []
    for model in models:
        price = blended_per_1k(model)
        if wanted not in capabilities(model.model_id):
            continue
        if limit is not None and (price is None or price > limit):
            continue
        seen = observed.get(model.alias) or counters(None)
        calls = seen["requests"] + seen["errors"]
        rows.append(
            {
                "id": model.alias,
                "object": "model_recommendation",
                "provider": model.provider,
                "model_id": model.model_id,
                "cost_per_1k_usd": price,
                "pricing": model.pricing.model_dump() if model.pricing else None,
                "capabilities": sorted(capabilities(model.model_id)),
                "observed": {
                    "requests": seen["requests"],
                    "avg_latency_ms": seen["avg_latency_ms"],
                    "error_rate": round(seen["errors"] / calls, 4) if calls else None,
                },
            }
        )
    price_rank = _ranks([r["cost_per_1k_usd"] for r in rows])
    latency_rank = _ranks([r["observed"]["avg_latency_ms"] for r in rows])
    error_rank = _ranks([r["observed"]["error_rate"] for r in rows])
    scored = sorted(
        zip(rows, price_rank, latency_rank, error_rank, strict=True),
        key=lambda x: (
            x[1] + x[2] + x[3],
            x[0]["cost_per_1k_usd"] if x[0]["cost_per_1k_usd"] is not None else float("inf"),
        ),
    )
    return [row | {"rank": n} for n, (row, *_) in enumerate(scored, start=1)]
