"""The IAM policy evaluator of the local stack, and its request contexts, on plain data."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from local_stack.iam_policy import (
    Decision,
    Request,
    TableKeys,
    UnsupportedPolicy,
    dynamodb_requests,
    evaluate,
    evaluate_all,
    kms_requests,
    s3_requests,
)

TAG = "${aws:PrincipalTag/tenant_id}"
A = {"aws:PrincipalTag/tenant_id": "A"}


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str | list[str] = "s3:GetObject", resource: str | list[str] = "*", **extra: object) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def decide(
    statement: dict, *, action: str = "s3:GetObject", resource: str = "arn:x", **context: Any
) -> Decision:
    return evaluate([policy(statement)], Request(action, resource, {**A, **context}))  # type: ignore[arg-type]


# Effects


def test_nothing_applicable_is_an_implicit_deny() -> None:
    assert (
        evaluate([policy(allow("s3:PutObject"))], Request("s3:GetObject", "arn:x")) is Decision.IMPLICIT_DENY
    )


def test_an_explicit_deny_wins_over_an_allow() -> None:
    statements = policy(allow(), {"Effect": "Deny", "Action": "s3:*", "Resource": "*"})

    assert evaluate([statements], Request("s3:GetObject", "arn:x")) is Decision.EXPLICIT_DENY


def test_an_allow_in_any_policy_allows() -> None:
    assert evaluate([policy(), policy(allow())], Request("s3:GetObject", "arn:x")) is Decision.ALLOW


def test_every_authorization_of_a_call_must_be_allowed() -> None:
    policies = [policy(allow(resource="arn:a"))]

    assert evaluate_all(policies, [Request("s3:GetObject", "arn:a")]) is Decision.ALLOW
    assert evaluate_all(policies, [Request("s3:GetObject", "arn:a"), Request("s3:GetObject", "arn:b")]) is (
        Decision.IMPLICIT_DENY
    )


# Action and Resource


def test_actions_glob_and_ignore_case() -> None:
    assert decide(allow("S3:Get*"), action="s3:GetObject") is Decision.ALLOW
    assert decide(allow("s3:Get?bject"), action="s3:GetObject") is Decision.ALLOW
    assert decide(allow("s3:Put*"), action="s3:GetObject") is Decision.IMPLICIT_DENY


def test_not_action_applies_to_every_other_action() -> None:
    statement = {"Effect": "Allow", "NotAction": "s3:DeleteObject", "Resource": "*"}

    assert decide(statement, action="s3:GetObject") is Decision.ALLOW
    assert decide(statement, action="s3:DeleteObject") is Decision.IMPLICIT_DENY


def test_resources_glob_case_sensitively() -> None:
    assert (
        decide(allow(resource="arn:aws:s3:::b/tenants/*"), resource="arn:aws:s3:::b/tenants/A/x")
        is Decision.ALLOW
    )
    assert decide(allow(resource="arn:aws:s3:::b/Tenants/*"), resource="arn:aws:s3:::b/tenants/A/x") is (
        Decision.IMPLICIT_DENY
    )


def test_not_resource_applies_to_every_other_resource() -> None:
    statement = {"Effect": "Allow", "Action": "*", "NotResource": "arn:secret"}

    assert decide(statement, resource="arn:other") is Decision.ALLOW
    assert decide(statement, resource="arn:secret") is Decision.IMPLICIT_DENY


# Policy variables


def test_a_principal_tag_variable_in_a_resource_is_the_sessions_tag() -> None:
    statement = allow(resource=f"arn:aws:s3:::b/tenants/{TAG}/*")

    assert decide(statement, resource="arn:aws:s3:::b/tenants/A/content/r.json") is Decision.ALLOW
    assert decide(statement, resource="arn:aws:s3:::b/tenants/B/content/r.json") is Decision.IMPLICIT_DENY


def test_a_statement_whose_variable_cannot_be_resolved_does_not_apply() -> None:
    statement = allow(resource=f"arn:aws:s3:::b/tenants/{TAG}/*")

    request = Request("s3:GetObject", "arn:aws:s3:::b/tenants//x")
    assert evaluate([policy(statement)], request) is Decision.IMPLICIT_DENY


def test_a_tag_value_with_a_star_matches_only_a_star() -> None:
    statement = allow(resource=f"arn:aws:s3:::b/tenants/{TAG}/*")
    request = Request("s3:GetObject", "arn:aws:s3:::b/tenants/B/x", {"aws:PrincipalTag/tenant_id": "*"})

    assert evaluate([policy(statement)], request) is Decision.IMPLICIT_DENY


def test_escaped_characters_are_literal() -> None:
    statement = allow(resource="arn:x/${*}")

    assert decide(statement, resource="arn:x/*") is Decision.ALLOW
    assert decide(statement, resource="arn:x/anything") is Decision.IMPLICIT_DENY


# Conditions


def test_string_equals_compares_exactly_and_any_listed_value_matches() -> None:
    statement = allow(Condition={"StringEquals": {"kms:EncryptionContext:tenant_id": [TAG, "shared"]}})

    assert decide(statement, **{"kms:EncryptionContext:tenant_id": "A"}) is Decision.ALLOW
    assert decide(statement, **{"kms:EncryptionContext:tenant_id": "shared"}) is Decision.ALLOW
    assert decide(statement, **{"kms:EncryptionContext:tenant_id": "B"}) is Decision.IMPLICIT_DENY
    assert decide(statement) is Decision.IMPLICIT_DENY


def test_string_like_globs() -> None:
    statement = allow(Condition={"StringLike": {"s3:prefix": [f"tenants/{TAG}/*"]}})

    assert decide(statement, **{"s3:prefix": "tenants/A/"}) is Decision.ALLOW
    assert decide(statement, **{"s3:prefix": "tenants/"}) is Decision.IMPLICIT_DENY
    assert decide(statement) is Decision.IMPLICIT_DENY


def multi(key: str, *values: str) -> dict[str, Any]:
    """A multivalued context key."""
    return {key: list(values)}


LEADING_KEYS = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [TAG, f"{TAG}#*"]}}


def test_for_all_values_needs_every_value_to_match() -> None:
    statement = allow(Condition=LEADING_KEYS)

    assert decide(statement, **multi("dynamodb:LeadingKeys", "A", "A#2026-11")) is Decision.ALLOW
    assert decide(statement, **multi("dynamodb:LeadingKeys", "A", "B#2026-11")) is Decision.IMPLICIT_DENY
    assert decide(statement, **multi("dynamodb:LeadingKeys", "AB")) is Decision.IMPLICIT_DENY


def test_for_all_values_holds_for_a_missing_key_as_in_iam() -> None:
    assert decide(allow(Condition=LEADING_KEYS)) is Decision.ALLOW


def test_for_any_value_needs_one_value_to_match_and_a_missing_key_fails() -> None:
    statement = allow(Condition={"ForAnyValue:StringLike": {"aws:TagKeys": ["tenant_*"]}})

    assert decide(statement, **multi("aws:TagKeys", "other", "tenant_id")) is Decision.ALLOW
    assert decide(statement, **multi("aws:TagKeys", "other")) is Decision.IMPLICIT_DENY
    assert decide(statement) is Decision.IMPLICIT_DENY


def test_if_exists_holds_when_the_key_is_missing() -> None:
    statement = allow(Condition={"StringEqualsIfExists": {"aws:RequestTag/tenant_id": TAG}})

    assert decide(statement) is Decision.ALLOW
    assert decide(statement, **{"aws:RequestTag/tenant_id": "A"}) is Decision.ALLOW
    assert decide(statement, **{"aws:RequestTag/tenant_id": "B"}) is Decision.IMPLICIT_DENY


def test_null_checks_presence() -> None:
    present = allow(Condition={"Null": {"aws:RequestTag/tenant_id": "false"}})
    absent = allow(Condition={"Null": {"aws:RequestTag/tenant_id": "true"}})

    assert decide(present, **{"aws:RequestTag/tenant_id": "A"}) is Decision.ALLOW
    assert decide(present) is Decision.IMPLICIT_DENY
    assert decide(absent) is Decision.ALLOW


def test_arn_like_and_bool() -> None:
    statement = allow(
        Condition={
            "ArnLike": {"aws:SourceArn": "arn:aws:lambda:*:*:function:byom-*"},
            "Bool": {"aws:SecureTransport": "true"},
        }
    )

    matching = {
        "aws:SourceArn": "arn:aws:lambda:us-east-1:1:function:byom-admin",
        "aws:SecureTransport": "True",
    }
    assert decide(statement, **matching) is Decision.ALLOW
    assert decide(statement, **(matching | {"aws:SecureTransport": "false"})) is Decision.IMPLICIT_DENY
    assert decide(statement, **(matching | {"aws:SourceArn": "arn:aws:lambda:us-east-1:1:function:x"})) is (
        Decision.IMPLICIT_DENY
    )


def test_every_condition_of_a_statement_must_hold() -> None:
    statement = allow(Condition={"StringEquals": {"k1": "a"}, "StringLike": {"k2": "b*"}})

    assert decide(statement, k1="a", k2="bc") is Decision.ALLOW
    assert decide(statement, k1="a", k2="c") is Decision.IMPLICIT_DENY


def test_a_negated_operator_holds_when_the_key_is_missing() -> None:
    assert decide(allow(Condition={"StringNotEquals": {"k": "x"}})) is Decision.ALLOW
    assert decide(allow(Condition={"StringNotEquals": {"k": "x"}}), k="x") is Decision.IMPLICIT_DENY


def test_an_unknown_operator_raises_rather_than_allows() -> None:
    with pytest.raises(UnsupportedPolicy):
        decide(allow(Condition={"NumericLessThan": {"k": "1"}}), k="0")


# Trust policies


def test_a_trust_statement_matches_its_named_principals() -> None:
    trust = {"Effect": "Allow", "Principal": {"AWS": ["arn:role/admin"]}, "Action": "sts:AssumeRole"}

    assert (
        evaluate([policy(trust)], Request("sts:AssumeRole", "*", principal="arn:role/admin"))
        is Decision.ALLOW
    )
    assert evaluate([policy(trust)], Request("sts:AssumeRole", "*", principal="arn:role/x")) is (
        Decision.IMPLICIT_DENY
    )


# Request context: DynamoDB

AUDIT = TableKeys(
    arn="arn:aws:dynamodb:r:1:table/audit",
    partition_key="tenant_id",
    index_partition_keys={"by_subject": "subject"},
)
USAGE = TableKeys(arn="arn:aws:dynamodb:r:1:table/usage", partition_key="pk")
TABLES = {"audit": AUDIT, "usage": USAGE}


def test_a_query_leads_with_its_partition_key_value() -> None:
    body = {
        "TableName": "audit",
        "KeyConditionExpression": "#t = :t AND begins_with(sk, :since)",
        "ExpressionAttributeNames": {"#t": "tenant_id"},
        "ExpressionAttributeValues": {":t": {"S": "B"}, ":since": {"S": "17"}},
    }

    (request,) = dynamodb_requests("Query", body, TABLES, A)

    assert request.action == "dynamodb:Query"
    assert request.resource == AUDIT.arn
    assert request.context["dynamodb:LeadingKeys"] == ["B"]
    assert request.context["aws:PrincipalTag/tenant_id"] == "A"


def test_a_query_on_an_index_names_the_index_and_its_key() -> None:
    body = {
        "TableName": "audit",
        "IndexName": "by_subject",
        "KeyConditionExpression": ":s = subject",
        "ExpressionAttributeValues": {":s": {"S": "A#alice"}},
    }

    (request,) = dynamodb_requests("Query", body, TABLES, {})

    assert request.resource == f"{AUDIT.arn}/index/by_subject"
    assert request.context["dynamodb:LeadingKeys"] == ["A#alice"]


def test_legacy_key_conditions_lead_too() -> None:
    body = {
        "TableName": "usage",
        "KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "B#2026-11"}]}},
    }

    (request,) = dynamodb_requests("Query", body, TABLES, {})

    assert request.context["dynamodb:LeadingKeys"] == ["B#2026-11"]


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("GetItem", {"TableName": "usage", "Key": {"pk": {"S": "B#2026-11"}, "sk": {"S": "total"}}}),
        ("DeleteItem", {"TableName": "usage", "Key": {"pk": {"S": "B#2026-11"}, "sk": {"S": "total"}}}),
        ("PutItem", {"TableName": "usage", "Item": {"pk": {"S": "B#2026-11"}, "sk": {"S": "total"}}}),
    ],
)
def test_item_calls_lead_with_the_items_partition_key(operation: str, body: dict) -> None:
    (request,) = dynamodb_requests(operation, body, TABLES, {})

    assert (request.action, request.resource) == (f"dynamodb:{operation}", USAGE.arn)
    assert request.context["dynamodb:LeadingKeys"] == ["B#2026-11"]


def test_batches_need_one_authorization_per_table_with_all_its_keys() -> None:
    body = {
        "RequestItems": {
            "audit": [
                {"DeleteRequest": {"Key": {"tenant_id": {"S": "A"}, "sk": {"S": "1"}}}},
                {"PutRequest": {"Item": {"tenant_id": {"S": "B"}, "sk": {"S": "2"}}}},
            ],
            "usage": [{"DeleteRequest": {"Key": {"pk": {"S": "A#2026-11"}, "sk": {"S": "t"}}}}],
        }
    }

    requests = dynamodb_requests("BatchWriteItem", body, TABLES, {})

    assert {(r.resource, tuple(r.context["dynamodb:LeadingKeys"])) for r in requests} == {
        (AUDIT.arn, ("A", "B")),
        (USAGE.arn, ("A#2026-11",)),
    }


def test_batch_get_leads_with_every_key() -> None:
    body = {
        "RequestItems": {
            "usage": {
                "Keys": [
                    {"pk": {"S": "A"}, "sk": {"S": "budget"}},
                    {"pk": {"S": "A#2026-11"}, "sk": {"S": "t"}},
                ]
            }
        }
    }

    (request,) = dynamodb_requests("BatchGetItem", body, TABLES, {})

    assert request.context["dynamodb:LeadingKeys"] == ["A", "A#2026-11"]


def test_a_scan_has_no_leading_keys() -> None:
    (request,) = dynamodb_requests("Scan", {"TableName": "audit"}, TABLES, {})

    assert "dynamodb:LeadingKeys" not in request.context


# Request context: S3


def test_an_object_read_is_the_objects_arn() -> None:
    (request,) = s3_requests("GET", "/bucket/tenants/B/content/r.json", "", b"", {})

    assert (request.action, request.resource) == (
        "s3:GetObject",
        "arn:aws:s3:::bucket/tenants/B/content/r.json",
    )


def test_a_versioned_delete_is_delete_object_version() -> None:
    (request,) = s3_requests("DELETE", "/bucket/tenants/A/x", "versionId=v1", b"", {})

    assert request.action == "s3:DeleteObjectVersion"


def test_a_listing_carries_its_prefix_on_the_bucket() -> None:
    (listing,) = s3_requests("GET", "/bucket", "list-type=2&prefix=tenants%2FB%2F", b"", {})
    (versions,) = s3_requests("GET", "/bucket/", "versions&prefix=tenants/A/", b"", {})

    assert (listing.action, listing.resource, listing.context["s3:prefix"]) == (
        "s3:ListBucket",
        "arn:aws:s3:::bucket",
        "tenants/B/",
    )
    assert (versions.action, versions.context["s3:prefix"]) == ("s3:ListBucketVersions", "tenants/A/")


def test_virtual_hosted_requests_name_the_bucket_in_the_host() -> None:
    (request,) = s3_requests("GET", "/tenants/A/x", "", b"", {}, host="bucket.s3.us-east-1.amazonaws.com")

    assert request.resource == "arn:aws:s3:::bucket/tenants/A/x"


def test_a_multi_object_delete_needs_delete_object_on_each_key() -> None:
    body = b"<Delete><Object><Key>tenants/A/x</Key></Object><Object><Key>tenants/B/y</Key></Object></Delete>"

    requests = s3_requests("POST", "/bucket", "delete", body, {})

    assert [(r.action, r.resource) for r in requests] == [
        ("s3:DeleteObject", "arn:aws:s3:::bucket/tenants/A/x"),
        ("s3:DeleteObject", "arn:aws:s3:::bucket/tenants/B/y"),
    ]


# Request context: KMS


def test_a_decrypt_names_the_blobs_key_and_its_encryption_context() -> None:
    key_id = "0" * 8 + "-" + "0" * 4 + "-" + "0" * 4 + "-" + "0" * 4 + "-" + "0" * 12
    blob = base64.b64encode(key_id.encode() + b"rest-of-the-blob").decode()

    (request,) = kms_requests(
        "Decrypt",
        {"CiphertextBlob": blob, "EncryptionContext": {"tenant_id": "B", "purpose": "audit-content"}},
        lambda k: f"arn:aws:kms:r:1:key/{k}",
        {},
    )

    assert request.resource == f"arn:aws:kms:r:1:key/{key_id}"
    assert request.context["kms:EncryptionContext:tenant_id"] == "B"
    assert request.context["kms:EncryptionContext:purpose"] == "audit-content"


def test_a_transaction_is_authorized_item_by_item_as_its_own_actions() -> None:
    tables = {"audit": TableKeys(arn="arn:aws:dynamodb:us-east-1:1:table/audit", partition_key="tenant_id")}
    body = {
        "TransactItems": [
            {"Put": {"TableName": "audit", "Item": {"tenant_id": {"S": "tnt_a"}, "sk": {"S": "1"}}}},
            {"Delete": {"TableName": "audit", "Key": {"tenant_id": {"S": "tnt_b"}, "sk": {"S": "2"}}}},
        ]
    }
    requests = dynamodb_requests("TransactWriteItems", body, tables, {})
    assert [(r.action, r.context["dynamodb:LeadingKeys"]) for r in requests] == [
        ("dynamodb:PutItem", ["tnt_a"]),
        ("dynamodb:DeleteItem", ["tnt_b"]),
    ]
