"""Stand-in: OpenAI's Responses API (`POST /v1/responses`) of the OpenAI-compatible stand-in model.

The request's input items are read as the chat turns they amount to and answered by the same
stand-in model as chat completions (local_stack.models.logic), in the Responses shapes: a Response
object, or its event sequence when streamed. Stateless: `previous_response_id` is refused, as the
gateway never sends it (it keeps conversations itself).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from local_stack.models import logic
from local_stack.models.logic import StandInError


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text") or p.get("refusal") or f"[{p.get('type')}]")
            for p in content
            if isinstance(p, dict)
        )
    raise StandInError(400, "content must be a string or an array of parts", param="input")


def chat_of(request: dict[str, Any]) -> dict[str, Any]:
    """The chat request a Responses request means, for the stand-in model."""
    if not isinstance(request, dict) or not isinstance(request.get("model"), str):
        raise StandInError(400, "you must provide a model parameter", param="model")
    if request.get("previous_response_id"):
        raise StandInError(400, "the stand-in keeps no responses", param="previous_response_id")
    items = request.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise StandInError(400, "'input' must be a string or a non-empty array", param="input")
    messages: list[dict[str, Any]] = []
    if request.get("instructions"):
        messages.append({"role": "system", "content": str(request["instructions"])})
    for item in items:
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message":
            messages.append({"role": item.get("role"), "content": _text(item.get("content"))})
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function"}
            call["function"] = {"name": item.get("name"), "arguments": item.get("arguments", "")}
            last = messages[-1] if messages else {}
            if last.get("role") == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": _text(item.get("output"))}
            )
        else:
            raise StandInError(400, f"the stand-in does not take input items of type {kind!r}", param="input")
    tools = [
        {"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
        for t in request.get("tools") or []
        if isinstance(t, dict) and t.get("type") == "function"
    ]
    chat: dict[str, Any] = {"model": request["model"], "messages": messages}
    if tools:
        chat["tools"] = tools
    choice = request.get("tool_choice")
    if isinstance(choice, dict):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        chat["tool_choice"] = choice
    text_format = (request.get("text") or {}).get("format") or {}
    if text_format.get("type") in ("json_object", "json_schema"):
        chat["response_format"] = {"type": text_format["type"]}
    if request.get("max_output_tokens") is not None:
        chat["max_tokens"] = request["max_output_tokens"]
    return chat


def _usage(completion: dict[str, Any]) -> dict[str, Any]:
    usage = completion["usage"]
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage["total_tokens"],
    }


def _output(completion: dict[str, Any]) -> list[dict[str, Any]]:
    message = completion["choices"][0]["message"]
    output: list[dict[str, Any]] = []
    if message.get("content"):
        part = {"type": "output_text", "text": message["content"], "annotations": [], "logprobs": []}
        output.append(
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex}",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for call in message.get("tool_calls") or []:
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{uuid.uuid4().hex}",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
                "status": "completed",
            }
        )
    return output


def response(request: dict[str, Any]) -> dict[str, Any]:
    created = int(time.time())
    completion = logic.openai_chat_completion(chat_of(request), completion_id="stand-in", created=created)
    finish = completion["choices"][0]["finish_reason"]
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": created,
        "status": "incomplete" if finish == "length" else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if finish == "length" else None,
        "error": None,
        "model": request["model"],
        "output": _output(completion),
        "usage": _usage(completion),
    }


def events(request: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    """The event sequence of a streamed response, each with whether it carries a token."""
    final = response(request)
    shell = final | {"status": "in_progress", "output": [], "usage": None}
    out: list[tuple[dict[str, Any], bool]] = [
        ({"type": "response.created", "response": shell}, False),
        ({"type": "response.in_progress", "response": shell}, False),
    ]
    for index, item in enumerate(final["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            out.append(
                (
                    {
                        "type": "response.output_item.added",
                        "output_index": index,
                        "item": item | {"content": [], "status": "in_progress"},
                    },
                    False,
                )
            )
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            for piece in logic.text_pieces(text):
                out.append(
                    ({"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}, True)
                )
            out.append(({"type": "response.output_text.done", **where, "text": text, "logprobs": []}, False))
        else:
            out.append(
                (
                    {
                        "type": "response.output_item.added",
                        "output_index": index,
                        "item": item | {"arguments": "", "status": "in_progress"},
                    },
                    False,
                )
            )
            for piece in logic.text_pieces(item["arguments"]):
                out.append(
                    (
                        {
                            "type": "response.function_call_arguments.delta",
                            "item_id": item["id"],
                            "output_index": index,
                            "delta": piece,
                        },
                        True,
                    )
                )
        out.append(({"type": "response.output_item.done", "output_index": index, "item": item}, False))
    kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    out.append(({"type": kind, "response": final}, False))
    return [(event | {"sequence_number": n}, token) for n, (event, token) in enumerate(out)]


def sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
