"""The one scorer (byom.logic.evaluation): every criterion of an eval, graded without AWS."""

from __future__ import annotations

import pytest
from byom.evals import ScoreModel, StringCheck, TextSimilarity
from byom.logic import evaluation
from byom.logic.evaluation import GraderAnswer


def check(operation: str) -> StringCheck:
    return StringCheck(
        type="string_check",
        name="match",
        input="{{sample.output_text}}",
        reference="{{item.expected}}",
        operation=operation,  # type: ignore[arg-type]
    )


def context(answer: str, expected: str) -> dict[str, object]:
    return {"item": {"expected": expected}, "sample": {"output_text": answer}}


def test_render_replaces_field_paths_with_the_items_values() -> None:
    rendered = evaluation.render(
        "Q: {{ item.question }} ({{item.tags.1}})", {"item": {"question": "why?", "tags": ["a", "b"]}}
    )
    assert rendered == "Q: why? (b)"


def test_render_leaves_anything_that_is_not_a_field_path_as_text() -> None:
    template = "{{ item.__class__() }} {{1+1}}"
    assert evaluation.render(template, {"item": {}}) == template


def test_render_writes_an_absent_field_as_empty() -> None:
    assert evaluation.render("[{{item.missing}}]", {"item": {}}) == "[]"


@pytest.mark.parametrize(
    ("operation", "answer", "expected", "passed"),
    [
        ("eq", "Paris", "Paris", True),
        ("eq", "paris", "Paris", False),
        ("ne", "Lyon", "Paris", True),
        ("like", "It is Paris.", "Paris", True),
        ("like", "It is paris.", "Paris", False),
        ("ilike", "It is PARIS.", "paris", True),
    ],
)
def test_string_check_follows_openais_operations(
    operation: str, answer: str, expected: str, passed: bool
) -> None:
    result = evaluation.grade(check(operation), context(answer, expected))
    assert (result.passed, result.score) == (passed, float(passed))


def test_text_similarity_rouge_1_is_the_fine_tuning_token_f1() -> None:
    criterion = TextSimilarity(
        type="text_similarity",
        name="f1",
        input="{{sample.output_text}}",
        reference="{{item.expected}}",
        evaluation_metric="rouge_1",
        pass_threshold=0.8,
    )
    result = evaluation.grade(criterion, context("the cat sat", "the cat sat down"))
    assert result.score == round(evaluation.token_f1("the cat sat", "the cat sat down"), 4)
    assert result.passed is (result.score >= 0.8)


def test_text_similarity_fuzzy_match_fails_below_its_threshold() -> None:
    criterion = TextSimilarity(
        type="text_similarity",
        name="fuzzy",
        input="{{sample.output_text}}",
        reference="{{item.expected}}",
        evaluation_metric="fuzzy_match",
        pass_threshold=0.9,
    )
    close = evaluation.grade(criterion, context("colour", "color"))
    far = evaluation.grade(criterion, context("zebra", "color"))
    assert close.score > far.score and not far.passed


def grader_criterion(**overrides: object) -> ScoreModel:
    body: dict[str, object] = {
        "type": "score_model",
        "name": "rubric",
        "model": "judge",
        "input": [{"role": "user", "content": "Grade {{sample.output_text}} against {{item.expected}}"}],
    }
    return ScoreModel.model_validate(body | overrides)


def test_score_model_asks_the_grader_with_the_rendered_rubric_and_passes_its_score() -> None:
    asked: list[tuple[str, list[dict[str, str]]]] = []

    def grader(alias: str, messages: list[dict[str, str]], params: dict[str, object]) -> GraderAnswer:
        asked.append((alias, messages))
        return GraderAnswer('{"score": 0.9}', cost_usd=0.002)

    result = evaluation.grade(grader_criterion(pass_threshold=0.7), context("Paris", "Paris"), grader)
    assert asked[0][0] == "judge" and asked[0][1][0]["content"] == "Grade Paris against Paris"
    assert (result.score, result.passed, result.cost_usd) == (0.9, True, 0.002)


def test_score_model_normalises_a_score_from_its_range() -> None:
    def grader(alias: str, messages: list[dict[str, str]], params: dict[str, object]) -> GraderAnswer:
        return GraderAnswer("I would say 7 out of 10")

    result = evaluation.grade(grader_criterion(range=[0, 10], pass_threshold=8), context("x", "y"), grader)
    assert (result.score, result.passed) == (0.7, False)


def test_score_model_without_a_number_fails_the_item() -> None:
    def grader(alias: str, messages: list[dict[str, str]], params: dict[str, object]) -> GraderAnswer:
        return GraderAnswer("looks fine to me")

    result = evaluation.grade(grader_criterion(), context("x", "y"), grader)
    assert (result.passed, result.error) == (False, "the grader gave no score")


def test_a_grader_score_outside_the_range_is_clamped() -> None:
    assert evaluation.parse_grade('{"score": 3}', 0, 1) == 1.0


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 21))
    assert (evaluation.percentile(values, 0.5), evaluation.percentile(values, 0.95)) == (10, 19)
    assert evaluation.percentile([], 0.5) is None
