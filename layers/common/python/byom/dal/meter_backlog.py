"""The meter backlog: an SQS queue (with a dead-letter queue) of the settles and audit records the
tables could not take once the provider had answered (byom.logic.call_meter). The reconciler
function drains it; docs/money.md says why nothing is lost or counted twice.

A message is one `Pending` as JSON: the meter and the hold as their fields, the transaction's other
items in DynamoDB's typed form, so numbers (Decimals) and sets come back exactly as they were built.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from byom.money import Hold, Metered, Pending

# What one message may carry: SQS takes 256 KiB; an audit record is ~1 KB.
MAX_MESSAGE_BYTES = 256 * 1024
VERSION = 1


def to_message(pending: Pending) -> str:
    serializer = TypeSerializer()
    body = {
        "v": VERSION,
        "metered": asdict(pending.metered) if pending.metered is not None else None,
        "hold": asdict(pending.hold) if pending.hold is not None else None,
        "also": [serializer.serialize(item) for item in pending.also],
    }
    text = json.dumps(body, separators=(",", ":"))
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise ValueError("a pending settle larger than an SQS message")
    return text


def _dataclass(cls: type[Any], values: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{name: value for name, value in values.items() if name in known})


def from_message(text: str) -> Pending:
    """The `Pending` of a message; ValueError for one that is not ours."""
    try:
        body = json.loads(text)
        if not isinstance(body, dict) or body.get("v") != VERSION:
            raise ValueError("not a meter backlog message")
        deserializer = TypeDeserializer()
        metered = body["metered"]
        if metered is not None:
            metered = _dataclass(
                Metered, metered | {"fell_back_from": tuple(metered.get("fell_back_from", ()))}
            )
        hold = _dataclass(Hold, body["hold"]) if body["hold"] is not None else None
        also = tuple(deserializer.deserialize(item) for item in body["also"])
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a meter backlog message: {type(error).__name__}") from None
    return Pending(metered, hold, also)


class SqsBacklog:
    """byom.logic.call_meter.Backlog on an SQS queue."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    def keep(self, pending: Pending) -> None:
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=to_message(pending))


class TransactWriter:
    """byom.logic.call_meter.ItemWriter: the items, as one transaction of a resource's client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def write(self, items: list[dict[str, Any]]) -> None:
        if items:
            self._client.transact_write_items(TransactItems=items)
