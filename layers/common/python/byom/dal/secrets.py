"""Provider keys in Secrets Manager, one secret per tenant credential, encrypted with the stack's key."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from byom.dal.aws import error_code


class SecretStore:
    def __init__(self, client: Any, prefix: str, kms_key_id: str) -> None:
        self._client = client
        self._prefix = prefix
        self._kms_key_id = kms_key_id

    def name(self, tenant_id: str, credential: str) -> str:
        return f"{self._prefix}{tenant_id}/{credential}"

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
