"""Data access of batches: the batches table, the batch data in the tenant's prefix of the data
bucket, presigned uploads, and the `byom.batches` events. The only boto3 code of batches."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from byom.batches import Batch
from byom.dal.aws import error_code, from_item, to_item
from byom.dal.fine_tuning import DataBucket, created_key
from byom.errors import Conflict

BY_TENANT_INDEX = "by_tenant"
EVENT_SOURCE = "byom.batches"


class BatchRepository:
    """One item per batch, keyed by its id; the by_tenant index lists a tenant's newest first."""

    def __init__(self, table: Any) -> None:
        self._table = table

    @staticmethod
    def _item(batch: Batch) -> dict[str, Any]:
        data = json.loads(batch.model_dump_json(exclude={"id"}))
        return data | {"batch_id": batch.id, "created_key": created_key(batch.created_at, batch.id)}

    @staticmethod
    def _batch(item: dict[str, Any]) -> Batch:
        plain = from_item(item)
        return Batch.model_validate(plain | {"id": plain["batch_id"]})

    def create(self, batch: Batch) -> None:
        try:
            self._table.put_item(
                Item=to_item(self._item(batch)), ConditionExpression="attribute_not_exists(batch_id)"
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise Conflict(f"batch {batch.id} already exists") from None
            raise

    def get(self, batch_id: str) -> Batch | None:
        item = self._table.get_item(Key={"batch_id": batch_id}, ConsistentRead=True).get("Item")
        return self._batch(item) if item else None

    def get_for_tenant(self, tenant_id: str, batch_id: str) -> Batch | None:
        batch = self.get(batch_id)
        return batch if batch is not None and batch.tenant_id == tenant_id else None

    def list(self, tenant_id: str, after: str | None, limit: int) -> tuple[builtins.list[Batch], bool]:
        condition = Key("tenant_id").eq(tenant_id)
        if after:
            anchor = self.get_for_tenant(tenant_id, after)
            if anchor is not None:
                condition = condition & Key("created_key").lt(created_key(anchor.created_at, anchor.id))
        items: builtins.list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "IndexName": BY_TENANT_INDEX,
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        while len(items) <= limit:
            page = self._table.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [self._batch(i) for i in items[:limit]], len(items) > limit

    def update(self, batch_id: str, fields: dict[str, Any], *, expect: Iterable[str]) -> bool:
        """Sets (None: removes) fields while the status is one of `expect`."""
        names: dict[str, str] = {"#status": "status"}
        values: dict[str, Any] = {}
        sets, removes = [], []
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
                continue
            values[f":v{i}"] = to_item({"v": value})["v"]
            sets.append(f"#f{i} = :v{i}")
        expected = [f":s{j}" for j, _ in enumerate(expect)]
        for placeholder, status in zip(expected, expect, strict=True):
            values[placeholder] = status
        expression = ("SET " + ", ".join(sets)) if sets else ""
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        try:
            self._table.update_item(
                Key={"batch_id": batch_id},
                UpdateExpression=expression.strip(),
                ConditionExpression=f"attribute_exists(batch_id) AND #status IN ({', '.join(expected)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def add_counts(self, batch_id: str, *, completed: int, failed: int, cost_micros: int) -> None:
        self._table.update_item(
            Key={"batch_id": batch_id},
            UpdateExpression="ADD completed :c, failed :f, cost_micros :m",
            ExpressionAttributeValues={":c": completed, ":f": failed, ":m": cost_micros},
        )


class BatchData(DataBucket):
    """The data bucket as batches use it: objects that may not exist yet, and presigned uploads."""

    def __init__(self, s3: Any, bucket: str, kms_key_id: str | None = None) -> None:
        super().__init__(s3, bucket, kms_key_id)
        self._client = s3

    def size(self, key: str) -> int | None:
        try:
            return int(self._client.head_object(Bucket=self.name, Key=key)["ContentLength"])
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def upload_url(self, key: str, expires_in: int) -> str:
        url: str = self._client.generate_presigned_url(
            "put_object", Params={"Bucket": self.name, "Key": key}, ExpiresIn=expires_in
        )
        return url

    def find(self, key: str) -> bytes | None:
        try:
            return self.get(key)
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise


class BatchEvents:
    """`byom.batches` events on the platform bus (docs/batches.md: BatchFinished)."""

    def __init__(self, events: Any, bus: str) -> None:
        self._events = events
        self._bus = bus

    def put(self, detail_type: str, detail: dict[str, Any]) -> None:
        self._events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "EventBusName": self._bus,
                }
            ]
        )
