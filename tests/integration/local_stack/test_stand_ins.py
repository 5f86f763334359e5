"""The stand-in models over loopback, through the real clients: the openai SDK and boto3's bedrock-runtime."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from botocore.exceptions import ClientError

from local_stack.httpbase import BackgroundServer
from local_stack.models.servers import bedrock_stand_in, openai_stand_in
from tests.integration.local_stack.conftest import http

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def openai_server() -> Iterator[BackgroundServer]:
    server = openai_stand_in().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bedrock_server() -> Iterator[BackgroundServer]:
    server = bedrock_stand_in().start()
    yield server
    server.stop()


# -- OpenAI-compatible ----------------------------------------------------------------------------


def test_openai_sdk_gets_a_completion_with_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="stand-in-chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content.endswith("You said: hi")
    assert answer.usage.prompt_tokens == 1
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_openai_sdk_streams_chunks_and_the_final_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="stand-in-chat",
        messages=[{"role": "user", "content": "stream this"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("You said: stream this")
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2


def test_openai_sdk_gets_a_tool_call(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="stand-in-chat",
        messages=[{"role": "user", "content": "call get_weather for me"}],
        tools=[WEATHER_TOOL],
    )
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "stand-in"}


def test_openai_sdk_decodes_embeddings(client: openai.OpenAI) -> None:
    answer = client.embeddings.create(model="stand-in-embed", input=["one", "two"])
    assert [len(item.embedding) for item in answer.data] == [16, 16]
    again = client.embeddings.create(model="stand-in-embed", input="one", encoding_format="float")
    assert again.data[0].embedding == pytest.approx(answer.data[0].embedding, abs=1e-6)


def test_openai_sdk_lists_the_stand_in_models(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} == {"stand-in-chat", "stand-in-embed"}


def test_failing_model_names_answer_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="x-fail-429", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="x-fail-503", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 503


def test_flaky_models_fail_their_first_calls_then_answer(client: openai.OpenAI) -> None:
    request: Any = {"model": "x-flaky-500-1", "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**request)
    assert client.chat.completions.create(**request).choices[0].finish_reason == "stop"


def test_the_request_log_shows_what_reached_the_model(
    client: openai.OpenAI, openai_server: BackgroundServer
) -> None:
    http("DELETE", openai_server.url + "/_stand_in/requests")
    client.chat.completions.create(model="stand-in-chat", messages=[{"role": "user", "content": "logged"}])
    logged = http("GET", openai_server.url + "/_stand_in/requests").json()["requests"]
    assert [(r["api"], r["body"]["messages"][0]["content"]) for r in logged] == [
        ("chat.completions", "logged")
    ]


# -- Bedrock-runtime-compatible -------------------------------------------------------------------


def test_boto3_converse_answers(bedrock: Any) -> None:
    answer = bedrock.converse(
        modelId="anthropic.claude-3-haiku-20240307-v1:0",
        messages=[{"role": "user", "content": [{"text": "hi bedrock"}]}],
        system=[{"text": "be brief"}],
        inferenceConfig={"maxTokens": 100, "temperature": 0.1},
    )
    assert answer["output"]["message"]["content"][0]["text"].endswith("You said: hi bedrock")
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"]["inputTokens"] == 4
    assert "latencyMs" in answer["metrics"]


def test_boto3_converse_with_a_custom_model_arn(bedrock: Any) -> None:
    model = "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.titan/abc123"
    answer = bedrock.converse(modelId=model, messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert model in answer["output"]["message"]["content"][0]["text"]


def test_boto3_converse_tool_use(bedrock: Any) -> None:
    tool = {"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
    answer = bedrock.converse(
        modelId="m",
        messages=[{"role": "user", "content": [{"text": "use lookup"}]}],
        toolConfig={"tools": [tool]},
    )
    assert answer["stopReason"] == "tool_use"
    assert answer["output"]["message"]["content"][0]["toolUse"]["name"] == "lookup"


def test_boto3_converse_stream_decodes_the_event_stream(bedrock: Any) -> None:
    response = bedrock.converse_stream(
        modelId="m", messages=[{"role": "user", "content": [{"text": "go on"}]}]
    )
    events = list(response["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text.endswith("You said: go on")
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"]["inputTokens"] == 2


def test_boto3_invoke_model_titan_embeddings(bedrock: Any) -> None:
    response = bedrock.invoke_model(
        modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "hello world", "dimensions": 8})
    )
    answer = json.loads(response["body"].read())
    assert len(answer["embedding"]) == 8
    assert answer["inputTextTokenCount"] == 2


def test_boto3_sees_bedrock_error_codes(bedrock: Any) -> None:
    with pytest.raises(ClientError) as throttled:
        bedrock.converse(modelId="x-fail-429", messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    with pytest.raises(bedrock.exceptions.ValidationException):
        bedrock.converse(modelId="m", messages=[{"role": "assistant", "content": [{"text": "x"}]}])
