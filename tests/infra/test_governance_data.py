"""What the admin function may do with governance data: audit records, cache entries, stored content."""

from __future__ import annotations

import json

from aws_cdk.assertions import Template

from tests.infra.stack_template import actions_on, as_list, environment, props, resources, role_statements


def _ref(template: Template, env_var: str) -> str:
    return str(environment(template, "admin")[env_var]["Ref"])


def test_the_admin_function_names_the_governance_tables_and_the_data_bucket(template: Template) -> None:
    env = environment(template, "admin")
    tables = resources(template, "AWS::DynamoDB::Table")

    for env_var in ("AUDIT_TABLE", "POLICIES_TABLE", "CACHE_TABLE"):
        assert env[env_var]["Ref"] in tables, env_var
    assert env["DATA_BUCKET"]["Ref"] in resources(template, "AWS::S3::Bucket")


def test_the_audit_table_has_the_contracts_keys_and_a_keys_only_subject_index(template: Template) -> None:
    table = props(resources(template, "AWS::DynamoDB::Table")[_ref(template, "AUDIT_TABLE")])

    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [
        ("tenant_id", "HASH"),
        ("sk", "RANGE"),
    ]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_subject"
    assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [
        ("subject", "HASH"),
        ("sk", "RANGE"),
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def _on(template: Template, function: str, prefix: str, resource_id: str) -> set[str]:
    return {
        action
        for action, resource in actions_on(role_statements(template, function), prefix)
        if resource_id in json.dumps(resource)
    }


def test_the_admin_function_writes_audit_records_but_reads_none_with_its_own_role(template: Template) -> None:
    """Audit queries, exports and erasures go through the tenant data role (tests/infra/
    test_governance.py): the function's own role cannot read one tenant's records for another."""
    assert _on(template, "admin", "dynamodb:", _ref(template, "AUDIT_TABLE")) == {"dynamodb:PutItem"}


def test_the_admin_function_reaches_no_stored_content_with_its_own_role(template: Template) -> None:
    statements = role_statements(template, "admin")
    assert not [s for s in statements if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    direct_key_use = [
        s
        for s in statements
        if any(a.startswith("kms:") for a in as_list(s["Action"]))
        and "kms:ViaService" not in s["Condition"].get("StringEquals", {})
    ]
    assert direct_key_use == []


def test_the_gateway_only_puts_logged_content_and_generates_its_data_keys(template: Template) -> None:
    statements = role_statements(template, "gateway")
    s3 = {a for s in statements for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert s3 == {"s3:PutObject", "s3:PutObjectTagging"}
    (direct,) = [
        s
        for s in statements
        if any(a.startswith("kms:") for a in as_list(s["Action"]))
        and "kms:ViaService" not in s["Condition"].get("StringEquals", {})
    ]
    assert as_list(direct["Action"]) == ["kms:GenerateDataKey"]
    assert direct["Condition"] == {"StringEquals": {"kms:EncryptionContext:purpose": "audit-content"}}


def test_logged_content_expires_with_its_retention_tier(template: Template) -> None:
    from byom.dal.content import RETENTION_TAG, RETENTION_TIERS

    from infra.constructs.data import CONTENT_RETENTION_TAG, CONTENT_RETENTION_TIERS

    assert (RETENTION_TAG, RETENTION_TIERS) == (CONTENT_RETENTION_TAG, CONTENT_RETENTION_TIERS)
    (bucket,) = [
        props(b)
        for b in resources(template, "AWS::S3::Bucket").values()
        if "LifecycleConfiguration" in props(b)
    ]
    rules = {
        r["TagFilters"][0]["Value"]: r
        for r in bucket["LifecycleConfiguration"]["Rules"]
        if r.get("TagFilters")
    }
    assert set(rules) == {str(days) for days in RETENTION_TIERS}
    for days, rule in rules.items():
        assert rule["TagFilters"] == [{"Key": RETENTION_TAG, "Value": days}]
        assert (
            rule["ExpirationInDays"] == int(days)
            and rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
        )
