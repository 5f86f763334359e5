"""A stand-in for Amazon Bedrock Guardrails: ApplyGuardrail (bedrock-runtime) and GetGuardrail (the
bedrock control plane), on the Bedrock stand-in's port, at botocore's REST paths.

A stand-in, not Bedrock: real guardrails detect PII with a context-aware model, denied topics from
their definitions and harmful content with classifiers; this one finds PII with a few regexes of its
own and a denied topic by keywords. It answers in ApplyGuardrail's response shape (`action`,
`outputs` with `{EMAIL}`-style masked text, `assessments`, `usage`) and 404 ResourceNotFoundException
for an unknown guardrail or version, so the gateway's real data-access code runs against it.

Shipped guardrails (ids as a policy names them; versions `1` and `DRAFT`):
- `localpii`: EMAIL and PHONE anonymized; CREDIT_DEBIT_CARD_NUMBER and US_SOCIAL_SECURITY_NUMBER
  blocked; the regex `employee_id` (`EMP-` and six digits) anonymized; the denied topic
  `Investment advice` (keywords: invest, stock tip, portfolio).
- `localdetect`: every entity above only detected (action NONE), nothing blocked or masked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from local_stack.models.logic import StandInError

ACCOUNT = "123456789012"
REGION = "us-east-1"
CREATED_AT = "2025-01-01T00:00:00Z"
BLOCKED_MESSAGE = "Sorry, the model cannot answer this question."
TEXT_UNIT = 1000  # characters per guardrail text unit (usage)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _card(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and _luhn(digits)


# Bedrock entity type -> (pattern, extra check). Deliberately simple: see the module docstring.
_DETECTORS: dict[str, tuple[re.Pattern[str], Callable[[str], bool] | None]] = {
    "EMAIL": (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), None),
    "US_SOCIAL_SECURITY_NUMBER": (re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), None),
    "CREDIT_DEBIT_CARD_NUMBER": (re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)"), _card),
    "PHONE": (re.compile(r"(?<![\w+])(?:\+?1[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}(?!\d)"), None),
}

_ACTION_TAKEN = {"ANONYMIZE": "ANONYMIZED", "BLOCK": "BLOCKED", "NONE": "NONE"}


@dataclass(frozen=True)
class Regex:
    name: str
    pattern: str
    action: str


@dataclass(frozen=True)
class Topic:
    name: str
    definition: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class LocalGuardrail:
    guardrail_id: str
    name: str
    versions: tuple[str, ...]
    pii: dict[str, str]  # entity type -> configured action (BLOCK, ANONYMIZE, NONE)
    regexes: tuple[Regex, ...] = ()
    topics: tuple[Topic, ...] = ()

    @property
    def arn(self) -> str:
        return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:guardrail/{self.guardrail_id}"


INVESTMENT_ADVICE = Topic(
    "Investment advice",
    "Recommendations about investing money, stocks, funds or other financial products.",
    ("invest", "stock tip", "portfolio"),
)

GUARDRAILS: tuple[LocalGuardrail, ...] = (
    LocalGuardrail(
        "localpii",
        "local-pii",
        ("DRAFT", "1"),
        {
            "EMAIL": "ANONYMIZE",
            "PHONE": "ANONYMIZE",
            "CREDIT_DEBIT_CARD_NUMBER": "BLOCK",
            "US_SOCIAL_SECURITY_NUMBER": "BLOCK",
        },
        regexes=(Regex("employee_id", r"EMP-\d{6}", "ANONYMIZE"),),
        topics=(INVESTMENT_ADVICE,),
    ),
    LocalGuardrail(
        "localdetect",
        "local-detect",
        ("DRAFT", "1"),
        dict.fromkeys(("EMAIL", "PHONE", "CREDIT_DEBIT_CARD_NUMBER", "US_SOCIAL_SECURITY_NUMBER"), "NONE"),
        regexes=(Regex("employee_id", r"EMP-\d{6}", "NONE"),),
    ),
)


@dataclass
class _Finding:
    start: int
    end: int
    tag: str  # the masked text's tag: the entity type or the regex name
    action: str  # as configured: BLOCK, ANONYMIZE, NONE


def _pii_findings(guardrail: LocalGuardrail, text: str) -> list[tuple[str, _Finding]]:
    """(entity type, finding) of every configured entity, no two overlapping (first detector wins)."""
    found: list[tuple[str, _Finding]] = []
    taken: list[tuple[int, int]] = []
    for entity, (pattern, check) in _DETECTORS.items():
        if entity not in guardrail.pii:
            continue
        for match in pattern.finditer(text):
            span = match.span()
            if (check and not check(match.group())) or any(s < span[1] and span[0] < e for s, e in taken):
                continue
            taken.append(span)
            found.append((entity, _Finding(*span, entity, guardrail.pii[entity])))
    return found


@dataclass
class _Assessment:
    pii: list[dict[str, Any]] = field(default_factory=list)
    regexes: list[dict[str, Any]] = field(default_factory=list)
    topics: list[dict[str, Any]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        # Bedrock leaves out the policies that found nothing.
        assessment: dict[str, Any] = {}
        if self.pii or self.regexes:
            assessment["sensitiveInformationPolicy"] = {"piiEntities": self.pii, "regexes": self.regexes}
        if self.topics:
            assessment["topicPolicy"] = {"topics": self.topics}
        return assessment


def _masked(text: str, findings: list[_Finding]) -> str:
    out: list[str] = []
    at = 0
    for finding in sorted(findings, key=lambda f: f.start):
        out.extend((text[at : finding.start], "{" + finding.tag + "}"))
        at = finding.end
    out.append(text[at:])
    return "".join(out)


def apply(guardrail: LocalGuardrail, body: dict[str, Any]) -> dict[str, Any]:
    """ApplyGuardrail's answer for the request body."""
    if body.get("source") not in ("INPUT", "OUTPUT"):
        raise StandInError(400, "source must be INPUT or OUTPUT")
    texts = []
    for block in body.get("content") or []:
        text = (block.get("text") or {}).get("text") if isinstance(block, dict) else None
        if not isinstance(text, str):
            raise StandInError(400, "the stand-in guardrail screens text content blocks only")
        texts.append(text)
    if not texts:
        raise StandInError(400, "content must hold at least one block")

    assessment = _Assessment()
    masked: list[str] = []
    blocked = anonymized = False
    for text in texts:
        findings: list[_Finding] = []
        for entity, finding in _pii_findings(guardrail, text):
            findings.append(finding)
            assessment.pii.append(
                {
                    "match": text[finding.start : finding.end],
                    "type": entity,
                    "action": _ACTION_TAKEN[finding.action],
                }
            )
        for regex in guardrail.regexes:
            for match in re.finditer(regex.pattern, text):
                findings.append(_Finding(*match.span(), regex.name, regex.action))
                assessment.regexes.append(
                    {
                        "name": regex.name,
                        "match": match.group(),
                        "regex": regex.pattern,
                        "action": _ACTION_TAKEN[regex.action],
                    }
                )
        lowered = text.lower()
        for topic in guardrail.topics:
            if any(k in lowered for k in topic.keywords) and not any(
                t["name"] == topic.name for t in assessment.topics
            ):
                assessment.topics.append({"name": topic.name, "type": "DENY", "action": "BLOCKED"})
                blocked = True
        blocked = blocked or any(f.action == "BLOCK" for f in findings)
        anonymized = anonymized or any(f.action == "ANONYMIZE" for f in findings)
        masked.append(_masked(text, [f for f in findings if f.action == "ANONYMIZE"]))

    if blocked:
        action, outputs = "GUARDRAIL_INTERVENED", [{"text": BLOCKED_MESSAGE}]
    elif anonymized:
        action, outputs = "GUARDRAIL_INTERVENED", [{"text": t} for t in masked]
    else:
        action, outputs = "NONE", []
    units = sum(max(1, math.ceil(len(t) / TEXT_UNIT)) for t in texts)
    return {
        "usage": {
            "topicPolicyUnits": units if guardrail.topics else 0,
            "contentPolicyUnits": 0,
            "wordPolicyUnits": 0,
            "sensitiveInformationPolicyUnits": units if guardrail.pii else 0,
            "sensitiveInformationPolicyFreeUnits": units if guardrail.regexes else 0,
            "contextualGroundingPolicyUnits": 0,
        },
        "action": action,
        "outputs": outputs,
        "assessments": [assessment.document()] if assessment.document() else [],
    }


def describe(guardrail: LocalGuardrail, version: str) -> dict[str, Any]:
    """GetGuardrail's answer."""
    return {
        "name": guardrail.name,
        "guardrailId": guardrail.guardrail_id,
        "guardrailArn": guardrail.arn,
        "version": version,
        "status": "READY",
        "description": "Local stand-in guardrail (regex detection, not Bedrock's)",
        "sensitiveInformationPolicy": {
            "piiEntities": [{"type": t, "action": a} for t, a in guardrail.pii.items()],
            "regexes": [
                {"name": r.name, "pattern": r.pattern, "action": r.action} for r in guardrail.regexes
            ],
        },
        **(
            {
                "topicPolicy": {
                    "topics": [
                        {"name": t.name, "definition": t.definition, "examples": [], "type": "DENY"}
                        for t in guardrail.topics
                    ]
                }
            }
            if guardrail.topics
            else {}
        ),
        "createdAt": CREATED_AT,
        "updatedAt": CREATED_AT,
        "blockedInputMessaging": BLOCKED_MESSAGE,
        "blockedOutputsMessaging": BLOCKED_MESSAGE,
    }


class GuardrailsState:
    """The stand-in's guardrails, by id."""

    def __init__(self, guardrails: tuple[LocalGuardrail, ...] = GUARDRAILS) -> None:
        self._guardrails = {g.guardrail_id: g for g in guardrails}

    def find(self, identifier: str, version: str) -> LocalGuardrail:
        # An identifier is the id or the guardrail's ARN.
        guardrail_id = identifier.rsplit("guardrail/", 1)[-1] if identifier.startswith("arn:") else identifier
        guardrail = self._guardrails.get(guardrail_id)
        if guardrail is None or version not in guardrail.versions:
            raise StandInError(404, f"The guardrail {identifier} version {version} was not found.")
        return guardrail


def handles(path: str) -> bool:
    return path.startswith(("/guardrail/", "/guardrails/"))


def route(
    state: GuardrailsState, method: str, path: str, query: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """POST /guardrail/{id}/version/{version}/apply (runtime) and GET /guardrails/{id} (control plane)."""
    parts = [unquote(p) for p in path.split("/") if p]
    if (
        method == "POST"
        and len(parts) == 5
        and parts[0] == "guardrail"
        and parts[2:5:2] == ["version", "apply"]
    ):
        return 200, apply(state.find(parts[1], parts[3]), body)
    if method == "GET" and len(parts) == 2 and parts[0] == "guardrails":
        version = (parse_qs(query).get("guardrailVersion") or ["DRAFT"])[0]
        return 200, describe(state.find(parts[1], version), version)
    raise StandInError(404, f"Unknown operation: {method} {path}")
