"""Credentials that can reach one tenant's data only (the AWS SaaS pattern of tenant-scoped roles).

`scoped_session(tenant_id)` assumes `TENANT_DATA_ROLE_ARN` with the session tag `tenant_id`; the
role's policy conditions every grant on that tag (DynamoDB leading keys, the S3 prefix
`tenants/{tenant_id}/`, the KMS encryption context), so a read built with another tenant's key is
refused by AWS, not filtered by this code. Reads of audit records, subject data and usage, and
erasures, go through these sessions. Where the variable is unset (unit tests, tools), the
function's own session is used.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import boto3

from byom.dal import aws
from byom.dal.aws import _CONFIG

ROLE_ARN_ENV = "TENANT_DATA_ROLE_ARN"
TENANT_TAG = "tenant_id"
# Short-lived: a leaked session is worth 15 minutes of one tenant's data.
SESSION_SECONDS = 900
# Renewed this long before expiry, so that no call starts with credentials about to lapse.
REFRESH_BEFORE_SECONDS = 120


@dataclass
class _Scoped:
    session: boto3.session.Session
    expires_at: float
    resources: dict[tuple[str, str], Any] = field(default_factory=dict)

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - REFRESH_BEFORE_SECONDS


_scoped: dict[tuple[str, str], _Scoped] = {}
# One lock for the map; one per tenant while its role is assumed, so tenants do not wait on each other.
_map_lock = threading.Lock()
_tenant_locks: dict[tuple[str, str], threading.Lock] = {}


def _role_arn() -> str | None:
    return os.environ.get(ROLE_ARN_ENV) or None


def _check(tenant_id: str) -> None:
    if not tenant_id:
        raise ValueError("a tenant-scoped session needs a tenant id")


def _session_name(tenant_id: str) -> str:
    return f"tenant-{tenant_id}"[:64]


def _assume(role_arn: str, tenant_id: str) -> _Scoped:
    answer = aws.client("sts").assume_role(
        RoleArn=role_arn,
        RoleSessionName=_session_name(tenant_id),
        DurationSeconds=SESSION_SECONDS,
        Tags=[{"Key": TENANT_TAG, "Value": tenant_id}],
    )
    credentials = answer["Credentials"]
    session = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=aws.session().region_name,
    )
    return _Scoped(session=session, expires_at=credentials["Expiration"].timestamp())


def _entry(tenant_id: str, role_arn: str) -> _Scoped:
    key = (role_arn, tenant_id)
    with _map_lock:
        cached = _scoped.get(key)
        if cached is not None and cached.fresh(time.time()):
            return cached
        tenant_lock = _tenant_locks.setdefault(key, threading.Lock())
    with tenant_lock:
        cached = _scoped.get(key)  # another thread may have renewed it meanwhile
        if cached is not None and cached.fresh(time.time()):
            return cached
        renewed = _assume(role_arn, tenant_id)
        with _map_lock:
            _scoped[key] = renewed
        return renewed


def scoped_session(tenant_id: str) -> boto3.session.Session:
    """A session whose credentials reach `tenant_id`'s data only; cached per tenant until two
    minutes before it expires. Without TENANT_DATA_ROLE_ARN, the function's own session."""
    _check(tenant_id)
    role_arn = _role_arn()
    if role_arn is None:
        return aws.session()
    return _entry(tenant_id, role_arn).session


def _scoped_resource(tenant_id: str, kind: str, name: str) -> Any:
    role_arn = _role_arn()
    if role_arn is None:
        return aws.table(name) if kind == "table" else aws.client(name)
    entry = _entry(tenant_id, role_arn)
    with _map_lock:
        made = entry.resources.get((kind, name))
        if made is None:
            # Sessions are not thread-safe to create clients from; the lock covers that too.
            if kind == "table":
                made = entry.session.resource("dynamodb", config=_CONFIG).Table(name)  # type: ignore[call-overload]
            else:
                made = entry.session.client(name, config=_CONFIG)  # type: ignore[call-overload]
            entry.resources[(kind, name)] = made
    return made


def scoped_table(tenant_id: str, table_name: str) -> Any:
    """A DynamoDB Table resource on the tenant's session."""
    _check(tenant_id)
    return _scoped_resource(tenant_id, "table", table_name)


def scoped_client(tenant_id: str, service: str) -> Any:
    """A client of `service` (s3, kms, dynamodb, ...) on the tenant's session."""
    _check(tenant_id)
    return _scoped_resource(tenant_id, "client", service)


def clear() -> None:
    """Forgets every scoped session (tests; a role change)."""
    with _map_lock:
        _scoped.clear()
        _tenant_locks.clear()
