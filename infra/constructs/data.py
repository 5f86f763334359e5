"""The DynamoDB tables of docs/contracts.md."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

API_KEYS_BY_TENANT_INDEX = "by_tenant"

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

    @property
    def tables(self) -> list[dynamodb.Table]:
        return [self.tenants, self.api_keys, self.credentials, self.models]

    def environment(self, *tables: dynamodb.Table) -> dict[str, str]:
        """The contract's environment variables (`TENANTS_TABLE`, ...) naming the given tables."""
        env_vars = {
            "TENANTS_TABLE": self.tenants,
            "API_KEYS_TABLE": self.api_keys,
            "CREDENTIALS_TABLE": self.credentials,
            "MODELS_TABLE": self.models,
        }
        return {name: table.table_name for name, table in env_vars.items() if table in tables}

    def _build_table(self, name: str, *, partition_key: str, sort_key: str | None = None) -> dynamodb.Table:
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
            # Tenants, key hashes and model registrations are the platform's state: never drop them.
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,
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
