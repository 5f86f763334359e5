"""Usage metering, budget alerts and monitoring: the usage table, the alerts topic, the platform
alarms, the dashboard and the grants behind them, read from the synthesized template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.application import create_app
from tests.infra.stack_template import (
    actions_on,
    as_list,
    environment,
    function_id,
    kms_key_id,
    props,
    resources,
    role_statements,
    table_of,
)

STACK_PREFIX = "byom-ByomGateway-"
SPEND_ALARM_PREFIX = f"{STACK_PREFIX}tenant-spend-"
TOPIC_NAME = f"{STACK_PREFIX}alerts"
API_NAME = "byom-ByomGateway"
USAGE_WRITE_ACTIONS = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
}
USAGE_ACTIONS = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"} | USAGE_WRITE_ACTIONS


# ------------------------------------------------------------------------------------- helpers


def topic_id(template: Template) -> str:
    (logical_id,) = resources(template, "AWS::SNS::Topic")
    return logical_id


def usage_arn(template: Template) -> dict[str, Any]:
    return {"Fn::GetAtt": [environment(template, "gateway")["USAGE_TABLE"]["Ref"], "Arn"]}


def joined(value: Any) -> str:
    """An Fn::Join of literals and pseudo parameters as text: `arn:${AWS::Partition}:...`."""
    if isinstance(value, str):
        return value
    delimiter, parts = value["Fn::Join"]
    return str(delimiter).join(part if isinstance(part, str) else f"${{{part['Ref']}}}" for part in parts)


def alarms(template: Template) -> dict[str, dict[str, Any]]:
    """Alarm properties by alarm name."""
    return {
        props(alarm)["AlarmName"]: props(alarm)
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
    }


def dimensions(metric: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in metric["Dimensions"]}


def stage_ref(template: Template) -> dict[str, str]:
    (stage_id,) = resources(template, "AWS::ApiGateway::Stage")
    return {"Ref": stage_id}


def key_policy_statement(template: Template, sid: str) -> dict[str, Any]:
    (key,) = resources(template, "AWS::KMS::Key").values()
    (statement,) = [s for s in props(key)["KeyPolicy"]["Statement"] if s.get("Sid") == sid]
    return statement


def topic_policy_statements(template: Template) -> list[dict[str, Any]]:
    (policy,) = resources(template, "AWS::SNS::TopicPolicy").values()
    assert props(policy)["Topics"] == [{"Ref": topic_id(template)}]
    statements: list[dict[str, Any]] = props(policy)["PolicyDocument"]["Statement"]
    return statements


def dashboard_body(template: Template) -> dict[str, Any]:
    """The dashboard JSON, with each CloudFormation reference written as `Ref:<id>`/`GetAtt:<id>`."""
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    parts = props(dashboard)["DashboardBody"]["Fn::Join"][1]

    def text(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Ref" in part:
            return f"Ref:{part['Ref']}"
        return f"GetAtt:{part['Fn::GetAtt'][0]}"

    body: dict[str, Any] = json.loads("".join(text(part) for part in parts))
    return body


def dashboard_metrics(template: Template) -> list[tuple[str, str, str]]:
    """(namespace, metric name, statistic) of each plotted metric; ("", "", expression) for math."""
    found = []
    for widget in dashboard_body(template)["widgets"]:
        for row in widget["properties"].get("metrics", []):
            options = row[-1] if isinstance(row[-1], dict) else {}
            if "expression" in options:
                found.append(("", "", options["expression"]))
            else:
                found.append((row[0], row[1], options.get("stat", "")))
    return found


def search(metric_name: str, dimension_names: str, statistic: str) -> str:
    return f"SEARCH('{{BYOM,{dimension_names}}} MetricName=\"{metric_name}\"', '{statistic}', 300)"


# ----------------------------------------------------------------------------------- usage table


def test_usage_table_is_keyed_by_pk_and_sk_strings(template: Template) -> None:
    table = props(table_of(template, "USAGE_TABLE"))
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]


def test_usage_markers_and_holds_expire_by_ttl_on_expires_at(template: Template) -> None:
    assert props(table_of(template, "USAGE_TABLE"))["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at",
        "Enabled": True,
    }


def test_usage_table_is_on_demand_with_pitr_and_the_stack_key(template: Template) -> None:
    table = props(table_of(template, "USAGE_TABLE"))
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Fn::GetAtt": [kms_key_id(template), "Arn"]},
    }


def test_usage_table_outlives_the_stack(template: Template) -> None:
    table = table_of(template, "USAGE_TABLE")
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert props(table)["DeletionProtectionEnabled"] is True


def test_gateway_and_admin_name_the_same_usage_table(template: Template) -> None:
    assert environment(template, "gateway")["USAGE_TABLE"] == environment(template, "admin")["USAGE_TABLE"]


@pytest.mark.parametrize("name", ["gateway", "admin"])
def test_usage_table_grants_reads_and_item_writes_without_scans_or_batch_writes(
    template: Template, name: str
) -> None:
    on_usage = {
        action
        for action, resource in actions_on(role_statements(template, name), "dynamodb:")
        if usage_arn(template) in as_list(resource)
    }
    assert on_usage == USAGE_ACTIONS


def test_authorizer_cannot_reach_the_usage_table(template: Template) -> None:
    assert "USAGE_TABLE" not in environment(template, "authorizer")
    assert all(
        usage_arn(template) not in as_list(resource)
        for _, resource in actions_on(role_statements(template, "authorizer"), "dynamodb:")
    )


# ---------------------------------------------------------------------------------- alerts topic


def test_alerts_topic_is_encrypted_with_the_stack_key(template: Template) -> None:
    topic = props(resources(template, "AWS::SNS::Topic")[topic_id(template)])
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [kms_key_id(template), "Arn"]}
    assert topic["TopicName"] == TOPIC_NAME


def test_alerts_topic_refuses_publishing_without_tls(template: Template) -> None:
    denials = [s for s in topic_policy_statements(template) if s["Effect"] == "Deny"]
    assert denials == [
        {
            "Sid": "AllowPublishThroughSSLOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sns:Publish",
            "Resource": {"Ref": topic_id(template)},
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]


def test_alerts_topic_accepts_alarms_of_this_stack_only(template: Template) -> None:
    (allowed,) = [s for s in topic_policy_statements(template) if s["Effect"] == "Allow"]
    assert allowed["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allowed["Action"] == "sns:Publish"
    assert allowed["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert joined(allowed["Condition"]["ArnLike"]["aws:SourceArn"]) == (
        f"arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{STACK_PREFIX}*"
    )


def test_key_lets_cloudwatch_encrypt_only_this_stacks_alarms_for_the_alerts_topic(
    template: Template,
) -> None:
    statement = key_policy_statement(template, "AllowAlarmsToPublishToTheAlertsTopic")
    conditions = statement["Condition"]

    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert sorted(as_list(statement["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert conditions["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert joined(conditions["StringEquals"]["kms:EncryptionContext:aws:sns:topicArn"]) == (
        f"arn:${{AWS::Partition}}:sns:${{AWS::Region}}:${{AWS::AccountId}}:{TOPIC_NAME}"
    )
    assert joined(conditions["ArnLike"]["aws:SourceArn"]).endswith(f":alarm:{STACK_PREFIX}*")


def test_tenant_spend_alarms_fall_under_the_alarms_allowed_to_notify(template: Template) -> None:
    # The admin API's per-tenant alarms publish through the same topic and key statements.
    assert environment(template, "admin")["SPEND_ALARM_PREFIX"].startswith(STACK_PREFIX)


@pytest.mark.parametrize("name", ["gateway", "admin"])
def test_functions_are_told_the_alerts_topic(template: Template, name: str) -> None:
    assert environment(template, name)["ALERTS_TOPIC_ARN"] == {"Ref": topic_id(template)}


# ------------------------------------------------------------------------------- platform alarms

PLATFORM_ALARMS = {
    f"{STACK_PREFIX}api-p99-latency",
    f"{STACK_PREFIX}api-5xx-rate",
    *(f"{STACK_PREFIX}{fn}-throttles" for fn in ("authorizer", "admin", "gateway")),
    *(f"{STACK_PREFIX}{fn}-errors" for fn in ("authorizer", "admin", "gateway")),
    f"{STACK_PREFIX}automation-dead-letters",
    f"{STACK_PREFIX}evals-scorer-dead-letters",
    f"{STACK_PREFIX}meter-backlog-dead-letters",
}

LAMBDA_ALARMS = [
    ("authorizer-throttles", "authorizer", "Throttles"),
    ("admin-throttles", "admin", "Throttles"),
    ("gateway-throttles", "gateway", "Throttles"),
    ("admin-errors", "admin", "Errors"),
    ("gateway-errors", "gateway", "Errors"),
    ("authorizer-errors", "authorizer", "Errors"),
]


def test_the_stack_creates_exactly_the_platform_alarms(template: Template) -> None:
    assert set(alarms(template)) == PLATFORM_ALARMS


def test_every_platform_alarm_notifies_the_alerts_topic(template: Template) -> None:
    for name, alarm in alarms(template).items():
        assert alarm["AlarmActions"] == [{"Ref": topic_id(template)}], name


def test_no_traffic_never_raises_an_alarm(template: Template) -> None:
    for name, alarm in alarms(template).items():
        assert alarm["TreatMissingData"] == "notBreaching", name


def test_platform_alarms_are_outside_the_prefix_the_admin_may_change(template: Template) -> None:
    assert not any(name.startswith(SPEND_ALARM_PREFIX) for name in alarms(template))


def test_api_5xx_rate_alarm_divides_5xx_errors_by_requests_on_the_stage(template: Template) -> None:
    alarm = alarms(template)[f"{STACK_PREFIX}api-5xx-rate"]
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    (expression,) = [query for query in alarm["Metrics"] if "Expression" in query]

    assert expression["Expression"] == "100 * errors / requests"
    for query_id, metric_name in (("errors", "5XXError"), ("requests", "Count")):
        stat = queries[query_id]["MetricStat"]
        assert (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"]) == ("AWS/ApiGateway", metric_name)
        assert dimensions(stat["Metric"]) == {"ApiName": API_NAME, "Stage": stage_ref(template)}
        assert (stat["Stat"], stat["Period"]) == ("Sum", 300)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (5, "GreaterThanThreshold")
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)


def test_api_p99_latency_alarm_watches_the_stage_latency(template: Template) -> None:
    alarm = alarms(template)[f"{STACK_PREFIX}api-p99-latency"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["ExtendedStatistic"]) == (
        "AWS/ApiGateway",
        "Latency",
        "p99",
    )
    assert dimensions(alarm) == {"ApiName": API_NAME, "Stage": stage_ref(template)}
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (20000, "GreaterThanThreshold")
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)


def test_api_metrics_select_this_api_by_name(template: Template) -> None:
    (api,) = resources(template, "AWS::ApiGateway::RestApi").values()
    assert props(api)["Name"] == API_NAME


@pytest.mark.parametrize(("suffix", "function", "metric_name"), LAMBDA_ALARMS)
def test_lambda_alarm_watches_its_function(
    template: Template, suffix: str, function: str, metric_name: str
) -> None:
    alarm = alarms(template)[f"{STACK_PREFIX}{suffix}"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", metric_name, "Sum")
    assert dimensions(alarm) == {"FunctionName": {"Ref": function_id(template, function)}}
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (300, 1)


def test_alarm_thresholds_come_from_context(tmp_path: Path) -> None:
    context = {
        "byom:alarm5xxRatePercent": 2,
        "byom:alarmP99LatencyMs": 15000,
        "byom:alarmLambdaErrors": 3,
        "byom:alarmLambdaThrottles": 4,
        "byom:alarmAuthorizerErrors": 5,
    }
    _, stack = create_app(bundling=False, outdir=str(tmp_path), context=context, with_nag=False)

    thresholds = {
        name.removeprefix(STACK_PREFIX): a["Threshold"]
        for name, a in alarms(Template.from_stack(stack)).items()
    }

    assert thresholds == {
        "api-5xx-rate": 2,
        "api-p99-latency": 15000,
        "authorizer-throttles": 4,
        "admin-throttles": 4,
        "gateway-throttles": 4,
        "admin-errors": 3,
        "gateway-errors": 3,
        "authorizer-errors": 5,
        "automation-dead-letters": 1,
        "evals-scorer-dead-letters": 1,
        "meter-backlog-dead-letters": 1,
    }


# ------------------------------------------------------------------------------------- dashboard


def test_there_is_one_dashboard_named_for_the_stack(template: Template) -> None:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    assert props(dashboard)["DashboardName"] == f"{STACK_PREFIX}operations"


@pytest.mark.parametrize(
    "metric",
    [
        ("AWS/ApiGateway", "Count", "Sum"),
        ("AWS/ApiGateway", "Latency", "p50"),
        ("AWS/ApiGateway", "Latency", "p99"),
        ("AWS/ApiGateway", "4XXError", "Sum"),
        ("AWS/ApiGateway", "5XXError", "Sum"),
        ("AWS/Lambda", "Errors", "Sum"),
        ("", "", f"SUM({search('ProviderErrors', 'model,service,tenant_id', 'Sum')})"),
        ("", "", f"SUM({search('InputTokens', 'model,service,tenant_id', 'Sum')})"),
        ("", "", f"SUM({search('OutputTokens', 'model,service,tenant_id', 'Sum')})"),
        ("", "", search("CostUSD", "model,service,tenant_id", "Sum")),
        ("", "", search("BudgetUsedPercent", "service,tenant_id", "Maximum")),
    ],
)
def test_dashboard_plots(template: Template, metric: tuple[str, str, str]) -> None:
    assert metric in dashboard_metrics(template)


def test_dashboard_plots_the_errors_of_every_function(template: Template) -> None:
    body = json.dumps(dashboard_body(template))
    for name in ("authorizer", "admin", "gateway"):
        assert f'"FunctionName", "Ref:{function_id(template, name)}"' in body, name


def test_dashboard_api_metrics_are_those_of_this_api_and_stage(template: Template) -> None:
    for widget in dashboard_body(template)["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if row[0] == "AWS/ApiGateway":
                assert row[2:6] == ["ApiName", API_NAME, "Stage", f"Ref:{stage_ref(template)['Ref']}"]


def test_dashboard_shows_the_state_of_every_platform_alarm(template: Template) -> None:
    (widget,) = [w for w in dashboard_body(template)["widgets"] if w["type"] == "alarm"]
    assert sorted(widget["properties"]["alarms"]) == sorted(
        f"GetAtt:{logical_id}" for logical_id in resources(template, "AWS::CloudWatch::Alarm")
    )


# ------------------------------------------------------------------------ events and alarm grants


def test_gateway_puts_events_only_on_the_default_bus(template: Template) -> None:
    granted = actions_on(role_statements(template, "gateway"), "events:")

    assert environment(template, "gateway")["EVENT_BUS_NAME"] == "default"
    assert [action for action, _ in granted] == ["events:PutEvents"]
    assert joined(granted[0][1]) == (
        "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"
    )


def test_gateway_publishes_only_to_the_alerts_topic(template: Template) -> None:
    granted = actions_on(role_statements(template, "gateway"), "sns:")
    assert granted == [("sns:Publish", {"Ref": topic_id(template)})]


@pytest.mark.parametrize("name", ["authorizer", "admin"])
def test_only_the_gateway_publishes_budget_notices(template: Template, name: str) -> None:
    statements = role_statements(template, name)
    assert actions_on(statements, "sns:") == []
    # The admin function manages automations' rules (tests/infra/test_automations.py), never puts events.
    assert [a for a, _ in actions_on(statements, "events:") if a == "events:PutEvents"] == []


def test_admin_manages_only_alarms_under_the_spend_prefix(template: Template) -> None:
    granted = actions_on(role_statements(template, "admin"), "cloudwatch:")

    assert environment(template, "admin")["SPEND_ALARM_PREFIX"] == SPEND_ALARM_PREFIX
    assert {action for action, _ in granted} == {"cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"}
    for _, resource in granted:
        assert joined(resource) == (
            "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}"
            f":alarm:{SPEND_ALARM_PREFIX}*"
        )


@pytest.mark.parametrize("name", ["authorizer", "gateway"])
def test_only_the_admin_manages_alarms(template: Template, name: str) -> None:
    assert actions_on(role_statements(template, name), "cloudwatch:") == []
