"""DynamoDB under contention: moto's data, DynamoDB's conflicts and throttling (docs/scale.md).

moto applies every write it is sent. DynamoDB does not, under load:

- a TransactWriteItems with an item that another ongoing write holds is cancelled:
  `TransactionCanceledException`, reason `TransactionConflict` for that item, `None` for the rest;
- a PutItem, UpdateItem or DeleteItem of an item that an ongoing transaction holds fails with
  `TransactionConflictException`;
- a partition serves about 1,000 write units a second (an item lives on one partition, so that is
  an item's cap too): beyond it a plain write fails with `ProvisionedThroughputExceededException`
  (throttling reason `TableWriteKeyRangeThroughputExceeded`), which the SDK retries, and a
  transaction is cancelled with reason `ThrottlingError` on the items over it, which it does not.

`ContendedDynamoDB.attach(client)` hooks a boto3 client's `before-send` event. Each write holds its
items "in flight" for a simulated service time (and its caller waits that long), so that concurrent
threads really overlap; a write
that meets a conflict or a full partition is answered with DynamoDB's error, as the HTTP response
DynamoDB sends (botocore parses and retries it exactly as it would the real one), and every other
request goes on to the moto server, which applies it. Only against a moto *server*: in-process
`mock_aws` applies each request in its own `before-send` handler, whatever another one answered.

Write units are counted as DynamoDB bills them: 1 per KB (rounded up) of each item written, twice
in a transaction. An item's size is estimated from what the request carries (its key and values):
the whole item for a put, a lower bound for an update. The ledger's items are far under 1 KB, so
each costs 1 unit (2 in a transaction) whatever the estimate.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse

ItemKey = tuple[str, str, str]
"""An item: its table, partition key value and sort key value ("" without a sort key)."""
PartitionKey = tuple[str, str]

_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})
_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
CONFLICT = "TransactionConflict"
THROTTLED = "ThrottlingError"
# DynamoDB's own wording, so a log or an assertion on the message reads as it would in AWS.
_CONFLICT_MESSAGE = "Transaction is ongoing for the item"
_THROTTLE_MESSAGE = (
    "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically "
    "scaling your table or index so please try again shortly. If exceptions persist, check if you "
    "have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"
)


@dataclass(frozen=True)
class Capacity:
    """What one partition serves, and how long a write holds its items."""

    item_wru: int = 1000
    """Write units an item takes per window: a partition's cap, the most one item can have."""
    partition_wru: int = 1000
    """Write units one partition key's items take together per window: the cap while they share a
    partition (DynamoDB may later split a hot key's items apart by sort key, "split for heat")."""
    window_seconds: float = 1.0
    service_seconds: float = 0.004
    """How long a write is in flight on its items: what another write overlapping it conflicts with."""


@dataclass(frozen=True)
class Sent:
    """One write request as the double saw it."""

    operation: str
    items: tuple[ItemKey, ...]
    wru: int
    outcome: str
    """`applied` (passed on to moto), `conflict` or `throttled`."""


@dataclass
class Tally:
    """What the double saw and did; read it once the threads are done."""

    requests: Counter[str] = field(default_factory=Counter)
    """Every request by operation, reads included."""
    conflicts: int = 0
    throttles: int = 0
    item_wru: Counter[ItemKey] = field(default_factory=Counter)
    """Write units consumed by the writes passed on, by item."""
    partition_wru: Counter[PartitionKey] = field(default_factory=Counter)
    partition_rru: Counter[PartitionKey] = field(default_factory=Counter)
    """Read units of GetItem and BatchGetItem by partition key (queries are counted as requests only)."""
    sent: list[Sent] = field(default_factory=list)

    def applied(self) -> list[Sent]:
        return [s for s in self.sent if s.outcome == "applied"]


@dataclass(frozen=True)
class _Write:
    key: ItemKey
    units: int


class _Body:
    """The raw stream of an answer botocore reads (`AWSResponse.content`)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        yield self._data


class ContendedDynamoDB:
    """Conflicts and throttling injected into a boto3 DynamoDB client talking to a moto server.

    `key_names`: each table's (partition key, sort key) attribute names; tables not named use
    `pk` / `sk`, the usage table's. `clock` and `sleep` are injectable so the double's own tests
    can move time instead of waiting for it."""

    def __init__(
        self,
        capacity: Capacity | None = None,
        *,
        key_names: Mapping[str, tuple[str, str | None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        account: str = "123456789012",
        region: str = "us-east-1",
    ) -> None:
        self.capacity = capacity or Capacity()
        self.tally = Tally()
        self._key_names = dict(key_names or {})
        self._clock = clock
        self._sleep = sleep
        self._arn = f"arn:aws:dynamodb:{region}:{account}:table/"
        self._lock = threading.Lock()
        # item -> [until when a transaction holds it, until when a plain write does]
        self._busy_until: dict[ItemKey, list[float]] = {}
        self._item_history: dict[ItemKey, deque[tuple[float, int]]] = {}
        self._partition_history: dict[PartitionKey, deque[tuple[float, int]]] = {}

    def attach(self, client: Any) -> Any:
        """Contend this client's requests (a resource's: `table.meta.client`); the client."""
        client.meta.events.register("before-send.dynamodb", self._before_send)
        return client

    # The hook

    def _before_send(self, request: Any, event_name: str, **_kwargs: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        body = json.loads(request.body or b"{}")
        with self._lock:
            self.tally.requests[operation] += 1
            self._count_reads(operation, body)
        if operation not in _WRITES:
            return None
        transactional = operation == "TransactWriteItems"
        writes = self._writes(operation, body)
        keys = tuple(w.key for w in writes)
        with self._lock:
            now = self._clock()
            reasons = self._refusals(writes, transactional, now)
            if any(reasons):
                # Counted once, a throttle before a conflict (as the ledger counts its retries).
                outcome = "throttled" if THROTTLED in reasons else "conflict"
                if outcome == "conflict":
                    self.tally.conflicts += 1
                else:
                    self.tally.throttles += 1
                self.tally.sent.append(Sent(operation, keys, 0, outcome))
                return self._refusal(request, operation, writes, reasons)
            self._consume(writes, transactional, operation, now)
            # The service's time, not the calling thread's: how long the write holds its items does
            # not depend on when a busy interpreter lets that thread run again.
            until = now + self.capacity.service_seconds
            for key in keys:
                busy = self._busy_until.setdefault(key, [0.0, 0.0])
                slot = 0 if transactional else 1
                busy[slot] = max(busy[slot], until)
        self._sleep(self.capacity.service_seconds)  # the caller waits for the service, as on AWS
        return None

    # What DynamoDB would decide (under the lock)

    def _refusals(self, writes: list[_Write], transactional: bool, now: float) -> list[str | None]:
        """Each write's reason to refuse the request, None where that item is fine."""
        factor = 2 if transactional else 1
        partition_units: Counter[PartitionKey] = Counter()
        for write in writes:
            partition_units[write.key[:2]] += write.units * factor
        reasons: list[str | None] = []
        for write in writes:
            transaction_until, write_until = self._busy_until.get(write.key, (0.0, 0.0))
            # A transaction conflicts with any write in flight on its item; a plain write only with
            # a transaction (DynamoDB applies plain writes to an item one after the other).
            if transaction_until > now or (transactional and write_until > now):
                reasons.append(CONFLICT)
                continue
            item_used = _used(self._item_history.get(write.key), now, self.capacity.window_seconds)
            partition = write.key[:2]
            partition_used = _used(self._partition_history.get(partition), now, self.capacity.window_seconds)
            over_item = item_used + write.units * factor > self.capacity.item_wru
            over_partition = partition_used + partition_units[partition] > self.capacity.partition_wru
            reasons.append(THROTTLED if over_item or over_partition else None)
        return reasons

    def _consume(self, writes: list[_Write], transactional: bool, operation: str, now: float) -> None:
        factor = 2 if transactional else 1
        total = 0
        for write in writes:
            units = write.units * factor
            total += units
            self._item_history.setdefault(write.key, deque()).append((now, units))
            self._partition_history.setdefault(write.key[:2], deque()).append((now, units))
            self.tally.item_wru[write.key] += units
            self.tally.partition_wru[write.key[:2]] += units
        self.tally.sent.append(Sent(operation, tuple(w.key for w in writes), total, "applied"))

    def _count_reads(self, operation: str, body: dict[str, Any]) -> None:
        """Read units of the reads by key: half a unit per item (up to 4 KB) read eventually
        consistent, one strongly. Reads are never refused: the partition's 3,000 read units are
        far from what a call reads."""
        if operation == "GetItem":
            reads = [(body["TableName"], body.get("Key") or {}, bool(body.get("ConsistentRead")))]
        elif operation == "BatchGetItem":
            reads = [
                (table, key, bool(request.get("ConsistentRead")))
                for table, request in body.get("RequestItems", {}).items()
                for key in request.get("Keys", [])
            ]
        else:
            return
        for table, key, consistent in reads:
            hash_name, _ = self._key_names.get(table, ("pk", "sk"))
            self.tally.partition_rru[(table, _plain(key.get(hash_name)))] += 1.0 if consistent else 0.5

    # DynamoDB's answers

    def _refusal(
        self, request: Any, operation: str, writes: list[_Write], reasons: list[str | None]
    ) -> AWSResponse:
        if operation == "TransactWriteItems":
            cancellation = [_cancellation_reason(reason) for reason in reasons]
            codes = ", ".join(r["Code"] for r in cancellation)
            return _error(
                request,
                "TransactionCanceledException",
                {
                    "Message": (
                        "Transaction cancelled, please refer cancellation reasons for specific "
                        f"reasons [{codes}]"
                    ),
                    "CancellationReasons": cancellation,
                },
            )
        if THROTTLED not in reasons:
            return _error(request, "TransactionConflictException", {"message": _CONFLICT_MESSAGE})
        table = writes[0].key[0]
        throttling = [{"reason": "TableWriteKeyRangeThroughputExceeded", "resource": self._arn + table}]
        return _error(
            request,
            "ProvisionedThroughputExceededException",
            {"message": _THROTTLE_MESSAGE, "ThrottlingReasons": throttling},
        )

    # Reading a request

    def _writes(self, operation: str, body: dict[str, Any]) -> list[_Write]:
        if operation == "TransactWriteItems":
            actions = [next(iter(action.items())) for action in body.get("TransactItems", [])]
        else:
            kind = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}[operation]
            actions = [(kind, body)]
        return [self._write(kind, action) for kind, action in actions]

    def _write(self, kind: str, action: dict[str, Any]) -> _Write:
        table = str(action["TableName"])
        attributes = action.get("Item") if kind == "Put" else action.get("Key")
        attributes = attributes or {}
        size = _item_size(attributes)
        if kind == "Update":
            size += _item_size(action.get("ExpressionAttributeValues") or {})
        hash_name, range_name = self._key_names.get(table, ("pk", "sk"))
        key = (
            table,
            _plain(attributes.get(hash_name)),
            _plain(attributes.get(range_name)) if range_name else "",
        )
        return _Write(key, max(1, math.ceil(size / 1024)))


def _used(history: deque[tuple[float, int]] | None, now: float, window: float) -> int:
    """The units of the last window, forgetting older ones as it goes."""
    if not history:
        return 0
    while history and history[0][0] <= now - window:
        history.popleft()
    return sum(units for _, units in history)


def _cancellation_reason(reason: str | None) -> dict[str, str]:
    if reason == CONFLICT:
        return {"Code": CONFLICT, "Message": _CONFLICT_MESSAGE}
    if reason == THROTTLED:
        return {"Code": THROTTLED, "Message": _THROTTLE_MESSAGE}
    return {"Code": "None"}


def _error(request: Any, code: str, body: dict[str, Any]) -> AWSResponse:
    """An error as DynamoDB's JSON protocol sends it: botocore reads the code from `__type`."""
    payload = json.dumps({"__type": _ERROR_PREFIX + code, **body}).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "Content-Length": str(len(payload)),
        "x-amzn-RequestId": uuid.uuid4().hex.upper(),
    }
    return AWSResponse(request.url, 400, headers, _Body(payload))


def _plain(value: dict[str, Any] | None) -> str:
    """A typed key value (`{"S": "tnt_a#2026-11"}`) as text."""
    return str(next(iter(value.values()))) if value else ""


def _item_size(attributes: dict[str, Any]) -> int:
    """DynamoDB's item size: each attribute's name in UTF-8 plus its value's size."""
    return sum(len(name.encode()) + _value_size(value) for name, value in attributes.items())


def _value_size(value: dict[str, Any]) -> int:
    kind, data = next(iter(value.items()))
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return len(str(data).lstrip("-").replace(".", "")) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: member}) for member in data)
    if kind == "L":
        return 3 + sum(1 + _value_size(member) for member in data)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + _value_size(member) for name, member in data.items())
    return len(json.dumps(data))
