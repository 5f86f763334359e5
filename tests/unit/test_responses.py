"""The Responses API over the chat path: translation both ways, the event sequence, and a call's
life through invoke.respond with in-memory collaborators. Shapes are checked against OpenAI's
published schema (tests/openai_schema.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from byom.domain import StoredResponse
from byom.errors import InvalidRequest, NotFound, ProviderError
from byom.logic import invoke, responses
from byom.openai_types import ChatRequest, ResponsesRequest
from byom.providers import ChatResult, ProviderRegistry, StreamDelta, Target, Usage, openai_responses

from tests.openai_schema import assert_valid, errors
from tests.unit.fakes import FakeClock
from tests.unit.invoke_fakes import DEVELOPER, FlakyProvider, add_model, make_store

TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


def request(**fields: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "fast", "input": "Hi"} | fields)


def header(req: ResponsesRequest) -> responses.Header:
    return responses.Header("resp_1", 100, req.model, req)


# Request translation


def test_instructions_come_first_then_the_conversation_then_the_input() -> None:
    context = [{"role": "user", "content": "Earlier"}, {"role": "assistant", "content": "Reply"}]

    chat = responses.chat_request(request(instructions="Be brief", input="Now"), context)

    assert [(m.role, m.content) for m in chat.messages] == [
        ("system", "Be brief"),
        ("user", "Earlier"),
        ("assistant", "Reply"),
        ("user", "Now"),
    ]


def test_function_calls_join_the_assistant_turn_and_their_outputs_become_tool_messages() -> None:
    items = [
        {"role": "user", "content": "Weather?"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
    ]

    chat = responses.chat_request(request(input=items, tools=[TOOL]), [])

    assistant = chat.messages[1]
    assert assistant.content == "Checking"
    assert [c.id for c in assistant.tool_calls or []] == ["c1", "c2"]
    assert (chat.messages[2].role, chat.messages[2].tool_call_id, chat.messages[2].content) == (
        "tool",
        "c1",
        "Sunny",
    )
    assert len(chat.messages) == 3  # the reasoning item is not passed on


def test_images_text_format_tools_and_limits_carry_over() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}

    chat = responses.chat_request(
        request(
            input=[{"role": "user", "content": [{"type": "input_text", "text": "Look"}, image]}],
            text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
            tools=[TOOL],
            tool_choice={"type": "function", "name": "get_weather"},
            max_output_tokens=50,
            temperature=0.2,
        ),
        [],
    )

    sent = chat.model_dump(mode="json", exclude_none=True)
    assert sent["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": image["image_url"], "detail": "low"},
    }
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (sent["max_tokens"], sent["temperature"]) == (50, 0.2)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"input": [{"type": "web_search_call", "id": "x"}]}, "input"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text"),
        ({"max_output_tokens": 10**9}, "max_output_tokens"),
        ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}, "input"),
    ],
)
def test_what_the_gateway_cannot_honour_is_refused_naming_the_field(fields: dict, where: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as refused:
        request(**fields)

    assert refused.value.errors()[0]["loc"][0] == where


def test_an_input_of_nothing_but_reasoning_is_a_bad_request_not_a_crash() -> None:
    with pytest.raises(InvalidRequest) as refused:
        responses.chat_request(request(input=[{"type": "reasoning", "id": "rs_1", "summary": []}]), [])

    assert refused.value.param == "input"


# Answers


def test_a_text_and_tool_call_answer_is_a_valid_response_object() -> None:
    req = request(tools=[TOOL], metadata={"ticket": "T-1"}, user="subject-1")
    message = {
        "role": "assistant",
        "content": "Let me check",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ],
    }

    body = responses.completed(header(req), ChatResult(message, "tool_calls", Usage(7, 3)), completed_at=101)

    assert_valid("Response", body)
    assert [i["type"] for i in body["output"]] == ["message", "function_call"]
    assert body["output"][1]["call_id"] == "call_1"
    assert body["usage"]["total_tokens"] == 10 and body["metadata"] == {"ticket": "T-1"}
    assert responses.answer_message(body["output"]) == message | {"content": "Let me check"}


def test_an_answer_cut_by_max_output_tokens_is_incomplete() -> None:
    body = responses.completed(
        header(request(max_output_tokens=5)),
        ChatResult({"role": "assistant", "content": "a b"}, "length", Usage(1, 5)),
        1,
    )

    assert_valid("Response", body)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}


def test_input_items_list_as_openai_lists_them() -> None:
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "u"}}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "out"},
    ]

    items = responses.input_items(messages)

    assert [i["type"] for i in items] == ["message", "function_call", "function_call_output"]
    listing = {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"],
        "last_id": items[-1]["id"],
        "has_more": False,
    }
    assert_valid("ResponseItemList", listing)


def test_listed_input_items_are_the_wire_items_with_ids_and_status() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "out"}]},
    ]

    listed = responses.input_items(messages)
    wire = openai_responses.input_of(messages)

    assert [{k: v for k, v in i.items() if k not in ("id", "status", "content")} for i in listed] == [
        {k: v for k, v in i.items() if k != "content"} for i in wire
    ]
    assert all(i["status"] == "completed" and i["id"] for i in listed)
    assert listed[1]["content"][0]["text"] == "Hello"
    page = {"object": "list", "data": listed, "first_id": "a", "last_id": "b", "has_more": False}
    assert_valid("ResponseItemList", page)


# Streams


def _decoded(items: list[str]) -> list[dict[str, Any]]:
    return [json.loads(item.split("data: ", 1)[1]) for item in items]


def test_a_chat_stream_becomes_the_responses_event_sequence() -> None:
    kept: list[dict[str, Any]] = []
    wire = responses.ResponseEvents(header(request(tools=[TOOL])), now=lambda: 101, on_completed=kept.append)
    stream = [
        StreamDelta({"role": "assistant", "content": ""}),
        StreamDelta({"content": "Hel"}),
        StreamDelta({"content": "lo"}),
        StreamDelta(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        StreamDelta({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        StreamDelta({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        StreamDelta(finish_reason="tool_calls"),
        Usage(4, 6),
    ]

    items = list(wire.items(stream))
    events = _decoded(items)

    for event, item in zip(events, items, strict=True):
        assert not errors("ResponseStreamEvent", event)
        assert item.startswith(f"event: {event['type']}\n")
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["output"][1]["arguments"] == '{"a":1}' and final["usage"]["total_tokens"] == 10
    assert kept == [final] and wire.is_last(items[-1]) and not wire.is_last(items[-2])


def test_a_midway_failure_is_an_error_event() -> None:
    wire = responses.ResponseEvents(header(request()), now=lambda: 1)
    list(wire.items([StreamDelta({"content": "x"})]))

    event = _decoded([wire.error(ProviderError("The model failed", status=502))])[0]

    assert_valid("ResponseErrorEvent", event)
    assert event["message"] == "The model failed"


# The native wire (OpenAI's Responses API upstream)


def test_a_chat_request_goes_upstream_as_a_responses_body_that_stores_nothing() -> None:
    chat = responses.chat_request(request(instructions="Be brief", tools=[TOOL], max_output_tokens=9), [])

    body = openai_responses.body_of(chat)

    assert body["store"] is False
    assert body["input"] == [
        {"type": "message", "role": "system", "content": "Be brief"},
        {"type": "message", "role": "user", "content": "Hi"},
    ]
    assert body["tools"][0]["name"] == "get_weather" and body["max_output_tokens"] == 9


def test_an_upstream_response_reads_as_a_chat_result() -> None:
    upstream = {
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs", "summary": []},
            {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        ],
        "usage": {"input_tokens": 3, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 0}},
    }

    result = openai_responses.parse_json(json.dumps(upstream).encode())

    assert result.message["content"] == "Hi" and result.message["tool_calls"][0]["id"] == "c"
    assert (result.finish_reason, result.usage) == ("tool_calls", Usage(3, 2))


def test_an_upstream_stream_reads_as_chat_stream_events_and_its_failure_raises() -> None:
    upstream = [
        {"type": "response.created"},
        {"type": "response.output_text.delta", "delta": "Hi"},
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "function_call", "call_id": "c", "name": "f"},
        },
        {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{}"},
        {
            "type": "response.completed",
            "response": {"status": "completed", "usage": {"input_tokens": 1, "output_tokens": 2}},
        },
    ]

    events = list(openai_responses.stream_events(upstream))

    assert events[0] == StreamDelta({"content": "Hi"})
    assert events[2].delta["tool_calls"][0] == {"index": 0, "function": {"arguments": "{}"}}
    assert events[-2:] == [StreamDelta(finish_reason="tool_calls"), Usage(1, 2)]
    with pytest.raises(openai_responses.StreamFailed, match="overloaded"):
        list(openai_responses.stream_events([{"type": "error", "message": "overloaded"}]))


# A call's life


class FakeResponseKeeper:
    """Implements invoke.ResponseKeeper."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], StoredResponse] = {}

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        return self.records.get((tenant_id, response_id))

    def put(self, record: StoredResponse, retention_days: int | None) -> None:
        self.records[(record.tenant_id, record.id)] = record


class NativeProvider(FlakyProvider):
    def respond(self, request: ChatRequest, target: Target, *, timeout: float | None = None) -> ChatResult:
        self.calls.append(("respond", target.model_id, timeout))
        return ChatResult({"role": "assistant", "content": "native"}, "stop", Usage(2, 1))


@pytest.fixture
def keeper() -> FakeResponseKeeper:
    return FakeResponseKeeper()


@pytest.fixture
def store(keeper: FakeResponseKeeper) -> invoke.InvokeStore:
    built = make_store(NativeProvider(), FakeClock())
    built.responses = keeper
    add_model(built, "fast")
    return built


def _call() -> invoke.Call:
    return invoke.Call(DEVELOPER, "req_1")


def test_a_response_is_answered_and_stored_with_its_conversation(
    store: invoke.InvokeStore, keeper: FakeResponseKeeper
) -> None:
    answer = invoke.respond(store, _call(), request(instructions="Be brief", input="Hi"))

    assert_valid("Response", answer.body)
    record = keeper.get("tnt_a", answer.body["id"])
    assert record is not None and record.response == answer.body
    assert [i["content"][0]["text"] for i in record.input_items] == ["Hi"]
    assert record.context == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello from model-fast"},
    ]


def test_a_continued_response_sends_the_stored_conversation(
    store: invoke.InvokeStore, keeper: FakeResponseKeeper
) -> None:
    first = invoke.respond(store, _call(), request(input="One"))

    second = invoke.respond(store, _call(), request(input="Two", previous_response_id=first.body["id"]))

    record = keeper.get("tnt_a", second.body["id"])
    assert record is not None
    assert [m["content"] for m in record.context] == [
        "One",
        "Hello from model-fast",
        "Two",
        "Hello from model-fast",
    ]
    assert [i["content"][0]["text"] for i in record.input_items] == ["Two"]


def test_an_unknown_previous_response_is_not_found(store: invoke.InvokeStore) -> None:
    with pytest.raises(NotFound) as refused:
        invoke.respond(store, _call(), request(previous_response_id="resp_other"))

    assert refused.value.param == "previous_response_id"


def test_store_false_keeps_nothing(store: invoke.InvokeStore, keeper: FakeResponseKeeper) -> None:
    invoke.respond(store, _call(), request(store=False))

    assert keeper.records == {}


@pytest.mark.parametrize(("provider", "asked"), [("openai", "respond"), ("bedrock", "chat")])
def test_openai_is_asked_on_its_responses_api_and_bedrock_on_chat(
    store: invoke.InvokeStore, provider: str, asked: str
) -> None:
    native = NativeProvider()
    store.providers = ProviderRegistry({"bedrock": lambda: native, "openai": lambda: native})
    add_model(store, "m", provider=provider)

    answer = invoke.respond(store, _call(), request(model="m"))

    assert native.calls[-1][0] == asked
    assert answer.usage.total_tokens > 0


def test_a_continuation_without_a_user_belongs_to_the_earlier_subject(
    store: invoke.InvokeStore, keeper: FakeResponseKeeper
) -> None:
    first = invoke.respond(store, _call(), request(input="One", user="subject-7"))

    second = invoke.respond(store, _call(), request(input="Two", previous_response_id=first.body["id"]))

    record = keeper.get("tnt_a", second.body["id"])
    assert record is not None and record.user == "subject-7"  # erased with them, like the first
