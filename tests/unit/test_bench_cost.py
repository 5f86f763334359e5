"""bench/cost counts capacity units the way DynamoDB bills them."""

from __future__ import annotations

from bench.cost import capacity, item_size

KEYS = {"usage": ["pk", "sk"]}


def test_an_items_size_is_its_names_and_values() -> None:
    assert item_size({"pk": {"S": "abc"}, "n": {"N": "12345"}, "ok": {"BOOL": True}}) == (2 + 3) + (1 + 3) + (
        2 + 1
    )


def test_a_transaction_costs_two_units_per_kilobyte_of_each_item() -> None:
    big = {"pk": {"S": "t"}, "sk": {"S": "x"}, "blob": {"S": "a" * 1500}}
    sent = [
        ("dynamodb.TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "usage", "Item": big}}]}),
        ("dynamodb.PutItem", {"TableName": "usage", "Item": {"pk": {"S": "t"}, "sk": {"S": "y"}}}),
    ]

    units = capacity(sent, {}, KEYS)

    assert (units.wru, units.rru) == (2 * 2 + 1, 0)


def test_an_update_is_billed_by_the_item_it_leaves() -> None:
    key = {"pk": {"S": "t"}, "sk": {"S": "total"}}
    stored = {("usage", '{"pk": {"S": "t"}, "sk": {"S": "total"}}'): 2100}

    units = capacity([("dynamodb.UpdateItem", {"TableName": "usage", "Key": key})], stored, KEYS)

    assert units.wru == 3


def test_eventually_consistent_reads_cost_half() -> None:
    keys = [{"pk": {"S": "t"}, "sk": {"S": "a"}}, {"pk": {"S": "t"}, "sk": {"S": "b"}}]
    sent = [("dynamodb.BatchGetItem", {"RequestItems": {"usage": {"Keys": keys}}})]

    assert capacity(sent, {}, KEYS).rru == 1.0
