"""The meter backlog as deployed: an encrypted queue with a dead-letter queue and its alarm, drained
by the reconciler with partial batch responses; the invocation path may only send to it."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template

from tests.infra.stack_template import actions_on, environment, function_id, props, resources, role_statements


def _backlog(template: Template) -> tuple[str, dict[str, Any]]:
    queues = resources(template, "AWS::SQS::Queue")
    ((name, queue),) = [(n, q) for n, q in queues.items() if n.startswith("MeteringBacklog")]
    return name, queue


def test_the_backlog_is_encrypted_with_the_stacks_key_and_redrives_to_dead_letters(
    template: Template,
) -> None:
    _, queue = _backlog(template)
    assert "KmsMasterKeyId" in props(queue)
    assert props(queue)["RedrivePolicy"]["maxReceiveCount"] == 10


def test_the_reconciler_drains_the_backlog_with_partial_batch_responses(template: Template) -> None:
    name, _ = _backlog(template)
    reconciler = {"Ref": function_id(template, "meter_reconciler")}
    (mapping,) = [
        m
        for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
        if props(m)["FunctionName"] == reconciler
    ]
    assert props(mapping)["EventSourceArn"] == {"Fn::GetAtt": [name, "Arn"]}
    assert props(mapping)["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_invocation_path_may_send_to_the_backlog_and_nothing_more(template: Template) -> None:
    name, _ = _backlog(template)
    for function in ("gateway", "automation_runner"):
        assert environment(template, function)["METER_QUEUE_URL"] == {"Ref": name}
        on_backlog = [
            action
            for action, resource in actions_on(role_statements(template, function), "sqs:")
            if resource == {"Fn::GetAtt": [name, "Arn"]}
        ]
        assert on_backlog == ["sqs:SendMessage"]


def test_dead_letters_raise_an_alarm(template: Template) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    (alarm,) = [a for n, a in alarms.items() if n.startswith("MeteringDeadLettersAlarm")]
    assert props(alarm)["Threshold"] == 1
