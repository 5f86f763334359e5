"""The boto3 session, clients and DynamoDB value conversion shared by the repositories."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Fail fast inside API Gateway's 29 s budget instead of hanging on a stuck connection. No client-side
# parameter validation: the requests are this package's own, the service validates them anyway, and
# walking the model costs ~0.5 ms per metering transaction on the hot path.
_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 3},
    parameter_validation=False,
)

# Creating clients from one session is not thread-safe (the local stack runs invocations in threads).
_CREATING = threading.Lock()


@cache
def session() -> boto3.session.Session:
    """One per container: every new session loads botocore's data files again, 40-60 ms of the first
    call for each client made from one."""
    return boto3.session.Session()


@cache
def client(service: str) -> Any:
    return configured_client(service, _CONFIG)


def configured_client(service: str, config: Config) -> Any:
    """A new client of the one session, with its own timeouts and retries (the Bedrock runtime's)."""
    with _CREATING:
        return session().client(service, config=config)  # type: ignore[call-overload]


def configured_table(name: str, config: Config) -> Any:
    """A table resource of the one session with its own timeouts (the response cache's)."""
    with _CREATING:
        return session().resource("dynamodb", config=config).Table(name)  # type: ignore[call-overload]


class LazyClient:
    """`client(service)`, made on first use: for collaborators most calls never use (the S3 and KMS
    clients of content logging), whose models would otherwise be loaded on every first call."""

    def __init__(self, service: str) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(client(self._service), name)


@cache
def table(name: str) -> Any:
    # A resource (and client) per table, as tests stub one table's client; from the shared
    # session each costs a few milliseconds once.
    return configured_table(name, _CONFIG)


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB wants Decimal, not float, and no None attributes."""
    clean = {k: v for k, v in data.items() if v is not None}
    return json.loads(json.dumps(clean), parse_float=Decimal)


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return plain(item)


# DynamoDB's own values, typed here for the low-level client (the hot path's reads and writes):
# a resource's client deep-copies every request and walks it against the service model to type
# it, and walks every answer again to untype it, about a quarter of a warm call's own work.
# These walk only the values, and type and untype them as the resource would.

_TYPED_REQUEST_FIELDS = ("Key", "Item", "ExpressionAttributeValues")


def typed(value: Any) -> dict[str, Any]:
    """One value as a DynamoDB AttributeValue, as boto3's TypeSerializer types it (numbers as
    strings, sets of strings or numbers, maps and lists nested)."""
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):  # before int: a bool is an int
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float | Decimal):
        return {"N": _number(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, dict):
        return {"M": {k: typed(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [typed(v) for v in value]}
    if isinstance(value, set | frozenset) and value:
        if all(isinstance(v, str) for v in value):
            return {"SS": sorted(value)}
        if all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in value):
            return {"NS": sorted(_number(v) for v in value)}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    raise TypeError(f"no DynamoDB type for a {type(value).__name__}")


def _number(value: float | Decimal) -> str:
    number = Decimal(repr(value)) if isinstance(value, float) else value
    if not number.is_finite():
        raise TypeError("DynamoDB numbers are finite")
    return str(number)


def typed_item(data: dict[str, Any]) -> dict[str, Any]:
    """An item (or key, or expression values) typed; None attributes left out, as `to_item` does."""
    return {k: typed(v) for k, v in data.items() if v is not None}


def typed_request(action: dict[str, Any]) -> dict[str, Any]:
    """A request, or one action of a transaction (`{"Put": {...}}`), with its keys, item and
    expression values typed; everything else (names, expressions) is already what DynamoDB reads."""
    if len(action) == 1:
        ((kind, body),) = action.items()
        if kind in ("Put", "Update", "Delete", "ConditionCheck"):
            return {kind: typed_request(body)}
    return {k: typed_item(v) if k in _TYPED_REQUEST_FIELDS else v for k, v in action.items()}


def untyped(value: dict[str, Any]) -> Any:
    """An AttributeValue as `from_item` answers it: integral numbers as int, others as float."""
    ((kind, data),) = value.items()
    if kind == "S":
        return data
    if kind == "N":
        return _plain_number(data)
    if kind == "M":
        return {k: untyped(v) for k, v in data.items()}
    if kind == "L":
        return [untyped(v) for v in data]
    if kind == "BOOL":
        return data
    if kind == "NULL":
        return None
    if kind == "SS" or kind == "BS":
        return set(data)
    if kind == "NS":
        return {_plain_number(n) for n in data}
    return data  # B: botocore has already decoded it to bytes


def _plain_number(text: str) -> int | float:
    if text.lstrip("-").isdigit():
        return int(text)
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() else float(number)


def untyped_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: untyped(v) for k, v in item.items()}


def dynamodb() -> Any:
    """The low-level DynamoDB client of the one session, for requests typed with `typed_request`
    (the function's own role: tenant-scoped tables are only read, through their resources)."""
    return client("dynamodb")


def error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


# list_object_versions and delete_objects both take up to 1,000.
DELETE_BATCH = 1000


def delete_versions_page(s3: Any, bucket: str, prefix: str) -> tuple[int, bool]:
    """Delete up to 1,000 versions (delete markers too) under `prefix`: the data bucket is versioned,
    and a plain delete would only hide the objects. Answers how many objects were removed (counted by
    their current version) and whether the prefix is now empty. Listing from the start each time
    makes a repeat after a crash pick up what is left."""
    page = s3.list_object_versions(Bucket=bucket, Prefix=prefix, MaxKeys=DELETE_BATCH)
    versions = page.get("Versions", [])
    markers = page.get("DeleteMarkers", [])
    targets = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions + markers]
    if targets:
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": targets, "Quiet": True})
        if answer.get("Errors"):
            codes = sorted({str(e.get("Code")) for e in answer["Errors"]})
            raise RuntimeError(f"{len(answer['Errors'])} object versions not deleted: {', '.join(codes)}")
    removed = sum(1 for v in versions if v.get("IsLatest"))
    return removed, not page.get("IsTruncated", False)
