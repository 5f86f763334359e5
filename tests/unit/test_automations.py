"""Automations' pure logic: the safe template, trigger validation and the runner, with in-memory fakes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from byom.automations import Automation, Delivery, RetryLater, Run, TemplateFieldMissing
from byom.errors import BudgetExceeded, InvalidRequest, ProviderError
from byom.logic import automations as logic
from byom.logic.invoke import Answer, Call
from byom.openai_types import ChatRequest
from byom.providers import Target, Usage

EVENT = {"source": "aws.guardduty", "detail": {"severity": 8, "type": "Recon", "tags": ["a", "b"]}}


# -- template --------------------------------------------------------------------------------------


def test_a_field_path_renders_the_events_value() -> None:
    assert logic.render("sev {{detail.severity}} / {{ detail.type }}", EVENT) == "sev 8 / Recon"


def test_a_list_index_is_a_path_segment() -> None:
    assert logic.render("{{detail.tags.1}}", EVENT) == "b"


def test_a_missing_field_renders_as_an_explicit_marker() -> None:
    assert logic.render("x={{detail.nope}}", EVENT) == "x=<missing: detail.nope>"


def test_a_missing_field_fails_when_the_automation_refuses_to_guess() -> None:
    with pytest.raises(TemplateFieldMissing) as raised:
        logic.render("{{detail.nope}}", EVENT, "fail")
    assert raised.value.path == "detail.nope"


@pytest.mark.parametrize(
    "template",
    ["{{ detail.__class__ }}x{{ 1+1 }}", "{{ detail.severity | upper }}", "{{ x() }}", "{{ detail[0] }}"],
)
def test_anything_but_a_field_path_is_refused(template: str) -> None:
    with pytest.raises(InvalidRequest):
        logic.template_fields(template)


def test_an_unclosed_placeholder_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        logic.template_fields("hello {{detail.severity")


def test_no_python_attribute_is_reachable_through_a_path() -> None:
    assert logic.render("{{detail.severity.real}}", EVENT) == "<missing: detail.severity.real>"


# -- triggers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("expression", ["rate(5 minutes)", "rate(1 hour)", "cron(0 9 ? * MON-FRI *)"])
def test_schedulers_expressions_are_accepted(expression: str) -> None:
    logic.validate_schedule(expression, "Europe/Paris")


@pytest.mark.parametrize("expression", ["rate(0 minutes)", "rate(1 minutes)", "cron(0 9 * * *)", "every day"])
def test_an_expression_scheduler_would_reject_is_refused(expression: str) -> None:
    with pytest.raises(InvalidRequest):
        logic.validate_schedule(expression, None)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        logic.validate_schedule("rate(5 minutes)", "Mars/Olympus")


@pytest.mark.parametrize(
    "pattern",
    [{}, {"source": "aws.guardduty"}, {"source": []}, {"detail": {"severity": [{"greater": 4}]}}],
)
def test_a_pattern_eventbridge_would_reject_is_refused(pattern: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        logic.validate_event_pattern(pattern)


def test_a_content_filtered_pattern_is_accepted() -> None:
    logic.validate_event_pattern(
        {"source": ["aws.guardduty"], "detail": {"severity": [{"numeric": [">=", 4]}]}}
    )


# -- runner ----------------------------------------------------------------------------------------


class Repo:
    def __init__(self, automation: Automation) -> None:
        self.automations = {automation.id: automation}
        self.runs: dict[str, Run] = {}

    def put(self, automation: Automation) -> None:
        self.automations[automation.id] = automation

    def get(self, tenant_id: str, automation_id: str) -> Automation | None:
        return self.automations.get(automation_id)

    def list(self, tenant_id: str) -> list[Automation]:
        return list(self.automations.values())

    def delete(self, tenant_id: str, automation_id: str) -> None:
        self.automations.pop(automation_id, None)

    def put_run(self, run: Run) -> None:
        self.runs[run.id] = run

    def get_run(self, tenant_id: str, automation_id: str, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    def list_runs(self, tenant_id: str, automation_id: str, limit: int) -> list[Run]:
        return sorted(self.runs.values(), key=lambda r: r.id, reverse=True)[:limit]


class Publisher:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        self.notified: list[str] = []

    def publish(self, detail: dict[str, Any]) -> None:
        self.published.append(detail)

    def notify(self, subject: str, message: str) -> None:
        self.notified.append(message)


class Workflow:
    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start(self, name: str, payload: dict[str, Any]) -> str:
        self.started.append(payload)
        return name

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        return True


def automation(**changes: Any) -> Automation:
    base = Automation(
        id="aut_1",
        tenant_id="t1",
        name="summary",
        model="ops",
        trigger={"event_pattern": {"source": ["aws.guardduty"]}, "event_bus": "default"},
        prompt="Summarise {{detail.type}}",
        created_at=1,
        updated_at=1,
    )
    return replace(base, **changes)


def answer(text: str = "a summary") -> Answer:
    body = {"choices": [{"message": {"role": "assistant", "content": text}}]}
    return Answer(Target("t1", "ops", "bedrock", "m"), body, Usage(1, 1), cost_micros=1500)


def delivery(receive_count: int = 1) -> Delivery:
    return Delivery("t1", "aut_1", EVENT, "msg-1", 1_700_000_000_000, receive_count)


def runner(auto: Automation, chat: Any) -> tuple[logic.RunnerStore, Repo, Publisher, Workflow]:
    repo, publisher, workflow = Repo(auto), Publisher(), Workflow()
    store = logic.RunnerStore(repo, chat, publisher, workflow, max_receive_count=3, now=lambda: 100)
    return store, repo, publisher, workflow


def test_a_run_calls_the_model_under_the_automations_own_key_and_publishes() -> None:
    calls: list[tuple[Call, ChatRequest]] = []
    store, _repo, publisher, _ = runner(automation(), lambda call, req: calls.append((call, req)) or answer())
    run = logic.handle(store, delivery())
    assert run is not None and run.status == "succeeded"
    assert calls[0][0].principal.key_id == "aut_1" and calls[0][0].principal.tenant_id == "t1"
    assert calls[0][1].messages[0].content == "Summarise Recon"
    assert publisher.published[0]["output"] == "a summary" and publisher.published[0]["cost_usd"] == 0.0015


def test_a_disabled_automation_receives_nothing() -> None:
    store, repo, publisher, _ = runner(automation(enabled=False), lambda call, req: answer())
    assert logic.handle(store, delivery()) is None
    assert (repo.runs, publisher.published) == ({}, [])


def test_a_budget_refusal_is_a_failed_run_not_a_retry() -> None:
    def refuse(call: Call, req: ChatRequest) -> Answer:
        raise BudgetExceeded("Monthly budget reached")

    store, repo, _, _ = runner(automation(), refuse)
    logic.handle(store, delivery())
    (run,) = repo.runs.values()
    assert run.status == "failed" and run.error == {
        "message": "Monthly budget reached",
        "type": "insufficient_quota",
        "code": "insufficient_quota",
    }


def test_a_provider_failure_is_retried_and_recorded_as_failed_on_the_last_receive() -> None:
    def fail(call: Call, req: ChatRequest) -> Answer:
        raise ProviderError("bedrock answered 503: overloaded", status=503, retryable=True)

    store, repo, _, _ = runner(automation(), fail)
    with pytest.raises(RetryLater):
        logic.handle(store, delivery(1))
    assert next(iter(repo.runs.values())).status == "running"
    with pytest.raises(RetryLater):
        logic.handle(store, delivery(3))
    (run,) = repo.runs.values()
    assert run.status == "failed" and run.error is not None
    assert run.error["message"] == "bedrock answered 503: overloaded"


def test_a_template_missing_field_fails_the_run_naming_the_field() -> None:
    store, repo, _, _ = runner(
        automation(prompt="{{detail.nope}}", missing_fields="fail"), lambda call, req: answer()
    )
    logic.handle(store, delivery())
    (run,) = repo.runs.values()
    assert run.status == "failed" and run.error is not None and "detail.nope" in run.error["message"]


def test_an_automation_with_approval_waits_instead_of_publishing() -> None:
    store, _repo, publisher, workflow = runner(automation(approval=True), lambda call, req: answer())
    run = logic.handle(store, delivery())
    assert run is not None and publisher.published == []
    assert workflow.started[0]["run_id"] == run.id


def test_a_json_answer_is_published_machine_readable() -> None:
    auto = automation(response_format={"type": "json_object"})
    store, _, publisher, _ = runner(auto, lambda call, req: answer('{"severity": "high"}'))
    logic.handle(store, delivery())
    assert publisher.published[0]["output_json"] == {"severity": "high"}


def test_a_redelivered_message_does_not_run_twice() -> None:
    calls: list[int] = []
    store, _, _, _ = runner(automation(), lambda call, req: calls.append(1) or answer())
    logic.handle(store, delivery(1))
    logic.handle(store, delivery(2))
    assert calls == [1]


def test_an_unexpected_error_on_the_last_receive_leaves_a_failed_run() -> None:
    def crash(call: Call, req: ChatRequest) -> Answer:
        raise RuntimeError("connection pool exhausted")

    store, repo, _, _ = runner(automation(), crash)
    with pytest.raises(RuntimeError):
        logic.handle(store, delivery(3))
    (run,) = repo.runs.values()
    assert run.status == "failed" and run.error is not None
    assert "connection pool" not in run.error["message"]
