"""The ledger's DynamoDB access: the usage table (docs/contracts.md) holds budgets, the monthly
ledgers, usage counters and reservations; the values it reads and writes are byom.money's.

Every write that moves money is one conditional DynamoDB request (an UpdateItem or a
TransactWriteItems): a reservation is admitted only while `remaining_micros >= amount`, a call is
metered only if its `req#` marker is new, a hold is refunded only by whoever deletes it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from byom.dal.aws import LazyClient, error_code, from_item, to_item, typed_request
from byom.domain import MAX_LEDGER_SHARDS, Budget
from byom.errors import StoreUnavailable
from byom.logic.ledger_shards import ShardLedger, closes, moves, resplit, share
from byom.money import FELL_BACK, BudgetState, Hold, Ledger, Metered, ReservationRefused, Settled
from byom.observability import logger

BUDGET = "budget"
TOTAL = "total"
MARKER_TTL_SECONDS = 40 * 86_400
# Holds expire minutes after their call (byom.logic.call_meter.HOLD_SECONDS): a month swept this
# recently has nothing new to give back, and a tenant refused at its limit under load would otherwise
# query every shard's holds on each refused call.
SWEEP_INTERVAL_SECONDS = 10
MINUTE_TTL_SECONDS = 86_400
# A transaction that DynamoDB cancelled only for contention commits when tried again a little later.
# The SDK retries neither reason, so `_transact` does, with full-jitter exponential backoff (calls a
# conflict cancelled together do not collide again), bounded (docs/scale.md): another write in flight
# on one of its items (TransactionConflict) is over in milliseconds; a partition over its write units
# (throttling) has them back within the second, so those waits start longer.
_CONFLICTS = frozenset({"TransactionConflict"})
_THROTTLES = frozenset(
    {
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        # Error codes of a throttle the SDK already retried (standard mode), should one reach here.
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
    }
)
# Bounded twice: by attempts, and by the time spent waiting between them (well inside API Gateway's
# 29 s), whichever comes first. 100 calls of one tenant at once queue on its `total` item for
# seconds (bench/contention): a shorter budget would drop the last of them.
_TRANSACT_ATTEMPTS = 16
_BACKOFF_BUDGET_SECONDS = 5.0
# A borrowing reservation whose shards other calls moved meanwhile reads them again: only a read
# that shows the month cannot hold it refuses the call, unless they keep moving this many times.
_BORROW_ATTEMPTS = 8
# (first wait, longest wait) in seconds, before the jitter.
_BACKOFF_SECONDS = {"conflict": (0.01, 0.5), "throttle": (0.1, 1.0)}


def month_pk(tenant_id: str, month: str) -> str:
    return f"{tenant_id}#{month}"


def shard_pk(tenant_id: str, month: str, shard: int) -> str:
    """A ledger shard's partition key (byom.logic.ledger_shards): shard 0 is the month's own, so a
    budget of one shard is the unsharded layout."""
    return month_pk(tenant_id, month) if shard == 0 else f"{tenant_id}#{month}#s{shard}"


def _minute_sk(minute: str) -> str:
    """A minute's token counter, under the month's partition (tokens-per-minute limits)."""
    return f"tpm#{minute}"


def ledger_of(item: dict[str, Any] | None) -> Ledger:
    """A ledger item (`total` or `key#`) as the call reads it; none yet: nothing spent."""
    if not item:
        return Ledger()
    return Ledger(
        spent_micros=int(item.get("cost_micros", 0)),
        committed_micros=int(item.get("committed_micros", 0)),
        remaining_micros=int(item["remaining_micros"]) if "remaining_micros" in item else None,
        warned=frozenset(item.get("warned", ())),
    )


def _typed_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item of a cancellation reason, in DynamoDB's typed form (the resource client leaves it so too)."""
    deserializer = TypeDeserializer()
    return from_item({name: deserializer.deserialize(value) for name, value in item.items()})


def _reasons(error: ClientError) -> list[str]:
    return [str(r.get("Code") or "None") for r in error.response.get("CancellationReasons", [])]


Labelled = list[tuple[str, dict[str, Any]]]
"""A transaction's items, each under a label unique in it: its failures are told by label."""


def _failed(error: ClientError, items: Labelled) -> dict[str, dict[str, Any]]:
    """The items whose condition failed, by label, each with its old item (typed as DynamoDB
    answered it). DynamoDB answers one reason per item in the order they were sent; that order is
    read here and nowhere else, so adding an item cannot shift what a failure is taken for."""
    reasons = error.response.get("CancellationReasons", [])
    return {
        label: _typed_item(reason.get("Item") or {})
        for (label, _), reason in zip(items, reasons, strict=False)
        if reason.get("Code") == "ConditionalCheckFailed"
    }


class UsageTable:
    def __init__(self, table: Any, client: Any | None = None) -> None:
        """`client`: the low-level DynamoDB client the transactions go through, their items typed
        here (byom.dal.aws.typed_request); by default the function's own, made on first use."""
        self._table = table
        self._client = client if client is not None else LazyClient("dynamodb")
        self.retries: Counter[str] = Counter()
        """Transactions tried again, by the reason DynamoDB cancelled them (bench/contention)."""
        self._retries_lock = threading.Lock()
        self._swept: dict[tuple[str, str], int] = {}
        """When this table last swept each tenant's month (the `now` it was given)."""

    @property
    def name(self) -> str:
        return str(self._table.name)

    # Budgets

    def get_budget(self, tenant_id: str) -> Budget | None:
        item = self._table.get_item(Key={"pk": tenant_id, "sk": BUDGET}).get("Item")
        return self.budget_of(from_item(item)) if item else None

    @staticmethod
    def budget_of(item: dict[str, Any]) -> Budget:
        return Budget.model_validate(item | {"tenant_id": item["pk"]})

    def put_budget(
        self, budget: Budget, month: str, key_limits_micros: dict[str, int], limit_micros: int
    ) -> None:
        """Store the budget, then set this month's ledgers to it: `remaining = limit - committed`,
        each in one update, so calls in flight are neither forgotten nor counted twice. Later months
        start from the stored budget at their first reservation. A month on more than one ledger
        shard (now, or earlier this month) is re-split instead (`_resplit`)."""
        item = budget.model_dump(exclude={"tenant_id"}) | {"pk": budget.tenant_id, "sk": BUDGET}
        self._table.put_item(Item=to_item(item))
        scopes = {TOTAL: limit_micros} | {f"key#{k}": v for k, v in key_limits_micros.items()}
        used = self._shards_used(budget.tenant_id, month)
        if budget.ledger_shards == 1 and used == 1:
            pk = month_pk(budget.tenant_id, month)
            for sk, limit in scopes.items():
                self._set_limit(pk, sk, limit)
            return
        for sk, limit in scopes.items():
            self._resplit(
                budget.tenant_id, month, sk, limit, budget.ledger_shards, max(used, budget.ledger_shards)
            )

    def _set_limit(self, pk: str, sk: str, limit_micros: int) -> None:
        self._table.update_item(
            Key={"pk": pk, "sk": sk},
            UpdateExpression=(
                "SET limit_micros = :limit, "
                "remaining_micros = :limit - if_not_exists(committed_micros, :zero)"
            ),
            ExpressionAttributeValues={":limit": limit_micros, ":zero": 0},
        )

    def _shards_used(self, tenant_id: str, month: str) -> int:
        """How many ledger shards the month has written: one past the highest with a `total`."""
        keys = [{"pk": shard_pk(tenant_id, month, i), "sk": TOTAL} for i in range(MAX_LEDGER_SHARDS)]
        found = self._get_many(keys, ["pk"])
        shards = [int(item["pk"].rsplit("#s", 1)[1]) for item in found if "#s" in item["pk"]]
        return max(shards, default=0) + 1

    def _shard_items(self, tenant_id: str, month: str, sk: str, shards: int) -> list[dict[str, Any] | None]:
        """The scope's item on each of the month's shards (None where not written), read
        consistently in one request."""
        keys = [{"pk": shard_pk(tenant_id, month, i), "sk": sk} for i in range(shards)]
        by_pk = {item["pk"]: item for item in self._get_many(keys, None, consistent=True)}
        return [by_pk.get(shard_pk(tenant_id, month, i)) for i in range(shards)]

    def _shard_ledgers(self, tenant_id: str, month: str, sk: str, shards: int) -> list[ShardLedger]:
        """The scope's ledger on each of the month's shards, read consistently."""
        ledgers = []
        for i, item in enumerate(self._shard_items(tenant_id, month, sk, shards)):
            ledger = ledger_of(item)
            ledgers.append(
                ShardLedger(i, ledger.spent_micros, ledger.committed_micros, ledger.remaining_micros)
            )
        return ledgers

    def _get_many(
        self, keys: list[dict[str, str]], attributes: list[str] | None, *, consistent: bool = False
    ) -> list[dict[str, Any]]:
        """The items of `keys` that exist (a BatchGetItem, its unprocessed keys asked again)."""
        request: dict[str, Any] = {"Keys": [to_item(k) for k in keys], "ConsistentRead": consistent}
        if attributes:
            request["ProjectionExpression"] = ", ".join(f"#{n}" for n in range(len(attributes)))
            request["ExpressionAttributeNames"] = {f"#{n}": name for n, name in enumerate(attributes)}
        resource = self._table.meta.client
        items: list[dict[str, Any]] = []
        pending = {self.name: request}
        for _ in range(8):
            answer = resource.batch_get_item(RequestItems=pending)
            items.extend(from_item(i) for i in answer.get("Responses", {}).get(self.name, []))
            pending = answer.get("UnprocessedKeys") or {}
            if not pending:
                return items
            time.sleep(0.05)
        raise StoreUnavailable("The usage table is too busy to read the tenant's ledger. Try again.")

    def _resplit(
        self, tenant_id: str, month: str, sk: str, limit_micros: int, shards: int, used: int
    ) -> None:
        """Set one scope's limit over the month's shards (byom.logic.ledger_shards.resplit) in one
        transaction. Each shard's update is conditioned on its commitment not having outgrown its
        new limit since it was read; a shard that did is read again, so no shard is left short."""
        for _ in range(5):
            ledgers = self._shard_ledgers(tenant_id, month, sk, used)
            targets = resplit(ledgers, limit_micros, shards)
            closed = closes(ledgers, limit_micros)
            items: Labelled = []
            for shard, target in targets.items():
                update: dict[str, Any] = {
                    "TableName": self.name,
                    "Key": {"pk": shard_pk(tenant_id, month, shard), "sk": sk},
                    "UpdateExpression": (
                        "SET limit_micros = :limit, "
                        "remaining_micros = :limit - if_not_exists(committed_micros, :zero)"
                    ),
                    "ExpressionAttributeValues": {":limit": target, ":zero": 0},
                }
                if not closed:
                    update["ConditionExpression"] = (
                        "attribute_not_exists(committed_micros) OR committed_micros <= :limit"
                    )
                items.append((f"shard#{shard}", typed_request({"Update": update})))
            if self._transact_unless_moved(items):
                return
        raise StoreUnavailable(
            "The budget could not be applied: the tenant's calls kept moving its ledger. Try again."
        )

    def delete_budget(self, tenant_id: str) -> None:
        self._table.delete_item(Key={"pk": tenant_id, "sk": BUDGET})

    # The hot path

    def call_keys(self, tenant_id: str, month: str, minute: str | None = None) -> list[dict[str, str]]:
        """What a call reads (in the same BatchGetItem as its alias): the budget, the month's
        ledger and (given the minute) the tenant's token counter of this minute. A key's own ledger
        is not read: its limit is enforced by the reservation's condition."""
        keys = [{"pk": tenant_id, "sk": BUDGET}, {"pk": month_pk(tenant_id, month), "sk": TOTAL}]
        if minute is not None:
            keys.append({"pk": month_pk(tenant_id, month), "sk": _minute_sk(minute)})
        return keys

    @staticmethod
    def minute_tokens(items: Iterable[dict[str, Any]], tenant_id: str, month: str, minute: str) -> int:
        """The tokens the tenant's calls settled in this minute (tokens-per-minute limits)."""
        key = (month_pk(tenant_id, month), _minute_sk(minute))
        item = next((i for i in items if (i["pk"], i["sk"]) == key), None)
        return int(item.get("tokens", 0)) if item else 0

    def budget_state(self, items: Iterable[dict[str, Any]], tenant_id: str) -> BudgetState:
        by_sk = {(i["pk"], i["sk"]): i for i in items}
        budget_item = by_sk.get((tenant_id, BUDGET))
        ledger = next((i for (pk, sk), i in by_sk.items() if sk == TOTAL and pk != tenant_id), None)
        return BudgetState(
            budget=self.budget_of(budget_item) if budget_item else None, ledger=ledger_of(ledger)
        )

    @staticmethod
    def _ledger_update(
        pk: str, sk: str, limit: int, *, commit: int = 0, give: int = 0, take: int = 0
    ) -> dict[str, Any]:
        """A ledger's part of a reservation: commit `commit`, and (borrowing between shards) receive
        `give` or hand over `take`, admitted only while the ledger's remaining covers what it loses.
        A month's first write starts the ledger from `limit` (nothing is committed yet): admitted
        then only if the limit covers it."""
        lost = commit + take - give
        if give or take:
            values = {":delta": -lost, ":limit": limit, ":moved": give - take, ":lost": lost}
            expression = (
                "SET remaining_micros = if_not_exists(remaining_micros, :limit) + :delta, "
                "limit_micros = if_not_exists(limit_micros, :limit) + :moved"
            )
        else:
            values = {":lost": lost, ":limit": limit}
            expression = (
                "SET remaining_micros = if_not_exists(remaining_micros, :limit) - :lost, "
                "limit_micros = if_not_exists(limit_micros, :limit)"
            )
        if commit:
            expression += " ADD committed_micros :commit"
            values[":commit"] = commit
        # A missing attribute compares as false, so a first write over the limit is refused too.
        condition = "remaining_micros >= :lost"
        if limit >= lost:
            condition = "attribute_not_exists(remaining_micros) OR " + condition
        return {
            "Key": {"pk": pk, "sk": sk},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    @staticmethod
    def _scopes(hold: Hold) -> list[tuple[str, str, int]]:
        """The ledgers a hold is taken off: (scope, sort key, the month's limit)."""
        scopes = [("tenant", TOTAL, hold.limit_micros)]
        if hold.key_limit_micros is not None:
            scopes.append(("key", f"key#{hold.key_id}", hold.key_limit_micros))
        return scopes

    def reserve(self, hold: Hold) -> None:
        """Take the hold off the tenant's (and the key's) remaining budget, or refuse: one
        transaction, so two concurrent calls can never both take the last of it. On a sharded
        month, a shard short of it borrows from the others first (`_borrow`)."""
        items = self._reservation(hold, {})
        try:
            self._transact(items)
        except ClientError as error:
            refused = _refusal(error, items, self._scopes(hold))
            if refused is None:
                raise
            if hold.shards <= 1:
                raise refused from None
            self._borrow(hold, refused)

    def _reservation(self, hold: Hold, borrowed: dict[str, dict[int, int]]) -> Labelled:
        """The reservation's items: each scope's ledger on the hold's shard (and, borrowing, on
        the shards it borrows from), then the hold."""
        pk = shard_pk(hold.tenant_id, hold.month, hold.shard)
        items: Labelled = []
        for scope, sk, limit in self._scopes(hold):
            taken = borrowed.get(scope, {})
            for donor, amount in taken.items():
                donor_pk = shard_pk(hold.tenant_id, hold.month, donor)
                update = self._ledger_update(donor_pk, sk, share(limit, hold.shards, donor), take=amount)
                items.append(
                    (f"{scope}@{donor}", typed_request({"Update": {"TableName": self.name, **update}}))
                )
            update = self._ledger_update(
                pk,
                sk,
                share(limit, hold.shards, hold.shard),
                commit=hold.amount_micros,
                give=sum(taken.values()),
            )
            items.append((scope, typed_request({"Update": {"TableName": self.name, **update}})))
        record = {
            "pk": pk,
            "sk": f"hold#{hold.request_id}",
            "amount_micros": hold.amount_micros,
            "key_id": hold.key_id,
            "key_limited": hold.key_limit_micros is not None,
            "expires_at": hold.expires_at,
        }
        hold_put = {"TableName": self.name, "Item": record, "ConditionExpression": "attribute_not_exists(pk)"}
        items.append(("hold", typed_request({"Put": hold_put})))
        return items

    def _borrow(self, hold: Hold, refused: ReservationRefused) -> None:
        """A sharded month's reservation its own shard refused: read the scopes' shards and move
        what it lacks from the richest, in the reservation's own transaction (no shard admits more
        than it has, so the month admits no more than one ledger would). Refused when the shards
        together cannot hold it; read again when another call moved them meanwhile."""
        first, longest = _BACKOFF_SECONDS["conflict"]
        for attempt in range(_BORROW_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, min(longest, first * 2**attempt)))  # nosec B311  # jitter, not a secret
            plan: dict[str, dict[int, int]] = {}
            for scope, sk, limit in self._scopes(hold):
                ledgers = self._shard_ledgers(hold.tenant_id, hold.month, sk, hold.shards)
                moved = moves(ledgers, limit, hold.shards, hold.shard, hold.amount_micros)
                if moved is None:
                    left = sum(max(ledger.remaining(limit, hold.shards), 0) for ledger in ledgers)
                    raise ReservationRefused(scope, left)
                plan[scope] = moved
            if self._transact_unless_moved(self._reservation(hold, plan)):
                return
        raise refused

    def settle(
        self,
        metered: Metered,
        hold: Hold | None,
        spend_guard: int | None = None,
        *,
        also: list[dict[str, Any]] | None = None,
        within: Hold | None = None,
    ) -> Settled:
        """Count the call and turn its hold (if any) into what it really cost: one transaction with
        the call's `req#` marker, so a repeated settle counts nothing.

        `spend_guard`: the month's spend below which this call cannot have reached a budget
        threshold (the next threshold less this call's cost). The ledger update is conditioned on
        it; when the condition fails, the call is settled again without it and the answer carries
        the month's spend, so the caller announces what was reached. Only the call that reaches a
        threshold pays that second write, never the others.

        A hold swept meanwhile (the call outlived its expiry) was refunded by the sweep; the cost is
        then committed afresh.

        `also`: more items of the same transaction (the call's audit record), written exactly when
        the call is metered.

        `within`: a standing hold that covers this call and stays in place (a batch's, released
        when the batch ends): no hold is turned into the cost, which is committed against the
        ledgers the standing hold's limits name."""
        held, guard, reached = hold, spend_guard, None
        reserved = hold if within is None else within
        while True:
            try:
                counted = self._settle(metered, held, reserved=reserved, spend_guard=guard, also=also or [])
                break
            except _SpendReached as spent:
                reached, guard = spent, None
            except _HoldGone:
                held = None
        if reached is None:
            return Settled(counted)
        return Settled(counted, reached.spent_micros + metered.cost_micros, reached.warned)

    def _settle(
        self,
        metered: Metered,
        hold: Hold | None,
        *,
        reserved: Hold | None,
        spend_guard: int | None,
        also: list[dict[str, Any]],
    ) -> bool:
        """`hold`: the hold to turn into the cost, None when there is none (or it was swept);
        `reserved`: the call's reservation, whose limits the ledgers keep, swept or not."""
        pk = shard_pk(metered.tenant_id, metered.month, metered.shard)
        # Adding zero changes nothing: left out, the request is smaller and quicker to build
        # (every call adds 1 to `requests` or `errors`, so an update is never empty).
        call_counters = {name: value for name, value in metered.counters().items() if value}
        model_sk = f"model#{metered.alias}"
        model_counters = {name: value for name, value in metered.model_counters().items() if value}
        held = hold.amount_micros if hold else 0
        # With a hold: committed moves from the hold to the cost. Without: the cost is committed.
        committed = metered.cost_micros - held
        ledgers = {
            TOTAL: reserved is not None,
            f"key#{metered.key_id}": bool(reserved and reserved.key_limit_micros is not None),
        }
        marker = {
            "TableName": self.name,
            "Item": {
                "pk": pk,
                "sk": f"req#{metered.request_id}",
                "outcome": "error" if metered.error else "ok",
                "expires_at": int(time.time()) + MARKER_TTL_SECONDS,
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        items: Labelled = [("marker", typed_request({"Put": marker}))]
        for sk in (TOTAL, model_sk, f"key#{metered.key_id}", f"day#{metered.day}"):
            counters = model_counters if sk == model_sk else call_counters
            values = {f":{name}": value for name, value in counters.items()}
            adds = [f"{name} :{name}" for name in counters]
            if sk in ledgers and committed:
                adds.append("committed_micros :committed")
                values[":committed"] = committed
                if ledgers[sk]:
                    adds.append("remaining_micros :refund")
                    values[":refund"] = -committed
            update: dict[str, Any] = {
                "TableName": self.name,
                "Key": {"pk": pk, "sk": sk},
                "UpdateExpression": "ADD " + ", ".join(adds),
                "ExpressionAttributeValues": values,
            }
            if sk == TOTAL and spend_guard is not None:
                # Fails on a month's first settle too (no cost_micros yet): the spend is then known.
                update["ConditionExpression"] = "cost_micros < :guard"
                update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
                values[":guard"] = spend_guard
            items.append((sk, typed_request({"Update": update})))
        # The models a fallback covered: an error each, in this same write (no extra round trip).
        for alias in dict.fromkeys(metered.fell_back_from):
            if alias != metered.alias:
                items.append((f"model#{alias}", typed_request(self._fell_back_update(pk, alias))))
        tokens = metered.input_tokens + metered.output_tokens
        minute: dict[str, Any] | None = None
        if metered.tokens_minute is not None and tokens:
            # The tenant's minute counter stays on the month's own partition: the call reads it there.
            minute_pk = month_pk(metered.tenant_id, metered.month)
            minute = typed_request(self._minute_update(minute_pk, metered.tokens_minute, tokens))
            if metered.shards == 1:
                items.append(("minute", minute))
        items.extend((f"also#{n}", typed_request(item)) for n, item in enumerate(also))
        if hold is not None:
            items.append(("hold", typed_request(self._delete_hold(hold))))
        try:
            self._transact(items)
        except ClientError as error:
            failed = _failed(error, items)
            if "marker" in failed:
                return False
            if spend_guard is not None and TOTAL in failed:
                old = failed[TOTAL]
                raise _SpendReached(
                    int(old.get("cost_micros", 0)), frozenset(old.get("warned", ()))
                ) from None
            if "hold" in failed:
                raise _HoldGone() from None
            raise
        if minute is not None and metered.shards > 1:
            self._add_minute_tokens(minute)
        return True

    def _add_minute_tokens(self, minute: dict[str, Any]) -> None:
        """A sharded month's minute counter, written by every shard's calls: on its own, after the
        call is counted, since in their transactions it would make them all conflict on one item.
        It guards no money: a write that fails leaves the minute a little under-counted."""
        try:
            self._client.update_item(**minute["Update"])
        except ClientError as error:
            logger.warning("tokens-per-minute counter not written", extra={"error_type": error_code(error)})

    def _fell_back_update(self, pk: str, alias: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.name,
                "Key": {"pk": pk, "sk": f"model#{alias}"},
                "UpdateExpression": "ADD " + ", ".join(f"{name} :{name}" for name in FELL_BACK),
                "ExpressionAttributeValues": {f":{name}": value for name, value in FELL_BACK.items()},
            }
        }

    def _minute_update(self, pk: str, minute: str, tokens: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.name,
                "Key": {"pk": pk, "sk": _minute_sk(minute)},
                "UpdateExpression": "ADD tokens :tokens SET expires_at = if_not_exists(expires_at, :expires)",
                "ExpressionAttributeValues": {
                    ":tokens": tokens,
                    ":expires": int(time.time()) + MINUTE_TTL_SECONDS,
                },
            }
        }

    def _delete_hold(self, hold: Hold, *, expired_before: int | None = None) -> dict[str, Any]:
        condition = "attribute_exists(pk)"
        values: dict[str, Any] = {}
        if expired_before is not None:
            condition += " AND expires_at < :now"
            values[":now"] = expired_before
        delete: dict[str, Any] = {
            "TableName": self.name,
            "Key": {"pk": shard_pk(hold.tenant_id, hold.month, hold.shard), "sk": f"hold#{hold.request_id}"},
            "ConditionExpression": condition,
        }
        if values:
            delete["ExpressionAttributeValues"] = values
        return {"Delete": delete}

    def release(self, hold: Hold, *, expired_before: int | None = None) -> bool:
        """Give a hold back, whoever gets there first (the call, or a sweep once it expired):
        deleting the hold and refunding it are one transaction. False if it was already gone."""
        pk = shard_pk(hold.tenant_id, hold.month, hold.shard)
        refund = {
            "UpdateExpression": "ADD committed_micros :minus, remaining_micros :plus",
            "ExpressionAttributeValues": {":minus": -hold.amount_micros, ":plus": hold.amount_micros},
        }
        items: Labelled = [
            (
                "tenant",
                typed_request({"Update": {"TableName": self.name, "Key": {"pk": pk, "sk": TOTAL}, **refund}}),
            )
        ]
        if hold.key_limit_micros is not None:
            key = {"pk": pk, "sk": f"key#{hold.key_id}"}
            items.append(("key", typed_request({"Update": {"TableName": self.name, "Key": key, **refund}})))
        items.append(("hold", typed_request(self._delete_hold(hold, expired_before=expired_before))))
        try:
            self._transact(items)
        except ClientError as error:
            if "hold" in _failed(error, items):
                return False
            raise
        return True

    def sweep(self, tenant_id: str, month: str, now: int, shards: int | None = None) -> int:
        """Release the holds of calls that never settled (a crashed function) once they expired, on
        each of the month's `shards` (None: every shard the month has written). At most once per
        SWEEP_INTERVAL_SECONDS per month here: a sweep skipped releases nothing (0)."""
        last = self._swept.get((tenant_id, month))
        if last is not None and 0 <= now - last < SWEEP_INTERVAL_SECONDS:
            return 0
        self._swept[(tenant_id, month)] = now
        if shards is None:
            shards = self._shards_used(tenant_id, month)
        released = 0
        for shard in range(shards):
            pk = shard_pk(tenant_id, month, shard)
            answer = self._table.query(
                KeyConditionExpression=Key("pk").eq(pk) & Key("sk").begins_with("hold#")
            )
            for item in (from_item(i) for i in answer.get("Items", [])):
                if int(item["expires_at"]) >= now:
                    continue
                hold = Hold(
                    tenant_id=tenant_id,
                    month=month,
                    request_id=item["sk"].removeprefix("hold#"),
                    key_id=item["key_id"],
                    amount_micros=int(item["amount_micros"]),
                    limit_micros=0,
                    key_limit_micros=0 if item.get("key_limited") else None,
                    expires_at=int(item["expires_at"]),
                    shard=shard,
                    shards=shards,
                )
                released += self.release(hold, expired_before=now)
        return released

    def month_spend(self, tenant_id: str, month: str, shards: int) -> tuple[int, frozenset[str]]:
        """A sharded month's spend, summed over its shards (read consistently), and the thresholds
        already announced (kept on shard 0's ledger)."""
        ledgers = [ledger_of(item) for item in self._shard_items(tenant_id, month, TOTAL, shards)]
        return sum(ledger.spent_micros for ledger in ledgers), ledgers[0].warned

    def mark_warned(self, tenant_id: str, month: str, label: str, threshold_micros: int | None) -> bool:
        """Record that a `warn_at` fraction was announced; True for exactly one caller per month,
        and only once the settled spend has really reached it: checked here on an unsharded month,
        by the caller's `month_spend` on a sharded one (`threshold_micros` None)."""
        condition = "attribute_not_exists(warned) OR NOT contains(warned, :label)"
        values: dict[str, Any] = {":labels": {label}, ":label": label}
        if threshold_micros is not None:
            condition = f"cost_micros >= :threshold AND ({condition})"
            values[":threshold"] = threshold_micros
        try:
            self._table.update_item(
                Key={"pk": month_pk(tenant_id, month), "sk": TOTAL},
                UpdateExpression="ADD warned :labels",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # Reports

    def month_items(self, tenant_id: str, month: str) -> list[dict[str, Any]]:
        """The month's counters (`total`, `model#`, `key#`, `day#`), markers and holds left out;
        on a sharded month, each summed over the shards (numbers added, sets joined)."""
        merged: dict[str, dict[str, Any]] = {}
        for shard in range(self._shards_used(tenant_id, month)):
            for item in self._partition(shard_pk(tenant_id, month, shard)):
                if item["sk"].startswith(("req#", "hold#", "tpm#")):
                    continue
                into = merged.setdefault(item["sk"], {"pk": month_pk(tenant_id, month), "sk": item["sk"]})
                for name, value in item.items():
                    if name in ("pk", "sk"):
                        continue
                    if isinstance(value, bool) or not isinstance(value, int | float | set):
                        into.setdefault(name, value)
                    elif name in into:
                        into[name] = into[name] | value if isinstance(value, set) else into[name] + value
                    else:
                        into[name] = value
        return list(merged.values())

    def _partition(self, pk: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(pk)}
        while True:
            page = self._table.query(**kwargs)
            yield from (from_item(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _transact_unless_moved(self, items: Labelled) -> bool:
        """The transaction, or False when one of its conditions failed: another call moved the
        items since they were read."""
        try:
            self._transact(items)
        except ClientError as error:
            if not _failed(error, items):
                raise
            return False
        return True

    def _transact(self, items: Labelled) -> None:
        if len({label for label, _ in items}) != len(items):
            raise ValueError("every item of a transaction needs a label of its own")
        transact_items = [item for _, item in items]
        waited = 0.0
        for attempt in range(_TRANSACT_ATTEMPTS):
            try:
                self._client.transact_write_items(TransactItems=transact_items)
                return
            except ClientError as error:
                reason = _transient(error)
                first, longest = _BACKOFF_SECONDS["throttle" if reason in _THROTTLES else "conflict"]
                wait = random.uniform(0, min(longest, first * 2**attempt))  # nosec B311  # jitter, not a secret
                last = attempt == _TRANSACT_ATTEMPTS - 1 or waited + wait > _BACKOFF_BUDGET_SECONDS
                if reason is None or last:
                    raise
                with self._retries_lock:
                    self.retries[reason] += 1
                waited += wait
                time.sleep(wait)


def _refusal(
    error: ClientError, items: Labelled, scopes: list[tuple[str, str, int]]
) -> ReservationRefused | None:
    """The reservation refused by its ledgers' conditions, the tenant's before a key's; None when
    it failed otherwise."""
    failed = _failed(error, items)
    for scope, _, _ in scopes:
        if scope in failed:
            remaining = failed[scope].get("remaining_micros")
            return ReservationRefused(scope, int(remaining) if remaining is not None else None)
    return None


def _transient(error: ClientError) -> str | None:
    """Why a transaction failed when only contention explains it, a throttle before a conflict (it
    needs the longer wait); None when an item's condition failed or the request is wrong: trying
    again would change nothing."""
    code = error_code(error)
    if code in _THROTTLES:
        return code
    reasons = {reason for reason in _reasons(error) if reason != "None"}
    if code != "TransactionCanceledException" or not reasons or not reasons <= _CONFLICTS | _THROTTLES:
        return None
    return min(reasons & _THROTTLES) if reasons & _THROTTLES else "TransactionConflict"


class _HoldGone(Exception):
    """The hold to settle was already released by a sweep."""


class _SpendReached(Exception):
    """The month's spend, before this call, was at or above the call's spend guard."""

    def __init__(self, spent_micros: int, warned: frozenset[str]) -> None:
        super().__init__("spend guard reached")
        self.spent_micros = spent_micros
        self.warned = warned
