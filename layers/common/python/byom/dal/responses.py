"""The stored-responses table (docs/contracts.md, Stored responses): one item per stored Responses
call in its tenant's partition (`tenant_id`, sort key `id`), expiring at `expires_at` (DynamoDB TTL,
from the tenant's retention_days).

Every body is sealed client-side (byom.dal.envelope, purpose `stored-response`, bound to the tenant
and to the response id) before it leaves the function. A sealed body up to MAX_INLINE_BYTES stays in
the item; a larger one goes to the data bucket under `tenants/{tenant_id}/responses/`, named by the
item's `body_key`, and is deleted with the item. The items carry no plaintext of the conversation:
keys, timestamps and the envelope only (the data subject is inside the envelope too).

Every call goes through the tenant's scoped credentials (byom.dal.tenant_scope): the table, bucket
and key grants of that role are conditioned on the tenant, so a bug that names another tenant's
partition meets AccessDenied.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError

from byom.dal.audit import BATCH_GET_KEYS, BATCH_WRITE_ITEMS, retry_batches
from byom.dal.aws import delete_versions_page, error_code
from byom.dal.content import RETENTION_TAG, retention_tier
from byom.dal.envelope import Envelope, EnvelopeSealer
from byom.dal.tenant_scope import scoped_client, scoped_table
from byom.domain import StoredResponse

PURPOSE = "stored-response"
DAY_SECONDS = 86_400
# DynamoDB's item limit is 400 KB, attribute names and keys included; the rest is the margin.
MAX_INLINE_BYTES = 350 * 1024
# The gateway makes the ids (`resp_` and hex); anything else cannot be one of ours, and an id past
# DynamoDB's sort-key limit would be a ValidationException rather than a 404. No `.`: a body's key
# ends in `.json`, so no id's key is a prefix of another's (bodies are deleted by prefix).
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_:-]{0,199}$")

ResourceFor = Callable[[str], Any]
"""A tenant's boto3 table or client: on its scoped session in the functions, plain ones in tests."""


def body_key(tenant_id: str, response_id: str) -> str:
    """Where a body too large for its item is kept, under the tenant's prefix."""
    return f"tenants/{tenant_id}/responses/{response_id}.json"


def well_formed(response_id: str) -> bool:
    return bool(_ID.match(response_id))


def _bytes(value: Any) -> bytes:
    return value.value if isinstance(value, Binary) else bytes(value)


class ResponseStore:
    def __init__(
        self,
        table_for: ResourceFor,
        s3_for: ResourceFor,
        kms_for: ResourceFor,
        bucket: str,
        kms_key_id: str,
        *,
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_inline_bytes: int = MAX_INLINE_BYTES,
    ) -> None:
        self._table_for = table_for
        self._s3_for = s3_for
        self._bucket = bucket
        self._sealer = EnvelopeSealer(kms_for, kms_key_id, PURPOSE, monotonic=monotonic)
        self._now = now
        self._max_inline = max_inline_bytes

    # Writing

    def put(self, record: StoredResponse, retention_days: int | None) -> None:
        """Seal and store `record`; it expires `retention_days` after its creation (None: kept until
        deleted). A body kept in the bucket expires by the bucket's lifecycle tier (the largest not
        above retention_days, byom.dal.content.retention_tier), and its item with it, so that the
        item never outlives its body nor either the tenant's retention."""
        if not well_formed(record.id):
            raise ValueError("a stored response id is letters, digits and `_:-`")
        plaintext = record.model_dump_json().encode()
        envelope = self._sealer.seal(record.tenant_id, plaintext, bound_to=record.id)
        item: dict[str, Any] = {
            "tenant_id": record.tenant_id,
            "id": record.id,
            "created_at": record.created_at,
        }
        spilled = envelope.size > self._max_inline
        days = retention_tier(retention_days) if spilled and retention_days else retention_days
        expires_at = record.created_at + days * DAY_SECONDS if days else record.expires_at
        if expires_at is not None:
            item["expires_at"] = expires_at
        if spilled:
            key = body_key(record.tenant_id, record.id)
            extra = {"Tagging": f"{RETENTION_TAG}={days}"} if retention_days else {}
            # The body first: an item never names an object that was not written.
            self._s3_for(record.tenant_id).put_object(
                Bucket=self._bucket,
                Key=key,
                Body=envelope.to_json(),
                ContentType="application/json",
                **extra,
            )
            item["body_key"] = key
        else:
            item |= {
                "v": envelope.version,
                "sealed_key": envelope.sealed_key,
                "nonce": envelope.nonce,
                "ciphertext": envelope.ciphertext,
            }
        self._table_for(record.tenant_id).put_item(Item=item)

    # Reading

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        """The record, or None when it is absent, expired (even before DynamoDB's TTL sweeps it),
        or not this tenant's: the key is the tenant's partition, so another's id is simply absent."""
        if not well_formed(response_id):
            return None
        # Consistent: a client chains `previous_response_id` to the call it has just made.
        item = (
            self._table_for(tenant_id)
            .get_item(Key={"tenant_id": tenant_id, "id": response_id}, ConsistentRead=True)
            .get("Item")
        )
        if item is None or self._expired(item):
            return None
        envelope = self._envelope(tenant_id, item)
        if envelope is None:
            return None
        plaintext = self._sealer.open(tenant_id, envelope, bound_to=response_id)
        record = StoredResponse.model_validate_json(plaintext)
        if (record.tenant_id, record.id) != (tenant_id, response_id):
            return None
        expires_at = item.get("expires_at")
        return record.model_copy(update={"expires_at": int(expires_at) if expires_at is not None else None})

    def _expired(self, item: dict[str, Any]) -> bool:
        expires_at = item.get("expires_at")
        return expires_at is not None and int(expires_at) <= self._now()

    def _envelope(self, tenant_id: str, item: dict[str, Any]) -> Envelope | None:
        key = item.get("body_key")
        if key is None:
            return Envelope(
                sealed_key=_bytes(item["sealed_key"]),
                nonce=_bytes(item["nonce"]),
                ciphertext=_bytes(item["ciphertext"]),
                version=int(item["v"]),
            )
        try:
            raw = self._s3_for(tenant_id).get_object(Bucket=self._bucket, Key=str(key))["Body"].read()
        except ClientError as error:
            # Deleted before its item (an interrupted delete): the response is gone.
            if error_code(error) in ("NoSuchKey", "404"):
                return None
            raise
        return Envelope.from_json(raw)

    # Deleting

    def delete(self, tenant_id: str, response_id: str) -> bool:
        """Remove the record and its body; False when there was no live one (an expired record
        not yet swept is removed all the same)."""
        if not well_formed(response_id):
            return False
        table = self._table_for(tenant_id)
        key = {"tenant_id": tenant_id, "id": response_id}
        item = table.get_item(
            Key=key,
            ConsistentRead=True,
            # The key too: a projection of attributes an item lacks answers no item at all.
            ProjectionExpression="#id, body_key, expires_at",
            ExpressionAttributeNames={"#id": "id"},
        ).get("Item")
        if item is None:
            return False
        # The body before the item: a delete cut short leaves an item without a body, which reads
        # as absent and which a repeat removes, never a body nothing names.
        self._delete_body(tenant_id, item)
        table.delete_item(Key=key)
        return not self._expired(item)

    def delete_many(self, tenant_id: str, response_ids: Sequence[str]) -> int:
        """Remove these records and their bodies (a data subject's erasure); answers how many there
        were. Ids that are not this tenant's are not found, and not counted."""
        ids = [i for i in dict.fromkeys(response_ids) if well_formed(i)]
        table = self._table_for(tenant_id)
        client, name = table.meta.client, str(table.name)  # the resource's client: plain values
        removed = 0
        for start in range(0, len(ids), BATCH_GET_KEYS):
            found: list[dict[str, Any]] = []

            def read(requests: dict[str, Any], found: list[dict[str, Any]] = found) -> dict[str, Any]:
                answer = client.batch_get_item(RequestItems=requests)
                found.extend(answer.get("Responses", {}).get(name, []))
                return dict(answer)

            keys = [{"tenant_id": tenant_id, "id": i} for i in ids[start : start + BATCH_GET_KEYS]]
            spec = {
                "Keys": keys,
                "ConsistentRead": True,
                "ProjectionExpression": "#id, body_key",
                "ExpressionAttributeNames": {"#id": "id"},
            }
            retry_batches(read, {name: spec}, "UnprocessedKeys")
            for item in found:
                self._delete_body(tenant_id, item)
            for chunk in range(0, len(found), BATCH_WRITE_ITEMS):
                deletes = [
                    {"DeleteRequest": {"Key": {"tenant_id": tenant_id, "id": item["id"]}}}
                    for item in found[chunk : chunk + BATCH_WRITE_ITEMS]
                ]
                retry_batches(
                    lambda requests: dict(client.batch_write_item(RequestItems=requests)),
                    {name: deletes},
                    "UnprocessedItems",
                )
            removed += len(found)
        return removed

    def _delete_body(self, tenant_id: str, item: dict[str, Any]) -> None:
        """Every version of the body object (the bucket is versioned), when the item has one."""
        key = item.get("body_key")
        if key is None:
            return
        done = False
        while not done:
            _, done = delete_versions_page(self._s3_for(tenant_id), self._bucket, str(key))


def tenant_scoped(table_name: str, bucket: str, kms_key_id: str) -> ResponseStore:
    """The store as the functions use it: each tenant's calls on that tenant's scoped session."""
    return ResponseStore(
        lambda tenant_id: scoped_table(tenant_id, table_name),
        lambda tenant_id: scoped_client(tenant_id, "s3"),
        lambda tenant_id: scoped_client(tenant_id, "kms"),
        bucket,
        kms_key_id,
    )
