"""The customer-managed KMS key and the platform admin key secret."""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

ADMIN_KEY_LENGTH = 48


class Security(Construct):
    """One key encrypts tables, secrets, logs and the alerts topic; rotation is on and the key outlives
    the stack."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.key = self._build_key()
        self._allow_cloudwatch_logs(self.key)
        self.admin_key_secret = self._build_admin_key_secret(self.key)

    def _build_key(self) -> kms.Key:
        return kms.Key(
            self,
            "Key",
            description=f"BYOM Gateway ({Stack.of(self).stack_name}): tables, secrets, logs and alerts",
            alias=f"alias/byom/{Stack.of(self).stack_name}",
            enable_key_rotation=True,
            # Tables and secrets encrypted with this key are retained, so the key must be too.
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _allow_cloudwatch_logs(self, key: kms.Key) -> None:
        # CloudWatch Logs encrypts with the key on behalf of this account's log groups only.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                        )
                    }
                },
            )
        )

    def _build_admin_key_secret(self, key: kms.Key) -> secretsmanager.Secret:
        return secretsmanager.Secret(
            self,
            "AdminKey",
            description="BYOM Gateway platform admin key (Bearer token of the admin API)",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=ADMIN_KEY_LENGTH,
                exclude_punctuation=True,
                include_space=False,
            ),
        )
