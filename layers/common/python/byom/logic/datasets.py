"""Training files: OpenAI chat JSONL checked line by line, then converted to the provider's format.

Pure: bytes in, examples and JSONL bytes out. Every error names the line (1-based) it is about.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from byom.errors import ContentPolicyViolation
from byom.fine_tuning import DatasetInvalid

ROLES = ("system", "user", "assistant")
# What one example may weigh, estimated at 4 characters a token (no tokenizer in the Lambda).
CHARS_PER_TOKEN = 4

DatasetScreen = Callable[[Sequence[str]], list[str]]
"""An example's texts (system, then the turns) as the provider may see them under the tenant's
policy: masked, or ContentPolicyViolation naming the types found (byom.governance.screening)."""


@dataclass(frozen=True)
class Example:
    line: int
    system: str | None
    turns: tuple[tuple[str, str], ...]
    """(role, text) pairs, user and assistant alternating, starting with user, ending with assistant."""

    @property
    def prompt_turns(self) -> tuple[tuple[str, str], ...]:
        return self.turns[:-1]

    @property
    def answer(self) -> str:
        return self.turns[-1][1]

    @property
    def characters(self) -> int:
        return len(self.system or "") + sum(len(text) for _, text in self.turns)


@dataclass(frozen=True)
class Limits:
    min_examples: int = 10
    max_examples: int = 20_000
    max_example_tokens: int = 32_000


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise DatasetInvalid(f"{where}.content[{i}]: only text parts are supported")
            parts.append(part["text"])
        text = "".join(parts)
    else:
        raise DatasetInvalid(f"{where}.content must be a string")
    if not text.strip():
        raise DatasetInvalid(f"{where}.content is empty")
    return text


def parse_example(raw: str, line: int) -> Example:
    where = f"line {line}"
    try:
        document = json.loads(raw)
    except ValueError:
        raise DatasetInvalid(f"{where}: not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("messages"), list):
        raise DatasetInvalid(f'{where}: expected an object with a "messages" list')
    messages = document["messages"]
    system: str | None = None
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        at = f"{where}: messages[{i}]"
        if not isinstance(message, dict):
            raise DatasetInvalid(f"{at} must be an object")
        role = message.get("role")
        if role not in ROLES:
            raise DatasetInvalid(f"{at}.role must be one of {', '.join(ROLES)}, not {json.dumps(role)[:40]}")
        if message.get("tool_calls") or message.get("function_call"):
            raise DatasetInvalid(f"{at}: tool calls are not supported in training data")
        text = _text(message.get("content"), at)
        if role == "system":
            if i != 0:
                raise DatasetInvalid(f"{at}: a system message may only come first")
            system = text
            continue
        expected = "user" if not turns or turns[-1][0] == "assistant" else "assistant"
        if role != expected:
            raise DatasetInvalid(f"{at}: expected a {expected} message (user and assistant alternate)")
        turns.append((role, text))
    if not turns or turns[-1][0] != "assistant":
        raise DatasetInvalid(f"{where}: the conversation must end with an assistant message")
    return Example(line=line, system=system, turns=tuple(turns))


def parse_dataset(
    data: bytes,
    limits: Limits,
    *,
    name: str = "training file",
    screen: DatasetScreen | None = None,
) -> list[Example]:
    """Every example of a chat JSONL file, or DatasetInvalid naming the first bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DatasetInvalid(f"The {name} is not UTF-8 text") from None
    examples: list[Example] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        example = parse_example(raw, number)
        tokens = example.characters // CHARS_PER_TOKEN
        if tokens > limits.max_example_tokens:
            raise DatasetInvalid(
                f"line {number}: about {tokens} tokens; the model takes at most {limits.max_example_tokens}"
            )
        if screen is not None:
            example = _screened(example, screen)
        examples.append(example)
        if len(examples) > limits.max_examples:
            raise DatasetInvalid(f"The {name} has more than {limits.max_examples} examples")
    if not examples:
        raise DatasetInvalid(f"The {name} is empty")
    return examples


def _screened(example: Example, screen: DatasetScreen) -> Example:
    texts = [example.system or "", *(text for _, text in example.turns)]
    try:
        screened = screen(texts)
    except ContentPolicyViolation as refused:
        raise DatasetInvalid(f"line {example.line}: {refused.message}") from None
    if screened == texts:
        return example
    system = screened[0] if example.system is not None else None
    turns = tuple((role, text) for (role, _), text in zip(example.turns, screened[1:], strict=True))
    return Example(line=example.line, system=system, turns=turns)


def split_holdout(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(training, held out): a seeded shuffle, at least one example held out and one kept."""
    if len(examples) < 2:
        return examples, []
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    count = min(len(shuffled) - 1, max(1, round(len(shuffled) * fraction)))
    held = sorted(shuffled[:count], key=lambda e: e.line)
    kept = sorted(shuffled[count:], key=lambda e: e.line)
    return kept, held


# -- provider formats ------------------------------------------------------------------------------


def bedrock_conversation(example: Example) -> dict[str, Any]:
    """Bedrock's `bedrock-conversation-2024` schema (Nova, Claude 3 Haiku)."""
    record: dict[str, Any] = {"schemaVersion": "bedrock-conversation-2024"}
    if example.system:
        record["system"] = [{"text": example.system}]
    record["messages"] = [{"role": role, "content": [{"text": text}]} for role, text in example.turns]
    return record


def prompt_completion(example: Example) -> dict[str, Any]:
    """Bedrock's prompt / completion schema (Titan, Llama, Cohere): single-turn only."""
    if len(example.turns) != 2:
        raise DatasetInvalid(
            f"line {example.line}: this base model takes single-turn examples "
            "(one user, one assistant message)"
        )
    prompt = example.turns[0][1] if not example.system else f"{example.system}\n\n{example.turns[0][1]}"
    return {"prompt": prompt, "completion": example.answer}


def openai_chat(example: Example) -> dict[str, Any]:
    messages = [{"role": "system", "content": example.system}] if example.system else []
    messages += [{"role": role, "content": text} for role, text in example.turns]
    return {"messages": messages}


FORMATS: dict[str, Callable[[Example], dict[str, Any]]] = {
    "bedrock-conversation-2024": bedrock_conversation,
    "prompt-completion": prompt_completion,
    "openai-chat": openai_chat,
}


def to_jsonl(examples: list[Example], data_format: str) -> bytes:
    convert = FORMATS[data_format]
    return "".join(json.dumps(convert(e), ensure_ascii=False) + "\n" for e in examples).encode("utf-8")


def estimated_tokens(examples: list[Example]) -> int:
    return sum(e.characters for e in examples) // CHARS_PER_TOKEN
