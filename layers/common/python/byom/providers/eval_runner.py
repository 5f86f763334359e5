"""A fine-tuned model asked the pipeline's evaluation examples through a provider's chat, as the
data plane asks it: one translation and one client per provider (Bedrock's Converse included).

The provider's failures become the pipeline's typed errors: retryable ones (throttling, 5xx,
timeouts) `ProviderThrottled`, which the state machine retries; the rest `ProviderRejected`,
quoting the provider's message (which the providers keep free of keys).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from byom.errors import GatewayMisconfigured, InvalidRequest, OutboundRefused, ProviderError
from byom.fine_tuning import ProviderRejected, ProviderThrottled
from byom.logic.datasets import Example
from byom.openai_types import ChatRequest
from byom.providers import Provider, Target

T = TypeVar("T")

# Enough for the answers evaluation compares; the examples' own answers are short.
MAX_ANSWER_TOKENS = 512


def as_pipeline_error(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except ProviderError as error:
        if error.retryable:
            raise ProviderThrottled(f"{what}: {error.message}") from None
        raise ProviderRejected(f"{what}: {error.message}") from None
    except (GatewayMisconfigured, OutboundRefused, InvalidRequest) as error:
        raise ProviderRejected(f"{what}: {error.message}") from None


def example_request(example: Example, model: str, max_tokens: int = MAX_ANSWER_TOKENS) -> ChatRequest:
    """The example's prompt (its system text and every turn but the answer) as a chat request,
    answered deterministically."""
    messages: list[dict[str, str]] = [{"role": "system", "content": example.system}] if example.system else []
    messages += [{"role": role, "content": text} for role, text in example.prompt_turns]
    return ChatRequest.model_validate(
        {"model": model, "messages": messages, "temperature": 0, "max_completion_tokens": max_tokens}
    )


def runner(
    provider: Provider,
    target: Target,
    *,
    what: str = "Asking the fine-tuned model",
    max_tokens: int = MAX_ANSWER_TOKENS,
) -> Callable[[Example], str]:
    """Answers an example with the model `target` names (byom.logic.evaluation.score calls it)."""

    def answer(example: Example) -> str:
        request = example_request(example, target.alias, max_tokens)
        result = as_pipeline_error(what, lambda: provider.chat(request, target))
        return str(result.message.get("content") or "")

    return answer
