"""The local stack's moto transactions back up only the items they touch, and still roll back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local_stack.stack import SerializedMotoServer


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    server = SerializedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield boto3.client(
        "dynamodb",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    server.stop()


@pytest.fixture
def table(dynamodb: Any) -> str:
    name = f"t-{uuid.uuid4().hex}"
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _counter(table: str, sk: str, amount: int, condition: str | None = None) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": table,
        "Key": {"pk": {"S": "t"}, "sk": {"S": sk}},
        "UpdateExpression": "ADD n :n",
        "ExpressionAttributeValues": {":n": {"N": str(amount)}},
    }
    if condition:
        update["ConditionExpression"] = condition
    return {"Update": update}


def _n(dynamodb: Any, table: str, sk: str) -> int | None:
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": "t"}, "sk": {"S": sk}}).get("Item")
    return int(item["n"]["N"]) if item else None


def test_a_cancelled_transaction_leaves_every_item_as_it_was(dynamodb: Any, table: str) -> None:
    dynamodb.transact_write_items(TransactItems=[_counter(table, "a", 1), _counter(table, "other", 7)])

    with pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb.transact_write_items(
            TransactItems=[
                _counter(table, "a", 10),  # applied, then undone
                {"Put": {"TableName": table, "Item": {"pk": {"S": "t"}, "sk": {"S": "new"}}}},
                _counter(table, "b", 1, condition="attribute_exists(pk)"),  # fails
            ]
        )

    assert (_n(dynamodb, table, "a"), _n(dynamodb, table, "other"), _n(dynamodb, table, "b")) == (1, 7, None)
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "t"}, "sk": {"S": "new"}}).get("Item") is None


def test_a_transaction_does_not_slow_down_as_the_table_grows(dynamodb: Any, table: str) -> None:
    def median_transaction_ms() -> float:
        times = []
        for _ in range(9):
            started = time.perf_counter()
            dynamodb.transact_write_items(TransactItems=[_counter(table, f"c{i}", 1) for i in range(6)])
            times.append((time.perf_counter() - started) * 1000)
        return sorted(times)[4]

    small = median_transaction_ms()
    for start in range(0, 2000, 25):
        dynamodb.batch_write_item(
            RequestItems={
                table: [
                    {"PutRequest": {"Item": {"pk": {"S": f"p{i}"}, "sk": {"S": "x"}, "v": {"S": "y" * 50}}}}
                    for i in range(start, start + 25)
                ]
            }
        )
    large = median_transaction_ms()

    # A whole-table backup per operation made this ~10x slower at 2,000 items.
    assert large < small * 3 + 5
