"""The tenant data role as synthesized, judged as data by the local IAM policy evaluator; and the
Lambda tenant isolation option of the gateway function."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from local_stack.iam_policy import Decision, Request, evaluate
from local_stack.template import Physical, Resolver, load_template
from tests.infra.stack_template import environment, function_id, props, resources

REGION, ACCOUNT = "us-east-1", "123456789012"
AUDIT = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/audit"
USAGE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/usage"
CACHE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/cache"
POLICIES = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/policies"
RESPONSES = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/responses"
BUCKET = "arn:aws:s3:::data-bucket"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/stack-key"
A = {"aws:PrincipalTag/tenant_id": "tnt_a"}


def _role_id(template: Template) -> str:
    (role_id,) = [
        logical_id
        for logical_id in resources(template, "AWS::IAM::Role")
        if "TenantDataAccessRole" in logical_id
    ]
    return role_id


@pytest.fixture(scope="module")
def resolver(template: Template, tmp_path_factory: pytest.TempPathFactory) -> Resolver:
    """The template's intrinsics resolved with fixed ARNs for the tables, bucket and key."""
    path = tmp_path_factory.mktemp("governance") / "ByomGateway.template.json"
    path.write_text(json.dumps(template.to_json()))
    resolver = Resolver(load_template(path, stack_name="ByomGateway"))
    env = environment(template, "admin") | environment(template, "gateway")
    arns = {"USAGE_TABLE": USAGE, "CACHE_TABLE": CACHE}
    for variable, arn in arns.items():
        resolver.register(env[variable]["Ref"], Physical(ref=arn.rsplit("/", 1)[-1], attributes={"Arn": arn}))
    for logical_id in resources(template, "AWS::DynamoDB::Table"):
        if logical_id.startswith("DataAudit"):
            resolver.register(logical_id, Physical(ref="audit", attributes={"Arn": AUDIT}))
        elif logical_id.startswith("DataPolicies"):
            resolver.register(logical_id, Physical(ref="policies", attributes={"Arn": POLICIES}))
        elif logical_id.startswith("DataStoredResponses"):
            resolver.register(logical_id, Physical(ref="responses", attributes={"Arn": RESPONSES}))
    (bucket_id,) = resources(template, "AWS::S3::Bucket")
    resolver.register(bucket_id, Physical(ref="data-bucket", attributes={"Arn": BUCKET}))
    (key_id,) = resources(template, "AWS::KMS::Key")
    resolver.register(key_id, Physical(ref="stack-key", attributes={"Arn": KEY}))
    return resolver


@pytest.fixture(scope="module")
def role_policies(template: Template, resolver: Resolver) -> list[dict[str, Any]]:
    role_id = _role_id(template)
    return [
        resolver.resolve(props(policy)["PolicyDocument"])
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in props(policy)["Roles"]
    ]


@pytest.fixture(scope="module")
def trust(template: Template, resolver: Resolver) -> dict[str, Any]:
    role = resources(template, "AWS::IAM::Role")[_role_id(template)]
    document: dict[str, Any] = resolver.resolve(props(role)["AssumeRolePolicyDocument"])
    return document


def as_tenant_a(policies: list[dict[str, Any]], action: str, resource: str, **context: Any) -> Decision:
    return evaluate(policies, Request(action, resource, {**A, **context}))


# Tables


def test_tenant_a_may_query_its_own_audit_partition(role_policies: list) -> None:
    decision = as_tenant_a(role_policies, "dynamodb:Query", AUDIT, **{"dynamodb:LeadingKeys": ["tnt_a"]})

    assert decision is Decision.ALLOW


def test_tenant_a_may_query_its_data_subjects_in_the_audit_index(role_policies: list) -> None:
    decision = as_tenant_a(
        role_policies,
        "dynamodb:Query",
        f"{AUDIT}/index/by_subject",
        **{"dynamodb:LeadingKeys": ["tnt_a#alice"]},
    )

    assert decision is Decision.ALLOW


@pytest.mark.parametrize(
    "action", ["dynamodb:Query", "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"]
)
def test_tenant_a_is_refused_tenant_b_audit_records(role_policies: list, action: str) -> None:
    decision = as_tenant_a(role_policies, action, AUDIT, **{"dynamodb:LeadingKeys": ["tnt_b"]})

    assert decision is Decision.IMPLICIT_DENY


def test_a_batch_naming_one_key_of_tenant_b_is_refused(role_policies: list) -> None:
    decision = as_tenant_a(
        role_policies, "dynamodb:BatchWriteItem", AUDIT, **{"dynamodb:LeadingKeys": ["tnt_a", "tnt_b"]}
    )

    assert decision is Decision.IMPLICIT_DENY


def test_tenant_a_reads_its_usage_and_is_refused_tenant_bs_month(role_policies: list) -> None:
    own = as_tenant_a(role_policies, "dynamodb:GetItem", USAGE, **{"dynamodb:LeadingKeys": ["tnt_a#2026-11"]})
    budget = as_tenant_a(role_policies, "dynamodb:GetItem", USAGE, **{"dynamodb:LeadingKeys": ["tnt_a"]})
    theirs = as_tenant_a(
        role_policies, "dynamodb:Query", USAGE, **{"dynamodb:LeadingKeys": ["tnt_b#2026-11"]}
    )

    assert (own, budget, theirs) == (Decision.ALLOW, Decision.ALLOW, Decision.IMPLICIT_DENY)


def test_a_tenant_id_that_only_starts_like_tenant_a_is_refused(role_policies: list) -> None:
    decision = as_tenant_a(role_policies, "dynamodb:Query", AUDIT, **{"dynamodb:LeadingKeys": ["tnt_ab"]})

    assert decision is Decision.IMPLICIT_DENY


@pytest.mark.parametrize("action", ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"])
def test_usage_is_read_only(role_policies: list, action: str) -> None:
    decision = as_tenant_a(role_policies, action, USAGE, **{"dynamodb:LeadingKeys": ["tnt_a#2026-11"]})

    assert decision is Decision.IMPLICIT_DENY


def test_cache_entries_may_only_be_read_for_export_and_erased(role_policies: list) -> None:
    own = {"dynamodb:LeadingKeys": ["tnt_a#0f3c"]}

    assert as_tenant_a(role_policies, "dynamodb:DeleteItem", CACHE, **own) is Decision.ALLOW
    assert as_tenant_a(role_policies, "dynamodb:GetItem", CACHE, **own) is Decision.ALLOW
    assert as_tenant_a(role_policies, "dynamodb:PutItem", CACHE, **own) is Decision.IMPLICIT_DENY
    assert (
        as_tenant_a(role_policies, "dynamodb:GetItem", CACHE, **{"dynamodb:LeadingKeys": ["tnt_b#0f3c"]})
        is Decision.IMPLICIT_DENY
    )
    assert (
        as_tenant_a(role_policies, "dynamodb:DeleteItem", CACHE, **{"dynamodb:LeadingKeys": ["tnt_b#0f3c"]})
        is Decision.IMPLICIT_DENY
    )


@pytest.mark.parametrize(
    "action",
    [
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    ],
)
def test_tenant_a_stores_reads_and_deletes_its_own_stored_responses_only(
    role_policies: list, action: str
) -> None:
    own = as_tenant_a(role_policies, action, RESPONSES, **{"dynamodb:LeadingKeys": ["tnt_a"]})
    theirs = as_tenant_a(role_policies, action, RESPONSES, **{"dynamodb:LeadingKeys": ["tnt_b"]})

    assert (own, theirs) == (Decision.ALLOW, Decision.IMPLICIT_DENY)


@pytest.mark.parametrize("action", ["dynamodb:Query", "dynamodb:Scan", "dynamodb:UpdateItem"])
def test_stored_responses_are_never_listed_nor_updated(role_policies: list, action: str) -> None:
    decision = as_tenant_a(role_policies, action, RESPONSES, **{"dynamodb:LeadingKeys": ["tnt_a"]})

    assert decision is Decision.IMPLICIT_DENY


def test_no_scan_and_no_other_table(role_policies: list) -> None:
    assert as_tenant_a(role_policies, "dynamodb:Scan", AUDIT) is Decision.IMPLICIT_DENY
    assert (
        as_tenant_a(role_policies, "dynamodb:GetItem", POLICIES, **{"dynamodb:LeadingKeys": ["tnt_a"]})
        is Decision.IMPLICIT_DENY
    )


# Objects


@pytest.mark.parametrize("action", ["s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion"])
def test_tenant_a_reads_and_erases_its_objects_only(role_policies: list, action: str) -> None:
    own = as_tenant_a(role_policies, action, f"{BUCKET}/tenants/tnt_a/content/req_1.json")
    theirs = as_tenant_a(role_policies, action, f"{BUCKET}/tenants/tnt_b/content/req_1.json")

    assert (own, theirs) == (Decision.ALLOW, Decision.IMPLICIT_DENY)


def test_tenant_a_lists_its_prefix_only(role_policies: list) -> None:
    own = as_tenant_a(role_policies, "s3:ListBucket", BUCKET, **{"s3:prefix": "tenants/tnt_a/content/"})
    theirs = as_tenant_a(role_policies, "s3:ListBucket", BUCKET, **{"s3:prefix": "tenants/tnt_b/"})
    everyone = as_tenant_a(role_policies, "s3:ListBucketVersions", BUCKET, **{"s3:prefix": "tenants/"})
    unprefixed = as_tenant_a(role_policies, "s3:ListBucket", BUCKET)

    assert (own, theirs, everyone, unprefixed) == (
        Decision.ALLOW,
        Decision.IMPLICIT_DENY,
        Decision.IMPLICIT_DENY,
        Decision.IMPLICIT_DENY,
    )


def test_no_object_writes(role_policies: list) -> None:
    assert as_tenant_a(role_policies, "s3:PutObject", f"{BUCKET}/tenants/tnt_a/x") is Decision.IMPLICIT_DENY


@pytest.mark.parametrize("action", ["s3:PutObject", "s3:PutObjectTagging"])
def test_tenant_a_writes_large_stored_response_bodies_under_its_own_prefix_only(
    role_policies: list, action: str
) -> None:
    own = as_tenant_a(role_policies, action, f"{BUCKET}/tenants/tnt_a/responses/resp_1.json")
    theirs = as_tenant_a(role_policies, action, f"{BUCKET}/tenants/tnt_b/responses/resp_1.json")
    elsewhere = as_tenant_a(role_policies, action, f"{BUCKET}/tenants/tnt_a/files/file_1.jsonl")

    assert (own, theirs, elsewhere) == (Decision.ALLOW, Decision.IMPLICIT_DENY, Decision.IMPLICIT_DENY)


# Keys


def test_tenant_a_decrypts_with_its_own_encryption_context_only(role_policies: list) -> None:
    own = as_tenant_a(role_policies, "kms:Decrypt", KEY, **{"kms:EncryptionContext:tenant_id": "tnt_a"})
    theirs = as_tenant_a(role_policies, "kms:Decrypt", KEY, **{"kms:EncryptionContext:tenant_id": "tnt_b"})
    none = as_tenant_a(role_policies, "kms:Decrypt", KEY)

    assert (own, theirs, none) == (Decision.ALLOW, Decision.IMPLICIT_DENY, Decision.IMPLICIT_DENY)


def test_the_key_is_usable_through_s3_for_the_bucket_only(role_policies: list) -> None:
    via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": BUCKET}
    other_bucket = via_s3 | {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::other"}

    assert as_tenant_a(role_policies, "kms:Decrypt", KEY, **via_s3) is Decision.ALLOW
    assert as_tenant_a(role_policies, "kms:Decrypt", KEY, **other_bucket) is Decision.IMPLICIT_DENY
    assert as_tenant_a(role_policies, "kms:Encrypt", KEY, **via_s3) is Decision.IMPLICIT_DENY


# Trust


def _assume(trust: dict[str, Any], principal: str, tags: dict[str, str]) -> Decision:
    context: dict[str, Any] = {f"aws:RequestTag/{k}": v for k, v in tags.items()} | {
        "aws:TagKeys": sorted(tags)
    }
    actions = ["sts:AssumeRole", "sts:TagSession"] if tags else ["sts:AssumeRole"]
    decisions = {evaluate([trust], Request(a, "*", context, principal=principal)) for a in actions}
    return Decision.ALLOW if decisions == {Decision.ALLOW} else Decision.IMPLICIT_DENY


def _function_role_arn(template: Template, resolver: Resolver, name: str) -> str:
    fn = resources(template, "AWS::Lambda::Function")[function_id(template, name)]
    arn: str = resolver.resolve(props(fn)["Role"])
    return arn


@pytest.mark.parametrize("name", ["admin", "gateway"])
def test_the_admin_and_gateway_functions_may_assume_it_tagged_with_a_tenant(
    template: Template, resolver: Resolver, trust: dict, name: str
) -> None:
    principal = _function_role_arn(template, resolver, name)

    assert _assume(trust, principal, {"tenant_id": "tnt_a"}) is Decision.ALLOW


def test_an_untagged_assume_role_is_refused(template: Template, resolver: Resolver, trust: dict) -> None:
    assert _assume(trust, _function_role_arn(template, resolver, "admin"), {}) is Decision.IMPLICIT_DENY


def test_a_session_with_any_other_tag_is_refused(template: Template, resolver: Resolver, trust: dict) -> None:
    tags = {"tenant_id": "tnt_a", "role": "admin"}

    assert _assume(trust, _function_role_arn(template, resolver, "admin"), tags) is Decision.IMPLICIT_DENY


def test_other_functions_may_not_assume_it(template: Template, resolver: Resolver, trust: dict) -> None:
    principal = _function_role_arn(template, resolver, "authorizer")

    assert _assume(trust, principal, {"tenant_id": "tnt_a"}) is Decision.IMPLICIT_DENY


@pytest.mark.parametrize("name", ["admin", "gateway"])
def test_the_functions_know_the_role_and_may_assume_it(template: Template, name: str) -> None:
    role_id = _role_id(template)
    fn_role = props(resources(template, "AWS::Lambda::Function")[function_id(template, name)])["Role"][
        "Fn::GetAtt"
    ][0]
    statements = [
        s
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": fn_role} in props(policy)["Roles"]
        for s in props(policy)["PolicyDocument"]["Statement"]
    ]

    assert environment(template, name)["TENANT_DATA_ROLE_ARN"] == {"Fn::GetAtt": [role_id, "Arn"]}
    role_arn = {"Fn::GetAtt": [role_id, "Arn"]}
    assert any(
        s["Action"] == ["sts:AssumeRole", "sts:TagSession"] and role_arn in _listed(s["Resource"])
        for s in statements
    )


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# Lambda tenant isolation mode


def _gateway(template: Template) -> dict[str, Any]:
    return props(resources(template, "AWS::Lambda::Function")[function_id(template, "gateway")])


def _gateway_methods(template: Template) -> list[dict[str, Any]]:
    gateway_id = function_id(template, "gateway")
    return [
        props(method)
        for method in resources(template, "AWS::ApiGateway::Method").values()
        if gateway_id in json.dumps(props(method).get("Integration", {}).get("Uri", ""))
    ]


def test_tenant_isolation_is_off_by_default(template: Template) -> None:
    assert "TenancyConfig" not in _gateway(template)
    assert all("RequestParameters" not in m["Integration"] for m in _gateway_methods(template))


def test_tenant_isolation_runs_the_gateway_per_tenant(isolated: Template) -> None:
    assert _gateway(isolated)["TenancyConfig"] == {"TenantIsolationMode": "PER_TENANT"}
    others = [
        props(fn)
        for logical_id, fn in resources(isolated, "AWS::Lambda::Function").items()
        if logical_id != function_id(isolated, "gateway")
    ]
    assert all("TenancyConfig" not in fn for fn in others)


def test_tenant_isolation_passes_the_authorizers_tenant_to_lambda(isolated: Template) -> None:
    headers = {
        m["HttpMethod"] + " " + str(m["ResourceId"]): m["Integration"]["RequestParameters"]
        for m in _gateway_methods(isolated)
    }

    # GET /health, ANY /v1/{proxy+}, POST /v1/chat/completions, POST /v1/responses, /v1/responses/{proxy+},
    # GET /openapi.json, GET /docs
    assert len(headers) == 7
    values = sorted(h["integration.request.header.X-Amz-Tenant-Id"] for h in headers.values())
    assert values == ["'health'"] + ["context.authorizer.tenant_id"] * 6
