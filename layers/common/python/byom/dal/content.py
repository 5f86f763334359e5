"""Stored prompts and completions (docs/contracts.md, Governance): one object per call in the data
bucket, inside an envelope encrypted client-side with a KMS data key bound to the tenant.

A data key is generated with the encryption context `{"tenant_id": ..., "purpose": "audit-content"}`
and reused for at most five minutes and 1,000 objects per tenant, as the Encryption SDK's caching
materials manager would: KMS is called once per key, not once per call. Decrypting asks KMS with the
same context, so an envelope copied under another tenant does not open.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from byom.dal.aws import delete_versions_page, error_code

ENVELOPE_VERSION = 1
PURPOSE = "audit-content"
DATA_KEY_MAX_AGE_SECONDS = 300
DATA_KEY_MAX_USES = 1000
# Decrypted data keys kept for reads (an export opens many objects sealed with one key).
_OPENED_KEYS_KEPT = 256


def subject_prefix(tenant_id: str, user: str) -> str:
    """Where a data subject's content goes: one prefix to list when the subject is erased. The id is
    hashed so that it does not appear in object keys (S3 access logs, inventories)."""
    return f"tenants/{tenant_id}/subjects/{hashlib.sha256(user.encode()).hexdigest()}/content/"


def content_key(tenant_id: str, request_id: str, user: str | None) -> str:
    if user is None:
        return f"tenants/{tenant_id}/content/{request_id}.json"
    return f"{subject_prefix(tenant_id, user)}{request_id}.json"


def _context(tenant_id: str) -> dict[str, str]:
    return {"tenant_id": tenant_id, "purpose": PURPOSE}


# The data bucket's lifecycle rules expire logged content by this tag (infra/constructs/data.py): an
# object lives the largest of these days not above its tenant's retention_days.
RETENTION_TAG = "byom-retention-days"
RETENTION_TIERS = (1, 7, 30, 90, 180, 365, 730, 1095, 1825, 2555, 3650)


def retention_tier(retention_days: int) -> int:
    """Never longer than the tenant keeps its records: the largest tier not above them."""
    return max((days for days in RETENTION_TIERS if days <= retention_days), default=RETENTION_TIERS[0])


def _aesgcm(key: bytes) -> Any:
    # Imported on first use: only tenants with content logging need it, not every cold start.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class _DataKey:
    plaintext: bytes
    sealed: bytes
    created: float
    uses: int = 0


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
        self._kms = kms_client
        self._bucket = bucket
        self._kms_key_id = kms_key_id
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._keys: dict[str, _DataKey] = {}
        self._opened: dict[tuple[str, bytes], tuple[bytes, float]] = {}

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
        data_key = self._data_key(tenant_id)
        nonce = os.urandom(12)
        plaintext = json.dumps(content, separators=(",", ":")).encode()
        ciphertext = _aesgcm(data_key.plaintext).encrypt(nonce, plaintext, tenant_id.encode())
        envelope = {
            "v": ENVELOPE_VERSION,
            "key": _b64(data_key.sealed),
            "nonce": _b64(nonce),
            "ciphertext": _b64(ciphertext),
        }
        key = content_key(tenant_id, request_id, user)
        # SSE-KMS as the bucket's default encryption; the envelope is the tenant-bound layer.
        extra: dict[str, str] = {}
        if retention_days is not None:
            # Expired by the bucket's lifecycle rule of this tier, as the audit record is by its TTL.
            extra["Tagging"] = f"{RETENTION_TAG}={retention_tier(retention_days)}"
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=json.dumps(envelope).encode(),
            ContentType="application/json",
            **extra,
        )
        return key

    def _data_key(self, tenant_id: str) -> _DataKey:
        now = self._monotonic()
        with self._lock:
            cached = self._keys.get(tenant_id)
            if cached and cached.uses < DATA_KEY_MAX_USES and now - cached.created < DATA_KEY_MAX_AGE_SECONDS:
                cached.uses += 1
                return cached
        # Outside the lock: a tenant's first calls may each generate a key; the last one is kept.
        answer = self._kms.generate_data_key(
            KeyId=self._kms_key_id, KeySpec="AES_256", EncryptionContext=_context(tenant_id)
        )
        fresh = _DataKey(plaintext=answer["Plaintext"], sealed=answer["CiphertextBlob"], created=now, uses=1)
        with self._lock:
            self._keys[tenant_id] = fresh
        return fresh

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
        envelope = json.loads(body)
        if envelope.get("v") != ENVELOPE_VERSION:
            raise ValueError(f"unknown content envelope version {envelope.get('v')!r}")
        data_key = self._open(tenant_id, base64.b64decode(envelope["key"]))
        plaintext = _aesgcm(data_key).decrypt(
            base64.b64decode(envelope["nonce"]), base64.b64decode(envelope["ciphertext"]), tenant_id.encode()
        )
        content: dict[str, Any] = json.loads(plaintext)
        return content

    def _open(self, tenant_id: str, sealed: bytes) -> bytes:
        now = self._monotonic()
        with self._lock:
            opened = self._opened.get((tenant_id, sealed))
            if opened and now - opened[1] < DATA_KEY_MAX_AGE_SECONDS:
                return opened[0]
        answer = self._kms.decrypt(
            CiphertextBlob=sealed, KeyId=self._kms_key_id, EncryptionContext=_context(tenant_id)
        )
        plaintext: bytes = answer["Plaintext"]
        with self._lock:
            if len(self._opened) >= _OPENED_KEYS_KEPT:
                self._opened.clear()
            self._opened[(tenant_id, sealed)] = (plaintext, now)
        return plaintext

    # Erasing

    def delete_subject_page(self, tenant_id: str, user: str) -> tuple[int, bool]:
        """Up to 1,000 versions of the subject's content (byom.dal.aws.delete_versions_page)."""
        return delete_versions_page(self._s3, self._bucket, subject_prefix(tenant_id, user))

    def delete_subject(self, tenant_id: str, user: str) -> int:
        """Every version of every object of the subject; answers how many objects there were."""
        removed, done = 0, False
        while not done:
            count, done = self.delete_subject_page(tenant_id, user)
            removed += count
        return removed
