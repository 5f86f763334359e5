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
