"""Amazon Bedrock Guardrails: ApplyGuardrail on bedrock-runtime to screen a request's texts, and
GetGuardrail on the bedrock control plane to check that a policy's guardrail exists.

The verdict is read from the assessments, never from `outputs`: the masked text Bedrock returns
holds untyped `{EMAIL}` tags, and the gateway masks with its own restorable placeholders instead.
Nothing here logs or raises with an input text or a matched value.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from byom.dal.aws import client, error_code
from byom.governance.guardrail import GuardrailNotFound, GuardrailUnavailable, GuardrailVerdict

# Bedrock PII entity type -> the built-in type of byom.governance.policy.BUILTIN_TYPES. Other
# entity types keep their own name, lower-cased (`name`, `address`, `us_passport_number`).
PII_TYPES: dict[str, str] = {
    "EMAIL": "email",
    "PHONE": "phone",
    "CREDIT_DEBIT_CARD_NUMBER": "payment_card",
    "US_SOCIAL_SECURITY_NUMBER": "us_ssn",
    "INTERNATIONAL_BANK_ACCOUNT_NUMBER": "iban",
    "AWS_ACCESS_KEY": "aws_access_key_id",
    "AWS_SECRET_KEY": "aws_secret_access_key",
}

# Bedrock error code -> (gateway status, worth retrying) when applying a guardrail.
_APPLY_ERRORS: dict[str, tuple[int, bool]] = {
    "ThrottlingException": (429, True),
    "ServiceQuotaExceededException": (429, True),
    "InternalServerException": (502, True),
    "ServiceUnavailableException": (503, True),
}

_BLOCKED = "BLOCKED"
_INTERVENED = "GUARDRAIL_INTERVENED"


def pii_type(entity_type: str, match: str) -> str:
    """Our type name for a Bedrock PII entity; an IP address is ipv4 or ipv6 by its form."""
    if entity_type == "IP_ADDRESS":
        try:
            return f"ipv{ipaddress.ip_address(match.strip().strip('[]')).version}"
        except ValueError:
            return "ipv6" if ":" in match else "ipv4"
    return PII_TYPES.get(entity_type, entity_type.lower())


def regex_type(name: str) -> str:
    """`regex_<name>`, lower-cased and reduced to the characters of a placeholder name."""
    return "regex_" + (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unnamed")


def _found(entry: dict[str, Any]) -> bool:
    # With outputScope FULL, entries that did not breach the policy come back with detected false.
    return entry.get("detected") is not False


def verdict(response: dict[str, Any]) -> GuardrailVerdict:
    """The verdict of an ApplyGuardrail response, from its assessments."""
    blocked: dict[str, None] = {}
    values: dict[str, str] = {}
    for assessment in response.get("assessments") or []:
        sensitive = assessment.get("sensitiveInformationPolicy") or {}
        for entity in sensitive.get("piiEntities") or []:
            match = str(entity.get("match") or "")
            if not match or not _found(entity):
                continue
            kind = pii_type(str(entity.get("type", "")), match)
            values.setdefault(match, kind)
            if entity.get("action") == _BLOCKED:
                blocked[kind] = None
        for regex in sensitive.get("regexes") or []:
            match = str(regex.get("match") or "")
            if not match or not _found(regex):
                continue
            name = str(regex.get("name") or "")
            values.setdefault(match, regex_type(name))
            if regex.get("action") == _BLOCKED:
                blocked[f"regex:{name}"] = None
        for topic in (assessment.get("topicPolicy") or {}).get("topics") or []:
            if topic.get("action") == _BLOCKED and _found(topic):
                blocked[f"topic:{topic.get('name', '')}"] = None
        for content in (assessment.get("contentPolicy") or {}).get("filters") or []:
            if content.get("action") == _BLOCKED and _found(content):
                blocked[f"content:{content.get('type', '')}"] = None
        words = assessment.get("wordPolicy") or {}
        # The matched word is input text: the type names the policy only.
        if any(w.get("action") == _BLOCKED and _found(w) for w in words.get("customWords") or []):
            blocked["word"] = None
        for managed in words.get("managedWordLists") or []:
            if managed.get("action") == _BLOCKED and _found(managed):
                blocked[f"word:{str(managed.get('type', '')).lower()}"] = None
        for grounding in (assessment.get("contextualGroundingPolicy") or {}).get("filters") or []:
            if grounding.get("action") == _BLOCKED and _found(grounding):
                blocked[f"grounding:{str(grounding.get('type', '')).lower()}"] = None
    return GuardrailVerdict(
        blocked_types=list(blocked), values=values, intervened=response.get("action") == _INTERVENED
    )


class BedrockGuardrails:
    """Implements byom.governance.guardrail.GuardrailScreen. Either client is made on first use, so
    the gateway never creates a control-plane client and the admin API never a runtime one."""

    def __init__(self, runtime: Any | None = None, control: Any | None = None) -> None:
        self._runtime = runtime
        self._control = control

    def screen(self, guardrail_id: str, version: str, texts: list[str]) -> GuardrailVerdict:
        content = [{"text": {"text": text}} for text in texts if text]
        if not content:
            return GuardrailVerdict()
        if self._runtime is None:
            self._runtime = client("bedrock-runtime")
        try:
            response = self._runtime.apply_guardrail(
                guardrailIdentifier=guardrail_id,
                guardrailVersion=version,
                source="INPUT",
                content=content,
            )
        except ClientError as error:
            raise _apply_error(error, guardrail_id, version) from None
        except BotoCoreError as error:
            raise GuardrailUnavailable(
                guardrail_id, type(error).__name__, status=504, retryable=True
            ) from None
        return verdict(response)

    def exists(self, guardrail_id: str, version: str) -> bool:
        if self._control is None:
            self._control = client("bedrock")
        try:
            self._control.get_guardrail(guardrailIdentifier=guardrail_id, guardrailVersion=version)
        except ClientError as error:
            code = error_code(error)
            if code in ("ResourceNotFoundException", "ValidationException"):
                return False
            if code == "AccessDeniedException":
                raise GuardrailNotFound(guardrail_id, version, reason="the gateway may not read") from None
            status, retryable = _APPLY_ERRORS.get(code, (502, False))
            raise GuardrailUnavailable(
                guardrail_id, code or "UnknownError", status=status, retryable=retryable
            ) from None
        except BotoCoreError as error:
            raise GuardrailUnavailable(
                guardrail_id, type(error).__name__, status=504, retryable=True
            ) from None
        return True


def _apply_error(error: ClientError, guardrail_id: str, version: str) -> Exception:
    # Bedrock's message is dropped on purpose: a validation message may quote the content.
    code = error_code(error) or "UnknownError"
    if code == "ResourceNotFoundException":
        return GuardrailNotFound(guardrail_id, version)
    if code == "AccessDeniedException":
        return GuardrailNotFound(
            guardrail_id, version, reason="the gateway may not apply (outside byom:guardrailArns?)"
        )
    http_status = (error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
    status, retryable = _APPLY_ERRORS.get(code) or ((502, True) if http_status >= 500 else (502, False))
    return GuardrailUnavailable(guardrail_id, code, status=status, retryable=retryable)
