"""Evals as synthesized: the scorer's rule on the platform bus, its dead letters, the routes to the
evals function, and grants confined to the tenants' eval objects and their runs' batches."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk.assertions import Match, Template

from tests.infra.stack_template import (
    as_list,
    environment,
    function_id,
    props,
    resources,
    role_statements,
)


def test_the_scorer_is_woken_only_by_eval_runs_finished_batches(template: Template) -> None:
    scorer = function_id(template, "evals_scorer")
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["byom.batches"],
                "detail-type": ["BatchFinished"],
                "detail": {"metadata": {"eval_run_id": [{"exists": True}]}},
            },
            "Targets": Match.array_with([Match.object_like({"Arn": {"Fn::GetAtt": [scorer, "Arn"]}})]),
        },
    )


def test_events_the_scorer_fails_on_go_to_its_dead_letters(template: Template) -> None:
    scorer = function_id(template, "evals_scorer")
    (config,) = [
        c
        for c in resources(template, "AWS::Lambda::EventInvokeConfig").values()
        if props(c)["FunctionName"] == {"Ref": scorer}
    ]
    assert props(config)["MaximumRetryAttempts"] == 2
    assert "OnFailure" in props(config)["DestinationConfig"]


def test_evals_routes_go_to_the_evals_function(template: Template) -> None:
    evals_fn = function_id(template, "evals")
    (evals_resource,) = [
        logical_id
        for logical_id, r in resources(template, "AWS::ApiGateway::Resource").items()
        if props(r)["PathPart"] == "evals"
    ]
    methods = [
        m
        for m in resources(template, "AWS::ApiGateway::Method").values()
        if props(m)["ResourceId"] == {"Ref": evals_resource}
    ]
    assert len(methods) == 1
    uri = str(props(methods[0])["Integration"]["Uri"])
    assert evals_fn in uri and props(methods[0])["AuthorizationType"] == "CUSTOM"


def _actions(statement: dict[str, Any]) -> list[str]:
    return [str(a) for a in as_list(statement["Action"])]


def _prefixes(statement: dict[str, Any]) -> set[str]:
    return set(re.findall(r"/tenants/\*/\w+/\*", json.dumps(statement["Resource"])))


def test_the_evals_function_writes_only_eval_objects_and_its_runs_batches(template: Template) -> None:
    """Eval objects, and what submit_lines writes: the run's input file and its batch's chunks."""
    writes = [s for s in role_statements(template, "evals") if "s3:PutObject" in _actions(s)]
    written = set().union(*(_prefixes(s) for s in writes))
    assert written == {"/tenants/*/evals/*", "/tenants/*/files/*", "/tenants/*/batches/*"}


def test_the_evals_function_starts_only_the_batch_state_machine(template: Template) -> None:
    starts = [s for s in role_statements(template, "evals") if "states:StartExecution" in _actions(s)]
    assert len(starts) == 1 and _actions(starts[0]) == ["states:StartExecution"]
    assert "-batches" in json.dumps(starts[0]["Resource"])


def test_the_scorer_only_reads_batches(template: Template) -> None:
    batch_statements = [
        s
        for s in role_statements(template, "evals_scorer")
        if s.get("Sid") in ("ReadBatches", "ReadBatchLines")
    ]
    assert sorted(a for s in batch_statements for a in _actions(s)) == ["dynamodb:GetItem", "s3:GetObject"]


def test_the_gateway_reads_the_evals_table_for_recommendations(template: Template) -> None:
    assert "EVALS_TABLE" in environment(template, "gateway")
    reads = [s for s in role_statements(template, "gateway") if s.get("Sid") == "ReadEvalRuns"]
    assert reads and reads[0]["Action"] == "dynamodb:Query"


def test_the_evals_table_is_encrypted_with_the_stacks_key_and_recoverable(template: Template) -> None:
    table_id = environment(template, "evals")["EVALS_TABLE"]["Ref"]
    table = props(resources(template, "AWS::DynamoDB::Table")[table_id])
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
