from typing import Any

import pytest
from byom.api.errors import validation_message
from byom.openai_types import ChatRequest, EmbeddingRequest
from pydantic import ValidationError

USER = {"role": "user", "content": "Hi"}


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "fast", "messages": [USER]} | fields


def _refusal(
    model: type[ChatRequest] | type[EmbeddingRequest], body: dict[str, Any]
) -> tuple[str, str | None]:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(body)
    return validation_message(raised.value.errors(include_input=False, include_url=False))


def test_a_minimal_chat_request_is_accepted() -> None:
    request = ChatRequest.model_validate(_chat())

    assert (request.model, request.messages[0].content, request.stream) == ("fast", "Hi", False)


def test_unknown_fields_are_kept_for_providers_that_understand_them() -> None:
    request = ChatRequest.model_validate(_chat(seed=7, logprobs=True))

    assert request.model_dump(exclude_unset=True)["seed"] == 7


def test_the_json_schema_keeps_its_openai_field_name_when_dumped() -> None:
    request = ChatRequest.model_validate(
        _chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}},
            }
        )
    )

    assert request.model_dump(exclude_unset=True)["response_format"]["json_schema"]["schema"] == {
        "type": "object"
    }


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    request = ChatRequest.model_validate(_chat(max_tokens=10, max_completion_tokens=20))

    assert request.max_output_tokens == 20


def test_a_single_stop_string_is_one_stop_sequence() -> None:
    assert ChatRequest.model_validate(_chat(stop="END")).stop_sequences == ["END"]


def test_usage_in_the_stream_is_off_unless_asked_for() -> None:
    assert ChatRequest.model_validate(_chat(stream=True)).include_usage is False


def test_usage_in_the_stream_is_on_when_asked_for() -> None:
    request = ChatRequest.model_validate(_chat(stream=True, stream_options={"include_usage": True}))

    assert request.include_usage is True


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": []}, "messages"),
        ({"model": ""}, "model"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream": "sometimes"}, "stream"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages.0.tool_call_id"),
        ({"messages": [{"role": "assistant"}]}, "messages.0.tool_calls"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
            "messages.0.content.0.text",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages.0.content.0.image_url",
        ),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools.0.function.name"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ],
)
def test_a_bad_chat_field_is_named_in_the_refusal(fields: dict[str, Any], param: str) -> None:
    assert _refusal(ChatRequest, _chat(**fields))[1] == param


def test_a_named_tool_choice_must_name_one_of_the_tools() -> None:
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    body = _chat(tools=tools, tool_choice={"type": "function", "function": {"name": "other"}})

    message, param = _refusal(ChatRequest, body)

    assert param == "tool_choice"
    assert "'other'" in message


def test_more_than_one_choice_is_refused_clearly() -> None:
    assert _refusal(ChatRequest, _chat(n=2)) == ("n: only n=1 is supported", "n")


def test_a_stop_list_too_long_is_reported_as_too_long_not_as_not_a_string() -> None:
    message, _ = _refusal(ChatRequest, _chat(stop=["a", "b", "c", "d", "e"]))

    assert "at most 4" in message


def test_one_embedding_input_string_is_one_text() -> None:
    assert EmbeddingRequest.model_validate({"model": "e", "input": "a"}).texts == ["a"]


def test_an_embedding_input_list_is_one_text_per_item() -> None:
    assert EmbeddingRequest.model_validate({"model": "e", "input": ["a", "b"]}).texts == ["a", "b"]


def test_embedding_vectors_default_to_floats() -> None:
    assert EmbeddingRequest.model_validate({"model": "e", "input": "a"}).encoding_format == "float"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": []}, "input"),
        ({"input": ""}, "input"),
        ({"input": [[1, 2, 3]]}, "input.0"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
    ],
)
def test_a_bad_embedding_field_is_named_in_the_refusal(fields: dict[str, Any], param: str) -> None:
    assert _refusal(EmbeddingRequest, {"model": "e"} | fields)[1] == param


@pytest.mark.parametrize(
    ("model", "body", "param"),
    [
        (ChatRequest, _chat(max_tokens=10**30), "max_tokens"),
        (ChatRequest, _chat(max_completion_tokens=10**30), "max_completion_tokens"),
        (EmbeddingRequest, {"model": "embed", "input": "x", "dimensions": 10**9}, "dimensions"),
    ],
)
def test_numbers_beyond_any_model_are_refused(
    model: type[ChatRequest] | type[EmbeddingRequest], body: dict[str, Any], param: str
) -> None:
    """A reservation's bound is priced from max_tokens: an absurd one must not reach the ledger."""
    assert _refusal(model, body)[1] == param
