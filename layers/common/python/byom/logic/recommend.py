"""`GET /v1/models/recommend`: the tenant's aliases ranked, each with the reasons for its place.

Without evidence (no `task`, or no completed run of that eval): price is the blended price of 1,000
tokens at three input tokens to one output token (the usual shape of chat traffic). Each alias gets
its rank on price, on average latency and on error rate this month; the ranking is by the sum of the
three (ties: the cheaper first). An alias with no traffic yet ranks in the middle on latency and
errors, so it is neither favoured nor buried.

With evidence (`task=NAME`: the latest completed run of the tenant's eval NAME, SPEC §10): the
aliases that run evaluated come first, ranked by quality per dollar,
`value = score / max(cost_per_item_usd, 0.000001)` (score: the run's mean 0..1 grade; cost per item:
what its items and grader calls cost, divided by the items), ties by the higher score, then the
lower p50 latency. The micro-dollar floor keeps a free alias finite: free aliases rank by quality
among themselves. The aliases the run did not evaluate follow, in the ranking without evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from byom.domain import ModelAlias
from byom.errors import InvalidRequest
from byom.evals import AliasSummary
from byom.logic.budgets import counters
from byom.pricing import capabilities

NEEDS = ("tools", "vision", "embeddings")
MIN_COST_PER_ITEM_USD = 0.000001


@dataclass(frozen=True)
class Evidence:
    """The latest completed run of the eval a `task` names."""

    task: str
    eval_id: str
    run_id: str
    per_alias: dict[str, AliasSummary]


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
    models: list[ModelAlias],
    month_items: list[dict[str, Any]],
    max_cost: str | None,
    need: str | None,
    evidence: Evidence | None = None,
) -> list[dict[str, Any]]:
    rows = _by_price(models, month_items, max_cost, need)
    if evidence is None:
        return rows
    evaluated = [r for r in rows if r["id"] in evidence.per_alias]
    others = [r for r in rows if r["id"] not in evidence.per_alias]
    ranked = sorted((_with_quality(r, evidence) for r in evaluated), key=_value_order)
    count = len(ranked)
    for n, row in enumerate(ranked, start=1):
        row["reasons"] = [
            f"quality per dollar {row['evaluation']['quality_per_dollar']:g} in eval '{evidence.task}' "
            f"(rank {n} of {count} evaluated)",
            *row["reasons"],
        ]
    for row in others:
        row["reasons"] = [f"not evaluated in the latest run of eval '{evidence.task}'", *row["reasons"]]
    return [row | {"rank": n} for n, row in enumerate(ranked + others, start=1)]


def _with_quality(row: dict[str, Any], evidence: Evidence) -> dict[str, Any]:
    s = evidence.per_alias[row["id"]]
    per_item = s.cost_usd / s.items if s.items else 0.0
    value = s.score / max(per_item, MIN_COST_PER_ITEM_USD)
    graded = s.items - s.errored
    reasons = [
        f"quality {s.score:.2f} (pass rate {s.pass_rate:.0%}, {s.passed} of {s.items} items passed)",
        f"price ${per_item:.6f} per evaluated item (graders included)",
        f"latency p50 {s.latency_p50_ms} ms, p95 {s.latency_p95_ms} ms"
        if s.latency_p50_ms is not None
        else "latency not measured (a provider batch job)",
        f"errors {s.errored} of {s.items} items" + ("" if graded else ": no item was answered"),
    ]
    return row | {
        "evaluation": {
            "task": evidence.task,
            "eval_id": evidence.eval_id,
            "run_id": evidence.run_id,
            "score": s.score,
            "pass_rate": s.pass_rate,
            "cost_per_item_usd": round(per_item, 8),
            "quality_per_dollar": round(value, 2),
            "latency_p50_ms": s.latency_p50_ms,
            "latency_p95_ms": s.latency_p95_ms,
            "errors": s.errored,
        },
        "reasons": reasons,
    }


def _value_order(row: dict[str, Any]) -> tuple[float, float, float]:
    e = row["evaluation"]
    latency = e["latency_p50_ms"] if e["latency_p50_ms"] is not None else float("inf")
    return (-e["quality_per_dollar"], -e["score"], latency)


def _price_reasons(row: dict[str, Any], ranks: tuple[float, float, float], count: int) -> list[str]:
    price, latency, errors = ranks
    seen = row["observed"]
    cost = row["cost_per_1k_usd"]
    return [
        f"price rank {price:g} of {count}"
        + (f" (${cost:.6f} per 1k blended tokens)" if cost is not None else " (no pricing)"),
        f"latency rank {latency:g} of {count}"
        + (
            f" ({seen['avg_latency_ms']} ms average this month)"
            if seen["avg_latency_ms"] is not None
            else " (no traffic yet)"
        ),
        f"error rank {errors:g} of {count}"
        + (
            f" ({seen['error_rate']:.1%} of calls this month)"
            if seen["error_rate"] is not None
            else " (no traffic yet)"
        ),
        "no quality evidence: run an eval and pass ?task=NAME",
    ]


def _by_price(
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
    count = len(scored)
    return [
        row | {"rank": n, "reasons": _price_reasons(row, (p, lat, err), count)}
        for n, (row, p, lat, err) in enumerate(scored, start=1)
    ]
