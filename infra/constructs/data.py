"""The DynamoDB tables and the S3 bucket of docs/contracts.md."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

API_KEYS_BY_TENANT_INDEX = "by_tenant"
FINE_TUNING_BY_TENANT_INDEX = "by_tenant"
AUDIT_BY_SUBJECT_INDEX = "by_subject"
# Logged content expires with its tenant's retention: each object is tagged with the largest of these
# not above the tenant's retention_days (byom.dal.content.RETENTION_TIERS, the same list).
CONTENT_RETENTION_TAG = "byom-retention-days"
CONTENT_RETENTION_TIERS = (1, 7, 30, 90, 180, 365, 730, 1095, 1825, 2555, 3650)

_S = dynamodb.AttributeType.STRING


class Data(Construct):
    """On-demand tables with point-in-time recovery, encrypted with the stack's key, kept on delete."""

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self._key = key
        self.tenants = self._build_table("Tenants", partition_key="tenant_id")
        self.api_keys = self._build_api_keys_table()
        self.credentials = self._build_table("Credentials", partition_key="tenant_id", sort_key="name")
        self.models = self._build_table("Models", partition_key="tenant_id", sort_key="alias")
        self.cache = self._build_cache_table()
        self.usage = self._build_usage_table()
        self.files = self._build_by_tenant_table("Files", partition_key="file_id")
        self.jobs = self._build_by_tenant_table("FineTuningJobs", partition_key="job_id", sort_key="sk")
        self.idempotency = self._build_table(
            "Idempotency", partition_key="id", time_to_live_attribute="expiration", disposable=True
        )
        self.policies = self._build_table("Policies", partition_key="tenant_id")
        self.audit = self._build_audit_table()
        self.responses = self._build_responses_table()
        self.data_bucket = self._build_data_bucket()

    @property
    def tables(self) -> list[dynamodb.Table]:
        """The platform's configuration, which the admin function manages in full. Not the response
        cache (the gateway's alone) nor the usage table (its grants are narrower: no scans)."""
        return [self.tenants, self.api_keys, self.credentials, self.models]

    def environment(self, *tables: dynamodb.Table) -> dict[str, str]:
        """The contract's environment variables (`TENANTS_TABLE`, ...) naming the given tables."""
        env_vars = {
            "TENANTS_TABLE": self.tenants,
            "API_KEYS_TABLE": self.api_keys,
            "CREDENTIALS_TABLE": self.credentials,
            "MODELS_TABLE": self.models,
            "CACHE_TABLE": self.cache,
            "USAGE_TABLE": self.usage,
            "FILES_TABLE": self.files,
            "JOBS_TABLE": self.jobs,
            "IDEMPOTENCY_TABLE": self.idempotency,
            "POLICIES_TABLE": self.policies,
            "AUDIT_TABLE": self.audit,
            "RESPONSES_TABLE": self.responses,
        }
        return {name: table.table_name for name, table in env_vars.items() if table in tables}

    def _build_table(
        self,
        name: str,
        *,
        partition_key: str,
        sort_key: str | None = None,
        time_to_live_attribute: str | None = None,
        disposable: bool = False,
    ) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            name,
            partition_key=dynamodb.Attribute(name=partition_key, type=_S),
            sort_key=dynamodb.Attribute(name=sort_key, type=_S) if sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self._key,
            time_to_live_attribute=time_to_live_attribute,
            # Tenants, key hashes and model registrations are the platform's state: never drop them.
            # A cache is not: it goes with the stack rather than keep tenants' answers around.
            removal_policy=RemovalPolicy.DESTROY if disposable else RemovalPolicy.RETAIN,
            deletion_protection=not disposable,
        )

    def _build_cache_table(self) -> dynamodb.Table:
        """Cached answers, keyed by a hash of tenant, alias and request; DynamoDB's TTL deletes them
        after `expires_at` (Unix seconds)."""
        return self._build_table(
            "ResponseCache", partition_key="cache_key", time_to_live_attribute="expires_at", disposable=True
        )

    def _build_usage_table(self) -> dynamodb.Table:
        """Budgets, monthly ledgers, metering markers and reservations (docs/contracts.md). Ledgers
        are what tenants are billed from, so the table is kept; TTL sweeps only markers and holds."""
        return self._build_table(
            "Usage", partition_key="pk", sort_key="sk", time_to_live_attribute="expires_at"
        )

    def _build_audit_table(self) -> dynamodb.Table:
        """One record per model interaction and admin action (docs/contracts.md), newest last in
        each tenant's partition; TTL from the tenant's `retention_days`. The sparse `by_subject`
        index finds a data subject's records for export and erasure."""
        table = self._build_table(
            "Audit", partition_key="tenant_id", sort_key="sk", time_to_live_attribute="expires_at"
        )
        table.add_global_secondary_index(
            index_name=AUDIT_BY_SUBJECT_INDEX,
            partition_key=dynamodb.Attribute(name="subject", type=_S),
            sort_key=dynamodb.Attribute(name="sk", type=_S),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        return table

    def _build_responses_table(self) -> dynamodb.Table:
        """Stored Responses (docs/contracts.md): one sealed item per response in its tenant's partition,
        TTL from the tenant's `retention_days`. The tenants' data: kept when the stack goes, as the audit."""
        return self._build_table(
            "StoredResponses", partition_key="tenant_id", sort_key="id", time_to_live_attribute="expires_at"
        )

    def _build_by_tenant_table(
        self, name: str, *, partition_key: str, sort_key: str | None = None
    ) -> dynamodb.Table:
        """Records keyed by their own id; the sparse `by_tenant` index lists a tenant's newest first."""
        table = self._build_table(name, partition_key=partition_key, sort_key=sort_key)
        table.add_global_secondary_index(
            index_name=FINE_TUNING_BY_TENANT_INDEX,
            partition_key=dynamodb.Attribute(name="tenant_id", type=_S),
            sort_key=dynamodb.Attribute(name="created_key", type=_S),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        return table

    def _build_data_bucket(self) -> s3.Bucket:
        """Tenants' training files and the pipeline's prepared data and outputs, under
        `tenants/{tenant_id}/`. Encrypted with the stack's key; never public; TLS only."""
        return s3.Bucket(
            self,
            "FineTuningData",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self._key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireOldVersions",
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                *(
                    s3.LifecycleRule(
                        id=f"ExpireLoggedContent{days}Days",
                        tag_filters={CONTENT_RETENTION_TAG: str(days)},
                        expiration=Duration.days(days),
                        noncurrent_version_expiration=Duration.days(1),
                    )
                    for days in CONTENT_RETENTION_TIERS
                ),
            ],
            # Training data is the tenants': kept when the stack goes, like the tables.
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_api_keys_table(self) -> dynamodb.Table:
        table = self._build_table("ApiKeys", partition_key="key_hash")
        table.add_global_secondary_index(
            index_name=API_KEYS_BY_TENANT_INDEX,
            partition_key=dynamodb.Attribute(name="tenant_id", type=_S),
            sort_key=dynamodb.Attribute(name="key_id", type=_S),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        return table
