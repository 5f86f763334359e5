"""What the admin function may do with governance data: audit records, cache entries, stored content."""

from __future__ import annotations

import json
from typing import Any

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


def _on(template: Template, prefix: str, resource_id: str) -> set[str]:
    return {
        action
        for action, resource in actions_on(role_statements(template, "admin"), prefix)
        if resource_id in json.dumps(resource)
    }


def test_audit_records_are_queried_and_erased_but_never_scanned(template: Template) -> None:
    granted = _on(template, "dynamodb:", _ref(template, "AUDIT_TABLE"))

    assert granted == {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    }


def _s3_statements(template: Template) -> list[dict[str, Any]]:
    return [
        s
        for s in role_statements(template, "admin")
        if any(a.startswith("s3:") for a in as_list(s["Action"]))
    ]


def test_stored_content_is_read_and_only_a_subjects_is_deleted(template: Template) -> None:
    by_action: dict[str, list[str]] = {}
    for statement in _s3_statements(template):
        for action in as_list(statement["Action"]):
            by_action.setdefault(action, []).extend(json.dumps(r) for r in as_list(statement["Resource"]))

    assert set(by_action) == {
        "s3:GetObject",
        "s3:ListBucketVersions",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
    }
    assert all(r.endswith('/tenants/*/subjects/*"]]}') for r in by_action["s3:DeleteObjectVersion"])
    assert all(r.endswith('/tenants/*/subjects/*"]]}') for r in by_action["s3:DeleteObject"])
    assert all(("/content/*" in r or "/subjects/*" in r) for r in by_action["s3:GetObject"])


def test_listing_versions_is_limited_to_the_subjects_prefixes(template: Template) -> None:
    (listing,) = [s for s in _s3_statements(template) if "s3:ListBucketVersions" in as_list(s["Action"])]

    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["tenants/*/subjects/*"]}}


def test_content_data_keys_are_only_decrypted_and_only_for_audit_content(template: Template) -> None:
    direct = [
        s
        for s in role_statements(template, "admin")
        if any(a.startswith("kms:") for a in as_list(s["Action"]))
        and "kms:ViaService" not in s["Condition"].get("StringEquals", {})
    ]

    (statement,) = direct
    assert as_list(statement["Action"]) == ["kms:Decrypt"]
    assert statement["Condition"] == {"StringEquals": {"kms:EncryptionContext:purpose": "audit-content"}}
