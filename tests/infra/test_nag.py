"""The cdk-nag gate: the real app synthesizes with zero unacknowledged AwsSolutions findings,
and a new finding (error or warning) fails the synth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.assertions import Template

from infra import nag
from infra.application import create_app

WEB_ACL_ARN = (
    "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/org-acl/11111111-2222-3333-4444-555555555555"
)


def synth_report(outdir: Path, **kwargs: Any) -> dict[str, Any]:
    app, _ = create_app(bundling=False, outdir=str(outdir), **kwargs)
    app.synth()
    report: dict[str, Any] = json.loads((outdir / "validation-report.json").read_text())
    return report


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return synth_report(tmp_path_factory.mktemp("cdk.out"))


def aws_solutions(report: dict[str, Any]) -> dict[str, Any]:
    (pack,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    return pack


def test_app_synthesizes_with_no_unacknowledged_finding(report: dict[str, Any]) -> None:
    unacknowledged = [
        (v["ruleName"], c["constructPath"])
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    ]
    assert unacknowledged == []


def test_pack_checked_the_stack(report: dict[str, Any]) -> None:
    acknowledged = {v["ruleName"].split("[")[0] for v in aws_solutions(report)["suppressedViolations"]}
    assert {"AwsSolutions-IAM5", "AwsSolutions-COG4", "AwsSolutions-APIG4"} <= acknowledged


def test_every_acknowledgement_gives_a_reason(report: dict[str, Any]) -> None:
    for violation in aws_solutions(report)["suppressedViolations"]:
        assert len(violation["reason"]) > 80, violation["ruleName"]


def test_unacknowledged_error_fails_the_synth(tmp_path: Path) -> None:
    app, stack = create_app(bundling=False, outdir=str(tmp_path))
    secretsmanager.Secret(stack, "SecretWithoutRotation")

    with pytest.raises(Exception, match=r"AwsSolutions-SMG4"):
        app.synth()


def test_unacknowledged_warning_fails_the_synth(tmp_path: Path) -> None:
    app, stack = create_app(bundling=False, outdir=str(tmp_path))
    dynamodb.Table(
        stack,
        "TableWithoutPitr",
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
    )

    with pytest.raises(Exception, match=r"AwsSolutions-DDB3"):
        app.synth()


@pytest.fixture(scope="module")
def with_web_acl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, dict[str, Any]]:
    """The template and the cdk-nag report of one synth with a web ACL in the context."""
    outdir = tmp_path_factory.mktemp("web-acl")
    app, stack = create_app(bundling=False, outdir=str(outdir), context={"byom:webAclArn": WEB_ACL_ARN})
    app.synth()
    report: dict[str, Any] = json.loads((outdir / "validation-report.json").read_text())
    return Template.from_stack(stack), report


def test_web_acl_from_context_is_associated_with_the_stage(
    with_web_acl: tuple[Template, dict[str, Any]],
) -> None:
    template, _ = with_web_acl

    (stage_id,) = template.find_resources("AWS::ApiGateway::Stage")
    (association,) = template.find_resources("AWS::WAFv2::WebACLAssociation").values()
    assert association["Properties"]["WebACLArn"] == WEB_ACL_ARN
    assert {"Ref": stage_id} in association["Properties"]["ResourceArn"]["Fn::Join"][1]


def test_web_acl_from_context_needs_no_waf_acknowledgement(
    with_web_acl: tuple[Template, dict[str, Any]],
) -> None:
    _, report = with_web_acl

    rules = {
        v["ruleName"]
        for v in aws_solutions(report)["suppressedViolations"] + aws_solutions(report)["violations"]
    }
    assert "AwsSolutions-APIG3" not in rules


def test_open_finding_in_the_report_exits_non_zero(tmp_path: Path) -> None:
    # Under the CDK CLI (process mode) CDK does not raise: app.py re-checks the report itself.
    violation = {"ruleName": "AwsSolutions-S1", "violatingConstructs": [{"constructPath": "S/Bucket"}]}
    report = {"pluginReports": [{"pluginName": "AwsSolutions", "violations": [violation]}]}
    (tmp_path / "validation-report.json").write_text(json.dumps(report))

    with pytest.raises(SystemExit, match="AwsSolutions-S1 at S/Bucket"):
        nag.fail_on_open_findings(str(tmp_path))


def test_report_with_only_acknowledged_findings_passes(report: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "validation-report.json").write_text(json.dumps(report))

    nag.fail_on_open_findings(str(tmp_path))
