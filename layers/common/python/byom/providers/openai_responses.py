"""A chat request on the wire of OpenAI's Responses API, and its answers back as chat results.

Providers that serve Responses natively (OpenAI; an OpenAI-compatible endpoint whose credential says
`"responses": true`) are called on `POST /responses` with the request the gateway has screened and
bounded. The gateway keeps the conversation itself (`store: false` upstream), so a provider holds no
copy of the tenant's data beyond the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from byom.openai_types import ChatRequest
from byom.providers import ChatResult, StreamDelta, StreamEvent, Usage


def _content(content: Any, *, assistant: bool) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") == "image_url":
            image = part["image_url"]
            parts.append(
                {"type": "input_image", "image_url": image["url"], "detail": image.get("detail") or "auto"}
            )
        else:
            parts.append(
                {"type": "output_text" if assistant else "input_text", "text": part.get("text") or ""}
            )
    return parts


def input_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-completions messages as Responses input items: the one chat -> Responses translation,
    also what a stored response lists as its input items (byom.logic.responses.input_items adds
    their ids and status)."""
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            content = message.get("content")
            output = (
                content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
            )
            items.append(
                {"type": "function_call_output", "call_id": message["tool_call_id"], "output": output}
            )
            continue
        if message.get("content"):
            items.append(
                {
                    "type": "message",
                    "role": role,
                    "content": _content(message["content"], assistant=role == "assistant"),
                }
            )
        for call in message.get("tool_calls") or []:
            function = call["function"]
            items.append(
                {
                    "type": "function_call",
                    "call_id": call["id"],
                    "name": function["name"],
                    "arguments": function.get("arguments") or "",
                }
            )
    return items


def _text_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format["type"] == "json_object":
        return {"format": {"type": "json_object"}}
    schema = response_format.get("json_schema") or {}
    return {"format": {"type": "json_schema"} | schema}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        return {"type": "function", "name": choice["function"]["name"]}
    return choice


def body_of(request: ChatRequest) -> dict[str, Any]:
    """The Responses body for a chat request (less `model`, which the provider sets)."""
    sent = request.model_dump(mode="json", exclude_none=True)
    body: dict[str, Any] = {"input": input_of(sent["messages"]), "store": False}
    if sent.get("tools"):
        body["tools"] = [{"type": "function"} | tool["function"] for tool in sent["tools"]]
    if "tool_choice" in sent:
        body["tool_choice"] = _tool_choice(sent["tool_choice"])
    text = _text_format(sent.get("response_format"))
    if text:
        body["text"] = text
    limit = request.max_output_tokens
    if limit is not None:
        body["max_output_tokens"] = limit
    for name in ("temperature", "top_p", "parallel_tool_calls", "safety_identifier", "prompt_cache_key"):
        if name in sent:
            body[name] = sent[name]
    return body


# What the gateway reads from an answer; anything else the provider sends is ignored.


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Details(_Lenient):
    cached_tokens: int = 0


class _Usage(_Lenient):
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_details: _Details | None = None


class _Response(_Lenient):
    status: str | None = None
    output: list[dict[str, Any]] = Field(default_factory=list)
    usage: _Usage | None = None
    incomplete_details: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


def usage_of(usage: _Usage | None) -> Usage:
    if usage is None:
        return Usage()
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else 0
    return Usage(usage.input_tokens, usage.output_tokens, cached_tokens=min(cached, usage.input_tokens))


def _finish(response: _Response, has_calls: bool) -> str:
    if response.status == "incomplete":
        return "length"
    return "tool_calls" if has_calls else "stop"


def parse(response: _Response) -> ChatResult:
    """A Response's output as the chat assistant message it amounts to."""
    text, refusal, calls = "", "", []
    for item in response.output:
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    text += str(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusal += str(part.get("refusal") or "")
        elif item.get("type") == "function_call":
            calls.append(
                {
                    "id": str(item.get("call_id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(item.get("name") or ""),
                        "arguments": str(item.get("arguments") or ""),
                    },
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if refusal:
        message["refusal"] = refusal
    if calls:
        message["tool_calls"] = calls
    return ChatResult(
        message=message, finish_reason=_finish(response, bool(calls)), usage=usage_of(response.usage)
    )


def parse_json(content: bytes) -> ChatResult:
    """Raises ValueError (pydantic's ValidationError is one) on a malformed answer."""
    return parse(_Response.model_validate_json(content))


class StreamFailed(Exception):
    """The provider's stream said it failed (`error` or `response.failed`); the message is its own."""


def stream_events(events: Iterable[dict[str, Any]]) -> Iterator[StreamEvent]:
    """A Responses event stream as chat stream events: text deltas, function calls by their
    output index (chat's tool-call index counts calls only), then the finish and the usage."""
    calls: dict[int, int] = {}
    for event in events:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            yield StreamDelta({"content": str(event.get("delta") or "")})
        elif (
            kind == "response.output_item.added" and (event.get("item") or {}).get("type") == "function_call"
        ):
            item = event["item"]
            index = calls.setdefault(int(event.get("output_index") or 0), len(calls))
            call = {"index": index, "id": item.get("call_id"), "type": "function"}
            call["function"] = {"name": item.get("name"), "arguments": item.get("arguments") or ""}
            yield StreamDelta({"tool_calls": [call]})
        elif kind == "response.function_call_arguments.delta":
            known = calls.get(int(event.get("output_index") or 0))
            if known is not None:
                yield StreamDelta(
                    {"tool_calls": [{"index": known, "function": {"arguments": event.get("delta") or ""}}]}
                )
        elif kind in ("response.completed", "response.incomplete"):
            response = _Response.model_validate(event.get("response") or {})
            yield StreamDelta(finish_reason=_finish(response, bool(calls)))
            yield usage_of(response.usage)
            return
        elif kind in ("response.failed", "error"):
            detail = event.get("message") or ((event.get("response") or {}).get("error") or {}).get("message")
            raise StreamFailed(str(detail or "the response failed"))
