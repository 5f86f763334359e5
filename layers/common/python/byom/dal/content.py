"""Stored prompts and completions (docs/contracts.md, Governance): one object per call in the data
bucket, inside an envelope encrypted client-side with a KMS data key bound to the tenant
(byom.dal.envelope, purpose `audit-content`): an envelope copied under another tenant does not open.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from byom.dal.aws import delete_versions_page, error_code
from byom.dal.envelope import Envelope, EnvelopeSealer

PURPOSE = "audit-content"


def subject_prefix(tenant_id: str, user: str) -> str:
    """Where a data subject's content goes: one prefix to list when the subject is erased. The id is
    hashed so that it does not appear in object keys (S3 access logs, inventories)."""
    return f"tenants/{tenant_id}/subjects/{hashlib.sha256(user.encode()).hexdigest()}/content/"


def content_key(tenant_id: str, request_id: str, user: str | None) -> str:
    if user is None:
        return f"tenants/{tenant_id}/content/{request_id}.json"
    return f"{subject_prefix(tenant_id, user)}{request_id}.json"


# The data bucket's lifecycle rules expire logged content by this tag (infra/constructs/data.py): an
# object lives the largest of these days not above its tenant's retention_days.
RETENTION_TAG = "byom-retention-days"
RETENTION_TIERS = (1, 7, 30, 90, 180, 365, 730, 1095, 1825, 2555, 3650)


def retention_tier(retention_days: int) -> int:
    """Never longer than the tenant keeps its records: the largest tier not above them."""
    return max((days for days in RETENTION_TIERS if days <= retention_days), default=RETENTION_TIERS[0])


class ContentStore:
    def __init__(
        self,
        s3_client: Any,
        kms_client: Any,
        bucket: str,
        kms_key_id: str,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._sealer = EnvelopeSealer(lambda _tenant: kms_client, kms_key_id, PURPOSE, monotonic=monotonic)

    # Writing

    @staticmethod
    def key(tenant_id: str, request_id: str, user: str | None) -> str:
        """Where `put` stores this call's content: known before the write, so the audit record
        can name it while the content is written alongside the metering."""
        return content_key(tenant_id, request_id, user)

    def put(
        self,
        tenant_id: str,
        request_id: str,
        content: dict[str, Any],
        user: str | None,
        retention_days: int | None = None,
    ) -> str:
        """Seal `content` (`{"request": ..., "response": ...}`) and store it; answers the object key,
        which goes on the audit record as `content_key`. Pass the record's `user`: a subject's
        content is stored under their prefix, which their erasure deletes."""
        envelope = self._sealer.seal(tenant_id, json.dumps(content, separators=(",", ":")).encode())
        key = content_key(tenant_id, request_id, user)
        # SSE-KMS as the bucket's default encryption; the envelope is the tenant-bound layer.
        extra: dict[str, str] = {}
        if retention_days is not None:
            # Expired by the bucket's lifecycle rule of this tier, as the audit record is by its TTL.
            extra["Tagging"] = f"{RETENTION_TAG}={retention_tier(retention_days)}"
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=envelope.to_json(),
            ContentType="application/json",
            **extra,
        )
        return key

    # Reading

    def get(self, tenant_id: str, key: str) -> dict[str, Any] | None:
        """The stored content, or None when the object is gone. Only the tenant's own keys are read."""
        if not key.startswith(f"tenants/{tenant_id}/"):
            raise ValueError("content key outside the tenant's prefix")
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404"):
                return None
            raise
        content: dict[str, Any] = json.loads(self._sealer.open(tenant_id, Envelope.from_json(body)))
        return content

    # Erasing

    def delete_subject_page(self, tenant_id: str, user: str) -> tuple[int, bool]:
        """Up to 1,000 versions of the subject's content (byom.dal.aws.delete_versions_page)."""
        return delete_versions_page(self._s3, self._bucket, subject_prefix(tenant_id, user))
