"""The one scorer: every testing criterion of an eval and the fine-tuning pipeline's held-out score.
Pure; a model (or a grader) is a callable passed in.

Fine-tuning counts an example correct when the model's answer matches the reference after
normalisation (case, punctuation, whitespace) or their token F1 is at least 0.8: strict enough for
the classification and extraction tasks fine-tuning is mostly bought for, lenient on wording.

An eval's criteria (OpenAI's graders) read their `input` and `reference` from templates such as
`{{sample.output_text}}` and `{{item.expected}}`: field paths looked up in the item and the sample,
never evaluated, so a tenant's template cannot run anything.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from byom.evals import Criterion, GraderMessage, ScoreModel, StringCheck, TextSimilarity
from byom.logic.datasets import Example

F1_PASS = 0.8
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# `{{ item.a.b }}`: a dotted path of names (list positions as digits); nothing else is a field.
_FIELD = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# A graded string is bounded: fuzzy matching is quadratic in the worst case.
MAX_GRADED_CHARS = 20_000

Model = Callable[[Example], str]
"""Answers the example's prompt turns (its system prompt and all but the last message)."""

Grader = Callable[[str, list[dict[str, str]], dict[str, Any]], "GraderAnswer"]
"""Asks a grader alias (alias, chat messages, sampling parameters) through the invocation path."""


@dataclass(frozen=True)
class GraderAnswer:
    text: str
    cost_usd: float = 0.0


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def token_f1(answer: str, reference: str) -> float:
    got, want = tokens(answer), tokens(reference)
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def correct(answer: str, reference: str) -> bool:
    return tokens(answer) == tokens(reference) or token_f1(answer, reference) >= F1_PASS


@dataclass(frozen=True)
class Score:
    examples: int
    correct: int

    @property
    def value(self) -> float:
        return self.correct / self.examples if self.examples else 0.0


def score(examples: list[Example], model: Model) -> Score:
    right = sum(1 for example in examples if correct(model(example), example.answer))
    return Score(examples=len(examples), correct=right)


# -- templates ------------------------------------------------------------------------------------


def _lookup(context: Mapping[str, Any], path: str) -> Any:
    value: Any = context
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def render(template: str, context: Mapping[str, Any]) -> str:
    """Each `{{path}}` replaced by that field (JSON for objects, empty when absent)."""

    def field(match: re.Match[str]) -> str:
        value = _lookup(context, match.group(1))
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return _FIELD.sub(field, template)


# -- criteria -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One criterion's grade of one sample (OpenAI's output item `results[]`)."""

    name: str
    type: str
    score: float
    passed: bool
    cost_usd: float = 0.0
    error: str | None = None

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "score": self.score, "passed": self.passed}


def string_check(value: str, reference: str, operation: str) -> bool:
    """OpenAI's semantics: `like` is "contains", `ilike` the same ignoring case."""
    if operation == "eq":
        return value == reference
    if operation == "ne":
        return value != reference
    if operation == "like":
        return reference in value
    if operation == "ilike":
        return reference.lower() in value.lower()
    raise ValueError(f"unknown string_check operation {operation!r}")


def fuzzy_match(value: str, reference: str) -> float:
    """The similarity ratio of the two strings, 0 to 1 (1: identical)."""
    if not value and not reference:
        return 1.0
    return difflib.SequenceMatcher(None, value, reference, autojunk=False).ratio()


def similarity(value: str, reference: str, metric: str) -> float:
    value, reference = value[:MAX_GRADED_CHARS], reference[:MAX_GRADED_CHARS]
    if metric == "fuzzy_match":
        return fuzzy_match(value, reference)
    if metric in ("rouge_1", "token_f1"):
        return token_f1(value, reference)
    raise ValueError(f"unknown evaluation_metric {metric!r}")


def parse_grade(text: str, low: float, high: float) -> float | None:
    """The grader's score: the JSON `{"score": n}` it was asked for, else the first number in its
    answer; None when there is none. Clamped to the range and normalised to 0..1."""
    found: float | None = None
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("score"), int | float):
            found = float(parsed["score"])
        elif isinstance(parsed, int | float):
            found = float(parsed)
    except ValueError:
        pass
    if found is None:
        match = _NUMBER.search(text)
        if match is None:
            return None
        found = float(match.group())
    clamped = min(max(found, low), high)
    return (clamped - low) / (high - low)


SCORE_INSTRUCTION = (
    'Answer with a JSON object {{"score": n}}, n a number from {low:g} to {high:g}, and nothing else.'
)


def grader_messages(criterion: ScoreModel, context: Mapping[str, Any]) -> list[dict[str, str]]:
    low, high = criterion.range
    rendered = [_message(m, context) for m in criterion.input]
    return [*rendered, {"role": "system", "content": SCORE_INSTRUCTION.format(low=low, high=high)}]


def _message(message: GraderMessage, context: Mapping[str, Any]) -> dict[str, str]:
    return {"role": message.role, "content": render(message.content, context)}


def grade(criterion: Criterion, context: Mapping[str, Any], grader: Grader | None = None) -> Result:
    """One criterion over one item and its sample (`context` holds `item` and `sample`)."""
    if isinstance(criterion, StringCheck):
        value, reference = render(criterion.input, context), render(criterion.reference, context)
        passed = string_check(value, reference, criterion.operation)
        return Result(criterion.name, criterion.type, float(passed), passed)
    if isinstance(criterion, TextSimilarity):
        value, reference = render(criterion.input, context), render(criterion.reference, context)
        points = round(similarity(value, reference, criterion.evaluation_metric), 4)
        return Result(criterion.name, criterion.type, points, points >= criterion.pass_threshold)
    return _model_grade(criterion, context, grader)


def _model_grade(criterion: ScoreModel, context: Mapping[str, Any], grader: Grader | None) -> Result:
    if grader is None:
        raise ValueError("a score_model criterion needs a grader")
    low, high = criterion.range
    params = criterion.sampling_params.model_dump(exclude_none=True) if criterion.sampling_params else {}
    answer = grader(criterion.model, grader_messages(criterion, context), params)
    points = parse_grade(answer.text, low, high)
    if points is None:
        return Result(criterion.name, criterion.type, 0.0, False, answer.cost_usd, "the grader gave no score")
    threshold = criterion.pass_threshold if criterion.pass_threshold is not None else (low + high) / 2
    passed = points >= (threshold - low) / (high - low)
    return Result(criterion.name, criterion.type, round(points, 4), passed, answer.cost_usd)


def percentile(values: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 100) * len(ordered) // 100))
    return ordered[min(rank, len(ordered)) - 1]
