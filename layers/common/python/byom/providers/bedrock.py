"""Amazon Bedrock: chat through Converse / ConverseStream, embeddings through InvokeModel.

The translation functions are pure (OpenAI request in, Converse parameters out, and back) so they
are tested against botocore's own service model without a network. Bedrock authenticates with the
function's IAM role; a credential on a Bedrock alias is not used.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any, TypeVar

import urllib3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ParamValidationError,
    ReadTimeoutError,
)

from byom.dal.aws import configured_client
from byom.errors import InvalidRequest, ProviderError
from byom.openai_types import ChatRequest, Content, EmbeddingRequest, Message, NamedToolChoice
from byom.pricing import cache_points
from byom.providers import ChatResult, EmbeddingResult, StreamDelta, StreamEvent, Target, Usage

T = TypeVar("T")

# Converse has no JSON mode; OpenAI's own docs ask callers to say "JSON" in the prompt as well.
JSON_OBJECT_INSTRUCTION = "Answer with one valid JSON object and nothing else."

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}

# Bedrock error code -> (gateway status, worth retrying). Unlisted codes fall back on the HTTP status.
ERRORS: dict[str, tuple[int, bool]] = {
    "ThrottlingException": (429, True),
    "ServiceQuotaExceededException": (429, True),
    "ModelNotReadyException": (503, True),
    "ModelTimeoutException": (504, True),
    "InternalServerException": (502, True),
    "ModelErrorException": (502, True),
    "ModelStreamErrorException": (502, True),
    "ServiceUnavailableException": (503, True),
    "ValidationException": (400, False),
    "AccessDeniedException": (502, False),
    "ResourceNotFoundException": (502, False),
}

COHERE_MAX_TEXTS = 96


@lru_cache(maxsize=8)
def runtime_client(timeout_seconds: float) -> Any:
    """One client per container and timeout. boto3 itself honours AWS_ENDPOINT_URL_BEDROCK_RUNTIME
    (the local stack).

    Retries are the gateway's job (backoff, then fallbacks), so botocore makes a single attempt.
    """
    config = Config(
        connect_timeout=min(5.0, timeout_seconds),
        read_timeout=timeout_seconds,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    return configured_client("bedrock-runtime", config)


# OpenAI request -> Converse parameters


def _texts(content: Content | None, where: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts = []
    for j, part in enumerate(content):
        if part.type != "text":
            raise InvalidRequest(
                f"{where}: only text parts are allowed here, not '{part.type}'",
                param=f"{where}.content.{j}.type",
            )
        texts.append(part.text or "")
    return texts


def _image_block(url: str, param: str) -> dict[str, Any]:
    """Bedrock takes image bytes; remote URLs are refused rather than fetched (no outbound calls to
    arbitrary hosts from inside the account)."""
    head, comma, data = url.partition(",")
    if not url.startswith("data:") or not comma or not head.endswith(";base64"):
        raise InvalidRequest("Bedrock models take images as base64 data: URLs only", param=param)
    mime = head[len("data:") : -len(";base64")].lower()
    image_format = _IMAGE_FORMATS.get(mime)
    if image_format is None:
        raise InvalidRequest(f"Image type '{mime}' is not supported; use png, jpeg, gif or webp", param=param)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("The image data is not valid base64", param=param) from None
    if not raw:
        raise InvalidRequest("The image is empty", param=param)
    return {"image": {"format": image_format, "source": {"bytes": raw}}}


def _user_blocks(content: Content | None, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if part.type == "text":
            if part.text:
                blocks.append({"text": part.text})
        elif part.type == "image_url" and part.image_url is not None:
            blocks.append(_image_block(part.image_url.url, f"{where}.content.{j}.image_url.url"))
        else:
            raise InvalidRequest(
                f"Bedrock models do not take '{part.type}' content parts", param=f"{where}.content.{j}.type"
            )
    return blocks


def _tool_input(arguments: str, param: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        raise InvalidRequest("Tool call arguments must be a JSON object", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequest("Tool call arguments must be a JSON object", param=param)
    return value


def _assistant_blocks(message: Message, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if isinstance(message.content, str):
        if message.content:
            blocks.append({"text": message.content})
    elif message.content:
        # Assistant parts are text or refusal; a refusal was the model's own words, kept as text.
        for part in message.content:
            text = part.text if part.type == "text" else getattr(part, "refusal", None)
            if text:
                blocks.append({"text": text})
    for k, call in enumerate(message.tool_calls or []):
        arguments = _tool_input(call.function.arguments, f"{where}.tool_calls.{k}.function.arguments")
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": arguments}})
    return blocks


def _tool_result(message: Message, where: str) -> dict[str, Any]:
    content = [{"text": text} for text in _texts(message.content, where)]
    return {"toolResult": {"toolUseId": message.tool_call_id, "content": content or [{"text": ""}]}}


def _tool_config(request: ChatRequest, history_has_tools: bool) -> dict[str, Any] | None:
    tools = request.tools or []
    choice = request.tool_choice
    # Converse has no "none": leave the tools out, unless earlier turns used them, which Converse
    # only accepts with the tools declared.
    if not tools or (choice == "none" and not history_has_tools):
        return None
    specs = []
    for tool in tools:
        spec: dict[str, Any] = {
            "name": tool.function.name,
            "inputSchema": {"json": tool.function.parameters or {"type": "object", "properties": {}}},
        }
        if tool.function.description:
            spec["description"] = tool.function.description
        if tool.function.strict:
            spec["strict"] = True
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    # "auto" is Converse's default; saying it explicitly fails on models without toolChoice support.
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, NamedToolChoice):
        config["toolChoice"] = {"tool": {"name": choice.function.name}}
    return config


def converse_request(request: ChatRequest, model_id: str) -> dict[str, Any]:
    """Converse parameters for an OpenAI chat request. Converse wants alternating user/assistant
    turns, so consecutive messages of one role are merged and tool results join the user turn."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    history_has_tools = False
    for i, message in enumerate(request.messages):
        where = f"messages.{i}"
        if message.role in ("system", "developer"):
            system.extend({"text": text} for text in _texts(message.content, where) if text)
            continue
        if message.role == "user":
            role, blocks = "user", _user_blocks(message.content, where)
        elif message.role == "assistant":
            role, blocks = "assistant", _assistant_blocks(message, where)
            history_has_tools = history_has_tools or bool(message.tool_calls)
        else:
            role, blocks = "user", [_tool_result(message, where)]
            history_has_tools = True
        if not blocks:
            raise InvalidRequest(f"{where}: the message has no content", param=f"{where}.content")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise InvalidRequest("messages need at least one user message", param="messages")

    response_format = request.response_format
    if response_format is not None and response_format.type == "json_object":
        system.append({"text": JSON_OBJECT_INSTRUCTION})

    params: dict[str, Any] = {"modelId": model_id, "messages": turns}
    if system:
        params["system"] = system
    inference: dict[str, Any] = {}
    if request.max_output_tokens is not None:
        inference["maxTokens"] = request.max_output_tokens
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop_sequences:
        inference["stopSequences"] = request.stop_sequences
    if inference:
        params["inferenceConfig"] = inference
    tool_config = _tool_config(request, history_has_tools)
    if tool_config is not None:
        params["toolConfig"] = tool_config
    if response_format is not None and response_format.json_schema is not None:
        schema = response_format.json_schema
        definition: dict[str, Any] = {"schema": json.dumps(schema.schema_ or {}), "name": schema.name}
        if schema.description:
            definition["description"] = schema.description
        params["outputConfig"] = {
            "textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}
        }
    return params


def converse_params(request: ChatRequest, target: Target) -> dict[str, Any]:
    """What the target is asked: Converse's parameters, with cache points when the alias caches
    prompts. Chat calls and batch inference records (byom.providers.bedrock_batch) both use it."""
    params = converse_request(request, target.model_id)
    if target.prompt_caching:
        params = with_cache_points(params, cache_points(target.model_id))
    return params


CACHE_POINT = {"cachePoint": {"type": "default"}}


def with_cache_points(params: dict[str, Any], where: frozenset[str]) -> dict[str, Any]:
    """Converse parameters with cache points after the stable parts of the prompt, where the
    model takes them: the system prompt, the tools, and the end of the last user turn (so the
    next turn of the conversation reads the whole history from the cache). Three at most,
    within Bedrock's four."""
    params = dict(params)
    if "system" in where and params.get("system"):
        params["system"] = [*params["system"], CACHE_POINT]
    tool_config = params.get("toolConfig")
    if "tools" in where and tool_config:
        params["toolConfig"] = tool_config | {"tools": [*tool_config["tools"], CACHE_POINT]}
    if "messages" in where:
        turns = list(params["messages"])
        last_user = max((i for i, turn in enumerate(turns) if turn["role"] == "user"), default=None)
        if last_user is not None:
            turn = turns[last_user]
            turns[last_user] = turn | {"content": [*turn["content"], CACHE_POINT]}
        params["messages"] = turns
    return params


# Converse answer -> OpenAI


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop")


def _usage(usage: Any) -> Usage:
    """Bedrock counts cache reads and writes apart from `inputTokens`; OpenAI's prompt_tokens
    (and the gateway's) includes them."""
    usage = usage if isinstance(usage, dict) else {}
    read = max(int(usage.get("cacheReadInputTokens") or 0), 0)
    written = max(int(usage.get("cacheWriteInputTokens") or 0), 0)
    return Usage(
        prompt_tokens=max(int(usage.get("inputTokens") or 0), 0) + read + written,
        completion_tokens=int(usage.get("outputTokens") or 0),
        cached_tokens=read,
        cache_write_tokens=written,
    )


def chat_result(response: dict[str, Any]) -> ChatResult:
    message = (response.get("output") or {}).get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise ProviderError("Bedrock answered without a message", status=502)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(
                {
                    "id": use["toolUseId"],
                    "type": "function",
                    "function": {"name": use["name"], "arguments": json.dumps(use.get("input") or {})},
                }
            )
    answer: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        answer["tool_calls"] = calls
    return ChatResult(
        message=answer,
        finish_reason=finish_reason(response.get("stopReason")),
        usage=_usage(response.get("usage")),
    )


def stream_events(events: Iterable[dict[str, Any]]) -> Iterator[StreamEvent]:
    """ConverseStream events as OpenAI deltas. Tool calls are numbered in the order they start,
    as OpenAI numbers them, whatever content block index Bedrock gives them."""
    tool_index: dict[int, int] = {}
    for event in events:
        if "messageStart" in event:
            yield StreamDelta({"role": "assistant", "content": ""})
        elif "contentBlockStart" in event:
            start = event["contentBlockStart"]
            use = (start.get("start") or {}).get("toolUse")
            if use:
                index = tool_index.setdefault(start["contentBlockIndex"], len(tool_index))
                yield StreamDelta(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": use["toolUseId"],
                                "type": "function",
                                "function": {"name": use["name"], "arguments": ""},
                            }
                        ]
                    }
                )
        elif "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            delta = block.get("delta") or {}
            if "text" in delta:
                yield StreamDelta({"content": delta["text"]})
            elif "toolUse" in delta:
                index = tool_index.setdefault(block["contentBlockIndex"], len(tool_index))
                arguments = delta["toolUse"].get("input", "")
                yield StreamDelta({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})
        elif "messageStop" in event:
            yield StreamDelta({}, finish_reason=finish_reason(event["messageStop"].get("stopReason")))
        elif "metadata" in event:
            yield _usage(event["metadata"].get("usage"))
        else:
            # botocore raises error events itself; this covers any it hands over as data.
            for name, body in event.items():
                if name.endswith("Exception"):
                    message = (body or {}).get("message", "") if isinstance(body, dict) else ""
                    raise _mapped(name, None, message)


# Errors


def _mapped(code: str, http_status: int | None, message: str) -> ProviderError:
    code = code[:1].upper() + code[1:]  # error events name the exception in camelCase
    status, retryable = ERRORS.get(code) or ((502, True) if (http_status or 0) >= 500 else (502, False))
    said = " ".join(str(p) for p in (http_status, code) if p)
    return ProviderError(
        f"Bedrock answered {said}: {message}".rstrip(": "),
        status=status,
        retryable=retryable,
        provider_status=http_status or code,
    )


def provider_error(error: Exception) -> ProviderError | InvalidRequest:
    if isinstance(error, ClientError):
        info = error.response.get("Error") or {}
        http_status = (error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return _mapped(str(info.get("Code") or "UnknownError"), http_status, str(info.get("Message") or ""))
    if isinstance(error, ParamValidationError):
        # The request was built from a validated body, so what is left is a Bedrock constraint.
        return InvalidRequest(f"Bedrock would refuse this request: {error}")
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return ProviderError("Bedrock did not answer in time", status=504, retryable=True)
    return ProviderError(f"Could not reach Bedrock ({type(error).__name__})", status=502, retryable=True)


# Embeddings


def embedding_family(model_id: str) -> str | None:
    if "titan-embed" in model_id:
        return "titan"
    if "cohere.embed" in model_id:
        return "cohere"
    return None


def titan_body(text: str, model_id: str, dimensions: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"inputText": text}
    if dimensions is not None:
        if "titan-embed-text-v2" not in model_id:
            raise InvalidRequest(
                "'dimensions' is supported by Titan Text Embeddings V2 only", param="dimensions"
            )
        body["dimensions"] = dimensions
    return body


def cohere_body(texts: list[str], model_id: str, dimensions: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"texts": texts, "input_type": "search_document"}
    if "embed-v4" in model_id:
        body["embedding_types"] = ["float"]
        if dimensions is not None:
            body["output_dimension"] = dimensions
    elif dimensions is not None:
        raise InvalidRequest("'dimensions' is supported by Cohere Embed v4 only", param="dimensions")
    return body


def _vectors(value: Any, count: int) -> list[list[float]]:
    if isinstance(value, dict):  # Cohere with embedding_types answers {"float": [...]}
        value = value.get("float")
    if (
        not isinstance(value, list)
        or len(value) != count
        or not all(isinstance(v, list) and v and all(isinstance(x, int | float) for x in v) for v in value)
    ):
        raise ProviderError("Bedrock answered an embedding response without the expected vectors", status=502)
    return [[float(x) for x in v] for v in value]


class BedrockProvider:
    def __init__(self, *, timeout_seconds: float = 25.0, client: Any = None) -> None:
        self._timeout = timeout_seconds
        self._given_client = client

    def _client(self, timeout: float | None) -> Any:
        if self._given_client is not None:
            return self._given_client
        return runtime_client(self._read_timeout(timeout))

    def _read_timeout(self, timeout: float | None) -> float:
        if timeout is None or timeout >= self._timeout:
            return self._timeout
        # botocore fixes timeouts per client: whole seconds, rounded down, keep the clients few.
        return float(max(1, math.floor(timeout)))

    def _call(self, call: Callable[[Any], T], timeout: float | None = None) -> T:
        try:
            return call(self._client(timeout))
        except (ClientError, BotoCoreError) as error:
            raise provider_error(error) from None

    def chat(self, request: ChatRequest, target: Target, *, timeout: float | None = None) -> ChatResult:
        params = converse_params(request, target)
        return chat_result(self._call(lambda client: client.converse(**params), timeout))

    def stream(
        self, request: ChatRequest, target: Target, *, timeout: float | None = None
    ) -> Iterator[StreamEvent]:
        params = converse_params(request, target)
        response = self._call(lambda client: client.converse_stream(**params), timeout)
        return self._guarded(response["stream"])

    @staticmethod
    def _guarded(stream: Any) -> Iterator[StreamEvent]:
        """The stream's events; its connection closed however it ends (a client that went away
        closes this generator). A connection that breaks mid-body is urllib3's error, which
        botocore does not wrap."""
        try:
            yield from stream_events(stream)
        except (ClientError, BotoCoreError) as error:
            raise provider_error(error) from None
        except urllib3.exceptions.ReadTimeoutError:
            raise ProviderError("Bedrock stopped answering mid-stream", status=504, retryable=True) from None
        except urllib3.exceptions.HTTPError as error:
            raise ProviderError(
                f"Bedrock's stream broke off ({type(error).__name__})", status=502, retryable=True
            ) from None
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _invoke(
        self, model_id: str, body: dict[str, Any], timeout: float | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        response = self._call(
            lambda client: client.invoke_model(
                modelId=model_id,
                body=json.dumps(body),
                contentType="application/json",
                accept="application/json",
            ),
            timeout,
        )
        try:
            payload = json.loads(response["body"].read())
        except ValueError:
            raise ProviderError(
                "Bedrock answered an embedding response that is not JSON", status=502
            ) from None
        if not isinstance(payload, dict):
            raise ProviderError("Bedrock answered an embedding response that is not an object", status=502)
        return payload, (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}

    def embed(
        self, request: EmbeddingRequest, target: Target, *, timeout: float | None = None
    ) -> EmbeddingResult:
        family = embedding_family(target.model_id)
        vectors: list[list[float]] = []
        tokens = 0
        if family == "titan":
            # Titan embeds one text per call.
            for text in request.texts:
                payload, _ = self._invoke(
                    target.model_id, titan_body(text, target.model_id, request.dimensions), timeout
                )
                vectors.extend(_vectors([payload.get("embedding")], 1))
                tokens += int(payload.get("inputTextTokenCount") or 0)
        elif family == "cohere":
            texts = request.texts
            for start in range(0, len(texts), COHERE_MAX_TEXTS):
                batch = texts[start : start + COHERE_MAX_TEXTS]
                payload, headers = self._invoke(
                    target.model_id, cohere_body(batch, target.model_id, request.dimensions), timeout
                )
                vectors.extend(_vectors(payload.get("embeddings"), len(batch)))
                tokens += int(headers.get("x-amzn-bedrock-input-token-count") or 0)
        else:
            raise InvalidRequest(
                f"Model '{target.alias}' is not a Bedrock embedding model the gateway supports "
                "(Amazon Titan Text Embeddings, Cohere Embed)",
                param="model",
            )
        return EmbeddingResult(vectors=vectors, usage=Usage(prompt_tokens=tokens))
