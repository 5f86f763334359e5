"""Provider keys in Secrets Manager, one secret per tenant credential, encrypted with the stack's key."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError

from byom.dal.aws import error_code, session
from byom.errors import GatewayMisconfigured


def secret_name(prefix: str, tenant_id: str, credential: str) -> str:
    return f"{prefix}{tenant_id}/{credential}"


class SecretStore:
    def __init__(self, client: Any, prefix: str, kms_key_id: str) -> None:
        self._client = client
        self._prefix = prefix
        self._kms_key_id = kms_key_id

    def name(self, tenant_id: str, credential: str) -> str:
        return secret_name(self._prefix, tenant_id, credential)

    def put(self, tenant_id: str, credential: str, value: str) -> tuple[str, bool]:
        """Store the value; return the secret's ARN and whether the secret was created by this call."""
        name = self.name(tenant_id, credential)
        try:
            created = self._client.create_secret(
                Name=name,
                SecretString=value,
                KmsKeyId=self._kms_key_id,
                Tags=[{"Key": "byom:tenant", "Value": tenant_id}],
            )
            return created["ARN"], True
        except ClientError as error:
            if error_code(error) != "ResourceExistsException":
                raise
        updated = self._client.put_secret_value(SecretId=name, SecretString=value)
        return updated["ARN"], False

    def get(self, tenant_id: str, credential: str) -> str:
        return self._client.get_secret_value(SecretId=self.name(tenant_id, credential))["SecretString"]

    def delete(self, tenant_id: str, credential: str) -> None:
        # No recovery window: a deleted credential must stop working at once, and a later PUT of
        # the same name must be able to create the secret again.
        try:
            self._client.delete_secret(
                SecretId=self.name(tenant_id, credential), ForceDeleteWithoutRecovery=True
            )
        except ClientError as error:
            if error_code(error) != "ResourceNotFoundException":
                raise


class ProviderKeys:
    """Reads provider keys for the gateway, cached for `max_age_seconds` by Powertools.

    The cache is keyed by the secret's name, which holds the tenant id and the credential name, so
    one tenant's key can never answer for another's.
    """

    def __init__(self, prefix: str, max_age_seconds: int) -> None:
        self._prefix = prefix
        self._max_age = max_age_seconds
        self._secrets: SecretsProvider | None = None

    def _provider(self) -> SecretsProvider:
        if self._secrets is None:
            # Made from the container's boto3 session: one of its own costs 40-60 ms on first use.
            self._secrets = SecretsProvider(boto3_session=session())
        return self._secrets

    def get(self, tenant_id: str, credential: str, *, refresh: bool = False) -> str:
        """`refresh` reads Secrets Manager again, for a key the provider just refused (rotated?)."""
        try:
            value = self._provider().get(
                secret_name(self._prefix, tenant_id, credential), max_age=self._max_age, force_fetch=refresh
            )
        except GetParameterError:
            # Powertools' message names the secret and AWS's reason; neither belongs in a response.
            raise GatewayMisconfigured(f"The key of credential '{credential}' could not be read") from None
        if not isinstance(value, str) or not value:
            raise GatewayMisconfigured(f"The key of credential '{credential}' is empty")
        return value
