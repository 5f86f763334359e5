"""Queries on the synthesized template shared by the infrastructure tests."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template


def resources(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return template.find_resources(resource_type)


def props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties", {})


def function_id(template: Template, name: str) -> str:
    """Logical id of the function functions/<name> (by its Powertools service name)."""
    matches = [
        logical_id
        for logical_id, fn in resources(template, "AWS::Lambda::Function").items()
        if props(fn)["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == f"byom-{name}"
    ]
    assert len(matches) == 1, f"expected one {name} function, got {matches}"
    return matches[0]


def environment(template: Template, name: str) -> dict[str, Any]:
    fn = resources(template, "AWS::Lambda::Function")[function_id(template, name)]
    variables: dict[str, Any] = props(fn)["Environment"]["Variables"]
    return variables


def table_of(template: Template, env_var: str) -> dict[str, Any]:
    """The table resource a function environment variable names (the cache only the gateway knows)."""
    env = environment(template, "gateway" if env_var == "CACHE_TABLE" else "admin")
    table: dict[str, Any] = resources(template, "AWS::DynamoDB::Table")[env[env_var]["Ref"]]
    return table


def role_statements(template: Template, name: str) -> list[dict[str, Any]]:
    fn = resources(template, "AWS::Lambda::Function")[function_id(template, name)]
    role_id = props(fn)["Role"]["Fn::GetAtt"][0]
    statements: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in props(policy)["Roles"]:
            statements.extend(props(policy)["PolicyDocument"]["Statement"])
    role = resources(template, "AWS::IAM::Role")[role_id]
    for inline in props(role).get("Policies", []):
        statements.extend(inline["PolicyDocument"]["Statement"])
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def actions_on(statements: list[dict[str, Any]], prefix: str) -> list[tuple[str, Any]]:
    return [
        (action, statement["Resource"])
        for statement in statements
        for action in as_list(statement["Action"])
        if action.startswith(prefix)
    ]


def kms_key_id(template: Template) -> str:
    (logical_id,) = resources(template, "AWS::KMS::Key")
    return logical_id


def methods(template: Template) -> dict[tuple[str, str], dict[str, Any]]:
    """API methods keyed by (HTTP method, full resource path)."""
    api_resources = resources(template, "AWS::ApiGateway::Resource")

    def path_of(resource_ref: Any) -> str:
        if not isinstance(resource_ref, dict) or "Ref" not in resource_ref:
            return ""  # the root resource is a GetAtt on the RestApi
        resource = props(api_resources[resource_ref["Ref"]])
        return f"{path_of(resource['ParentId'])}/{resource['PathPart']}"

    return {
        (props(method)["HttpMethod"], path_of(props(method)["ResourceId"])): props(method)
        for method in resources(template, "AWS::ApiGateway::Method").values()
    }


def stage(template: Template) -> dict[str, Any]:
    (only,) = resources(template, "AWS::ApiGateway::Stage").values()
    return props(only)
