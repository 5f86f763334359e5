"""`/v1/models/recommend` ranking (byom.logic.recommend): by quality per dollar with an eval's
evidence, by price, latency and errors without; every alias says why."""

from __future__ import annotations

from byom.evals import AliasSummary
from byom.logic import recommend

from tests.unit.evals_fakes import alias

TENANT = "acme"


def summary(name: str, score: float, cost: float, items: int = 10, errored: int = 0) -> AliasSummary:
    return AliasSummary(
        alias=name,
        items=items,
        score=score,
        pass_rate=score,
        passed=round(score * items),
        failed=items - round(score * items) - errored,
        errored=errored,
        cost_usd=cost,
        grader_cost_usd=0.0,
        latency_p50_ms=120,
        latency_p95_ms=300,
    )


def evidence(**per_alias: AliasSummary) -> recommend.Evidence:
    return recommend.Evidence(task="capitals", eval_id="eval_1", run_id="evalrun_1", per_alias=per_alias)


MODELS = [
    alias(TENANT, "cheap", 0.0001, 0.0002),
    alias(TENANT, "pricey", 0.01, 0.03),
    alias(TENANT, "new", 0.001, 0.002),
]


def test_without_evidence_every_alias_gives_its_reasons() -> None:
    ranked = recommend.recommend(MODELS, [], None, None)
    assert [r["id"] for r in ranked] == ["cheap", "new", "pricey"]
    assert all(any(reason.startswith("price rank") for reason in r["reasons"]) for r in ranked)


def test_with_evidence_quality_per_dollar_decides_not_price_alone() -> None:
    # pricey scores far higher for little more money per item: its quality per dollar wins.
    found = evidence(cheap=summary("cheap", 0.1, cost=0.010), pricey=summary("pricey", 0.9, cost=0.020))
    ranked = recommend.recommend(MODELS, [], None, None, found)
    assert [r["id"] for r in ranked][:2] == ["pricey", "cheap"]
    assert ranked[0]["evaluation"]["quality_per_dollar"] == round(0.9 / 0.002, 2)


def test_an_alias_the_run_did_not_evaluate_ranks_after_those_it_did() -> None:
    found = evidence(pricey=summary("pricey", 0.5, cost=0.5))
    ranked = recommend.recommend(MODELS, [], None, None, found)
    assert ranked[0]["id"] == "pricey"
    assert ranked[1]["reasons"][0] == "not evaluated in the latest run of eval 'capitals'"


def test_evaluated_reasons_name_quality_price_latency_and_errors() -> None:
    found = evidence(cheap=summary("cheap", 0.8, cost=0.01, errored=1))
    reasons = recommend.recommend(MODELS, [], None, None, found)[0]["reasons"]
    assert reasons[0].startswith("quality per dollar")
    assert any(r.startswith("quality 0.80") for r in reasons)
    assert any(r.startswith("price $0.001000 per evaluated item") for r in reasons)
    assert any(r.startswith("latency p50 120 ms") for r in reasons)
    assert "errors 1 of 10 items" in reasons


def test_a_free_alias_ranks_by_quality_among_free_ones() -> None:
    found = evidence(cheap=summary("cheap", 0.4, cost=0.0), new=summary("new", 0.6, cost=0.0))
    ranked = recommend.recommend(MODELS, [], None, None, found)
    assert [r["id"] for r in ranked][:2] == ["new", "cheap"]
