"""The stand-in guardrails over loopback, through boto3's bedrock-runtime and bedrock clients, and the
gateway's data access (byom.dal.guardrails) against them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from byom.dal.guardrails import BedrockGuardrails
from byom.governance.guardrail import GuardrailNotFound

from local_stack.httpbase import BackgroundServer
from local_stack.models.servers import bedrock_stand_in
from tests.integration.local_stack.conftest import http

EMAIL = "jane.doe@example.com"
PHONE = "206-555-0100"
CARD = "4111 1111 1111 1111"
SSN = "123-45-6789"


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    server = bedrock_stand_in().start()
    yield server
    server.stop()


def _client(server: BackgroundServer, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def runtime(server: BackgroundServer) -> Any:
    return _client(server, "bedrock-runtime")


@pytest.fixture
def guardrails(server: BackgroundServer) -> BedrockGuardrails:
    return BedrockGuardrails(runtime=_client(server, "bedrock-runtime"), control=_client(server, "bedrock"))


def _apply(runtime: Any, *texts: str, guardrail: str = "localpii", version: str = "1") -> dict[str, Any]:
    answer: dict[str, Any] = runtime.apply_guardrail(
        guardrailIdentifier=guardrail,
        guardrailVersion=version,
        source="INPUT",
        content=[{"text": {"text": t}} for t in texts],
    )
    return answer


def test_clean_text_passes_without_intervention(runtime: Any) -> None:
    answer = _apply(runtime, "What is the capital of France?")

    assert answer["action"] == "NONE" and answer["outputs"] == [] and answer["assessments"] == []
    assert answer["usage"]["sensitiveInformationPolicyUnits"] == 1


def test_anonymized_pii_comes_back_masked_with_each_match(runtime: Any) -> None:
    answer = _apply(runtime, f"Mail {EMAIL}", f"or call {PHONE} about EMP-123456")

    assert answer["action"] == "GUARDRAIL_INTERVENED"
    assert [o["text"] for o in answer["outputs"]] == ["Mail {EMAIL}", "or call {PHONE} about {employee_id}"]
    policy = answer["assessments"][0]["sensitiveInformationPolicy"]
    assert policy["piiEntities"] == [
        {"match": EMAIL, "type": "EMAIL", "action": "ANONYMIZED"},
        {"match": PHONE, "type": "PHONE", "action": "ANONYMIZED"},
    ]
    assert policy["regexes"][0] | {"regex": ""} == {
        "name": "employee_id",
        "match": "EMP-123456",
        "regex": "",
        "action": "ANONYMIZED",
    }


def test_a_card_number_blocks_the_whole_input(runtime: Any) -> None:
    answer = _apply(runtime, f"Charge {CARD} and mail {EMAIL}")

    assert answer["action"] == "GUARDRAIL_INTERVENED"
    assert answer["outputs"] == [{"text": "Sorry, the model cannot answer this question."}]
    actions = {
        e["type"]: e["action"] for e in answer["assessments"][0]["sensitiveInformationPolicy"]["piiEntities"]
    }
    assert actions == {"CREDIT_DEBIT_CARD_NUMBER": "BLOCKED", "EMAIL": "ANONYMIZED"}


def test_a_number_failing_the_luhn_check_is_no_card(runtime: Any) -> None:
    assert _apply(runtime, "order 4111 1111 1111 1112")["action"] == "NONE"


def test_the_denied_topic_blocks_by_keyword(runtime: Any) -> None:
    answer = _apply(runtime, "Which stocks should I invest in?")

    assert answer["assessments"][0]["topicPolicy"]["topics"] == [
        {"name": "Investment advice", "type": "DENY", "action": "BLOCKED"}
    ]


def test_an_unknown_guardrail_or_version_is_resource_not_found(runtime: Any) -> None:
    for guardrail, version in (("nosuchguardrail", "1"), ("localpii", "7")):
        with pytest.raises(ClientError) as raised:
            _apply(runtime, "hi", guardrail=guardrail, version=version)
        assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_guardrail_is_found_by_its_arn(runtime: Any) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:guardrail/localpii"

    assert (
        _apply(runtime, f"Mail {EMAIL}", guardrail=arn, version="DRAFT")["action"] == "GUARDRAIL_INTERVENED"
    )


def test_get_guardrail_describes_a_stand_in_guardrail(server: BackgroundServer) -> None:
    answer = _client(server, "bedrock").get_guardrail(guardrailIdentifier="localpii", guardrailVersion="1")

    assert (answer["guardrailId"], answer["version"], answer["status"]) == ("localpii", "1", "READY")
    assert {"type": "EMAIL", "action": "ANONYMIZE"} in answer["sensitiveInformationPolicy"]["piiEntities"]


def test_the_request_log_shows_the_apply_call(server: BackgroundServer, runtime: Any) -> None:
    http("DELETE", server.url + "/_stand_in/requests")
    _apply(runtime, "hello")

    logged = http("GET", server.url + "/_stand_in/requests").json()["requests"]
    assert [(r["api"], r["model"]) for r in logged] == [("apply-guardrail", "localpii")]


# -- the gateway's data access against the stand-in ------------------------------------------------


def test_screen_collects_masked_values_and_blocks_on_blocked_entities(guardrails: BedrockGuardrails) -> None:
    verdict = guardrails.screen("localpii", "1", [f"Mail {EMAIL}", f"my SSN is {SSN}"])

    assert verdict.values == {EMAIL: "email", SSN: "us_ssn"}
    assert verdict.blocked_types == ["us_ssn"] and verdict.intervened


def test_screen_with_a_detect_only_guardrail_masks_but_never_blocks(guardrails: BedrockGuardrails) -> None:
    verdict = guardrails.screen("localdetect", "DRAFT", [f"Mail {EMAIL}, card {CARD}"])

    assert verdict.values == {EMAIL: "email", CARD: "payment_card"}
    assert verdict.blocked_types == [] and not verdict.intervened


def test_screen_of_a_missing_guardrail_names_it(guardrails: BedrockGuardrails) -> None:
    with pytest.raises(GuardrailNotFound, match="nosuchguardrail version 1"):
        guardrails.screen("nosuchguardrail", "1", [f"Mail {EMAIL}"])


def test_exists_answers_from_get_guardrail(guardrails: BedrockGuardrails) -> None:
    assert guardrails.exists("localpii", "DRAFT") is True
    assert guardrails.exists("localpii", "2") is False
    assert guardrails.exists("nosuchguardrail", "1") is False
