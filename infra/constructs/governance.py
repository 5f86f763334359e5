"""Governance: the tenant-scoped role through which functions read and erase one tenant's data.

The AWS SaaS pattern of tenant-scoped credentials: a function assumes `TenantDataAccessRole` with a
`tenant_id` session tag, and every permission of the role is conditioned on that tag (DynamoDB
leading keys, S3 key prefix, KMS encryption context). A bug that builds another tenant's key then
meets AccessDenied from AWS, not a silent read.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.constructs.data import Data

TENANT_TAG = "tenant_id"
# IAM policy variables: CDK passes them through; Fn::Sub is not involved.
PRINCIPAL_TENANT = "${aws:PrincipalTag/" + TENANT_TAG + "}"
TENANT_LEADING_KEYS = [PRINCIPAL_TENANT, f"{PRINCIPAL_TENANT}#*"]
TENANT_PREFIX = f"tenants/{PRINCIPAL_TENANT}/"

AUDIT_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PutItem",
]
USAGE_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"]
# A subject's export shows the cache entries their calls wrote; erasure deletes them.
CACHE_ACTIONS = ["dynamodb:GetItem", "dynamodb:DeleteItem"]
# Stored Responses: the gateway writes, reads and deletes them; the admin function erases a subject's.
RESPONSES_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
]
# A stored response too large for its item: its sealed body, tagged with its retention tier.
RESPONSE_BODY_ACTIONS = ["s3:PutObject", "s3:PutObjectTagging"]
OBJECT_ACTIONS = ["s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion"]
BUCKET_ACTIONS = ["s3:ListBucket", "s3:ListBucketVersions"]
KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]


def _leading_keys() -> dict[str, dict[str, list[str]]]:
    return {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": TENANT_LEADING_KEYS}}


class Governance(Construct):
    """`tenant_data_role`: assumable by the given roles, only with a `tenant_id` session tag."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        data: Data,
        trusted: list[iam.IRole],
    ) -> None:
        super().__init__(scope, construct_id)
        self._key = key
        self._data = data
        self.tenant_data_role = self._build_tenant_data_role(trusted)
        self._build_table_access()
        self._build_object_access()
        self._build_key_access()

    def _build_tenant_data_role(self, trusted: list[iam.IRole]) -> iam.Role:
        principals = [iam.ArnPrincipal(role.role_arn) for role in trusted]
        # SessionTagsPrincipal adds sts:TagSession to the trust statement; the conditions make an
        # untagged session, or one carrying any other tag, impossible to assume.
        assumed_by = iam.PrincipalWithConditions(
            iam.SessionTagsPrincipal(iam.CompositePrincipal(*principals)),
            {
                "Null": {f"aws:RequestTag/{TENANT_TAG}": "false"},
                "ForAllValues:StringEquals": {"aws:TagKeys": [TENANT_TAG]},
            },
        )
        return iam.Role(
            self,
            "TenantDataAccessRole",
            assumed_by=assumed_by,
            description=(
                f"BYOM Gateway ({Stack.of(self).stack_name}): one tenant's audit, usage, cache entries, "
                "stored content and stored responses, chosen by the tenant_id session tag"
            ),
            # IAM's minimum; the functions ask for 15-minute sessions (byom.dal.tenant_scope).
            max_session_duration=Duration.hours(1),
        )

    def _build_table_access(self) -> None:
        data = self._data
        role = self.tenant_data_role
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TenantAuditRecords",
                actions=AUDIT_ACTIONS,
                resources=[data.audit.table_arn, f"{data.audit.table_arn}/index/*"],
                conditions=_leading_keys(),
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TenantUsage",
                actions=USAGE_ACTIONS,
                resources=[data.usage.table_arn],
                conditions=_leading_keys(),
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ExportAndEraseTenantCacheEntries",
                actions=CACHE_ACTIONS,
                resources=[data.cache.table_arn],
                conditions=_leading_keys(),
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TenantStoredResponses",
                actions=RESPONSES_ACTIONS,
                resources=[data.responses.table_arn],
                conditions=_leading_keys(),
            )
        )

    def _build_object_access(self) -> None:
        bucket = self._data.data_bucket
        role = self.tenant_data_role
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TenantObjects",
                actions=OBJECT_ACTIONS,
                resources=[bucket.arn_for_objects(f"{TENANT_PREFIX}*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteTenantStoredResponseBodies",
                actions=RESPONSE_BODY_ACTIONS,
                resources=[bucket.arn_for_objects(f"{TENANT_PREFIX}responses/*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListTenantObjects",
                actions=BUCKET_ACTIONS,
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{TENANT_PREFIX}*"]}},
            )
        )

    def _build_key_access(self) -> None:
        region = Stack.of(self).region
        bucket_arn = self._data.data_bucket.bucket_arn
        self.tenant_data_role.add_to_policy(
            iam.PolicyStatement(
                sid="TenantEnvelopeKeys",
                # Client-side envelope encryption of stored content: data keys bound to the tenant.
                actions=KEY_ACTIONS,
                resources=[self._key.key_arn],
                conditions={"StringEquals": {f"kms:EncryptionContext:{TENANT_TAG}": PRINCIPAL_TENANT}},
            )
        )
        self.tenant_data_role.add_to_policy(
            iam.PolicyStatement(
                sid="TenantObjectsThroughS3",
                # SSE-KMS of the bucket: S3 decrypts on the role's behalf for the objects above.
                actions=KEY_ACTIONS,
                resources=[self._key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                    # The bucket key's context is the bucket; an object's, without a bucket key.
                    "StringLike": {
                        "kms:EncryptionContext:aws:s3:arn": [bucket_arn, f"{bucket_arn}/{TENANT_PREFIX}*"]
                    },
                },
            )
        )
