"""The stand-in models: small, deterministic and clearly labelled fakes of a chat and an embedding
model, answering in OpenAI's and in Bedrock's (Converse, Titan / Cohere embeddings) shapes.

Pure functions, no sockets. The reply echoes the last message, so a caller can see exactly what
reached the provider (e.g. that PII was redacted on the way). A tool is called when the last user
message names it. Token counts are whitespace-separated words.

Model names steer failures, for retry and fallback tests:
  ...fail-503...      every call answers HTTP 503 (any 4xx/5xx status)
  ...flaky-429-2...   the first 2 calls answer 429, later calls succeed (counted by the server)
  ...slow-1500...     the answer takes 1500 ms (before its first byte, streamed or not)
and the length and fate of an answer, for streaming tests:
  ...long-200...      the answer has 200 tokens (words): the echo, cut or continued with the
                      numbers of the words that follow it ("... You said: hi 11 12 ... 200");
                      max_tokens still cuts it, with finish reason length
  ...error-after-5... a stream fails after its 5th token: an error event ends it (OpenAI: an SSE
                      `data: {"error": {...}}`, no [DONE]; Bedrock: a modelStreamErrorException
                      event), where the 6th token, or the closing chunks of a shorter answer, were due
  ...drop-after-5...  a stream is cut after its 5th token: the connection closes without ending the
                      chunked body (no error event, no usage)
Prompt caching, as a stand-in of the providers' caches (no minimum length, no expiry): the
Converse stand-in honours `cachePoint` blocks: the first call with a given prefix (the prompt up
to a cache point) reports it as cacheWriteInputTokens, a repeat as cacheReadInputTokens; the
OpenAI stand-in, like OpenAI, caches on its own and reports a repeated prefix of whole messages
as `prompt_tokens_details.cached_tokens`. The servers keep the seen prefixes (`PromptCache`).

The two failures apply to streams only (a call that does not stream is answered whole), and
`after-0` fails after the opening chunk (OpenAI's role chunk, Bedrock's messageStart), before any
token. Directives combine: `stand-in-chat-slow-300-long-100-error-after-40`.

The servers (local_stack.models.servers) send each token as a chunk of its own, flushed, with the
stack's token delay (BYOM_STANDIN_TOKEN_DELAY_MS) between tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

CHAT_MODEL = "stand-in-chat"
EMBEDDING_MODEL = "stand-in-embed"
EMBEDDING_DIMENSIONS = 16
OWNER = "byom-local-stand-in"

_FAIL = re.compile(r"fail-(\d{3})")
_FLAKY = re.compile(r"flaky-(\d{3})-(\d+)")
_SLOW = re.compile(r"slow-(\d+)")
_LONG = re.compile(r"long-(\d+)")
_ERROR_AFTER = re.compile(r"error-after-(\d+)")
_DROP_AFTER = re.compile(r"drop-after-(\d+)")

# The event a Bedrock stream fails with (error-after-N): botocore raises it as an EventStreamError,
# a ClientError whose code is this name.
BEDROCK_STREAM_ERROR = "modelStreamErrorException"


class StandInError(Exception):
    """An error the stand-in answers, with the HTTP status a real provider would use."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


@dataclass(frozen=True)
class StreamFailure:
    kind: str  # "error": an error event ends the stream; "drop": the connection closes mid-body
    after: int  # tokens sent before it


@dataclass(frozen=True)
class Behaviour:
    fail_status: int | None = None
    flaky_status: int | None = None
    flaky_failures: int = 0
    delay_ms: int = 0
    answer_tokens: int | None = None
    stream_failure: StreamFailure | None = None


def behaviour(model: str) -> Behaviour:
    """What a model name asks the stand-in to do besides answering."""
    fail, flaky, slow = _FAIL.search(model), _FLAKY.search(model), _SLOW.search(model)
    long, error, drop = _LONG.search(model), _ERROR_AFTER.search(model), _DROP_AFTER.search(model)
    return Behaviour(
        fail_status=int(fail.group(1)) if fail else None,
        flaky_status=int(flaky.group(1)) if flaky else None,
        flaky_failures=int(flaky.group(2)) if flaky else 0,
        delay_ms=int(slow.group(1)) if slow else 0,
        answer_tokens=int(long.group(1)) if long else None,
        stream_failure=(
            StreamFailure("error", int(error.group(1)))
            if error
            else StreamFailure("drop", int(drop.group(1)))
            if drop
            else None
        ),
    )


def count_tokens(text: str) -> int:
    return len(text.split())


# -- the prompt cache ---------------------------------------------------------------------------

# Bedrock's own limit on cache points per request.
MAX_CACHE_POINTS = 4


@dataclass(frozen=True)
class CacheUse:
    read: int = 0
    written: int = 0


class PromptCache:
    """The prompt prefixes a stand-in has seen (the latest `size`), each by the digest of the model
    and the prefix, with its token count."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def use(self, prefixes: list[tuple[str, int]]) -> CacheUse:
        """`prefixes`: (digest, tokens) of each cacheable prefix of a prompt, shortest first. The
        longest one seen before is read; the rest up to the longest prefix is written."""
        if not prefixes:
            return CacheUse()
        with self._lock:
            read = max((tokens for digest, tokens in prefixes if digest in self._seen), default=0)
            for digest, tokens in prefixes:
                self._seen[digest] = tokens
                self._seen.move_to_end(digest)
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
        return CacheUse(read=read, written=max(prefixes[-1][1] - read, 0))

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


def _digest(hasher: Any) -> str:
    return str(hasher.copy().hexdigest())


def converse_prefixes(model_id: str, request: dict[str, Any]) -> list[tuple[str, int]]:
    """The prefixes a Converse request marks with cache points: tools, then the system prompt,
    then the messages (the order the prompt is read in), each up to one of its cache points."""
    hasher = hashlib.sha256(json.dumps(["converse", model_id]).encode())
    tokens = 0
    prefixes: list[tuple[str, int]] = []

    def add(block: dict[str, Any], counted: str | None) -> None:
        nonlocal tokens
        if "cachePoint" in block:
            prefixes.append((_digest(hasher), tokens))
            return
        hasher.update(json.dumps(block, sort_keys=True, default=str).encode())
        tokens += count_tokens(counted) if counted else 0

    for tool in (request.get("toolConfig") or {}).get("tools") or []:
        add(tool, None)  # tools are not counted as input tokens by the stand-in
    for block in request.get("system") or []:
        add(block, str(block.get("text", "")))
    for message in request.get("messages") or []:
        hasher.update(json.dumps(message.get("role")).encode())
        for block in message.get("content") or []:
            add(block, None if "cachePoint" in block else _converse_block_text(block))
    if len(prefixes) > MAX_CACHE_POINTS:
        raise StandInError(
            400, f"A request can have at most {MAX_CACHE_POINTS} cache points; it has {len(prefixes)}."
        )
    return prefixes


def openai_prefixes(request: dict[str, Any], turns: list[Turn]) -> list[tuple[str, int]]:
    """OpenAI caches without marks: every prefix of whole messages may be read back."""
    hasher = hashlib.sha256(json.dumps(["chat", request.get("model")]).encode())
    tokens = 0
    prefixes = []
    for message, turn in zip(request.get("messages") or [], turns, strict=False):
        hasher.update(json.dumps(message, sort_keys=True, default=str).encode())
        tokens += count_tokens(turn.text)
        prefixes.append((_digest(hasher), tokens))
    return prefixes


# -- the model ----------------------------------------------------------------------------------


@dataclass
class Turn:
    role: str  # system, user, assistant, tool
    text: str


@dataclass
class ToolSpec:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reply:
    text: str | None
    tool_name: str | None
    tool_arguments: dict[str, Any] | None
    finish: str  # stop, length, tool_calls
    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _placeholder(schema: dict[str, Any]) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    kind = str(kind[0] if isinstance(kind, list) else kind)
    placeholders: dict[str, Any] = {
        "string": "stand-in",
        "integer": 1,
        "number": 1,
        "boolean": True,
        "array": [],
        "object": {},
    }
    return placeholders.get(kind, "stand-in")


def tool_arguments(parameters: dict[str, Any]) -> dict[str, Any]:
    """Arguments that satisfy a JSON schema's required properties (all of them if none is required)."""
    properties = parameters.get("properties") or {}
    names = parameters.get("required") or list(properties)
    return {name: _placeholder(properties.get(name, {})) for name in names}


def _mentioned_tool(text: str, tools: list[ToolSpec]) -> ToolSpec | None:
    for tool in tools:
        if re.search(rf"(?<![\w-]){re.escape(tool.name)}(?![\w-])", text, flags=re.IGNORECASE):
            return tool
    return None


def compose_reply(
    model: str,
    turns: list[Turn],
    *,
    tools: list[ToolSpec] | None = None,
    forced_tool: str | None = None,
    max_tokens: int | None = None,
    stop: list[str] | None = None,
    json_mode: bool = False,
) -> Reply:
    """The stand-in's answer: a tool call when the last user turn names a tool, else an echo."""
    tools = tools or []
    last = turns[-1]
    input_tokens = max(1, sum(count_tokens(t.text) for t in turns))
    tool = None
    if tools and forced_tool is not None:
        tool = next((t for t in tools if t.name == forced_tool), None) or _mentioned_tool(last.text, tools)
        tool = tool or tools[0]
    elif tools and last.role == "user":
        tool = _mentioned_tool(last.text, tools)
    if tool is not None:
        arguments = tool_arguments(tool.parameters)
        output_tokens = max(1, count_tokens(json.dumps(arguments)))
        return Reply(None, tool.name, arguments, "tool_calls", input_tokens, output_tokens)

    if last.role == "tool":
        text = f"This is {model}, a local stand-in model. The tool answered: {last.text}"
    else:
        text = f"This is {model}, a local stand-in model. You said: {last.text}"
    wanted_tokens = behaviour(model).answer_tokens
    if json_mode:
        text = json.dumps({"model": model, "stand_in": True, "echo": last.text})
    elif wanted_tokens is not None:
        text = _sized(text, wanted_tokens)
    finish = "stop"
    for sequence in stop or []:
        if sequence and sequence in text:
            text = text[: text.index(sequence)]
            finish = "stop_sequence"
    if max_tokens is not None and count_tokens(text) > max_tokens:
        text, finish = _first_tokens(text, max_tokens), "length"
    return Reply(text, None, None, finish, input_tokens, count_tokens(text))


def _first_tokens(text: str, tokens: int) -> str:
    kept: list[str] = []
    for word in text.split(" "):
        if count_tokens(" ".join([*kept, word])) > tokens:
            break
        kept.append(word)
    return " ".join(kept)


def _sized(text: str, tokens: int) -> str:
    """The answer of a `long-N` model: cut to N tokens, or continued with the numbers of the tokens
    that follow, so each token says where it stands."""
    have = count_tokens(text)
    if have >= tokens:
        return _first_tokens(text, tokens)
    return " ".join([text, *(str(position) for position in range(have + 1, tokens + 1))])


def text_pieces(text: str) -> list[str]:
    """How a streamed answer is cut: word by word, spaces kept, joined back it is the text."""
    return re.findall(r"\S+\s*|\s+", text) or [""]


def failure_point(carries_token: list[bool], after: int) -> int:
    """How many frames of a stream go out before it fails after `after` tokens: up to its
    `after`-th token, at least the opening frame, at most up to its last token (so a shorter answer
    still fails, in place of its closing frames)."""
    tokens = [index for index, token in enumerate(carries_token) if token]
    if after == 0 or not tokens:
        return max(1, tokens[0] if tokens else 1)
    return tokens[min(after, len(tokens)) - 1] + 1


def stream_failure_message(model: str, failure: StreamFailure) -> str:
    return f"stand-in model {model} fails its stream after {failure.after} tokens"


def call_id(prefix: str, name: str, arguments: dict[str, Any]) -> str:
    digest = hashlib.sha256(f"{name}:{json.dumps(arguments, sort_keys=True)}".encode()).hexdigest()
    return f"{prefix}{digest[:24]}"


# -- embeddings ----------------------------------------------------------------------------------


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A unit vector seeded by the text: the same text always gets the same vector."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 6) for x in vector]


def _base64_floats(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# -- OpenAI shapes ---------------------------------------------------------------------------------


_OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _openai_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                parts.append(f"[{part.get('type', 'part')}]")
        return " ".join(parts)
    raise StandInError(400, "message content must be a string or an array of content parts", param="messages")


def _openai_turns(request: dict[str, Any]) -> list[Turn]:
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise StandInError(400, "'messages' must be a non-empty array", param="messages")
    turns: list[Turn] = []
    pending_calls: set[str] = set()
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _OPENAI_ROLES:
            raise StandInError(
                400, f"messages[{index}].role is missing or invalid", param=f"messages[{index}]"
            )
        role = message["role"]
        if role == "tool":
            call = message.get("tool_call_id")
            if call not in pending_calls:
                raise StandInError(
                    400,
                    f"messages[{index}]: messages with role 'tool' must be a response to a preceding "
                    "message with 'tool_calls'",
                    param=f"messages[{index}]",
                )
            pending_calls.discard(call)
        elif pending_calls:
            raise StandInError(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages responding "
                f"to each 'tool_call_id'. Missing: {sorted(pending_calls)}",
                param=f"messages[{index}]",
            )
        text = _openai_text(message.get("content"))
        if role == "assistant" and message.get("tool_calls"):
            calls = message["tool_calls"]
            pending_calls = {str(c.get("id")) for c in calls if isinstance(c, dict)}
            text = " ".join(
                [text, *(f"{c['function']['name']}({c['function'].get('arguments', '')})" for c in calls)]
            ).strip()
        turns.append(Turn("system" if role in ("system", "developer") else role, text))
    if pending_calls:
        raise StandInError(400, "tool calls without a tool response", param="messages")
    return turns


def _openai_tools(request: dict[str, Any]) -> tuple[list[ToolSpec], str | None]:
    choice = request.get("tool_choice")
    if choice == "none":
        return [], None
    tools = []
    for tool in request.get("tools") or []:
        function = tool.get("function", {}) if isinstance(tool, dict) else {}
        if not function.get("name"):
            raise StandInError(400, "every tool needs function.name", param="tools")
        tools.append(ToolSpec(function["name"], function.get("parameters") or {}))
    forced = None
    if isinstance(choice, dict):
        forced = choice.get("function", {}).get("name")
    elif choice == "required" and tools:
        forced = ""
    return tools, forced


def _positive_int(request: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = request.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise StandInError(400, f"'{name}' must be a positive integer", param=name)
        return value
    return None


def _openai_reply(request: dict[str, Any]) -> Reply:
    if not isinstance(request, dict):
        raise StandInError(400, "the request body must be a JSON object")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise StandInError(400, "you must provide a model parameter", param="model")
    if request.get("stream_options") is not None and not request.get("stream"):
        raise StandInError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    turns = _openai_turns(request)
    tools, forced = _openai_tools(request)
    stop = request.get("stop")
    stop_list = [stop] if isinstance(stop, str) else list(stop or [])
    response_format = request.get("response_format") or {}
    reply = compose_reply(
        model,
        turns,
        tools=tools,
        forced_tool=forced,
        max_tokens=_positive_int(request, "max_completion_tokens", "max_tokens"),
        stop=stop_list,
        json_mode=response_format.get("type") in ("json_object", "json_schema"),
    )
    if reply.finish == "stop_sequence":
        reply.finish = "stop"
    return reply


def _openai_usage(reply: Reply, cached: CacheUse) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.total_tokens,
        "prompt_tokens_details": {"cached_tokens": min(cached.read, reply.input_tokens)},
    }


def _openai_cache_use(request: dict[str, Any], cache: PromptCache | None) -> CacheUse:
    return cache.use(openai_prefixes(request, _openai_turns(request))) if cache is not None else CacheUse()


def openai_chat_completion(
    request: dict[str, Any], *, completion_id: str, created: int, cache: PromptCache | None = None
) -> dict[str, Any]:
    reply = _openai_reply(request)
    cached = _openai_cache_use(request, cache)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_name is not None:
        arguments = reply.tool_arguments or {}
        message["tool_calls"] = [
            {
                "id": call_id("call_", reply.tool_name, arguments),
                "type": "function",
                "function": {"name": reply.tool_name, "arguments": json.dumps(arguments)},
            }
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": request["model"],
        "system_fingerprint": "stand-in",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish}],
        "usage": _openai_usage(reply, cached),
    }


def openai_chat_chunks(
    request: dict[str, Any], *, completion_id: str, created: int, cache: PromptCache | None = None
) -> list[dict[str, Any]]:
    """The chunks of a streamed completion, in order (the server adds `data: [DONE]`)."""
    reply = _openai_reply(request)
    cached = _openai_cache_use(request, cache)
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request["model"],
            "system_fingerprint": "stand-in",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        return body

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if reply.tool_name is not None:
        arguments = json.dumps(reply.tool_arguments or {})
        call = {
            "index": 0,
            "id": call_id("call_", reply.tool_name, reply.tool_arguments or {}),
            "type": "function",
            "function": {"name": reply.tool_name, "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [call]}))
        for piece in text_pieces(arguments):
            chunks.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    else:
        for piece in text_pieces(reply.text or ""):
            chunks.append(chunk({"content": piece}))
    chunks.append(chunk({}, reply.finish))
    if include_usage:
        final = chunk({})
        final["choices"] = []
        final["usage"] = _openai_usage(reply, cached)
        chunks.append(final)
    return chunks


def openai_chunk_carries_token(chunk: dict[str, Any]) -> bool:
    """A chunk with text or tool-call arguments in it (not the role, finish or usage chunks)."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            return True
        if any((call.get("function") or {}).get("arguments") for call in delta.get("tool_calls") or []):
            return True
    return False


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(str(v) for v in value)]
    if isinstance(value, list) and value:
        inputs = []
        for item in value:
            if isinstance(item, str):
                inputs.append(item)
            elif isinstance(item, list) and all(isinstance(v, int) for v in item):
                inputs.append(" ".join(str(v) for v in item))
            else:
                raise StandInError(400, "'input' items must be strings or token arrays", param="input")
        return inputs
    raise StandInError(400, "'input' must be a non-empty string or array", param="input")


def openai_embeddings(request: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(request, dict) or not request.get("model"):
        raise StandInError(400, "you must provide a model parameter", param="model")
    inputs = _embedding_inputs(request.get("input"))
    dimensions = request.get("dimensions") or EMBEDDING_DIMENSIONS
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
        raise StandInError(400, "'dimensions' must be an integer between 1 and 4096", param="dimensions")
    encoding = request.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise StandInError(400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    data = []
    for index, text in enumerate(inputs):
        vector = embedding_vector(text, dimensions)
        embedding: Any = _base64_floats(vector) if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(max(1, count_tokens(t)) for t in inputs)
    return {
        "object": "list",
        "data": data,
        "model": request["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def openai_models(created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": OWNER}
            for name in (CHAT_MODEL, EMBEDDING_MODEL)
        ],
    }


def openai_error(error: StandInError) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error"}
    codes = {429: "rate_limit_exceeded", 401: "invalid_api_key", 404: "model_not_found"}
    return {
        "error": {
            "message": error.message,
            "type": kinds.get(error.status, "rate_limit_error" if error.status == 429 else "server_error"),
            "param": error.param,
            "code": codes.get(error.status),
        }
    }


# -- Bedrock shapes --------------------------------------------------------------------------------


BEDROCK_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    409: "ConflictException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def bedrock_error_type(status: int) -> str:
    return BEDROCK_ERRORS.get(status, "InternalServerException" if status >= 500 else "ValidationException")


def _converse_block_text(block: dict[str, Any]) -> str:
    if "text" in block:
        return str(block["text"])
    if "toolUse" in block:
        use = block["toolUse"]
        return f"{use.get('name')}({json.dumps(use.get('input', {}))})"
    if "toolResult" in block:
        parts = []
        for item in block["toolResult"].get("content", []):
            if "text" in item:
                parts.append(str(item["text"]))
            elif "json" in item:
                parts.append(json.dumps(item["json"]))
        return " ".join(parts)
    return f"[{next(iter(block), 'block')}]"


def _converse_turns(request: dict[str, Any]) -> list[Turn]:
    """Converse's messages, checked the way Bedrock checks them."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise StandInError(400, "The messages field is required and must not be empty.")
    turns = [Turn("system", str(block["text"])) for block in request.get("system") or [] if "text" in block]
    uses_tools = False
    previous = None
    for index, message in enumerate(messages):
        role = message.get("role")
        if index == 0 and role != "user":
            raise StandInError(
                400,
                "A conversation must start with a user message. Try again with a conversation that "
                "starts with a user message.",
            )
        if role == previous:
            raise StandInError(
                400,
                "A conversation must alternate between user and assistant roles. Make sure the "
                "conversation alternates between user and assistant roles and try again.",
            )
        previous = role
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise StandInError(400, f"The content field in the Message object at messages.{index} is empty.")
        texts = []
        tool_result = False
        for position, block in enumerate(content):
            if "cachePoint" in block:  # a mark for the cache, not content (converse_prefixes)
                continue
            if "text" in block and not str(block["text"]).strip():
                raise StandInError(
                    400,
                    f"The text field in the ContentBlock object at messages.{index}.content.{position} "
                    "is blank. Add text to the text field, and try again.",
                )
            if "toolUse" in block or "toolResult" in block:
                uses_tools = True
            tool_result = tool_result or "toolResult" in block
            texts.append(_converse_block_text(block))
        turns.append(Turn("tool" if tool_result and role == "user" else role, " ".join(texts)))
    if uses_tools and not request.get("toolConfig"):
        raise StandInError(
            400, "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    return turns


def _converse_reply(model_id: str, request: dict[str, Any]) -> Reply:
    turns = _converse_turns(request)
    config = request.get("inferenceConfig") or {}
    tools: list[ToolSpec] = []
    forced = None
    tool_config = request.get("toolConfig") or {}
    for tool in tool_config.get("tools", []):
        spec = tool.get("toolSpec")
        if spec:
            tools.append(ToolSpec(spec["name"], spec.get("inputSchema", {}).get("json") or {}))
    choice = tool_config.get("toolChoice") or {}
    if "tool" in choice:
        forced = choice["tool"].get("name")
    elif "any" in choice:
        forced = ""
    max_tokens = config.get("maxTokens")
    # Structured output (outputConfig.textFormat) or the JSON instruction in the system prompt.
    text_format = (request.get("outputConfig") or {}).get("textFormat") or {}
    asks_json = any("one valid JSON object" in t.text for t in turns if t.role == "system")
    return compose_reply(
        model_id,
        turns,
        tools=tools,
        forced_tool=forced,
        max_tokens=max_tokens,
        stop=config.get("stopSequences"),
        json_mode=text_format.get("type") == "json_schema" or asks_json,
    )


_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
}


def _converse_usage(reply: Reply, cached: CacheUse | None) -> dict[str, int]:
    """As Bedrock counts: `inputTokens` leaves out the tokens read from and written to the cache."""
    if cached is None:
        return {
            "inputTokens": reply.input_tokens,
            "outputTokens": reply.output_tokens,
            "totalTokens": reply.total_tokens,
        }
    read = min(cached.read, reply.input_tokens)
    written = min(cached.written, reply.input_tokens - read)
    return {
        "inputTokens": reply.input_tokens - read - written,
        "outputTokens": reply.output_tokens,
        "totalTokens": reply.total_tokens,
        "cacheReadInputTokens": read,
        "cacheWriteInputTokens": written,
    }


def _converse_cache_use(model_id: str, request: dict[str, Any], cache: PromptCache | None) -> CacheUse | None:
    """None when the request marks no cache point (Bedrock then reports no cache counts)."""
    prefixes = converse_prefixes(model_id, request)
    if not prefixes:
        return None
    return cache.use(prefixes) if cache is not None else CacheUse(written=prefixes[-1][1])


def bedrock_converse(
    model_id: str, request: dict[str, Any], *, latency_ms: int, cache: PromptCache | None = None
) -> dict[str, Any]:
    reply = _converse_reply(model_id, request)
    cached = _converse_cache_use(model_id, request, cache)
    content: list[dict[str, Any]]
    if reply.tool_name is not None:
        arguments = reply.tool_arguments or {}
        content = [
            {
                "toolUse": {
                    "toolUseId": call_id("tooluse_", reply.tool_name, arguments),
                    "name": reply.tool_name,
                    "input": arguments,
                }
            }
        ]
    else:
        content = [{"text": reply.text or ""}]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": _STOP_REASONS[reply.finish],
        "usage": _converse_usage(reply, cached),
        "metrics": {"latencyMs": latency_ms},
    }


def bedrock_converse_stream(
    model_id: str, request: dict[str, Any], *, latency_ms: int, cache: PromptCache | None = None
) -> list[tuple[str, dict]]:
    """ConverseStream's events as (event type, payload), in order."""
    reply = _converse_reply(model_id, request)
    cached = _converse_cache_use(model_id, request, cache)
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    if reply.tool_name is not None:
        arguments = reply.tool_arguments or {}
        start = {
            "toolUse": {"toolUseId": call_id("tooluse_", reply.tool_name, arguments), "name": reply.tool_name}
        }
        events.append(("contentBlockStart", {"start": start, "contentBlockIndex": 0}))
        for piece in text_pieces(json.dumps(arguments)):
            events.append(
                ("contentBlockDelta", {"delta": {"toolUse": {"input": piece}}, "contentBlockIndex": 0})
            )
    else:
        for piece in text_pieces(reply.text or ""):
            events.append(("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0}))
    events.append(("contentBlockStop", {"contentBlockIndex": 0}))
    events.append(("messageStop", {"stopReason": _STOP_REASONS[reply.finish]}))
    events.append(
        ("metadata", {"usage": _converse_usage(reply, cached), "metrics": {"latencyMs": latency_ms}})
    )
    return events


def bedrock_event_carries_token(event_type: str, payload: dict[str, Any]) -> bool:
    """A contentBlockDelta with text or tool input in it."""
    delta = payload.get("delta") or {}
    return event_type == "contentBlockDelta" and bool(
        delta.get("text") or (delta.get("toolUse") or {}).get("input")
    )


def bedrock_invoke(model_id: str, body: Any) -> dict[str, Any]:
    """InvokeModel for embedding models: Titan (`inputText`) and Cohere (`texts`) request shapes."""
    if isinstance(body, dict) and isinstance(body.get("inputText"), str):
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
        text = body["inputText"]
        return {
            "embedding": embedding_vector(text, int(dimensions)),
            "inputTextTokenCount": max(1, count_tokens(text)),
        }
    if isinstance(body, dict) and isinstance(body.get("texts"), list):
        texts = [str(t) for t in body["texts"]]
        return {
            "id": hashlib.sha256("\n".join(texts).encode()).hexdigest()[:32],
            "embeddings": [embedding_vector(t) for t in texts],
            "texts": texts,
            "response_type": "embeddings_floats",
        }
    raise StandInError(
        400,
        f"The stand-in model {model_id} answers InvokeModel for embeddings only ('inputText' or 'texts').",
    )


def _prompt_text(request: dict[str, Any]) -> str:
    texts: list[str] = []
    for message in request.get("messages", []):
        if message.get("role") == "user":
            texts.extend(_converse_block_text(block) for block in message.get("content", []))
    return " ".join(texts)


def custom_model_converse(answer_for: Any, request: dict[str, Any], *, latency_ms: int) -> dict[str, Any]:
    """Converse answered by a stand-in custom model (local_stack.models.customization)."""
    prompt = _prompt_text(request)
    text = answer_for(prompt)
    usage = {"inputTokens": count_tokens(prompt), "outputTokens": count_tokens(text)}
    usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"]
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": usage,
        "metrics": {"latencyMs": latency_ms},
    }


def custom_model_converse_stream(
    answer_for: Any, request: dict[str, Any], *, latency_ms: int
) -> list[tuple[str, dict]]:
    answer = custom_model_converse(answer_for, request, latency_ms=latency_ms)
    text = answer["output"]["message"]["content"][0]["text"]
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    events += [
        ("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0})
        for piece in text_pieces(text)
    ]
    events += [
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", {"usage": answer["usage"], "metrics": {"latencyMs": latency_ms}}),
    ]
    return events


def _openai_prompt_text(request: dict[str, Any]) -> str:
    return " ".join(
        _openai_text(message.get("content"))
        for message in request.get("messages", [])
        if isinstance(message, dict) and message.get("role") == "user"
    )


def custom_model_chat_completion(
    answer_for: Any, request: dict[str, Any], *, completion_id: str, created: int
) -> dict[str, Any]:
    """A chat completion answered by a stand-in fine-tuned model (local_stack.models.openai_fine_tuning)."""
    prompt = _openai_prompt_text(request)
    text = answer_for(prompt)
    usage = {"prompt_tokens": count_tokens(prompt), "completion_tokens": count_tokens(text)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": request.get("model"),
        "system_fingerprint": "stand-in",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def custom_model_chat_chunks(
    answer_for: Any, request: dict[str, Any], *, completion_id: str, created: int
) -> list[dict[str, Any]]:
    answer = custom_model_chat_completion(answer_for, request, completion_id=completion_id, created=created)
    text = answer["choices"][0]["message"]["content"]
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": answer["model"],
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in text_pieces(text)]
    chunks.append(chunk({}, "stop"))
    if (request.get("stream_options") or {}).get("include_usage"):
        chunks.append(base | {"choices": [], "usage": answer["usage"]})
    return chunks
