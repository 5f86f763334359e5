"""The audit table (docs/contracts.md, Governance): one item per record in its tenant's partition,
sort key `{created_at_ms:013d}#{kind}#{request_id}`; the sparse `by_subject` index (KEYS_ONLY)
finds a data subject's records.

Besides the records, an erasure that needs more than one request keeps its running counts in one
item whose sort key starts with `!`, below every record's, so that no record query reaches it; it
is deleted in the same transaction that writes the erasure's record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from botocore.exceptions import ClientError

from byom.dal.aws import error_code, from_item, to_item
from byom.errors import InvalidRequest
from byom.governance.audit import AuditRecord, subject_key

if TYPE_CHECKING:  # the query models: the admin function's, not every call's
    from byom.governance.audit_query import AuditFilters

BY_SUBJECT_INDEX = "by_subject"
# A query reads at most this many pages before answering with a next_token, so that a filter
# matching nothing in a long partition still answers within the admin function's timeout.
MAX_PAGES = 8
# Items read per page when a filter may discard most of them (an item is ~0.5 KB).
FILTERED_PAGE_ITEMS = 500
# BatchGetItem reads up to 100 keys, BatchWriteItem writes up to 25 requests.
BATCH_GET_KEYS = 100
BATCH_WRITE_ITEMS = 25
# Unprocessed keys (throttling) are retried with exponential backoff this many times.
BATCH_ATTEMPTS = 8
BATCH_BACKOFF_SECONDS = 0.05
# The sort keys of records: every record's is at least LOWEST and at most HIGHEST.
LOWEST = "0" * 13
HIGHEST = "9" * 13 + "~"
_RECORD_SK = re.compile(r"^\d{13}#(interaction|admin|erasure)#[^#]{1,256}$")
PROGRESS_PREFIX = "!erasure#"


class BatchIncomplete(Exception):
    """DynamoDB left keys unprocessed after every retry (sustained throttling)."""


def encode_token(tenant_id: str, sk: str) -> str:
    raw = json.dumps({"t": tenant_id, "sk": sk}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(tenant_id: str, token: str) -> str:
    """The sort key a token resumes after; a token that is not one of ours for this tenant is a 400."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        sk, owner = data["sk"], data["t"]
    except (binascii.Error, ValueError, UnicodeDecodeError, TypeError, KeyError):
        raise InvalidRequest("next_token: not a token this route returned", param="next_token") from None
    if owner != tenant_id or not isinstance(sk, str) or not _RECORD_SK.match(sk):
        raise InvalidRequest("next_token: not a token this route returned", param="next_token")
    return sk


def _sk_range(filters: AuditFilters) -> tuple[str, str]:
    """`since` and `until` (seconds, both included) as sort-key bounds. A record's key starts with
    13 digits of milliseconds followed by `#`, so `{ms:013d}` sorts just before that ms's records."""
    low = LOWEST if filters.since is None else f"{filters.since * 1000:013d}"
    high = HIGHEST if filters.until is None else f"{(filters.until + 1) * 1000:013d}"
    return low, high


def _filter(filters: AuditFilters) -> ConditionBase | None:
    condition: ConditionBase | None = None
    for name, value in filters.matches().items():
        term = Attr(name).eq(value)
        condition = term if condition is None else condition & term
    return condition


def _progress_sk(user: str) -> str:
    return PROGRESS_PREFIX + hashlib.sha256(user.encode()).hexdigest()


def retry_batches(
    call: Callable[[dict[str, Any]], dict[str, Any]], requests: dict[str, Any], field: str
) -> None:
    """Send `requests`, then whatever DynamoDB answers as unprocessed, with backoff."""
    for attempt in range(BATCH_ATTEMPTS):
        answer = call(requests)
        requests = answer.get(field) or {}
        if not requests:
            return
        time.sleep(min(1.0, BATCH_BACKOFF_SECONDS * 2**attempt))
    raise BatchIncomplete(f"{field} left after {BATCH_ATTEMPTS} attempts")


class AuditTable:
    def __init__(self, table: Any, by_subject_index: str = BY_SUBJECT_INDEX) -> None:
        self._table = table
        self._client = table.meta.client  # the resource's client: plain Python values
        self._index = by_subject_index

    @property
    def name(self) -> str:
        return str(self._table.name)

    # Writing

    @staticmethod
    def item(record: AuditRecord) -> dict[str, Any]:
        """The record's fields with `sk`, and `subject` when it has a data subject (the sparse index)."""
        item = record.model_dump(exclude_none=True) | {"sk": record.sk}
        if record.user is not None:
            item["subject"] = subject_key(record.tenant_id, record.user)
        return to_item(item)

    def transact_put(self, record: AuditRecord) -> dict[str, Any]:
        """One element of a TransactWriteItems sent through a table resource's client (plain values),
        as the usage table's metering transaction is."""
        return {"Put": {"TableName": self.name, "Item": self.item(record)}}

    def write(self, record: AuditRecord) -> None:
        self._table.put_item(Item=self.item(record))

    # Reading

    def query(
        self, tenant_id: str, filters: AuditFilters, limit: int, next_token: str | None
    ) -> tuple[list[AuditRecord], str | None]:
        """Newest first, up to `limit` records, and a token when there may be more.

        DynamoDB applies a FilterExpression after reading, so pages are read until `limit` records
        matched, the partition ends, or MAX_PAGES were read (then the token resumes after the last
        item read). The token names the last record returned, not the page's end, so none is skipped.
        """
        low, high = _sk_range(filters)
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("tenant_id").eq(tenant_id) & Key("sk").between(low, high),
            "ScanIndexForward": False,
        }
        condition = _filter(filters)
        if condition is not None:
            kwargs["FilterExpression"] = condition
        if next_token is not None:
            kwargs["ExclusiveStartKey"] = {"tenant_id": tenant_id, "sk": decode_token(tenant_id, next_token)}
        found: list[AuditRecord] = []
        for _ in range(MAX_PAGES):
            kwargs["Limit"] = FILTERED_PAGE_ITEMS if condition is not None else limit - len(found)
            page = self._query(**kwargs)
            items = page.get("Items", [])
            for position, item in enumerate(items):
                found.append(AuditRecord.model_validate(from_item(item)))
                if len(found) == limit:
                    more = position < len(items) - 1 or "LastEvaluatedKey" in page
                    return found, encode_token(tenant_id, found[-1].sk) if more else None
            last = page.get("LastEvaluatedKey")
            if last is None:
                return found, None
            kwargs["ExclusiveStartKey"] = last
        return found, encode_token(tenant_id, kwargs["ExclusiveStartKey"]["sk"])

    def _query(self, **kwargs: Any) -> dict[str, Any]:
        try:
            return dict(self._table.query(**kwargs))
        except ClientError as error:
            # A start key DynamoDB will not take (only reachable with a hand-made token).
            if error_code(error) == "ValidationException" and "ExclusiveStartKey" in kwargs:
                raise InvalidRequest(
                    "next_token: not a token this route returned", param="next_token"
                ) from None
            raise

    def subject_keys(
        self, tenant_id: str, user: str, page_token: str | None, limit: int = BATCH_GET_KEYS
    ) -> tuple[list[str], str | None]:
        """The sort keys of a subject's records, oldest first, one page of the `by_subject` index."""
        subject = subject_key(tenant_id, user)
        kwargs: dict[str, Any] = {
            "IndexName": self._index,
            "KeyConditionExpression": Key("subject").eq(subject),
            "Limit": limit,
        }
        if page_token is not None:
            sk = decode_token(tenant_id, page_token)
            kwargs["ExclusiveStartKey"] = {"subject": subject, "sk": sk, "tenant_id": tenant_id}
        page = self._query(**kwargs)
        sks = [str(item["sk"]) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return sks, encode_token(tenant_id, str(last["sk"])) if last else None

    def get_many(self, tenant_id: str, sks: Sequence[str]) -> list[AuditRecord]:
        """The records that still exist, newest first."""
        items: list[dict[str, Any]] = []

        def read(requests: dict[str, Any]) -> dict[str, Any]:
            answer = self._client.batch_get_item(RequestItems=requests)
            items.extend(answer.get("Responses", {}).get(self.name, []))
            return dict(answer)

        for start in range(0, len(sks), BATCH_GET_KEYS):
            keys = [{"tenant_id": tenant_id, "sk": sk} for sk in sks[start : start + BATCH_GET_KEYS]]
            retry_batches(read, {self.name: {"Keys": keys}}, "UnprocessedKeys")
        records = [AuditRecord.model_validate(from_item(i)) for i in items]
        return sorted(records, key=lambda r: r.sk, reverse=True)

    def delete_many(self, tenant_id: str, sks: Sequence[str]) -> None:
        def write(requests: dict[str, Any]) -> dict[str, Any]:
            return dict(self._client.batch_write_item(RequestItems=requests))

        for start in range(0, len(sks), BATCH_WRITE_ITEMS):
            deletes = [
                {"DeleteRequest": {"Key": {"tenant_id": tenant_id, "sk": sk}}}
                for sk in sks[start : start + BATCH_WRITE_ITEMS]
            ]
            retry_batches(write, {self.name: deletes}, "UnprocessedItems")

    # An erasure in progress

    def erasure_progress(self, tenant_id: str, user: str) -> dict[str, int]:
        """What earlier requests of an unfinished erasure of `user` removed; empty if none."""
        item = self._table.get_item(
            Key={"tenant_id": tenant_id, "sk": _progress_sk(user)}, ConsistentRead=True
        ).get("Item")
        return {k: int(v) for k, v in from_item(item)["erased"].items()} if item else {}

    def save_erasure_progress(
        self, tenant_id: str, user: str, erased: dict[str, int], expires_at: int
    ) -> None:
        self._table.put_item(
            Item={
                "tenant_id": tenant_id,
                "sk": _progress_sk(user),
                "erased": erased,
                "expires_at": expires_at,
            }
        )

    def finish_erasure(self, record: AuditRecord, user: str) -> None:
        """Write the erasure's record and forget its progress, together."""
        self._client.transact_write_items(
            TransactItems=[
                self.transact_put(record),
                {
                    "Delete": {
                        "TableName": self.name,
                        "Key": {"tenant_id": record.tenant_id, "sk": _progress_sk(user)},
                    }
                },
            ]
        )
