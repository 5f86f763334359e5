"""Automations as synthesized: the queue and its dead letters, the runner's event source, the approval
state machine, and IAM for rules and schedules confined to the stack's automation prefix."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Template

from tests.infra.stack_template import environment, function_id, props, resources, role_statements

PREFIX = "byom-ByomGateway-automation-"


def joined(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(
            p if isinstance(p, str) else "${" + str(p.get("Ref", p)) + "}" for p in value["Fn::Join"][1]
        )
    return json.dumps(value)


def statements_with(template: Template, name: str, prefix: str) -> list[dict[str, Any]]:
    found = []
    for statement in role_statements(template, name):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if any(a.startswith(prefix) for a in actions):
            found.append(statement)
    return found


def resources_of(statement: dict[str, Any]) -> list[str]:
    listed = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return [joined(r) for r in listed]


def test_the_admin_manages_rules_only_under_the_prefix(template: Template) -> None:
    (statement,) = statements_with(template, "admin", "events:")
    assert sorted(resources_of(statement)) == [
        f"arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/*/{PREFIX}*",
        f"arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/{PREFIX}*",
    ]


def test_the_admin_manages_schedules_only_under_the_prefix(template: Template) -> None:
    (statement,) = statements_with(template, "admin", "scheduler:")
    assert resources_of(statement) == [
        f"arn:${{AWS::Partition}}:scheduler:${{AWS::Region}}:${{AWS::AccountId}}:schedule/default/{PREFIX}*"
    ]


def test_the_admin_passes_only_the_scheduler_role_to_scheduler(template: Template) -> None:
    (statement,) = statements_with(template, "admin", "iam:")
    assert statement["Action"] == "iam:PassRole"
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}


def test_the_runner_consumes_the_queue_with_partial_batch_responses(template: Template) -> None:
    runner = {"Ref": function_id(template, "automation_runner")}
    mappings = resources(template, "AWS::Lambda::EventSourceMapping").values()
    (mapping,) = [m for m in mappings if props(m)["FunctionName"] == runner]
    assert props(mapping)["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_queue_redrives_to_a_dead_letter_queue_after_the_runners_tries(template: Template) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    (runs,) = [
        q for name, q in queues.items() if name.startswith("Automations") and "RedrivePolicy" in props(q)
    ]
    assert props(runs)["RedrivePolicy"]["maxReceiveCount"] == int(
        environment(template, "automation_runner")["AUTOMATION_MAX_RECEIVE_COUNT"]
    )


def test_only_the_stacks_automation_rules_may_send_to_the_queue(template: Template) -> None:
    statements = [
        s
        for policy in resources(template, "AWS::SQS::QueuePolicy").values()
        for s in props(policy)["PolicyDocument"]["Statement"]
        if s.get("Sid") == "AllowAutomationRules"
    ]
    (statement,) = statements
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert all(PREFIX in joined(arn) for arn in statement["Condition"]["ArnLike"]["aws:SourceArn"])


def test_the_dead_letter_queue_has_an_alarm_on_its_depth(template: Template) -> None:
    alarms = [
        a
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if "automation-dead-letters" in props(a)["AlarmName"]
    ]
    (alarm,) = alarms
    assert props(alarm)["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert props(alarm)["Threshold"] == 1


def test_results_are_archived_for_replay(template: Template) -> None:
    (archive,) = resources(template, "AWS::Events::Archive").values()
    assert props(archive)["EventPattern"] == {"source": ["byom"], "detail-type": ["AutomationResult"]}


def test_the_approval_waits_for_a_task_token_with_a_timeout(template: Template) -> None:
    (machine,) = [
        m
        for m in resources(template, "AWS::StepFunctions::StateMachine").values()
        if props(m)["StateMachineName"].endswith("-automation-approval")
    ]
    text = "".join(
        p if isinstance(p, str) else "X" for p in props(machine)["DefinitionString"]["Fn::Join"][1]
    )
    state = json.loads(text)["States"]["AwaitApproval"]
    assert state["Resource"].endswith(":lambda:invoke.waitForTaskToken")
    assert state["TimeoutSecondsPath"] == "$.approval_timeout_seconds"
