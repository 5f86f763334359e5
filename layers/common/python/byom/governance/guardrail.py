"""The managed redaction option (SPEC §8): an Amazon Bedrock guardrail screens the texts before the
provider call. What the redaction logic needs from it, and what it answers.

The gateway never relies on Bedrock to mask: a guardrail attached to a model call does not always
mask input PII, and the masked text ApplyGuardrail returns uses untyped `{EMAIL}` tags that cannot be
restored. So the verdict carries the matched values with our type names; the gateway masks them
with its own numbered placeholders (byom.governance.redaction.ValueDetector) and blocks on
`blocked_types`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from byom.errors import GatewayMisconfigured, ProviderError


@dataclass(frozen=True)
class GuardrailVerdict:
    """What one ApplyGuardrail call over a request's texts decided.

    `blocked_types` names every policy whose action was BLOCKED: our type of a PII entity
    (`payment_card`), `regex:<name>`, `topic:<name>`, `content:<FILTER>`, `word`, `word:profanity`,
    `grounding:<filter>`. Never a matched value.
    `values` maps every matched PII or regex value (anonymized, blocked or only detected) to our type.
    """

    blocked_types: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    intervened: bool = False

    @property
    def blocked(self) -> bool:
        return bool(self.blocked_types)


class GuardrailScreen(Protocol):
    def screen(self, guardrail_id: str, version: str, texts: list[str]) -> GuardrailVerdict:
        """Applies the guardrail to the texts as INPUT, in one call."""
        ...

    def exists(self, guardrail_id: str, version: str) -> bool:
        """Whether the guardrail has that version (a policy naming another is refused at PUT)."""
        ...


class GuardrailNotFound(GatewayMisconfigured):
    """A stored policy names a guardrail (or version) that Bedrock does not have, or may not be used."""

    code = "guardrail_not_found"

    def __init__(self, guardrail_id: str, version: str, *, reason: str = "does not exist") -> None:
        super().__init__(
            f"The tenant's redaction policy names Bedrock guardrail {guardrail_id} version {version}, "
            f"which {reason}; update the policy's guardrail"
        )
        self.guardrail_id = guardrail_id
        self.version = version


class GuardrailUnavailable(ProviderError):
    """ApplyGuardrail failed; `retryable` when it was throttled or Bedrock failed on its side.

    The message names the guardrail and Bedrock's error code only: Bedrock's own message may quote
    the input."""

    def __init__(self, guardrail_id: str, code: str, *, status: int, retryable: bool) -> None:
        super().__init__(
            f"Bedrock guardrail {guardrail_id} could not be applied ({code})",
            status=status,
            retryable=retryable,
            provider_status=code,
        )
        self.guardrail_id = guardrail_id
