"""The tenant's redaction policy applied to what a provider would see (SPEC §8).

One function, `screen`, decides for a list of texts: unchanged (`off`), masked with typed numbered
placeholders (`mask`), or refused (`block`). Every capability that sends text out of the account
calls it: chat messages, embeddings input, fine-tuning datasets (and later Responses, batches and
automations). Chat requests are walked here so that every text part, tool call and tool result is
covered in one place; answers are restored here, streams included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from byom.errors import ContentPolicyViolation
from byom.governance.guardrail import GuardrailScreen
from byom.governance.policy import Redaction, RedactionMode
from byom.openai_types import ChatRequest, ContentPart, Message
from byom.providers import StreamDelta, StreamEvent

if TYPE_CHECKING:
    from byom.governance.redaction import Detector, Redactor


@dataclass
class Screening:
    """What screening did to one request: the redactor that masked it (to restore the answer)."""

    redactor: Redactor | None = None
    restore: bool = False

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.redactor.counts) if self.redactor is not None else {}

    @property
    def restores(self) -> bool:
        return self.restore and self.redactor is not None and bool(self.redactor.counts)


OFF = Screening()


def _detector(redaction: Redaction, values: dict[str, str]) -> Detector:
    # Imported on first use: compiling the detector is paid by tenants with a policy, not at INIT.
    from byom.governance.redaction import BuiltinDetector, CombinedDetector, ValueDetector

    builtin = BuiltinDetector(redaction.types, [(c.name, c.pattern) for c in redaction.custom])
    if not values:
        return builtin
    return CombinedDetector([ValueDetector(values), builtin])


def _refuse(types: Iterable[str], counts: dict[str, int] | None = None) -> ContentPolicyViolation:
    names = sorted(set(types))
    return ContentPolicyViolation(
        f"The request contains data the tenant's policy does not let leave the account: {', '.join(names)}",
        found=counts if counts is not None else dict.fromkeys(names, 1),
    )


def screen(
    texts: Sequence[str],
    redaction: Redaction,
    mode: RedactionMode,
    guardrails: GuardrailScreen | None = None,
) -> tuple[list[str], Screening]:
    """The texts as the provider may see them, and what was done. `block` raises
    ContentPolicyViolation naming the types found; so does a guardrail that blocks."""
    if mode == "off":
        return list(texts), OFF
    values: dict[str, str] = {}
    if redaction.guardrail is not None and guardrails is not None:
        verdict = guardrails.screen(redaction.guardrail.id, redaction.guardrail.version, list(texts))
        if verdict.blocked_types:
            raise _refuse(verdict.blocked_types)
        values = dict(verdict.values)
    from byom.governance.redaction import Redactor

    redactor = Redactor(_detector(redaction, values))
    screening = Screening(redactor=redactor, restore=redaction.restore and mode == "mask")
    if mode == "block":
        for text in texts:
            redactor.scan(text)
        if redactor.found_types:
            raise _refuse(redactor.found_types, redactor.counts)
        return list(texts), screening
    return [redactor.mask(text) for text in texts], screening


# Chat requests: every text the provider sees


def _map_content(content: Any, f: Callable[[str], str]) -> Any:
    if isinstance(content, str):
        return f(content)
    if isinstance(content, list):
        return [
            part.model_copy(update={"text": f(part.text)})
            if isinstance(part, ContentPart) and part.text is not None
            else part
            for part in content
        ]
    return content


def _map_message(message: Message, f: Callable[[str], str]) -> Message:
    update: dict[str, Any] = {"content": _map_content(message.content, f)}
    if message.tool_calls:
        update["tool_calls"] = [
            call.model_copy(
                update={
                    "function": call.function.model_copy(update={"arguments": f(call.function.arguments)})
                }
            )
            for call in message.tool_calls
        ]
    return message.model_copy(update=update)


def chat_texts(request: ChatRequest) -> list[str]:
    texts: list[str] = []

    def collect(text: str) -> str:
        texts.append(text)
        return text

    for message in request.messages:
        _map_message(message, collect)
    return texts


def screen_chat(
    request: ChatRequest, redaction: Redaction, mode: RedactionMode, guardrails: GuardrailScreen | None = None
) -> tuple[ChatRequest, Screening]:
    if mode == "off":
        return request, OFF
    texts = chat_texts(request)
    screened, screening = screen(texts, redaction, mode, guardrails)
    update: dict[str, Any] = {name: None for name in _SUBJECT_FIELDS}
    if screened != texts:
        replacements = iter(screened)
        update["messages"] = [_map_message(m, lambda _text: next(replacements)) for m in request.messages]
    copied = request.model_copy(update=update)
    # The data subject's id is the gateway's (audit, erasure): under a policy it stays in the
    # account. Unset, not null: providers are sent the fields the caller set.
    copied.__pydantic_fields_set__.difference_update(_SUBJECT_FIELDS)
    return copied, screening


_SUBJECT_FIELDS = ("user", "safety_identifier")


# Answers


def restore_message(message: dict[str, Any], screening: Screening) -> dict[str, Any]:
    """The assistant's message with the request's placeholders put back (content and tool calls)."""
    if not screening.restores or screening.redactor is None:
        return message
    redactor = screening.redactor
    restored = dict(message)
    if isinstance(restored.get("content"), str):
        restored["content"] = redactor.restore(restored["content"])
    if restored.get("tool_calls"):
        restored["tool_calls"] = [
            call
            | {"function": call["function"] | {"arguments": redactor.restore(call["function"]["arguments"])}}
            if isinstance(call.get("function"), dict) and isinstance(call["function"].get("arguments"), str)
            else call
            for call in restored["tool_calls"]
        ]
    return restored


def restore_stream(events: Iterable[StreamEvent], screening: Screening) -> Iterator[StreamEvent]:
    """Streamed deltas with placeholders put back, even one split across chunks: text that may be
    the start of a placeholder is held until the next chunk decides it, and flushed before the
    delta that finishes the answer."""
    if not screening.restores or screening.redactor is None:
        yield from events
        return
    text = screening.redactor.stream_restorer()
    arguments: dict[int, Any] = {}

    def flushed() -> Iterator[StreamEvent]:
        tail = text.flush()
        if tail:
            yield StreamDelta({"content": tail})
        for index, restorer in sorted(arguments.items()):
            rest = restorer.flush()
            if rest:
                yield StreamDelta({"tool_calls": [{"index": index, "function": {"arguments": rest}}]})
        arguments.clear()

    for event in events:
        if not isinstance(event, StreamDelta):
            yield from flushed()
            yield event
            continue
        delta = dict(event.delta)
        if isinstance(delta.get("content"), str):
            delta["content"] = text.feed(delta["content"])
        if delta.get("tool_calls"):
            delta["tool_calls"] = [
                _restore_call(call, arguments, screening.redactor) for call in delta["tool_calls"]
            ]
        if event.finish_reason is not None:
            yield from flushed()
        yield StreamDelta(delta, finish_reason=event.finish_reason)
    yield from flushed()


def _restore_call(call: dict[str, Any], arguments: dict[int, Any], redactor: Redactor) -> dict[str, Any]:
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return call
    index = int(call.get("index", 0))
    restorer = arguments.setdefault(index, redactor.stream_restorer())
    return call | {"function": function | {"arguments": restorer.feed(function["arguments"])}}
