"""Reading the template: intrinsic functions, references and creation order."""

from __future__ import annotations

import pytest

from local_stack.template import (
    ACCOUNT_ID,
    Physical,
    Resolver,
    Template,
    TemplateError,
    dependency_order,
    get_att_targets,
    references,
)
from tests.unit.local_stack.sample import sample_template


@pytest.fixture
def resolver() -> Resolver:
    template = Template(body=sample_template(), stack_name="Sample")
    resolver = Resolver(template)
    resolver.register(
        "Key", Physical(ref="key-1", attributes={"Arn": "arn:aws:kms:us-east-1:123456789012:key/key-1"})
    )
    resolver.register("Items", Physical(ref="Items", attributes={"Arn": "arn:aws:dynamodb:::table/Items"}))
    return resolver


def test_ref_of_a_created_resource_is_its_physical_id(resolver: Resolver) -> None:
    assert resolver.resolve({"Ref": "Items"}) == "Items"


def test_pseudo_parameters_resolve_to_the_local_account(resolver: Resolver) -> None:
    value = {
        "Fn::Sub": "${AWS::Partition}:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}:${AWS::URLSuffix}"
    }
    assert resolver.resolve(value) == f"aws:us-east-1:{ACCOUNT_ID}:Sample:amazonaws.com"


def test_get_att_answers_the_attribute_of_the_created_resource(resolver: Resolver) -> None:
    assert resolver.resolve({"Fn::GetAtt": ["Key", "Arn"]}) == "arn:aws:kms:us-east-1:123456789012:key/key-1"
    assert resolver.resolve({"Fn::GetAtt": "Key.Arn"}) == "arn:aws:kms:us-east-1:123456789012:key/key-1"


def test_join_resolves_its_items(resolver: Resolver) -> None:
    value = {"Fn::Join": ["", ["byom/", {"Ref": "AWS::StackName"}, "/tenants/"]]}
    assert resolver.resolve(value) == "byom/Sample/tenants/"


def test_sub_takes_local_variables_resource_attributes_and_escapes(resolver: Resolver) -> None:
    value = {"Fn::Sub": ["${Name}-${Key.Arn}-${Items}-${!Literal}", {"Name": {"Ref": "AWS::Region"}}]}
    assert (
        resolver.resolve(value) == "us-east-1-arn:aws:kms:us-east-1:123456789012:key/key-1-Items-${Literal}"
    )


def test_select_and_split_pick_a_part(resolver: Resolver) -> None:
    value = {"Fn::Select": [3, {"Fn::Split": [":", {"Fn::GetAtt": ["Key", "Arn"]}]}]}
    assert resolver.resolve(value) == "us-east-1"


def test_conditions_choose_a_branch_and_no_value_removes_the_property() -> None:
    body = {
        "Conditions": {"IsLocal": {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}},
        "Resources": {},
    }
    resolver = Resolver(Template(body=body))
    value = {
        "A": {"Fn::If": ["IsLocal", "yes", "no"]},
        "B": {"Fn::If": ["IsLocal", {"Ref": "AWS::NoValue"}, 1]},
    }
    assert resolver.resolve(value) == {"A": "yes"}


def test_parameters_resolve_to_their_default(resolver: Resolver) -> None:
    assert resolver.resolve({"Ref": "BootstrapVersion"}) == "/cdk-bootstrap/hnb659fds/version"


def test_resources_not_created_locally_get_synthetic_identifiers(resolver: Resolver) -> None:
    assert resolver.resolve({"Ref": "SomeRole"}) == "SomeRole"
    assert resolver.resolve({"Fn::GetAtt": ["SomeRole", "Arn"]}).startswith("arn:aws:iam::123456789012:role/")


def test_unknown_references_are_errors(resolver: Resolver) -> None:
    with pytest.raises(TemplateError, match="Nope"):
        resolver.resolve({"Ref": "Nope"})
    with pytest.raises(TemplateError, match="NotAnAttribute"):
        resolver.resolve({"Fn::GetAtt": ["Key", "NotAnAttribute"]})


def test_references_find_ref_get_att_and_sub_targets() -> None:
    value = {
        "A": {"Ref": "X"},
        "B": [{"Fn::GetAtt": ["Y", "Arn"]}],
        "C": {"Fn::Sub": "${Z.Arn}/${AWS::Region}"},
    }
    assert references(value) == {"X", "Y", "Z", "AWS::Region"}


def test_get_att_targets_finds_the_function_inside_an_integration_uri() -> None:
    uri = sample_template()["Resources"]["V1ProxyAny"]["Properties"]["Integration"]["Uri"]
    assert get_att_targets(uri) == ["EchoFn"]


def test_dependency_order_creates_the_key_before_what_it_encrypts() -> None:
    order = dependency_order(Template(body=sample_template()))
    assert order.index("Key") < order.index("Items")
    assert order.index("Key") < order.index("AdminSecret")
    assert order.index("AuthFn") < order.index("Authorizer")


def test_dependency_cycles_are_reported() -> None:
    body = {"Resources": {"A": {"Type": "X", "DependsOn": "B"}, "B": {"Type": "X", "DependsOn": ["A"]}}}
    with pytest.raises(TemplateError, match="circular"):
        dependency_order(Template(body=body))
