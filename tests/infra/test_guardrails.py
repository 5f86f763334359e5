"""Guardrail grants: the gateway applies, the admin API reads, both on `byom:guardrailArns` only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Template

from infra.application import create_app
from infra.config import GUARDRAIL_ARNS_CONTEXT, guardrail_arns
from tests.infra.stack_template import actions_on, as_list, role_statements

OWN_GUARDRAILS = {
    "Fn::Join": [
        "",
        [
            "arn:",
            {"Ref": "AWS::Partition"},
            ":bedrock:",
            {"Ref": "AWS::Region"},
            ":",
            {"Ref": "AWS::AccountId"},
            ":guardrail/*",
        ],
    ]
}
PINNED = [
    "arn:aws:bedrock:eu-west-1:111122223333:guardrail/abc123def456",
    "arn:aws:bedrock:eu-west-1:111122223333:guardrail/team*",
]


def _guardrail_actions(template: Template, name: str) -> list[tuple[str, Any]]:
    return [(a, r) for a, r in actions_on(role_statements(template, name), "bedrock:") if "Guardrail" in a]


def test_the_gateway_may_apply_the_accounts_guardrails_and_nothing_more(template: Template) -> None:
    assert _guardrail_actions(template, "gateway") == [("bedrock:ApplyGuardrail", OWN_GUARDRAILS)]


def test_the_admin_api_may_read_the_accounts_guardrails_and_nothing_more(template: Template) -> None:
    assert _guardrail_actions(template, "admin") == [("bedrock:GetGuardrail", OWN_GUARDRAILS)]


def test_the_authorizer_gets_no_guardrail_grant(template: Template) -> None:
    assert _guardrail_actions(template, "authorizer") == []


def test_the_context_narrows_both_grants_and_cdk_nag_stays_clean(tmp_path: Path) -> None:
    app, stack = create_app(bundling=False, outdir=str(tmp_path), context={GUARDRAIL_ARNS_CONTEXT: PINNED})
    app.synth()
    template = Template.from_stack(stack)

    for name, action in (("gateway", "bedrock:ApplyGuardrail"), ("admin", "bedrock:GetGuardrail")):
        (granted,) = _guardrail_actions(template, name)
        assert granted[0] == action and sorted(as_list(granted[1])) == sorted(PINNED)
    report = json.loads((tmp_path / "validation-report.json").read_text())
    open_findings = [v["ruleName"] for p in report["pluginReports"] for v in p["violations"]]
    assert open_findings == []


def _arns(value: object) -> tuple[str, ...]:
    return guardrail_arns(Stack(App(context={GUARDRAIL_ARNS_CONTEXT: value}), "S"))


def test_a_comma_separated_context_string_is_a_list() -> None:
    assert _arns(",".join(PINNED)) == tuple(PINNED)


def test_a_json_context_string_is_a_list() -> None:
    assert _arns(json.dumps(PINNED)) == tuple(PINNED)


@pytest.mark.parametrize(
    "value",
    [
        [],
        ["*"],
        ["arn:aws:bedrock:us-east-1:111122223333:foundation-model/*"],
        ["arn:aws:s3:::bucket"],
        {"a": 1},
    ],
)
def test_anything_but_guardrail_arns_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match=GUARDRAIL_ARNS_CONTEXT):
        _arns(value)
