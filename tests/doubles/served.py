"""Usage-shaped tables on a moto server, each table's client contended by a ContendedDynamoDB."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config

from local_stack.stack import SerializedMotoServer
from tests.doubles.contended_dynamodb import ContendedDynamoDB

# The SDK's retries as the gateway's clients have them (byom.dal.aws): a throttled plain write is
# tried 4 times (the first and 3 retries) before the ledger sees it.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server's endpoint. It applies one request at a time, as DynamoDB applies one write to
    an item at a time; the double decides which requests reach it."""
    # The server logs each request: thousands of lines in a simulation, none of them news.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = SerializedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# The low-level client of each contended table, the one the ledger sends its typed requests through.
_LOW_LEVEL: dict[str, Any] = {}


def low_level_client(table: Any) -> Any:
    """The contended low-level client of a table `contended_table` made."""
    return _LOW_LEVEL[table.name]


def contended_table(endpoint: str, double: ContendedDynamoDB) -> Any:
    """A new `pk`/`sk` table (the usage table's keys) whose clients (the resource's, and a
    low-level one for the ledger's typed requests: `low_level_client`) the double contends from now on."""
    connection = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "config": _CONFIG,
    }
    resource = boto3.resource("dynamodb", **connection)
    table = resource.create_table(
        TableName=f"usage-{uuid.uuid4().hex[:12]}",  # the server's state outlives a table's user
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    double.attach(table.meta.client)
    _LOW_LEVEL[table.name] = double.attach(boto3.client("dynamodb", **connection))
    return table
