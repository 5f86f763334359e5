"""Client-side envelope encryption bound to a tenant: what the content store and the stored-response
store seal their bodies with (one implementation, one set of rules).

A data key is generated with the encryption context `{"tenant_id": ..., "purpose": ...}` and reused
for at most five minutes and 1,000 envelopes per tenant, as the Encryption SDK's caching materials
manager would: KMS is called once per key, not once per body. Opening asks KMS with the same context,
so an envelope copied under another tenant, or to another purpose, does not open. The body is sealed
with AES-GCM, its associated data the tenant id (and, where given, what the body belongs to), so a
ciphertext moved to another tenant's, or another record's, place fails its tag.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENVELOPE_VERSION = 1
DATA_KEY_MAX_AGE_SECONDS = 300
DATA_KEY_MAX_USES = 1000
# Decrypted data keys kept for reads (an export opens many bodies sealed with one key).
_OPENED_KEYS_KEPT = 256
# AES-GCM's standard nonce and tag sizes: what a sealed body adds to its plaintext.
NONCE_BYTES = 12
TAG_BYTES = 16

KmsFor = Callable[[str], Any]
"""The KMS client to use for a tenant: the function's own, or one on the tenant's scoped session."""


def _aesgcm(key: bytes) -> Any:
    # Imported on first use: only calls that seal something need it, not every cold start.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Envelope:
    """A sealed body: the data key as KMS sealed it, the nonce, and the ciphertext with its tag."""

    sealed_key: bytes
    nonce: bytes
    ciphertext: bytes
    version: int = ENVELOPE_VERSION

    def to_json(self) -> bytes:
        """As an S3 object holds it (the content store's format since version 1)."""
        body = {
            "v": self.version,
            "key": _b64(self.sealed_key),
            "nonce": _b64(self.nonce),
            "ciphertext": _b64(self.ciphertext),
        }
        return json.dumps(body).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Envelope:
        body = json.loads(raw)
        if body.get("v") != ENVELOPE_VERSION:
            raise ValueError(f"unknown envelope version {body.get('v')!r}")
        return cls(
            sealed_key=base64.b64decode(body["key"]),
            nonce=base64.b64decode(body["nonce"]),
            ciphertext=base64.b64decode(body["ciphertext"]),
        )

    @property
    def size(self) -> int:
        return len(self.sealed_key) + len(self.nonce) + len(self.ciphertext)


@dataclass
class _DataKey:
    plaintext: bytes
    sealed: bytes
    created: float
    uses: int = 0


class EnvelopeSealer:
    """Seals and opens bodies of one `purpose` with tenant-bound data keys of one KMS key."""

    def __init__(
        self,
        kms_for: KmsFor,
        kms_key_id: str,
        purpose: str,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kms_for = kms_for
        self._kms_key_id = kms_key_id
        self.purpose = purpose
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._keys: dict[str, _DataKey] = {}
        self._opened: dict[tuple[str, bytes], tuple[bytes, float]] = {}

    def context(self, tenant_id: str) -> dict[str, str]:
        return {"tenant_id": tenant_id, "purpose": self.purpose}

    @staticmethod
    def _associated(tenant_id: str, bound_to: str) -> bytes:
        return (f"{tenant_id}#{bound_to}" if bound_to else tenant_id).encode()

    def seal(self, tenant_id: str, plaintext: bytes, *, bound_to: str = "") -> Envelope:
        data_key = self._data_key(tenant_id)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = _aesgcm(data_key.plaintext).encrypt(
            nonce, plaintext, self._associated(tenant_id, bound_to)
        )
        return Envelope(sealed_key=data_key.sealed, nonce=nonce, ciphertext=ciphertext)

    def open(self, tenant_id: str, envelope: Envelope, *, bound_to: str = "") -> bytes:
        if envelope.version != ENVELOPE_VERSION:
            raise ValueError(f"unknown envelope version {envelope.version!r}")
        data_key = self._open_key(tenant_id, envelope.sealed_key)
        plaintext: bytes = _aesgcm(data_key).decrypt(
            envelope.nonce, envelope.ciphertext, self._associated(tenant_id, bound_to)
        )
        return plaintext

    def _data_key(self, tenant_id: str) -> _DataKey:
        now = self._monotonic()
        with self._lock:
            cached = self._keys.get(tenant_id)
            if cached and cached.uses < DATA_KEY_MAX_USES and now - cached.created < DATA_KEY_MAX_AGE_SECONDS:
                cached.uses += 1
                return cached
        # Outside the lock: a tenant's first calls may each generate a key; the last one is kept.
        answer = self._kms_for(tenant_id).generate_data_key(
            KeyId=self._kms_key_id, KeySpec="AES_256", EncryptionContext=self.context(tenant_id)
        )
        fresh = _DataKey(plaintext=answer["Plaintext"], sealed=answer["CiphertextBlob"], created=now, uses=1)
        with self._lock:
            self._keys[tenant_id] = fresh
        return fresh

    def _open_key(self, tenant_id: str, sealed: bytes) -> bytes:
        now = self._monotonic()
        with self._lock:
            opened = self._opened.get((tenant_id, sealed))
            if opened and now - opened[1] < DATA_KEY_MAX_AGE_SECONDS:
                return opened[0]
        answer = self._kms_for(tenant_id).decrypt(
            CiphertextBlob=sealed, KeyId=self._kms_key_id, EncryptionContext=self.context(tenant_id)
        )
        plaintext: bytes = answer["Plaintext"]
        with self._lock:
            if len(self._opened) >= _OPENED_KEYS_KEPT:
                self._opened.clear()
            self._opened[(tenant_id, sealed)] = (plaintext, now)
        return plaintext
