"""Bedrock Guardrails data access: the verdict of each ApplyGuardrail action, errors, GetGuardrail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from byom.dal.guardrails import BedrockGuardrails, pii_type, regex_type
from byom.errors import GatewayMisconfigured
from byom.governance.guardrail import GuardrailNotFound, GuardrailUnavailable
from byom.governance.policy import BUILTIN_TYPES

GUARDRAIL = "localpii"
VERSION = "1"
EMAIL = "jane.doe@example.com"
PHONE = "+1 206 555 0100"
CARD = "4111 1111 1111 1111"
SECRET_TEXT = f"Write to {EMAIL} or call {PHONE}, card {CARD}"

USAGE = {
    "topicPolicyUnits": 1,
    "contentPolicyUnits": 1,
    "wordPolicyUnits": 1,
    "sensitiveInformationPolicyUnits": 1,
    "sensitiveInformationPolicyFreeUnits": 0,
    "contextualGroundingPolicyUnits": 0,
}


def _client(service: str) -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def runtime() -> Iterator[tuple[BedrockGuardrails, Stubber]]:
    runtime = _client("bedrock-runtime")
    with Stubber(runtime) as stubber:
        yield BedrockGuardrails(runtime=runtime), stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def control() -> Iterator[tuple[BedrockGuardrails, Stubber]]:
    control = _client("bedrock")
    with Stubber(control) as stubber:
        yield BedrockGuardrails(control=control), stubber
        stubber.assert_no_pending_responses()


def _apply(
    stubber: Stubber,
    *,
    action: str = "GUARDRAIL_INTERVENED",
    assessment: dict[str, Any] | None = None,
    outputs: list[str] | None = None,
    texts: list[str] | None = None,
) -> None:
    stubber.add_response(
        "apply_guardrail",
        {
            "usage": USAGE,
            "action": action,
            "outputs": [{"text": t} for t in outputs or []],
            "assessments": [assessment] if assessment else [],
        },
        {
            "guardrailIdentifier": GUARDRAIL,
            "guardrailVersion": VERSION,
            "source": "INPUT",
            "content": [{"text": {"text": t}} for t in (texts or [SECRET_TEXT])],
        },
    )


def _pii(*entities: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "sensitiveInformationPolicy": {
            "piiEntities": [{"type": t, "match": m, "action": a} for t, m, a in entities],
            "regexes": [],
        }
    }


def _error(stubber: Stubber, method: str, code: str, status: int) -> None:
    stubber.add_client_error(
        method, service_error_code=code, service_message=f"echo: {SECRET_TEXT}", http_status_code=status
    )


def test_no_intervention_blocks_nothing_and_collects_nothing(
    runtime: tuple[BedrockGuardrails, Stubber],
) -> None:
    guardrails, stubber = runtime
    _apply(stubber, action="NONE")

    verdict = guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert verdict.blocked_types == [] and verdict.values == {} and verdict.intervened is False


def test_every_text_is_one_content_block_of_one_call(runtime: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, stubber = runtime
    # The stub fails the call unless the request holds exactly these blocks, empty ones left out.
    _apply(stubber, action="NONE", texts=["system prompt", "user turn", "tool result"])

    guardrails.screen(GUARDRAIL, VERSION, ["system prompt", "", "user turn", "tool result"])


def test_no_text_makes_no_call(runtime: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, _ = runtime  # no response queued: a call would fail

    assert guardrails.screen(GUARDRAIL, VERSION, ["", ""]).intervened is False


def test_anonymized_entities_are_collected_with_our_types_and_nothing_is_blocked(
    runtime: tuple[BedrockGuardrails, Stubber],
) -> None:
    guardrails, stubber = runtime
    _apply(stubber, assessment=_pii(("EMAIL", EMAIL, "ANONYMIZED"), ("PHONE", PHONE, "ANONYMIZED")))

    verdict = guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert verdict.values == {EMAIL: "email", PHONE: "phone"}
    assert verdict.blocked_types == [] and verdict.intervened is True


def test_blocked_pii_names_our_type_and_still_collects_every_value(
    runtime: tuple[BedrockGuardrails, Stubber],
) -> None:
    guardrails, stubber = runtime
    _apply(
        stubber,
        assessment=_pii(("EMAIL", EMAIL, "ANONYMIZED"), ("CREDIT_DEBIT_CARD_NUMBER", CARD, "BLOCKED")),
        outputs=["Sorry, the model cannot answer this question."],
    )

    verdict = guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert verdict.blocked_types == ["payment_card"]
    assert verdict.values == {EMAIL: "email", CARD: "payment_card"}


def test_detected_only_entities_are_masked_too(runtime: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, stubber = runtime
    _apply(stubber, action="NONE", assessment=_pii(("NAME", "Jane Doe", "NONE")))

    verdict = guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert verdict.values == {"Jane Doe": "name"} and verdict.blocked_types == []


def test_entities_reported_as_not_detected_are_ignored(runtime: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, stubber = runtime
    assessment = _pii(("NAME", "Jane", "NONE"))
    assessment["sensitiveInformationPolicy"]["piiEntities"][0]["detected"] = False
    _apply(stubber, action="NONE", assessment=assessment)

    assert guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT]).values == {}


def test_masked_outputs_are_ignored_and_the_values_come_from_the_matches(
    runtime: tuple[BedrockGuardrails, Stubber],
) -> None:
    guardrails, stubber = runtime
    _apply(
        stubber,
        assessment=_pii(("EMAIL", EMAIL, "ANONYMIZED")),
        outputs=["Write to {EMAIL} or call +1 206 555 0100, card 4111 1111 1111 1111"],
    )

    verdict = guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert verdict.values == {EMAIL: "email"}
    assert "{EMAIL}" not in repr(verdict)


def test_a_denied_topic_blocks_with_the_topics_name(runtime: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, stubber = runtime
    topic = {"topicPolicy": {"topics": [{"name": "Investment advice", "type": "DENY", "action": "BLOCKED"}]}}
    _apply(stubber, assessment=topic, outputs=["Sorry, the model cannot answer this question."])

    verdict = guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert verdict.blocked_types == ["topic:Investment advice"] and verdict.values == {}


def test_a_content_filter_blocks_with_the_filters_type(runtime: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, stubber = runtime
    content = {
        "contentPolicy": {
            "filters": [
                {"type": "VIOLENCE", "confidence": "HIGH", "action": "BLOCKED"},
                {"type": "INSULTS", "confidence": "LOW", "action": "NONE"},
            ]
        }
    }
    _apply(stubber, assessment=content)

    assert guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT]).blocked_types == ["content:VIOLENCE"]


def test_a_blocked_word_names_the_policy_never_the_word(runtime: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, stubber = runtime
    words = {
        "wordPolicy": {
            "customWords": [{"match": "project-zeus", "action": "BLOCKED"}],
            "managedWordLists": [{"match": "darn", "type": "PROFANITY", "action": "BLOCKED"}],
        }
    }
    _apply(stubber, assessment=words)

    verdict = guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert verdict.blocked_types == ["word", "word:profanity"]
    assert "project-zeus" not in repr(verdict) and "darn" not in repr(verdict)


def test_regex_matches_are_typed_by_the_regex_name(runtime: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, stubber = runtime
    regexes = {
        "sensitiveInformationPolicy": {
            "piiEntities": [],
            "regexes": [
                {"name": "Employee ID", "match": "EMP-123456", "regex": "EMP-\\d{6}", "action": "ANONYMIZED"},
                {"name": "Case", "match": "CASE-9", "regex": "CASE-\\d", "action": "BLOCKED"},
            ],
        }
    }
    _apply(stubber, assessment=regexes)

    verdict = guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert verdict.values == {"EMP-123456": "regex_employee_id", "CASE-9": "regex_case"}
    assert verdict.blocked_types == ["regex:Case"]


@pytest.mark.parametrize(
    ("entity", "match", "expected"),
    [
        ("EMAIL", EMAIL, "email"),
        ("PHONE", PHONE, "phone"),
        ("CREDIT_DEBIT_CARD_NUMBER", CARD, "payment_card"),
        ("US_SOCIAL_SECURITY_NUMBER", "123-45-6789", "us_ssn"),
        ("INTERNATIONAL_BANK_ACCOUNT_NUMBER", "DE89370400440532013000", "iban"),
        ("IP_ADDRESS", "192.0.2.10", "ipv4"),
        ("IP_ADDRESS", "2001:db8::1", "ipv6"),
        ("AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE", "aws_access_key_id"),
        ("AWS_SECRET_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key"),
        ("NAME", "Jane", "name"),
        ("US_PASSPORT_NUMBER", "X1234567", "us_passport_number"),
    ],
)
def test_bedrock_entity_types_map_onto_our_type_names(entity: str, match: str, expected: str) -> None:
    assert pii_type(entity, match) == expected


def test_mapped_types_are_built_in_types() -> None:
    from byom.dal.guardrails import PII_TYPES

    assert set(PII_TYPES.values()) | {"ipv4", "ipv6"} <= set(BUILTIN_TYPES)


def test_regex_types_are_placeholder_names() -> None:
    assert regex_type("Employee-ID (v2)") == "regex_employee_id_v2"


def test_throttling_is_retryable_and_quotes_no_input(runtime: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, stubber = runtime
    _error(stubber, "apply_guardrail", "ThrottlingException", 429)

    with pytest.raises(GuardrailUnavailable) as raised:
        guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert raised.value.retryable is True and raised.value.status == 429
    assert GUARDRAIL in raised.value.message and EMAIL not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_bedrock_validation_error_is_not_retryable_and_quotes_no_input(
    runtime: tuple[BedrockGuardrails, Stubber],
) -> None:
    guardrails, stubber = runtime
    _error(stubber, "apply_guardrail", "ValidationException", 400)

    with pytest.raises(GuardrailUnavailable) as raised:
        guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert raised.value.retryable is False and EMAIL not in str(raised.value)


def test_an_unknown_guardrail_is_a_misconfiguration_naming_the_guardrail(
    runtime: tuple[BedrockGuardrails, Stubber],
) -> None:
    guardrails, stubber = runtime
    _error(stubber, "apply_guardrail", "ResourceNotFoundException", 404)

    with pytest.raises(GuardrailNotFound) as raised:
        guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])

    assert isinstance(raised.value, GatewayMisconfigured) and raised.value.status == 500
    assert f"{GUARDRAIL} version {VERSION}" in raised.value.message
    assert EMAIL not in str(raised.value) and "echo" not in str(raised.value)


def test_a_guardrail_outside_the_grant_is_a_misconfiguration(
    runtime: tuple[BedrockGuardrails, Stubber],
) -> None:
    guardrails, stubber = runtime
    _error(stubber, "apply_guardrail", "AccessDeniedException", 403)

    with pytest.raises(GuardrailNotFound, match="may not apply"):
        guardrails.screen(GUARDRAIL, VERSION, [SECRET_TEXT])


def _get_guardrail(stubber: Stubber) -> None:
    stubber.add_response(
        "get_guardrail",
        {
            "name": "local-pii",
            "guardrailId": GUARDRAIL,
            "guardrailArn": f"arn:aws:bedrock:us-east-1:123456789012:guardrail/{GUARDRAIL}",
            "version": VERSION,
            "status": "READY",
            "createdAt": "2025-01-01T00:00:00Z",
            "updatedAt": "2025-01-01T00:00:00Z",
            "blockedInputMessaging": "blocked",
            "blockedOutputsMessaging": "blocked",
        },
        {"guardrailIdentifier": GUARDRAIL, "guardrailVersion": VERSION},
    )


def test_an_existing_guardrail_version_exists(control: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, stubber = control
    _get_guardrail(stubber)

    assert guardrails.exists(GUARDRAIL, VERSION) is True


@pytest.mark.parametrize(
    ("code", "status"), [("ResourceNotFoundException", 404), ("ValidationException", 400)]
)
def test_a_missing_guardrail_does_not_exist(
    control: tuple[BedrockGuardrails, Stubber], code: str, status: int
) -> None:
    guardrails, stubber = control
    _error(stubber, "get_guardrail", code, status)

    assert guardrails.exists(GUARDRAIL, VERSION) is False


def test_a_throttled_existence_check_is_retryable(control: tuple[BedrockGuardrails, Stubber]) -> None:
    guardrails, stubber = control
    _error(stubber, "get_guardrail", "ThrottlingException", 429)

    with pytest.raises(GuardrailUnavailable) as raised:
        guardrails.exists(GUARDRAIL, VERSION)

    assert raised.value.retryable is True
