"""The Responses API over the chat invocation path (SPEC §4.3, §4.4).

A Responses request becomes a chat request (`chat_request`), which is screened, budgeted, metered,
cached and audited as every chat call is (byom.logic.invoke); the chat answer becomes a Response
object (`response_object`) and a chat stream becomes the Responses event sequence (`ResponseEvents`).
Everything here is translation: no I/O.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from byom.api.errors import validation_message
from byom.errors import ByomError, InvalidRequest
from byom.openai_types import (
    ChatRequest,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    FunctionToolChoice,
    InputImage,
    InputItem,
    InputText,
    MessageItem,
    OutputText,
    RefusalPart,
    ResponsesRequest,
)
from byom.providers import ChatResult, StreamDelta, StreamEvent, Usage
from byom.providers.openai_responses import input_of


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# Request: Responses -> chat


def _part_text(part: Any) -> str:
    if isinstance(part, InputText | OutputText):
        return part.text
    if isinstance(part, RefusalPart):
        return part.refusal
    return ""


def _text_of(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(_part_text(p) for p in content)


def _user_content(content: str | list[Any]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, InputImage):
            image = {"url": part.image_url} | ({"detail": part.detail} if part.detail else {})
            parts.append({"type": "image_url", "image_url": image})
        else:
            parts.append({"type": "text", "text": _part_text(part)})
    return parts


def chat_messages(items: Iterable[InputItem]) -> list[dict[str, Any]]:
    """Input items as chat messages: consecutive function calls join the assistant message before
    them (chat carries them as its `tool_calls`), their outputs become tool messages."""
    messages: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, MessageItem):
            if item.role == "assistant":
                messages.append({"role": "assistant", "content": _text_of(item.content)})
            elif item.role in ("system", "developer"):
                messages.append({"role": item.role, "content": _text_of(item.content)})
            else:
                messages.append({"role": "user", "content": _user_content(item.content)})
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if last.get("content") == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": _text_of(item.output)})
        # Reasoning items are the provider's own working: nothing to pass on.
    return messages


def input_messages(request: ResponsesRequest) -> list[dict[str, Any]]:
    if isinstance(request.input, str):
        return [{"role": "user", "content": request.input}]
    return chat_messages(request.input)


def _response_format(request: ResponsesRequest) -> dict[str, Any] | None:
    text_format = request.text.format if request.text else None
    if text_format is None or text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": text_format.name, "schema": text_format.schema_}
    if text_format.description is not None:
        schema["description"] = text_format.description
    if text_format.strict is not None:
        schema["strict"] = text_format.strict
    return {"type": "json_schema", "json_schema": schema}


def _tool_choice(request: ResponsesRequest) -> Any:
    choice = request.tool_choice
    if isinstance(choice, FunctionToolChoice):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


def chat_request(request: ResponsesRequest, context: list[dict[str, Any]]) -> ChatRequest:
    """The chat request this Responses request means: its instructions, the conversation it
    continues (`context`, the stored chat messages of `previous_response_id`), then its input.
    The instructions of earlier responses are not carried over, as OpenAI does."""
    messages = ([{"role": "system", "content": request.instructions}] if request.instructions else []) + [
        *context,
        *input_messages(request),
    ]
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "tools": [
            {"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)}
            for tool in request.tools
        ]
        if request.tools
        else None,
        "tool_choice": _tool_choice(request),
        "parallel_tool_calls": request.parallel_tool_calls,
        "response_format": _response_format(request),
        "max_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "user": request.user,
        "safety_identifier": request.safety_identifier,
        "prompt_cache_key": request.prompt_cache_key,
        "stream": request.stream,
    }
    try:
        return ChatRequest.model_validate({k: v for k, v in body.items() if v is not None})
    except ValidationError as error:
        # The input items were valid one by one; together they are not a conversation a model
        # can take (a tool output without its call, say).
        message, _ = validation_message(error.errors(include_url=False, include_input=False))
        raise InvalidRequest(f"input: {message}", param="input") from None


# Answer: chat -> Responses


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [_text_part(text)] if status == "completed" or text else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _function_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat assistant message as Responses output items: its text, then its function calls."""
    items = []
    text = message.get("content")
    if isinstance(text, str) and text:
        items.append(_message_item(new_id("msg"), text, "completed"))
    elif message.get("refusal"):
        refusal = {"type": "refusal", "refusal": message["refusal"]}
        items.append(_message_item(new_id("msg"), "", "completed") | {"content": [refusal]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        items.append(
            _function_item(
                new_id("fc"),
                str(call.get("id") or new_id("call")),
                str(function.get("name", "")),
                str(function.get("arguments") or ""),
                "completed",
            )
        )
    return items


@dataclass(frozen=True)
class Header:
    """What every shape of one response carries: its id, its time, and what was asked."""

    response_id: str
    created_at: int
    model: str
    """The alias asked for, as chat answers name it."""
    request: ResponsesRequest


def _text_config(request: ResponsesRequest) -> dict[str, Any]:
    text_format = request.text.format if request.text else None
    if text_format is None:
        return {"format": {"type": "text"}}
    return {"format": text_format.model_dump(mode="json", exclude_none=True)}


def _tool_choice_out(request: ResponsesRequest) -> Any:
    choice = request.tool_choice
    if isinstance(choice, FunctionToolChoice):
        return {"type": "function", "name": choice.name}
    return choice or "auto"


def response_object(
    header: Header,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    finish_reason: str | None = None,
    completed_at: int | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Response object; `status` is `in_progress` while streamed, then `completed` (or
    `incomplete`, when the answer hit max_output_tokens, or `failed`)."""
    request = header.request
    if status == "completed" and finish_reason == "length":
        status = "incomplete"
    return (
        {
            "id": header.response_id,
            "object": "response",
            "created_at": header.created_at,
            "status": status,
            "background": False,
            "completed_at": completed_at if status == "completed" else None,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "model": header.model,
            "output": output,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "reasoning": None,
            "service_tier": "default",
            "store": request.stores,
            "temperature": request.temperature if request.temperature is not None else 1.0,
            "text": _text_config(request),
            "tool_choice": _tool_choice_out(request),
            "tools": [_tool_out(t) for t in request.tools or []],
            "top_p": request.top_p if request.top_p is not None else 1.0,
            "truncation": request.truncation or "disabled",
            "metadata": request.metadata or {},
        }
        | ({"usage": usage.responses()} if usage is not None else {})
        | {name: value for name in _IDENTIFIERS if (value := getattr(request, name)) is not None}
    )


# Echoed when sent: OpenAI's schema has them as strings, absent when not given.
_IDENTIFIERS = ("user", "safety_identifier", "prompt_cache_key")


def _tool_out(tool: FunctionTool) -> dict[str, Any]:
    """A function tool as the response echoes it: `parameters` and `strict` always present."""
    return {"parameters": None, "strict": None} | tool.model_dump(mode="json", exclude_none=True)


def completed(header: Header, result: ChatResult, completed_at: int) -> dict[str, Any]:
    return response_object(
        header,
        status="completed",
        output=output_items(result.message),
        usage=result.usage,
        finish_reason=result.finish_reason,
        completed_at=completed_at,
    )


def answer_message(output: list[dict[str, Any]]) -> dict[str, Any]:
    """Output items as the chat assistant message a later turn continues from."""
    text = "".join(
        part.get("text", "")
        for item in output
        if item["type"] == "message"
        for part in item["content"]
        if part.get("type") == "output_text"
    )
    calls = [
        {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        for item in output
        if item["type"] == "function_call"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    elif not text:
        message["content"] = ""
    return message


def input_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages as the items `GET /v1/responses/{id}/input_items` lists: the items they are on
    the Responses wire (byom.providers.openai_responses.input_of, one translation for both), with
    the ids and status a listed item has and its content always as parts, as OpenAI lists it."""
    return [_listed(item) for item in input_of(messages)]


_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def _listed(item: dict[str, Any]) -> dict[str, Any]:
    listed = item | {"id": new_id(_ID_PREFIXES[item["type"]]), "status": "completed"}
    if item["type"] == "message":
        listed["content"] = _listed_parts(item["role"], item["content"])
    return listed


def _listed_parts(role: str, content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [_text_part(content) if role == "assistant" else {"type": "input_text", "text": content}]
    # An answer's text parts carry what OpenAI's output_text does (annotations, logprobs).
    return [_text_part(part["text"]) if part["type"] == "output_text" else part for part in content]


# Streams: chat stream events -> Responses events


def sse_event(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


def error_event(error: ByomError, sequence_number: int) -> dict[str, Any]:
    return {
        "type": "error",
        "code": error.code or error.type,
        "message": error.message,
        "param": error.param,
        "sequence_number": sequence_number,
    }


@dataclass
class _Open:
    output_index: int
    item_id: str
    text: str = ""
    call_id: str = ""
    name: str = ""


FINAL_EVENTS = ("event: response.completed\n", "event: response.incomplete\n")


@dataclass
class ResponseEvents:
    """Turns a chat stream into the Responses event sequence: `response.created`, then per output
    item `output_item.added`, its deltas, its `.done` events, and `response.completed` (or
    `response.incomplete`) with the whole response and its usage."""

    header: Header
    now: Callable[[], int]
    on_completed: Callable[[dict[str, Any]], None] = lambda response: None
    """Called with the final response before its event is sent (to store it)."""
    sequence: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)
    _text: _Open | None = None
    _calls: dict[int, _Open] = field(default_factory=dict)

    def _event(self, type_: str, **fields: Any) -> str:
        event = {"type": type_, "sequence_number": self.sequence} | fields
        self.sequence += 1
        return sse_event(event)

    def error(self, error: ByomError) -> str:
        event = sse_event(error_event(error, self.sequence))
        self.sequence += 1
        return event

    def items(self, stream: Iterable[StreamEvent]) -> Iterator[str]:
        in_progress = response_object(self.header, status="in_progress", output=[], usage=None)
        yield self._event("response.created", response=in_progress)
        yield self._event("response.in_progress", response=in_progress)
        usage, finish = Usage(), None
        for event in stream:
            if isinstance(event, Usage):
                usage = event
                continue
            yield from self._delta(event)
            finish = event.finish_reason or finish
        yield from self._close_text()
        for index in sorted(self._calls):
            yield from self._close_call(self._calls[index])
        self._calls.clear()
        final = response_object(
            self.header,
            status="completed",
            output=self.output,
            usage=usage,
            finish_reason=finish,
            completed_at=self.now(),
        )
        self.on_completed(final)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        yield self._event(kind, response=final)

    @staticmethod
    def is_last(item: str) -> bool:
        return item.startswith(FINAL_EVENTS)

    def _delta(self, event: StreamDelta) -> Iterator[str]:
        text = event.delta.get("content")
        if text:
            if self._text is None:
                self._text = _Open(len(self.output), new_id("msg"))
                self.output.append(_message_item(self._text.item_id, "", "in_progress"))
                yield self._event(
                    "response.output_item.added", output_index=self._text.output_index, item=self.output[-1]
                )
                yield self._event(
                    "response.content_part.added",
                    item_id=self._text.item_id,
                    output_index=self._text.output_index,
                    content_index=0,
                    part=_text_part(""),
                )
            self._text.text += text
            yield self._event(
                "response.output_text.delta",
                item_id=self._text.item_id,
                output_index=self._text.output_index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        for call in event.delta.get("tool_calls") or []:
            yield from self._call_delta(call)

    def _call_delta(self, call: dict[str, Any]) -> Iterator[str]:
        index = int(call.get("index") or 0)
        function = call.get("function") or {}
        opened = self._calls.get(index)
        if opened is None:
            yield from self._close_text()
            opened = _Open(
                len(self.output),
                new_id("fc"),
                call_id=str(call.get("id") or new_id("call")),
                name=function.get("name") or "",
            )
            self._calls[index] = opened
            self.output.append(_function_item(opened.item_id, opened.call_id, opened.name, "", "in_progress"))
            yield self._event(
                "response.output_item.added", output_index=opened.output_index, item=self.output[-1]
            )
        arguments = function.get("arguments")
        if arguments:
            opened.text += arguments
            yield self._event(
                "response.function_call_arguments.delta",
                item_id=opened.item_id,
                output_index=opened.output_index,
                delta=arguments,
            )

    def _close_text(self) -> Iterator[str]:
        opened, self._text = self._text, None
        if opened is None:
            return
        where = {"item_id": opened.item_id, "output_index": opened.output_index, "content_index": 0}
        yield self._event("response.output_text.done", **where, text=opened.text, logprobs=[])
        yield self._event("response.content_part.done", **where, part=_text_part(opened.text))
        item = _message_item(opened.item_id, opened.text, "completed")
        self.output[opened.output_index] = item
        yield self._event("response.output_item.done", output_index=opened.output_index, item=item)

    def _close_call(self, opened: _Open) -> Iterator[str]:
        yield self._event(
            "response.function_call_arguments.done",
            item_id=opened.item_id,
            output_index=opened.output_index,
            name=opened.name,
            arguments=opened.text,
        )
        item = _function_item(opened.item_id, opened.call_id, opened.name, opened.text, "completed")
        self.output[opened.output_index] = item
        yield self._event("response.output_item.done", output_index=opened.output_index, item=item)
