"""The stand-in models' answers in OpenAI's and Bedrock's shapes, without sockets."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer

from local_stack.models import logic
from local_stack.models.eventstream import encode_event
from local_stack.models.logic import StandInError, StreamFailure
from local_stack.stack import DEFAULT_TOKEN_DELAY_MS, StackSettings

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}


def chat(**overrides: Any) -> dict[str, Any]:
    return {"model": "stand-in-chat", "messages": [{"role": "user", "content": "hello there"}], **overrides}


def completion(request: dict[str, Any]) -> dict[str, Any]:
    return logic.openai_chat_completion(request, completion_id="chatcmpl-1", created=1)


# -- OpenAI -------------------------------------------------------------------------------------


def test_the_reply_echoes_the_last_message_and_says_it_is_a_stand_in() -> None:
    answer = completion(chat())
    content = answer["choices"][0]["message"]["content"]
    assert "stand-in" in content and content.endswith("You said: hello there")
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["model"] == "stand-in-chat"


def test_usage_counts_words() -> None:
    usage = completion(chat())["usage"]
    assert usage["prompt_tokens"] == 2
    assert usage["completion_tokens"] == len(completion(chat())["choices"][0]["message"]["content"].split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_the_same_request_gets_the_same_answer() -> None:
    assert completion(chat()) == completion(chat())


def test_max_tokens_cuts_the_answer_with_finish_reason_length() -> None:
    answer = completion(chat(max_tokens=3))
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 3


def test_a_stop_sequence_ends_the_answer_before_it() -> None:
    answer = completion(chat(stop=["model"]))
    assert "model" not in answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_naming_a_tool_gets_a_tool_call_with_schema_valid_arguments() -> None:
    request = chat(messages=[{"role": "user", "content": "What does get_weather say?"}], tools=[WEATHER_TOOL])
    choice = completion(request)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "stand-in", "unit": "c"}


def test_tool_choice_none_answers_text_even_when_a_tool_is_named() -> None:
    request = chat(
        messages=[{"role": "user", "content": "get_weather"}], tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert completion(request)["choices"][0]["finish_reason"] == "stop"


def test_a_tool_result_is_answered_with_text() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "get_weather please"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    content = completion(chat(messages=messages, tools=[WEATHER_TOOL]))["choices"][0]["message"]["content"]
    assert content.endswith("The tool answered: sunny")


def test_a_tool_message_without_a_preceding_call_is_rejected_like_openai_does() -> None:
    messages = [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "y"}]
    with pytest.raises(StandInError) as raised:
        completion(chat(messages=messages))
    assert raised.value.status == 400


@pytest.mark.parametrize("request_body", [{"messages": []}, {"model": "m"}, {"model": "m", "messages": []}])
def test_invalid_chat_requests_are_400(request_body: dict[str, Any]) -> None:
    with pytest.raises(StandInError) as raised:
        completion(request_body)
    assert raised.value.status == 400


def test_stream_chunks_join_to_the_same_answer_and_end_with_usage() -> None:
    chunks = logic.openai_chat_chunks(
        chat(stream=True, stream_options={"include_usage": True}), completion_id="c", created=1
    )
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == completion(chat())["choices"][0]["message"]["content"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == completion(chat())["usage"]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_stream_options_without_stream_are_rejected() -> None:
    with pytest.raises(StandInError):
        completion(chat(stream_options={"include_usage": True}))


def test_embeddings_are_deterministic_unit_vectors() -> None:
    answer = logic.openai_embeddings({"model": "stand-in-embed", "input": ["a", "b", "a"]})
    vectors = [item["embedding"] for item in answer["data"]]
    assert len(vectors[0]) == logic.EMBEDDING_DIMENSIONS
    assert vectors[0] == vectors[2] != vectors[1]
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, abs_tol=1e-4)
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_base64_embeddings_are_little_endian_float32() -> None:
    floats = logic.openai_embeddings({"model": "m", "input": "a"})["data"][0]["embedding"]
    encoded = logic.openai_embeddings({"model": "m", "input": "a", "encoding_format": "base64"})["data"][0][
        "embedding"
    ]
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(encoded))
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(decoded, floats, strict=True))


def test_model_names_ask_for_failures_and_delays() -> None:
    assert logic.behaviour("stand-in-fail-503").fail_status == 503
    flaky = logic.behaviour("stand-in-flaky-429-2")
    assert (flaky.flaky_status, flaky.flaky_failures) == (429, 2)
    assert logic.behaviour("stand-in-slow-250").delay_ms == 250
    assert logic.behaviour("stand-in-chat") == logic.Behaviour()


# -- long answers and streams that fail part-way -----------------------------------------------------


def test_model_names_ask_for_long_answers_and_streams_that_fail() -> None:
    assert logic.behaviour("stand-in-chat-long-200").answer_tokens == 200
    assert logic.behaviour("stand-in-chat-error-after-5").stream_failure == StreamFailure("error", 5)
    assert logic.behaviour("stand-in-chat-drop-after-0").stream_failure == StreamFailure("drop", 0)
    combined = logic.behaviour("stand-in-chat-slow-300-long-100-error-after-40")
    assert (combined.delay_ms, combined.answer_tokens) == (300, 100)
    assert combined.stream_failure == StreamFailure("error", 40)


def test_a_long_model_answers_that_many_tokens_numbered_after_the_echo() -> None:
    answer = completion(chat(model="stand-in-chat-long-40"))
    words = answer["choices"][0]["message"]["content"].split()
    assert answer["usage"]["completion_tokens"] == len(words) == 40
    assert words[-1] == "40" and words[words.index("there") + 1] == str(words.index("there") + 2)
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_a_long_model_shorter_than_the_echo_cuts_it() -> None:
    answer = completion(chat(model="stand-in-chat-long-2"))
    assert answer["choices"][0]["message"]["content"] == "This is"
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_still_cuts_a_long_answer() -> None:
    answer = completion(chat(model="stand-in-chat-long-500", max_tokens=30))
    assert answer["usage"]["completion_tokens"] == 30
    assert answer["choices"][0]["finish_reason"] == "length"


def test_a_long_bedrock_model_answers_that_many_tokens() -> None:
    answer = logic.bedrock_converse("m-long-25", converse_request(), latency_ms=1)
    assert answer["usage"]["outputTokens"] == 25 and answer["stopReason"] == "end_turn"


def test_every_token_of_a_stream_is_a_chunk_of_its_own() -> None:
    request = chat(model="stand-in-chat-long-30", stream=True, stream_options={"include_usage": True})
    chunks = logic.openai_chat_chunks(request, completion_id="c", created=1)
    carrying = [c for c in chunks if logic.openai_chunk_carries_token(c)]
    assert len(carrying) == 30 == chunks[-1]["usage"]["completion_tokens"]
    assert not logic.openai_chunk_carries_token(chunks[0])  # the role chunk
    assert not any(logic.openai_chunk_carries_token(c) for c in chunks[-2:])  # finish, usage


def test_tool_call_arguments_are_tokens_of_a_stream() -> None:
    request = chat(
        messages=[{"role": "user", "content": "What does get_weather say?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = logic.openai_chat_chunks(request, completion_id="c", created=1)
    assert [logic.openai_chunk_carries_token(c) for c in chunks[:2]] == [False, False]  # role, call's name
    assert logic.openai_chunk_carries_token(chunks[2])


def test_every_token_of_a_converse_stream_is_an_event_of_its_own() -> None:
    events = logic.bedrock_converse_stream("m-long-12", converse_request(), latency_ms=1)
    carrying = [kind for kind, payload in events if logic.bedrock_event_carries_token(kind, payload)]
    assert carrying == ["contentBlockDelta"] * 12
    assert events[-1][1]["usage"]["outputTokens"] == 12


@pytest.mark.parametrize(
    ("tokens", "after", "frames_sent"),
    [
        ([False, True, True, True, False, False], 2, 3),  # up to the 2nd token
        ([False, True, True, True, False, False], 0, 1),  # the opening frame only
        ([False, True, True, True, False, False], 9, 4),  # a shorter answer: up to its last token
        ([False, False, True, False], 0, 2),  # every frame before the first token opens the stream
        ([False, False], 3, 1),  # no token at all: after the first frame
    ],
)
def test_a_failing_stream_fails_after_its_nth_token(tokens: list[bool], after: int, frames_sent: int) -> None:
    assert logic.failure_point(tokens, after) == frames_sent


# -- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, DEFAULT_TOKEN_DELAY_MS),
        ({"BYOM_STANDIN_TOKEN_DELAY_MS": "0"}, 0),
        ({"BYOM_STANDIN_TOKEN_DELAY_MS": "75"}, 75),
    ],
)
def test_the_stand_ins_token_delay_comes_from_the_environment(environ: dict[str, str], expected: int) -> None:
    assert StackSettings.from_env(environ).token_delay_ms == expected


# -- Bedrock ------------------------------------------------------------------------------------


def converse_request(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages) or [{"role": "user", "content": [{"text": "hi bedrock"}]}], **extra}


def test_converse_answers_the_converse_response_shape() -> None:
    answer = logic.bedrock_converse("anthropic.claude", converse_request(), latency_ms=5)
    assert answer["output"]["message"]["role"] == "assistant"
    assert answer["output"]["message"]["content"][0]["text"].endswith("You said: hi bedrock")
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"]["inputTokens"] == 2
    assert answer["usage"]["totalTokens"] == answer["usage"]["inputTokens"] + answer["usage"]["outputTokens"]
    assert answer["metrics"] == {"latencyMs": 5}


def test_converse_calls_a_named_tool() -> None:
    tool = {
        "toolSpec": {
            "name": "lookup",
            "inputSchema": {"json": {"type": "object", "properties": {"q": {"type": "string"}}}},
        }
    }
    request = converse_request(
        {"role": "user", "content": [{"text": "please lookup"}]}, toolConfig={"tools": [tool]}
    )
    answer = logic.bedrock_converse("m", request, latency_ms=1)
    assert answer["stopReason"] == "tool_use"
    assert answer["output"]["message"]["content"][0]["toolUse"]["input"] == {"q": "stand-in"}


def test_converse_max_tokens_stops_with_max_tokens() -> None:
    answer = logic.bedrock_converse("m", converse_request(inferenceConfig={"maxTokens": 2}), latency_ms=1)
    assert answer["stopReason"] == "max_tokens" and answer["usage"]["outputTokens"] == 2


@pytest.mark.parametrize(
    ("messages", "extra", "message"),
    [
        ([{"role": "assistant", "content": [{"text": "x"}]}], {}, "start with a user message"),
        (
            [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}],
            {},
            "alternate",
        ),
        ([{"role": "user", "content": [{"text": "  "}]}], {}, "blank"),
        (
            [
                {"role": "user", "content": [{"text": "a"}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "n", "input": {}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "r"}]}}]},
            ],
            {},
            "toolConfig",
        ),
    ],
)
def test_converse_rejects_what_bedrock_rejects(
    messages: list[dict[str, Any]], extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(StandInError, match=message) as raised:
        logic.bedrock_converse("m", converse_request(*messages, **extra), latency_ms=1)
    assert logic.bedrock_error_type(raised.value.status) == "ValidationException"


def test_converse_stream_events_carry_the_same_text_and_usage() -> None:
    events = logic.bedrock_converse_stream("m", converse_request(), latency_ms=1)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "messageStart" and kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    text = "".join(p["delta"]["text"] for kind, p in events if kind == "contentBlockDelta")
    whole = logic.bedrock_converse("m", converse_request(), latency_ms=1)
    assert text == whole["output"]["message"]["content"][0]["text"]
    assert events[-1][1]["usage"] == whole["usage"]


def test_titan_embeddings_answer_embedding_and_token_count() -> None:
    answer = logic.bedrock_invoke(
        "amazon.titan-embed-text-v2:0", {"inputText": "hello world", "dimensions": 8}
    )
    assert len(answer["embedding"]) == 8
    assert answer["inputTextTokenCount"] == 2
    assert answer["embedding"] == logic.embedding_vector("hello world", 8)


def test_invoke_with_an_unknown_body_is_a_validation_error() -> None:
    with pytest.raises(StandInError):
        logic.bedrock_invoke("m", {"prompt": "x"})


def test_event_stream_messages_decode_with_botocore() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(
        encode_event("messageStart", {"role": "assistant"})
        + encode_event("messageStop", {"stopReason": "end_turn"})
    )
    messages = list(buffer)
    assert [m.headers[":event-type"] for m in messages] == ["messageStart", "messageStop"]
    assert json.loads(messages[1].payload) == {"stopReason": "end_turn"}
    assert messages[0].headers[":message-type"] == "event"


# -- prompt caching (a stand-in of the providers' caches) ----------------------------------------

CACHE_POINT = {"cachePoint": {"type": "default"}}


def cached_converse() -> dict[str, Any]:
    return converse_request(
        {"role": "user", "content": [{"text": "a long shared document"}, CACHE_POINT]},
        system=[{"text": "be brief"}, CACHE_POINT],
    )


def test_converse_writes_a_marked_prefix_first_and_reads_it_on_a_repeat() -> None:
    cache = logic.PromptCache()

    first = logic.bedrock_converse("m", cached_converse(), latency_ms=1, cache=cache)["usage"]
    second = logic.bedrock_converse("m", cached_converse(), latency_ms=1, cache=cache)["usage"]

    # "be brief" (2) + "a long shared document" (4): all of the prompt is before the last point.
    assert (first["cacheWriteInputTokens"], first["cacheReadInputTokens"], first["inputTokens"]) == (6, 0, 0)
    assert (second["cacheWriteInputTokens"], second["cacheReadInputTokens"], second["inputTokens"]) == (
        0,
        6,
        0,
    )


def test_converse_reads_the_shared_part_of_a_prompt_that_grew() -> None:
    cache = logic.PromptCache()
    logic.bedrock_converse("m", cached_converse(), latency_ms=1, cache=cache)
    grown = cached_converse()
    grown["messages"][0]["content"] = [{"text": "another question"}, CACHE_POINT]

    usage = logic.bedrock_converse("m", grown, latency_ms=1, cache=cache)["usage"]

    assert (usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]) == (2, 2)


def test_converse_without_cache_points_reports_no_cache_counts() -> None:
    usage = logic.bedrock_converse("m", converse_request(), latency_ms=1, cache=logic.PromptCache())["usage"]

    assert "cacheReadInputTokens" not in usage


def test_a_cache_point_is_not_part_of_the_echoed_prompt() -> None:
    answer = logic.bedrock_converse("m", cached_converse(), latency_ms=1)

    assert answer["output"]["message"]["content"][0]["text"].endswith("You said: a long shared document")


def test_converse_refuses_more_cache_points_than_bedrock_allows() -> None:
    blocks = [block for i in range(5) for block in ({"text": f"part {i}"}, CACHE_POINT)]

    with pytest.raises(StandInError) as refused:
        logic.bedrock_converse("m", converse_request({"role": "user", "content": blocks}), latency_ms=1)

    assert refused.value.status == 400


def test_a_converse_streams_usage_reports_the_cache_read() -> None:
    cache = logic.PromptCache()
    logic.bedrock_converse_stream("m", cached_converse(), latency_ms=1, cache=cache)

    events = logic.bedrock_converse_stream("m", cached_converse(), latency_ms=1, cache=cache)

    assert events[-1][1]["usage"]["cacheReadInputTokens"] == 6


def test_the_openai_stand_in_reports_a_repeated_prompt_as_cached() -> None:
    cache = logic.PromptCache()
    request = chat()

    first = logic.openai_chat_completion(request, completion_id="c", created=1, cache=cache)["usage"]
    second = logic.openai_chat_completion(request, completion_id="c", created=1, cache=cache)["usage"]

    assert (first["prompt_tokens_details"], second["prompt_tokens_details"]) == (
        {"cached_tokens": 0},
        {"cached_tokens": second["prompt_tokens"]},
    )


def test_the_openai_stand_in_caches_per_model() -> None:
    cache = logic.PromptCache()
    logic.openai_chat_completion(chat(), completion_id="c", created=1, cache=cache)

    other = logic.openai_chat_completion(chat(model="other"), completion_id="c", created=1, cache=cache)

    assert other["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
