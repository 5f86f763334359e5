"""The batches capability as synthesized: the Bedrock batch service role, the state machine's Retry
and Catch and bounded Map, the job-event rule, the functions' roles and the routes."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Template

from tests.infra.stack_template import as_list, environment, methods, props, resources, role_statements

TASKS = ("RunChunk", "SubmitJob", "AwaitJob", "CheckJob", "Finalize")


def _service_role(template: Template) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (i, r)
        for i, r in resources(template, "AWS::IAM::Role").items()
        if "batch inference" in props(r).get("Description", "")
    ]
    return found


def _statements_of_role(template: Template, role_id: str) -> list[dict[str, Any]]:
    return [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in props(p)["Roles"]
        for s in props(p)["PolicyDocument"]["Statement"]
    ]


def _definition(template: Template) -> dict[str, Any]:
    (machine,) = [
        m
        for m in resources(template, "AWS::StepFunctions::StateMachine").values()
        if props(m)["StateMachineName"].endswith("-batches")
    ]
    parts = props(machine)["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "arn:aws:lambda:::function:X" for p in parts)
    definition: dict[str, Any] = json.loads(text)
    return definition


def _states(definition: dict[str, Any]) -> dict[str, Any]:
    """Every state, those inside the Map's item processor too."""
    found = dict(definition["States"])
    for state in definition["States"].values():
        if state["Type"] == "Map":
            found |= state["ItemProcessor"]["States"]
    return found


def test_the_batch_service_role_is_assumed_by_bedrock_for_this_accounts_jobs_only(template: Template) -> None:
    _, role = _service_role(template)
    (trust,) = props(role)["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert set(trust["Condition"]["StringEquals"]) == {"aws:SourceAccount"}
    assert "model-invocation-job/*" in json.dumps(trust["Condition"]["ArnLike"])


def test_the_batch_service_role_reads_and_writes_only_under_the_batches_prefix(template: Template) -> None:
    role_id, _ = _service_role(template)
    statements = _statements_of_role(template, role_id)
    objects = [
        s for s in statements if any(a.startswith("s3:") and "Object" in a for a in as_list(s["Action"]))
    ]
    assert {a for s in objects for a in as_list(s["Action"])} == {"s3:GetObject", "s3:PutObject"}
    (resource,) = [json.dumps(s["Resource"]) for s in objects]
    assert resource.count("tenants/") == 1 and "/tenants/*/batches/*" in resource
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["tenants/*/batches/*"]}}


def test_every_task_retries_with_backoff_and_is_caught(template: Template) -> None:
    definition = _definition(template)
    states = _states(definition)
    for name in TASKS:
        retried = [r for r in states[name]["Retry"] if "ProviderError" in r["ErrorEquals"]]
        assert retried and retried[0]["BackoffRate"] == 2 and retried[0]["JitterStrategy"] == "FULL", name
        catches = [c for c in states[name].get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
        assert catches, name
    assert definition["States"]["Finalize"]["Catch"][0]["Next"] == "RecordFailure"
    assert definition["States"]["RunLines"]["Catch"][0]["Next"] == "RecordFailure"


def test_the_gateways_own_run_is_a_map_with_bounded_concurrency(template: Template) -> None:
    run = _definition(template)["States"]["RunLines"]
    assert run["Type"] == "Map" and run["ItemsPath"] == "$.chunks"
    assert 1 <= run["MaxConcurrency"] <= 10
    assert run["Next"] == "Finalize"


def test_a_provider_job_is_awaited_by_event_with_a_polling_fallback(template: Template) -> None:
    states = _definition(template)["States"]
    await_job = states["AwaitJob"]
    assert await_job["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert await_job["TimeoutSecondsPath"] == "$.settings.poll_seconds"
    (timeout,) = [c for c in await_job["Catch"] if c["ErrorEquals"] == ["States.Timeout"]]
    assert timeout["Next"] == "CheckJob"
    (rule,) = [
        r
        for r in resources(template, "AWS::Events::Rule").values()
        if "Batch Inference" in json.dumps(props(r)["EventPattern"])
    ]
    assert props(rule)["EventPattern"] == {
        "source": ["aws.bedrock"],
        "detail-type": ["Batch Inference Job State Change"],
    }


def test_only_the_submit_task_may_pass_the_service_role_and_only_to_bedrock(template: Template) -> None:
    (pass_role,) = [s for s in role_statements(template, "batch_submit") if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}
    for other in ("batches", "batch_run_chunk", "batch_finalize"):
        assert not [s for s in role_statements(template, other) if "iam:PassRole" in as_list(s["Action"])], (
            other
        )


def test_the_batch_functions_are_told_the_role_and_the_state_machine(template: Template) -> None:
    env = environment(template, "batches")
    assert env["BATCH_STATE_MACHINE_ARN"]
    assert "BYOM_BATCH_ROLE_ARN" in env and "BATCHES_TABLE" in env


def test_the_batch_routes_go_to_the_batches_function_behind_the_authorizer(template: Template) -> None:
    routes = {path: m for (_, path), m in methods(template).items() if path.startswith("/v1/batches")}
    assert set(routes) == {"/v1/batches", "/v1/batches/{proxy+}"}
    assert all(m["AuthorizationType"] == "CUSTOM" for m in routes.values())
