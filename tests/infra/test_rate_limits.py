"""Requests per minute per key through usage plans (SPEC §8), read from the synthesized template."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template

from infra.constructs.api import RETRY_AFTER_SECONDS
from tests.infra.stack_template import environment, methods, props, resources, role_statements

APIGATEWAY_ARN = "arn:${AWS::Partition}:apigateway:${AWS::Region}::"


def _rest_api(template: Template) -> tuple[str, dict[str, Any]]:
    ((logical_id, api),) = resources(template, "AWS::ApiGateway::RestApi").items()
    return logical_id, props(api)


def _arn(resource: Any) -> str:
    """`arn:${AWS::Partition}:apigateway:${AWS::Region}::/path` from CDK's Fn::Join."""
    if isinstance(resource, str):
        return resource
    parts = resource["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else "${" + p["Ref"] + "}" for p in parts)


def test_the_api_takes_usage_keys_from_the_authorizer(template: Template) -> None:
    _, api = _rest_api(template)

    assert api["ApiKeySourceType"] == "AUTHORIZER"


def test_every_authorized_method_requires_an_api_key_and_health_none(template: Template) -> None:
    for route, method in methods(template).items():
        if route == ("GET", "/health"):
            assert method.get("ApiKeyRequired") is not True
        else:
            assert method["AuthorizationType"] == "CUSTOM", route
            assert method["ApiKeyRequired"] is True, route


def test_the_throttled_response_says_when_to_retry(template: Template) -> None:
    (throttled,) = [
        props(r)
        for r in resources(template, "AWS::ApiGateway::GatewayResponse").values()
        if props(r)["ResponseType"] == "THROTTLED"
    ]

    assert throttled["StatusCode"] == "429"
    assert throttled["ResponseParameters"]["gatewayresponse.header.retry-after"] == f"'{RETRY_AFTER_SECONDS}'"


def test_the_platform_admin_has_a_plan_on_the_stage_without_a_throttle_of_its_own(template: Template) -> None:
    api_id, _ = _rest_api(template)
    (plan_id, plan), *others = resources(template, "AWS::ApiGateway::UsagePlan").items()
    (plan_key,) = resources(template, "AWS::ApiGateway::UsagePlanKey").values()
    ((key_id, key),) = resources(template, "AWS::ApiGateway::ApiKey").items()

    assert others == []
    assert props(plan)["ApiStages"][0]["ApiId"] == {"Ref": api_id}
    assert "Throttle" not in props(plan)
    assert props(plan_key)["UsagePlanId"] == {"Ref": plan_id}
    assert props(plan_key)["KeyId"] == {"Ref": key_id}
    assert props(key)["Enabled"] is True


def test_the_authorizer_names_the_platform_key_by_the_value_it_was_created_with(template: Template) -> None:
    (key,) = resources(template, "AWS::ApiGateway::ApiKey").values()

    assert environment(template, "authorizer")["PLATFORM_USAGE_KEY"] == props(key)["Value"]
    # Derived from the stack id, not a constant of the code.
    assert "AWS::StackId" in str(props(key)["Value"])


def test_the_admin_function_knows_the_api_and_stage_its_plans_bind_to(template: Template) -> None:
    api_id, _ = _rest_api(template)
    env = environment(template, "admin")

    assert env["REST_API_ID"] == {"Ref": api_id}
    assert env["STAGE_NAME"] == "prod"


def test_the_admin_function_manages_only_usage_plans_and_api_keys_of_api_gateway(template: Template) -> None:
    granted = {
        (action, _arn(resource))
        for statement in role_statements(template, "admin")
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        if action.startswith("apigateway:")
        for resource in (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
    }

    assert granted == {
        ("apigateway:POST", f"{APIGATEWAY_ARN}/usageplans"),
        ("apigateway:POST", f"{APIGATEWAY_ARN}/apikeys"),
        ("apigateway:POST", f"{APIGATEWAY_ARN}/usageplans/*/keys"),
        ("apigateway:GET", f"{APIGATEWAY_ARN}/usageplans/*"),
        ("apigateway:PATCH", f"{APIGATEWAY_ARN}/usageplans/*"),
        ("apigateway:DELETE", f"{APIGATEWAY_ARN}/usageplans/*"),
        ("apigateway:DELETE", f"{APIGATEWAY_ARN}/apikeys/*"),
    }


def test_no_other_function_touches_api_gateway(template: Template) -> None:
    for name in ("authorizer", "gateway"):
        actions = [str(s["Action"]) for s in role_statements(template, name)]
        assert not any("apigateway:" in a for a in actions), name
