"""Automations on the local stack with the real template and handlers: events put on the emulated bus
reach the rules the admin API created, the runner runs from the queue, results land on the bus."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.automations.run import (
    Target,
    listen_for_results,
    put_event,
    run_example,
    setup_tenant,
    wait_for,
)
from local_stack.stack import LocalStack, StackSettings

ADMIN_KEY = "automations-admin-key"
GUARDDUTY = {"source": ["aws.guardduty"]}


@pytest.fixture(scope="module")
def target(real_template: Path) -> Iterator[Target]:
    with LocalStack(StackSettings(port=0, admin_key=ADMIN_KEY, template=real_template)) as running:
        yield Target(running.url, running.moto_url, ADMIN_KEY)


def create(target: Target, tenant_id: str, **body: Any) -> dict[str, Any]:
    definition = {"name": "t", "model": "ops", "trigger": {"event_pattern": GUARDDUTY}, "prompt": "x"} | body
    return target.call("POST", f"/admin/tenants/{tenant_id}/automations", definition)


def runs(target: Target, tenant_id: str, automation_id: str) -> list[dict[str, Any]]:
    return target.call("GET", f"/admin/tenants/{tenant_id}/automations/{automation_id}/runs")["data"]


def wait_for_status(target: Target, tenant_id: str, automation_id: str, *statuses: str) -> dict[str, Any]:
    def done() -> Any:
        found = runs(target, tenant_id, automation_id)
        return found[0] if found and found[0]["status"] in statuses else None

    return wait_for(done, 60)


def test_a_guardduty_finding_on_the_bus_yields_a_result_event_and_a_succeeded_run(target: Target) -> None:
    outcome = run_example(target, "guardduty")
    assert outcome["run"]["status"] == "succeeded"
    assert "UnauthorizedAccess:EC2/SSHBruteForce" in outcome["run"]["output"]
    assert outcome["result"]["run_id"] == outcome["run"]["id"]
    assert outcome["result"]["automation_id"] == outcome["automation"]["id"]


def test_a_cloudwatch_alarm_is_triaged_with_a_json_answer_format(target: Target) -> None:
    outcome = run_example(target, "cloudwatch")
    assert outcome["run"]["status"] == "succeeded", outcome["run"]
    assert "checkout-api-5xx" in outcome["run"]["output"]
    assert "output_json" in outcome["result"]


def test_a_schedule_fired_locally_runs_the_same_runner(target: Target) -> None:
    tenant_id = setup_tenant(target, "schedule")
    results = listen_for_results(target, "schedule")
    automation = create(
        target,
        tenant_id,
        trigger={"schedule": "rate(1 hour)", "timezone": "Europe/Paris"},
        prompt="At {{time}}",
    )
    schedule = target.aws("scheduler").get_schedule(Name=f"byom-ByomGateway-automation-{automation['id']}")
    assert schedule["ScheduleExpression"] == "rate(1 hour)"
    target.call("POST", f"/admin/tenants/{tenant_id}/automations/{automation['id']}/run", {})
    run = wait_for_status(target, tenant_id, automation["id"], "succeeded")
    assert run["trigger"]["source"] == "aws.scheduler"
    messages = target.aws("sqs").receive_message(QueueUrl=results, MaxNumberOfMessages=10).get("Messages", [])
    assert any(json.loads(m["Body"])["detail"]["run_id"] == run["id"] for m in messages)


def test_a_model_failure_is_retried_then_lands_in_the_dead_letter_queue(target: Target) -> None:
    tenant_id = setup_tenant(target, "dlq")
    base = f"/admin/tenants/{tenant_id}"
    target.call(
        "PUT",
        f"{base}/credentials/dead",
        {"provider": "openai_compatible", "api_key": "sk-x", "base_url": "http://127.0.0.1:9/v1"},
    )
    target.call(
        "POST",
        f"{base}/models",
        {
            "alias": "dead",
            "provider": "openai_compatible",
            "model_id": "m",
            "credential": "dead",
            "pricing": {"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.001},
        },
    )
    automation = create(target, tenant_id, model="dead", trigger={"schedule": "rate(5 minutes)"})
    target.call("POST", f"{base}/automations/{automation['id']}/run", {})
    run = wait_for_status(target, tenant_id, automation["id"], "failed")
    assert run["attempts"] == 3 and run["error"]["type"] == "provider_error"
    sqs = target.aws("sqs")
    dlq = next(u for u in sqs.list_queues()["QueueUrls"] if "DeadLetters" in u)

    def dead_lettered() -> Any:
        attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"]) or None

    assert wait_for(dead_lettered, 30) >= 1


def test_a_template_with_a_missing_field_fails_the_run_naming_it(target: Target) -> None:
    tenant_id = setup_tenant(target, "missing")
    automation = create(target, tenant_id, prompt="{{detail.nothere}}", missing_fields="fail")
    put_event(target, {"source": "aws.guardduty", "detail-type": "GuardDuty Finding", "detail": {}})
    run = wait_for_status(target, tenant_id, automation["id"], "failed")
    assert "detail.nothere" in run["error"]["message"]


@pytest.mark.parametrize("approved", [True, False])
def test_an_approval_publishes_only_when_approved(target: Target, approved: bool) -> None:
    tenant_id = setup_tenant(target, f"approval-{approved}")
    automation = create(target, tenant_id, approval=True, trigger={"schedule": "rate(1 day)"})
    base = f"/admin/tenants/{tenant_id}/automations/{automation['id']}"
    target.call("POST", f"{base}/run", {})
    run = wait_for_status(target, tenant_id, automation["id"], "awaiting_approval")
    target.call("POST", f"{base}/runs/{run['id']}/approve", {"approved": approved, "comment": "checked"})
    final = wait_for_status(target, tenant_id, automation["id"], "succeeded", "rejected")
    assert final["status"] == ("succeeded" if approved else "rejected")


def test_a_disabled_automation_receives_nothing(target: Target) -> None:
    tenant_id = setup_tenant(target, "disabled")
    automation = create(target, tenant_id, trigger={"event_pattern": {"source": ["example.disabled"]}})
    target.call("PATCH", f"/admin/tenants/{tenant_id}/automations/{automation['id']}", {"enabled": False})
    put_event(target, {"source": "example.disabled", "detail-type": "x", "detail": {}})
    time.sleep(2)
    assert runs(target, tenant_id, automation["id"]) == []


def test_a_pattern_eventbridge_would_reject_is_a_400(target: Target) -> None:
    tenant_id = setup_tenant(target, "bad-pattern")
    with pytest.raises(RuntimeError, match="400"):
        create(target, tenant_id, trigger={"event_pattern": {"source": "aws.guardduty"}})


def test_deleting_an_automation_deletes_its_rule(target: Target) -> None:
    tenant_id = setup_tenant(target, "delete")
    automation = create(target, tenant_id)
    target.call("DELETE", f"/admin/tenants/{tenant_id}/automations/{automation['id']}")
    names = [r["Name"] for r in target.aws("events").list_rules()["Rules"]]
    assert f"byom-ByomGateway-automation-{automation['id']}" not in names


def test_a_developer_key_may_not_manage_automations(target: Target) -> None:
    tenant_id = setup_tenant(target, "developer")
    key = target.call("POST", f"/admin/tenants/{tenant_id}/keys", {"name": "dev", "role": "developer"})["key"]
    developer = Target(target.url, target.aws_url, key)
    with pytest.raises(RuntimeError, match="403"):
        create(developer, tenant_id)


def test_another_tenants_automation_is_a_404(target: Target) -> None:
    owner = setup_tenant(target, "owner")
    automation = create(target, owner)
    other = setup_tenant(target, "other")
    key = target.call("POST", f"/admin/tenants/{other}/keys", {"name": "adm", "role": "admin"})["key"]
    with pytest.raises(RuntimeError, match="404"):
        Target(target.url, target.aws_url, key).call(
            "GET", f"/admin/tenants/{owner}/automations/{automation['id']}"
        )
