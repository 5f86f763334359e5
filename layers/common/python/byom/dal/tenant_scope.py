"""Credentials that reach one tenant's data only.

Until tenant-scoped roles are deployed these return the function's own session, clients and tables
(`byom.dal.aws`, the same botocore Config); callers already go through them for every tenant data
read and erasure, so scoping them is a change to this module alone.
"""

from __future__ import annotations

from typing import Any

import boto3

from byom.dal import aws


def scoped_session(tenant_id: str) -> boto3.session.Session:
    """A session for `tenant_id`'s data: for now the function's own."""
    return aws.session()


def scoped_table(tenant_id: str, table_name: str) -> Any:
    """A DynamoDB Table resource for `tenant_id`'s items: for now the function's own."""
    return aws.table(table_name)


def scoped_client(tenant_id: str, service: str) -> Any:
    """A client of `service` (s3, kms, ...) for `tenant_id`'s data: for now the function's own."""
    return aws.client(service)
