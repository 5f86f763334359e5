"""DynamoDB values typed for the low-level client (byom.dal.aws.typed / untyped): the hot path's
requests must carry what a table resource would have sent, and read back what it would answer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from byom.dal.aws import from_item, typed, typed_item, typed_request, untyped, untyped_item

ITEM: dict[str, Any] = {
    "pk": "tnt_a#2026-11",
    "requests": 1,
    "refund": -250_000,
    "ratio": 0.25,
    "key_limited": False,
    "warned": {"0.5", "0.8"},
    "labels": {"a": "b", "n": 3, "nested": [1, "two", {"three": True}]},
    "nothing": None,
}
# ITEM as a table resource is given it (to_item: Decimal for float, no None attributes).
AS_RESOURCE = {name: value for name, value in ITEM.items() if value is not None} | {"ratio": Decimal("0.25")}


def test_an_item_is_typed_as_a_resource_types_it() -> None:
    serializer = TypeSerializer()
    expected = {name: serializer.serialize(value) for name, value in AS_RESOURCE.items()}

    assert _sorted_sets(typed_item(ITEM)) == _sorted_sets(expected)


def test_an_answer_is_untyped_as_a_resource_and_from_item_untype_it() -> None:
    deserializer = TypeDeserializer()
    answer = {name: TypeSerializer().serialize(value) for name, value in AS_RESOURCE.items()}
    expected = from_item({name: deserializer.deserialize(value) for name, value in answer.items()})

    assert untyped_item(answer) == expected


@pytest.mark.parametrize("text, value", [("12", 12), ("-3", -3), ("1E+2", 100), ("0.5", 0.5)])
def test_numbers_come_back_integral_as_int_and_fractional_as_float(text: str, value: Any) -> None:
    assert untyped({"N": text}) == value and type(untyped({"N": text})) is type(value)


def test_a_transaction_action_has_its_key_and_values_typed_and_its_expressions_untouched() -> None:
    action = {
        "Update": {
            "TableName": "usage",
            "Key": {"pk": "p", "sk": "total"},
            "UpdateExpression": "ADD requests :requests",
            "ExpressionAttributeValues": {":requests": 1},
        }
    }

    assert typed_request(action) == {
        "Update": {
            "TableName": "usage",
            "Key": {"pk": {"S": "p"}, "sk": {"S": "total"}},
            "UpdateExpression": "ADD requests :requests",
            "ExpressionAttributeValues": {":requests": {"N": "1"}},
        }
    }


@pytest.mark.parametrize("value", [float("nan"), float("inf"), set(), object()])
def test_a_value_dynamodb_cannot_hold_is_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        typed(value)


def test_a_decimal_keeps_its_digits() -> None:
    assert typed(Decimal("0.000001")) == {"N": "0.000001"}


def _sorted_sets(item: dict[str, Any]) -> dict[str, Any]:
    """Sets are unordered: compare their members sorted."""
    return {
        k: {kind: sorted(v)} if kind in ("SS", "NS") else {kind: v}
        for k, t in item.items()
        for kind, v in t.items()
    }
