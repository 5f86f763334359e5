"""Training files: line-by-line checks, conversion to the provider's formats, the held-out split, scoring."""

from __future__ import annotations

import json

import pytest
from byom.api import multipart
from byom.errors import InvalidRequest
from byom.fine_tuning import APPROVAL_REJECTED, DatasetInvalid
from byom.governance import screening
from byom.governance.policy import Redaction
from byom.logic import datasets, evaluation
from byom.logic.fine_tuning_pipeline import bedrock_hyperparameters, failure_of

LIMITS = datasets.Limits(min_examples=1)


def line(*messages: tuple[str, str]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in messages]})


def data(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


GOOD = line(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"))


def test_a_chat_example_is_read_with_its_system_prompt() -> None:
    (example,) = datasets.parse_dataset(data(GOOD), LIMITS)
    assert example.system == "Be brief." and example.turns == (("user", "Hi"), ("assistant", "Hello"))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"prompt": "x"}', 'line 2: expected an object with a "messages" list'),
        (line(("user", "Hi")), "line 2: the conversation must end with an assistant message"),
        (
            line(("user", "Hi"), ("user", "again"), ("assistant", "x")),
            "line 2: messages[1]: expected a assistant message (user and assistant alternate)",
        ),
        (
            line(("user", "Hi"), ("system", "late"), ("assistant", "x")),
            "line 2: messages[1]: a system message may only come first",
        ),
        (
            line(("tool", "x"), ("assistant", "y")),
            'line 2: messages[0].role must be one of system, user, assistant, not "tool"',
        ),
        (line(("user", "  "), ("assistant", "y")), "line 2: messages[0].content is empty"),
    ],
)
def test_a_bad_line_is_named(bad: str, message: str) -> None:
    with pytest.raises(DatasetInvalid) as error:
        datasets.parse_dataset(data(GOOD, bad), LIMITS)
    assert error.value.message == message


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(DatasetInvalid, match="is empty"):
        datasets.parse_dataset(b"\n  \n", LIMITS)


def test_an_example_over_the_model_limit_is_refused() -> None:
    with pytest.raises(DatasetInvalid, match="line 1: about 2500 tokens"):
        datasets.parse_dataset(
            data(line(("user", "x" * 10_000), ("assistant", "y"))), datasets.Limits(max_example_tokens=2000)
        )


BLOCK = Redaction(mode="block")
MASK = Redaction(mode="mask")


def test_a_line_with_personal_data_fails_a_blocking_policy_naming_the_line_and_type() -> None:
    with pytest.raises(DatasetInvalid, match=r"line 2: .*: email$") as refused:
        datasets.parse_dataset(
            data(GOOD, line(("user", "mail ann@example.com"), ("assistant", "ok"))),
            LIMITS,
            screen=lambda texts: screening.screen(texts, BLOCK, "block")[0],
        )
    assert "ann@" not in str(refused.value)


def test_a_masking_policy_masks_the_line_before_training() -> None:
    _, masked = datasets.parse_dataset(
        data(GOOD, line(("user", "mail ann@example.com"), ("assistant", "Done, ann@example.com"))),
        LIMITS,
        screen=lambda texts: screening.screen(texts, MASK, "mask")[0],
    )
    assert masked.turns == (("user", "mail <EMAIL_1>"), ("assistant", "Done, <EMAIL_1>"))


def test_conversation_format_is_bedrocks_schema() -> None:
    (example,) = datasets.parse_dataset(data(GOOD), LIMITS)
    assert json.loads(datasets.to_jsonl([example], "bedrock-conversation-2024")) == {
        "schemaVersion": "bedrock-conversation-2024",
        "system": [{"text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"text": "Hi"}]},
            {"role": "assistant", "content": [{"text": "Hello"}]},
        ],
    }


def test_prompt_completion_takes_single_turns_only() -> None:
    (single,) = datasets.parse_dataset(data(GOOD), LIMITS)
    assert json.loads(datasets.to_jsonl([single], "prompt-completion")) == {
        "prompt": "Be brief.\n\nHi",
        "completion": "Hello",
    }
    (multi,) = datasets.parse_dataset(
        data(line(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))), LIMITS
    )
    with pytest.raises(DatasetInvalid, match="line 1: this base model takes single-turn examples"):
        datasets.to_jsonl([multi], "prompt-completion")


def test_the_holdout_split_is_seeded_and_keeps_both_sides() -> None:
    examples = datasets.parse_dataset(
        data(*[line(("user", f"q{i}"), ("assistant", "a")) for i in range(20)]), LIMITS
    )
    kept, held = datasets.split_holdout(examples, 0.1, seed=5)
    assert len(held) == 2 and len(kept) == 18
    assert datasets.split_holdout(examples, 0.1, seed=5) == (kept, held)
    assert {e.line for e in kept}.isdisjoint({e.line for e in held})


@pytest.mark.parametrize(
    ("answer", "reference", "right"),
    [
        ("Shipping.", "shipping", True),
        ("the parcel is late", "the parcel is late today", True),
        ("billing", "shipping", False),
    ],
)
def test_an_answer_is_right_when_it_matches_or_overlaps_closely(
    answer: str, reference: str, right: bool
) -> None:
    assert evaluation.correct(answer, reference) is right


def test_the_score_is_the_share_of_right_answers() -> None:
    examples = datasets.parse_dataset(
        data(*[line(("user", f"q{i}"), ("assistant", "yes" if i % 2 else "no")) for i in range(4)]), LIMITS
    )
    assert evaluation.score(examples, lambda e: "yes").value == 0.5


def test_openai_hyperparameters_become_bedrocks() -> None:
    assert bedrock_hyperparameters({"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 2}) == {
        "epochCount": "3",
        "batchSize": "8",
        "learningRate": "0.00002",
    }
    assert bedrock_hyperparameters({"n_epochs": "auto"}) == {"epochCount": "2"}


def test_a_typed_task_error_keeps_its_message_and_code() -> None:
    cause = json.dumps({"errorType": "DatasetInvalid", "errorMessage": "line 3: not valid JSON"})
    failure = failure_of({"Error": "DatasetInvalid", "Cause": cause})
    assert (failure.code, failure.message) == ("invalid_training_file", "line 3: not valid JSON")


def test_an_unexpected_task_error_is_named_by_its_type_only() -> None:
    cause = json.dumps({"errorType": "KeyError", "errorMessage": "'sk-secret'"})
    failure = failure_of({"Error": "KeyError", "Cause": cause})
    assert failure.code == "internal_error" and "sk-secret" not in failure.message


def test_a_rejection_quotes_the_approvers_comment() -> None:
    assert failure_of({"Error": APPROVAL_REJECTED, "Cause": "wrong tone"}).message.endswith("wrong tone")


def test_a_multipart_upload_is_read_by_field() -> None:
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n'
        b'Content-Type: application/octet-stream\r\n\r\n{"a": 1}\n\r\n--xyz--\r\n'
    )
    parts = multipart.parse("multipart/form-data; boundary=xyz", body)
    assert parts["purpose"].data == b"fine-tune"
    assert (parts["file"].filename, parts["file"].data) == ("t.jsonl", b'{"a": 1}\n')


def test_a_json_upload_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="multipart/form-data"):
        multipart.parse("application/json", b"{}")
