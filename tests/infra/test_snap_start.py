"""Lambda SnapStart (byom:snapStart): off by default; on, API Gateway invokes published versions."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.application import create_app
from infra.config import SNAP_START_CONTEXT
from tests.infra.stack_template import function_id, methods, props, resources

CHAT = ("POST", "/v1/chat/completions")
SNAP_STARTED = ("gateway", "authorizer")


@pytest.fixture(scope="module")
def snap_started(tmp_path_factory: pytest.TempPathFactory) -> Template:
    _, stack = create_app(
        bundling=False,
        outdir=str(tmp_path_factory.mktemp("snap-start")),
        context={SNAP_START_CONTEXT: True},
        with_nag=False,
    )
    return Template.from_stack(stack)


def _function(template: Template, name: str) -> dict[str, Any]:
    return props(resources(template, "AWS::Lambda::Function")[function_id(template, name)])


def _invoked_by_chat_route(template: Template) -> dict[str, Any]:
    """The reference to what the chat route's integration URI invokes (a function's ARN or an alias)."""
    uri = methods(template)[CHAT]["Integration"]["Uri"]
    pseudo = ({"Ref": "AWS::Partition"}, {"Ref": "AWS::Region"})
    (target,) = [part for part in uri["Fn::Join"][1] if isinstance(part, dict) and part not in pseudo]
    return target  # type: ignore[no-any-return]


def test_by_default_no_function_has_snap_start_or_an_alias(template: Template) -> None:
    functions = resources(template, "AWS::Lambda::Function").values()
    assert [props(fn).get("SnapStart") for fn in functions if props(fn).get("SnapStart")] == []
    assert resources(template, "AWS::Lambda::Alias") == {}


def test_by_default_the_api_invokes_the_gateway_function_itself(template: Template) -> None:
    assert _invoked_by_chat_route(template) == {"Fn::GetAtt": [function_id(template, "gateway"), "Arn"]}


@pytest.mark.parametrize("name", SNAP_STARTED)
def test_snap_start_applies_to_published_versions(snap_started: Template, name: str) -> None:
    assert _function(snap_started, name)["SnapStart"] == {"ApplyOn": "PublishedVersions"}


def test_snap_start_is_only_on_the_request_path_functions(snap_started: Template) -> None:
    on = {
        props(fn)["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        for fn in resources(snap_started, "AWS::Lambda::Function").values()
        if props(fn).get("SnapStart")
    }
    assert on == {f"byom-{name}" for name in SNAP_STARTED}


@pytest.mark.parametrize("name", SNAP_STARTED)
def test_each_snap_started_function_has_a_live_alias_of_its_current_version(
    snap_started: Template, name: str
) -> None:
    fn_id = function_id(snap_started, name)
    aliases = [
        props(alias)
        for alias in resources(snap_started, "AWS::Lambda::Alias").values()
        if props(alias)["FunctionName"] == {"Ref": fn_id}
    ]
    (alias,) = aliases
    version_id = alias["FunctionVersion"]["Fn::GetAtt"][0]
    version = props(resources(snap_started, "AWS::Lambda::Version")[version_id])
    assert (alias["Name"], version["FunctionName"]) == ("live", {"Ref": fn_id})


def _alias_id(template: Template, name: str) -> str:
    fn_id = function_id(template, name)
    (alias_id,) = [
        logical_id
        for logical_id, alias in resources(template, "AWS::Lambda::Alias").items()
        if props(alias)["FunctionName"] == {"Ref": fn_id}
    ]
    return alias_id


def test_with_snap_start_the_api_invokes_the_gateways_alias(snap_started: Template) -> None:
    assert _invoked_by_chat_route(snap_started) == {"Ref": _alias_id(snap_started, "gateway")}


def test_with_snap_start_the_authorizer_is_invoked_through_its_alias(snap_started: Template) -> None:
    (authorizer,) = resources(snap_started, "AWS::ApiGateway::Authorizer").values()
    parts = props(authorizer)["AuthorizerUri"]["Fn::Join"][1]
    assert {"Ref": _alias_id(snap_started, "authorizer")} in parts


def test_with_snap_start_api_gateway_may_invoke_the_gateways_alias(snap_started: Template) -> None:
    alias = {"Ref": _alias_id(snap_started, "gateway")}
    permitted = [
        props(permission)
        for permission in resources(snap_started, "AWS::Lambda::Permission").values()
        if props(permission)["FunctionName"] == alias
    ]
    assert permitted
    assert {p["Principal"] for p in permitted} == {"apigateway.amazonaws.com"}
