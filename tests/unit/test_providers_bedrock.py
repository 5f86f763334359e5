import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import EventStreamError, ReadTimeoutError
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from byom.errors import InvalidRequest, ProviderError
from byom.openai_types import ChatRequest, EmbeddingRequest
from byom.providers import StreamDelta, Target, Usage
from byom.providers.bedrock import (
    JSON_OBJECT_INSTRUCTION,
    BedrockProvider,
    chat_result,
    converse_request,
    provider_error,
    stream_events,
)

from tests.bedrock_stubs import (
    add_stream_response,
    bedrock_client,
    converse_answer,
    invoke_answer,
)
from tests.bedrock_stubs import (
    stream_events as answer_events,
)

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
TARGET = Target(tenant_id="tnt_a", alias="fast", provider="bedrock", model_id=MODEL_ID)
PNG = b"\x89PNG\r\n\x1a\n-not-really-a-picture"
USER = {"role": "user", "content": "Hi"}


@pytest.fixture
def stubbed() -> Iterator[tuple[BedrockProvider, Stubber]]:
    client = bedrock_client()
    with Stubber(client) as stubber:
        yield BedrockProvider(client=client), stubber
        stubber.assert_no_pending_responses()


def _chat(**fields: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": "fast", "messages": [USER]} | fields)


def _params(**fields: Any) -> dict[str, Any]:
    """Converse parameters for a request, checked against botocore's model of the Converse API."""
    params = converse_request(_chat(**fields), MODEL_ID)
    client = bedrock_client()
    validate_parameters(params, client.meta.service_model.operation_model("Converse").input_shape)
    return params


def _turns(*messages: dict[str, Any]) -> list[dict[str, Any]]:
    return _params(messages=list(messages))["messages"]


# OpenAI request -> Converse


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    params = _params(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            USER,
        ]
    )

    assert params["system"] == [{"text": "Be brief."}, {"text": "Use French."}]


def test_a_user_string_is_one_text_block() -> None:
    assert _turns(USER) == [{"role": "user", "content": [{"text": "Hi"}]}]


def test_a_data_url_image_is_sent_as_bytes() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    turns = _turns({"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]})

    assert turns[0]["content"] == [{"image": {"format": "png", "source": {"bytes": PNG}}}]


def test_a_remote_image_url_is_refused_not_fetched() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}

    with pytest.raises(InvalidRequest) as refused:
        _turns({"role": "user", "content": [{"type": "text", "text": "What is it?"}, part]})

    assert refused.value.param == "messages.0.content.1.image_url.url"


def test_an_image_type_bedrock_does_not_take_is_refused() -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}

    with pytest.raises(InvalidRequest, match="image/bmp"):
        _turns({"role": "user", "content": [part]})


def test_a_content_part_bedrock_does_not_take_is_refused() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}

    with pytest.raises(InvalidRequest) as refused:
        _turns({"role": "user", "content": [part]})

    assert refused.value.param == "messages.0.content.0.type"


def test_consecutive_messages_of_one_role_are_merged_into_one_turn() -> None:
    turns = _turns(USER, {"role": "user", "content": "Are you there?"})

    assert turns == [{"role": "user", "content": [{"text": "Hi"}, {"text": "Are you there?"}]}]


def test_assistant_tool_calls_become_tool_use_blocks() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
    }
    turns = _turns(USER, {"role": "assistant", "content": None, "tool_calls": [call]})

    assert turns[1] == {
        "role": "assistant",
        "content": [{"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Oslo"}}}],
    }


def test_tool_messages_become_tool_results_in_one_user_turn() -> None:
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
        for i in (1, 2)
    ]
    turns = _turns(
        USER,
        {"role": "assistant", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "14 C"},
    )

    assert turns[2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "12 C"}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "14 C"}]}},
        ],
    }


def test_tool_call_arguments_that_are_not_a_json_object_are_refused() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "Oslo"}}

    with pytest.raises(InvalidRequest) as refused:
        _turns(USER, {"role": "assistant", "tool_calls": [call]})

    assert refused.value.param == "messages.1.tool_calls.0.function.arguments"


def test_a_conversation_of_system_messages_only_is_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        _turns({"role": "system", "content": "Be brief."})

    assert refused.value.param == "messages"


def test_sampling_options_become_the_inference_config() -> None:
    params = _params(max_completion_tokens=64, temperature=0.2, top_p=0.9, stop=["END", "STOP"])

    assert params["inferenceConfig"] == {
        "maxTokens": 64,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END", "STOP"],
    }


def test_no_inference_config_is_sent_when_nothing_is_set() -> None:
    assert "inferenceConfig" not in _params()


WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_tools_become_tool_specs() -> None:
    assert _params(tools=[WEATHER])["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "weather",
                    "description": "Current weather",
                    "inputSchema": {"json": WEATHER["function"]["parameters"]},
                }
            }
        ]
    }


def test_a_tool_without_parameters_gets_an_empty_object_schema() -> None:
    tool = {"type": "function", "function": {"name": "now"}}

    spec = _params(tools=[tool])["toolConfig"]["tools"][0]["toolSpec"]

    assert spec["inputSchema"] == {"json": {"type": "object", "properties": {}}}


@pytest.mark.parametrize(
    ("tool_choice", "converse_choice"),
    [
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "weather"}}, {"tool": {"name": "weather"}}),
        ("auto", None),
    ],
)
def test_tool_choice_becomes_converse_tool_choice(tool_choice: Any, converse_choice: Any) -> None:
    assert (
        _params(tools=[WEATHER], tool_choice=tool_choice)["toolConfig"].get("toolChoice") == converse_choice
    )


def test_tool_choice_none_leaves_the_tools_out() -> None:
    assert "toolConfig" not in _params(tools=[WEATHER], tool_choice="none")


def test_tool_choice_none_keeps_the_tools_when_earlier_turns_used_them() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    messages = [
        USER,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
    ]

    assert "toolConfig" in _params(messages=messages, tools=[WEATHER], tool_choice="none")


def test_a_json_schema_response_format_becomes_the_output_config() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    params = _params(
        response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    )

    definition = params["outputConfig"]["textFormat"]["structure"]["jsonSchema"]

    assert (definition["name"], json.loads(definition["schema"])) == ("reply", schema)


def test_json_object_mode_asks_for_json_in_the_system_prompt() -> None:
    params = _params(response_format={"type": "json_object"})

    assert params["system"] == [{"text": JSON_OBJECT_INSTRUCTION}]


# Converse answer -> OpenAI


def test_a_text_answer_becomes_the_assistant_message(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response("converse", converse_answer([{"text": "Hello "}, {"text": "there"}]))

    result = provider.chat(_chat(), TARGET)

    assert result.message == {"role": "assistant", "content": "Hello there"}


def test_the_request_is_sent_to_the_aliases_model(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "converse",
        converse_answer(),
        {"modelId": MODEL_ID, "messages": [{"role": "user", "content": [{"text": "Hi"}]}]},
    )

    provider.chat(_chat(), TARGET)  # the stub asserts the parameters


def test_token_counts_become_openai_usage(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response("converse", converse_answer(input_tokens=21, output_tokens=4))

    assert provider.chat(_chat(), TARGET).usage.openai() == {
        "prompt_tokens": 21,
        "completion_tokens": 4,
        "total_tokens": 25,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("content_filtered", "content_filter"),
        ("guardrail_intervened", "content_filter"),
    ],
)
def test_stop_reasons_become_finish_reasons(
    stubbed: tuple[BedrockProvider, Stubber], stop_reason: str, finish_reason: str
) -> None:
    provider, stubber = stubbed
    stubber.add_response("converse", converse_answer(stop_reason=stop_reason))

    assert provider.chat(_chat(), TARGET).finish_reason == finish_reason


def test_tool_use_in_the_answer_becomes_tool_calls(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    use = {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Oslo"}}}
    stubber.add_response("converse", converse_answer([use], stop_reason="tool_use"))

    message = provider.chat(_chat(tools=[WEATHER]), TARGET).message

    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "tooluse_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
        }
    ]


# ConverseStream -> OpenAI deltas


def test_a_text_stream_becomes_role_content_finish_and_usage(
    stubbed: tuple[BedrockProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    add_stream_response(stubber, answer_events(["Hel", "lo"], input_tokens=3, output_tokens=2))

    events = list(provider.stream(_chat(stream=True), TARGET))

    assert events == [
        StreamDelta({"role": "assistant", "content": ""}),
        StreamDelta({"content": "Hel"}),
        StreamDelta({"content": "lo"}),
        StreamDelta({}, finish_reason="stop"),
        Usage(prompt_tokens=3, completion_tokens=2),
    ]


def test_a_streamed_tool_call_starts_with_id_and_name_then_streams_arguments() -> None:
    events = [
        {
            "contentBlockStart": {
                "start": {"toolUse": {"toolUseId": "tu_1", "name": "weather"}},
                "contentBlockIndex": 1,
            }
        },
        {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"city":'}}, "contentBlockIndex": 1}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": ' "Oslo"}'}}, "contentBlockIndex": 1}},
    ]

    assert list(stream_events(events)) == [
        StreamDelta(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "tu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            }
        ),
        StreamDelta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        StreamDelta({"tool_calls": [{"index": 0, "function": {"arguments": ' "Oslo"}'}}]}),
    ]


def test_streamed_tool_calls_are_numbered_in_the_order_they_start() -> None:
    events = [
        {
            "contentBlockStart": {
                "start": {"toolUse": {"toolUseId": f"tu_{i}", "name": "f"}},
                "contentBlockIndex": i,
            }
        }
        for i in (2, 5)
    ]

    indexes = [delta.delta["tool_calls"][0]["index"] for delta in stream_events(events)]  # type: ignore[union-attr]

    assert indexes == [0, 1]


def test_a_stream_refused_at_once_raises_from_the_call_itself(
    stubbed: tuple[BedrockProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("converse_stream", "ThrottlingException", "Too many requests", 429)

    with pytest.raises(ProviderError) as failed:
        provider.stream(_chat(stream=True), TARGET)  # not iterated

    assert failed.value.status == 429


def test_an_error_event_in_the_stream_becomes_a_provider_error(
    stubbed: tuple[BedrockProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    error = EventStreamError(
        {"Error": {"Code": "modelStreamErrorException", "Message": "the model stopped"}}, "ConverseStream"
    )
    add_stream_response(stubber, [{"messageStart": {"role": "assistant"}}], then=error)
    stream = provider.stream(_chat(stream=True), TARGET)

    with pytest.raises(ProviderError) as failed:
        list(stream)

    assert (failed.value.status, failed.value.retryable) == (502, True)


# Errors


@pytest.mark.parametrize(
    ("code", "http_status", "status", "retryable"),
    [
        ("ThrottlingException", 429, 429, True),
        ("ServiceQuotaExceededException", 429, 429, True),
        ("ModelTimeoutException", 408, 504, True),
        ("InternalServerException", 500, 502, True),
        ("ServiceUnavailableException", 503, 503, True),
        ("ModelNotReadyException", 429, 503, True),
        ("ValidationException", 400, 400, False),
        ("AccessDeniedException", 403, 502, False),
        ("ResourceNotFoundException", 404, 502, False),
    ],
)
def test_bedrock_errors_map_to_gateway_statuses(
    stubbed: tuple[BedrockProvider, Stubber], code: str, http_status: int, status: int, retryable: bool
) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("converse", code, "provider says no", http_status)

    with pytest.raises(ProviderError) as failed:
        provider.chat(_chat(), TARGET)

    assert (failed.value.status, failed.value.retryable) == (status, retryable)


def test_throttling_is_a_rate_limit_error(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("converse", "ThrottlingException", "Too many requests", 429)

    with pytest.raises(ProviderError) as failed:
        provider.chat(_chat(), TARGET)

    assert (failed.value.type, failed.value.code) == ("rate_limit_exceeded", "rate_limit_exceeded")


def test_a_bedrock_validation_error_is_the_callers_invalid_request(
    stubbed: tuple[BedrockProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("converse", "ValidationException", "Input is too long", 400)

    with pytest.raises(ProviderError) as failed:
        provider.chat(_chat(), TARGET)

    assert (failed.value.type, failed.value.source) == ("invalid_request_error", "provider")


def test_the_error_message_quotes_bedrocks_status_code_and_message(
    stubbed: tuple[BedrockProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    stubber.add_client_error(
        "converse",
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
        403,
    )

    with pytest.raises(ProviderError) as failed:
        provider.chat(_chat(), TARGET)

    assert failed.value.message == (
        "Bedrock answered 403 AccessDeniedException: "
        "You don't have access to the model with the specified model ID."
    )


def test_an_answer_without_a_message_is_the_providers_fault() -> None:
    # botocore's model forbids such an answer, so it is fed to the translation directly.
    with pytest.raises(ProviderError) as failed:
        chat_result(converse_answer() | {"output": {}})

    assert (failed.value.status, failed.value.source) == (502, "provider")


def test_a_read_timeout_is_a_retryable_gateway_timeout() -> None:
    error = provider_error(ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"))

    assert (error.status, getattr(error, "retryable", None)) == (504, True)


# Per-call timeouts


@pytest.mark.parametrize(
    ("timeout", "read_timeout"), [(None, 25.0), (40.0, 25.0), (25.0, 25.0), (7.9, 7.0), (1.2, 1.0)]
)
def test_a_call_waits_no_longer_than_the_time_it_is_given(
    monkeypatch: pytest.MonkeyPatch, timeout: float | None, read_timeout: float
) -> None:
    client = bedrock_client()
    asked: list[float] = []

    def runtime_client(timeout_seconds: float) -> Any:
        asked.append(timeout_seconds)
        return client

    monkeypatch.setattr("byom.providers.bedrock.runtime_client", runtime_client)
    with Stubber(client) as stubber:
        stubber.add_response("converse", converse_answer())
        BedrockProvider(timeout_seconds=25.0).chat(_chat(), TARGET, timeout=timeout)

    assert asked == [read_timeout]


# Embeddings


TITAN_V2 = Target(
    tenant_id="tnt_a", alias="embed", provider="bedrock", model_id="amazon.titan-embed-text-v2:0"
)
COHERE = Target(tenant_id="tnt_a", alias="embed", provider="bedrock", model_id="cohere.embed-english-v3")


def _embed(**fields: Any) -> EmbeddingRequest:
    return EmbeddingRequest.model_validate({"model": "embed"} | fields)


def _invoke_params(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "modelId": model_id,
        "body": json.dumps(body),
        "contentType": "application/json",
        "accept": "application/json",
    }


def test_titan_embeds_one_text_per_call_in_order(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    for i, text in enumerate(["one", "two"]):
        stubber.add_response(
            "invoke_model",
            invoke_answer({"embedding": [float(i), 0.5], "inputTextTokenCount": 2}),
            _invoke_params(TITAN_V2.model_id, {"inputText": text}),
        )

    result = provider.embed(_embed(input=["one", "two"]), TITAN_V2)

    assert result.vectors == [[0.0, 0.5], [1.0, 0.5]]


def test_titan_token_counts_are_summed(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    for tokens in (2, 3):
        stubber.add_response(
            "invoke_model", invoke_answer({"embedding": [0.1], "inputTextTokenCount": tokens})
        )

    assert provider.embed(_embed(input=["a", "b"]), TITAN_V2).usage.prompt_tokens == 5


def test_titan_v2_is_asked_for_the_requested_dimensions(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "invoke_model",
        invoke_answer({"embedding": [0.1] * 256, "inputTextTokenCount": 1}),
        _invoke_params(TITAN_V2.model_id, {"inputText": "a", "dimensions": 256}),
    )

    assert len(provider.embed(_embed(input="a", dimensions=256), TITAN_V2).vectors[0]) == 256


def test_titan_v1_refuses_dimensions_before_calling(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, _ = stubbed
    titan_v1 = Target(
        tenant_id="tnt_a", alias="embed", provider="bedrock", model_id="amazon.titan-embed-text-v1"
    )

    with pytest.raises(InvalidRequest) as refused:
        provider.embed(_embed(input="a", dimensions=256), titan_v1)

    assert refused.value.param == "dimensions"


def test_cohere_embeds_the_texts_as_search_documents(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "invoke_model",
        invoke_answer({"embeddings": [[0.1], [0.2]], "response_type": "embeddings_floats"}),
        _invoke_params(COHERE.model_id, {"texts": ["a", "b"], "input_type": "search_document"}),
    )

    assert provider.embed(_embed(input=["a", "b"]), COHERE).vectors == [[0.1], [0.2]]


def test_cohere_token_counts_come_from_the_response_header(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "invoke_model",
        invoke_answer({"embeddings": [[0.1]]}, headers={"x-amzn-bedrock-input-token-count": "9"}),
    )

    assert provider.embed(_embed(input="a"), COHERE).usage.prompt_tokens == 9


def test_cohere_v4_is_asked_for_float_vectors_of_the_requested_size(
    stubbed: tuple[BedrockProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    cohere_v4 = Target(tenant_id="tnt_a", alias="embed", provider="bedrock", model_id="cohere.embed-v4:0")
    body = {
        "texts": ["a"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    stubber.add_response(
        "invoke_model",
        invoke_answer({"embeddings": {"float": [[0.3] * 256]}}),
        _invoke_params(cohere_v4.model_id, body),
    )

    assert len(provider.embed(_embed(input="a", dimensions=256), cohere_v4).vectors[0]) == 256


def test_cohere_is_called_in_batches_of_96_texts(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    texts = [f"t{i}" for i in range(100)]
    for batch in (texts[:96], texts[96:]):
        stubber.add_response(
            "invoke_model",
            invoke_answer({"embeddings": [[0.1]] * len(batch)}),
            _invoke_params(COHERE.model_id, {"texts": batch, "input_type": "search_document"}),
        )

    assert len(provider.embed(_embed(input=texts), COHERE).vectors) == 100


def test_a_model_that_is_not_an_embedding_model_is_refused(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, _ = stubbed

    with pytest.raises(InvalidRequest) as refused:
        provider.embed(_embed(input="a"), TARGET)

    assert refused.value.param == "model"


def test_an_embedding_answer_without_vectors_is_the_providers_fault(
    stubbed: tuple[BedrockProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    stubber.add_response("invoke_model", invoke_answer({"embeddings": []}))

    with pytest.raises(ProviderError) as failed:
        provider.embed(_embed(input="a"), COHERE)

    assert failed.value.status == 502


def test_an_embedding_quota_error_is_retryable_throttling(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("invoke_model", "ServiceQuotaExceededException", "Quota exceeded", 429)

    with pytest.raises(ProviderError) as failed:
        provider.embed(_embed(input="a"), TITAN_V2)

    assert (failed.value.status, failed.value.retryable) == (429, True)


def test_openai_only_hints_are_not_sent_to_bedrock() -> None:
    params = converse_request(
        _chat(prompt_cache_key="support-bot-v3", safety_identifier="subject-42"), MODEL_ID
    )

    assert "support-bot-v3" not in json.dumps(params) and "subject-42" not in json.dumps(params)


# Prompt caching

CLAUDE_CACHING = Target(
    tenant_id="tnt_a",
    alias="cached",
    provider="bedrock",
    model_id="anthropic.claude-3-5-haiku-20241022-v1:0",
    prompt_caching=True,
)
POINT = {"cachePoint": {"type": "default"}}
WITH_TOOLS = {
    "messages": [
        {"role": "system", "content": "You answer about the weather."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Weather in Oslo?"},
    ],
    "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
}


def _sent_params(target: Target, **fields: Any) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    class Recording:
        def converse(self, **params: Any) -> dict[str, Any]:
            validate_parameters(
                params, bedrock_client().meta.service_model.operation_model("Converse").input_shape
            )
            sent.append(params)
            return converse_answer()

    BedrockProvider(client=Recording()).chat(_chat(**fields), target)
    return sent[0]


def test_prompt_caching_marks_the_system_prompt_the_tools_and_the_last_user_turn() -> None:
    params = _sent_params(CLAUDE_CACHING, **WITH_TOOLS)

    assert params["system"][-1] == POINT
    assert params["toolConfig"]["tools"][-1] == POINT
    assert params["messages"][-1]["content"] == [{"text": "Weather in Oslo?"}, POINT]
    assert POINT not in params["messages"][0]["content"]


def test_without_prompt_caching_no_cache_point_is_sent() -> None:
    params = _sent_params(replace(CLAUDE_CACHING, prompt_caching=False), **WITH_TOOLS)

    assert "cachePoint" not in json.dumps(params)


def test_a_model_that_caches_no_tools_gets_no_cache_point_after_them() -> None:
    nova = replace(CLAUDE_CACHING, model_id="us.amazon.nova-pro-v1:0")

    params = _sent_params(nova, **WITH_TOOLS)

    assert POINT not in params["toolConfig"]["tools"]
    assert (params["system"][-1], params["messages"][-1]["content"][-1]) == (POINT, POINT)


def test_cache_reads_and_writes_are_counted_in_the_prompt_tokens() -> None:
    answer = converse_answer(input_tokens=5, output_tokens=4)
    answer["usage"] |= {"cacheReadInputTokens": 1200, "cacheWriteInputTokens": 300}

    usage = chat_result(answer).usage

    assert usage == Usage(prompt_tokens=1505, completion_tokens=4, cached_tokens=1200, cache_write_tokens=300)
    assert usage.openai()["prompt_tokens_details"] == {"cached_tokens": 1200}


def test_a_streams_cache_counts_come_with_its_usage() -> None:
    events = answer_events(["Hi"], input_tokens=2, output_tokens=1)
    events[-1]["metadata"]["usage"] |= {"cacheReadInputTokens": 40, "cacheWriteInputTokens": 0}

    usage = list(stream_events(events))[-1]

    assert usage == Usage(prompt_tokens=42, completion_tokens=1, cached_tokens=40)
