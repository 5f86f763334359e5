"""Scoring a fine-tuned model on held-out examples. Pure; the model is a callable passed in.

An example counts as correct when the model's answer matches the reference after normalisation
(case, punctuation, whitespace) or their token F1 is at least 0.8: strict enough for the
classification and extraction tasks fine-tuning is mostly bought for, lenient on wording.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from byom.logic.datasets import Example

F1_PASS = 0.8
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

Model = Callable[[Example], str]
"""Answers the example's prompt turns (its system prompt and all but the last message)."""


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
