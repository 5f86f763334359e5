"""The stored-responses table (docs/contracts.md, Stored responses) and who reaches it."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template

from tests.infra.stack_template import environment, props, resources, role_statements, table_of


def test_the_table_is_keyed_by_tenant_and_response_id_and_expires_by_ttl(template: Template) -> None:
    table = props(table_of(template, "RESPONSES_TABLE"))

    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [
        ("tenant_id", "HASH"),
        ("id", "RANGE"),
    ]
    assert "GlobalSecondaryIndexes" not in table
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_the_table_is_encrypted_with_the_stack_key_recoverable_and_kept(template: Template) -> None:
    resource = table_of(template, "RESPONSES_TABLE")
    (key_id,) = resources(template, "AWS::KMS::Key")

    assert props(resource)["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert props(resource)["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert (resource["DeletionPolicy"], props(resource)["DeletionProtectionEnabled"]) == ("Retain", True)


def test_the_gateway_and_admin_functions_name_the_same_table(template: Template) -> None:
    assert (
        environment(template, "gateway")["RESPONSES_TABLE"]
        == environment(template, "admin")["RESPONSES_TABLE"]
    )


@pytest.mark.parametrize("name", ["gateway", "admin"])
def test_the_functions_own_roles_do_not_reach_the_table(template: Template, name: str) -> None:
    """Every read, write and delete goes through the tenant data role (tests/infra/test_governance.py),
    whose grants hold for the session's tenant only."""
    table_id = environment(template, name)["RESPONSES_TABLE"]["Ref"]

    assert not [s for s in role_statements(template, name) if table_id in json.dumps(s["Resource"])]
