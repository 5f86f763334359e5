"""Stored Responses' logic (retrieve, delete, input_items, the context a continuation carries on) with
an in-memory store implementing the same Protocol as byom.dal.responses.ResponseStore."""

from __future__ import annotations

from typing import Any

import pytest
from byom.domain import StoredResponse
from byom.errors import InvalidRequest, NotFound
from byom.logic import stored_responses


class FakeStore:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], StoredResponse] = {}

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        return self.records.get((tenant_id, response_id))

    def delete(self, tenant_id: str, response_id: str) -> bool:
        return self.records.pop((tenant_id, response_id), None) is not None


def item(n: int) -> dict[str, Any]:
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": str(n)}],
    }


def stored(
    store: FakeStore, *, items: int = 3, tenant_id: str = "tnt_a", rid: str = "resp_1"
) -> StoredResponse:
    record = StoredResponse(
        id=rid,
        tenant_id=tenant_id,
        created_at=1_750_000_000,
        response={"id": rid, "object": "response", "status": "completed", "output": []},
        input_items=[item(n) for n in range(items)],
        context=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    )
    store.records[(tenant_id, rid)] = record
    return record


def ids(page: dict[str, Any]) -> list[str]:
    return [i["id"] for i in page["data"]]


# retrieve / delete


def test_retrieve_answers_the_response_object_as_returned() -> None:
    store = FakeStore()
    record = stored(store)

    assert stored_responses.retrieve(store, "tnt_a", "resp_1") == record.response


def test_another_tenants_response_is_not_found_with_openais_message() -> None:
    store = FakeStore()
    stored(store, tenant_id="tnt_b")

    with pytest.raises(NotFound) as missing:
        stored_responses.retrieve(store, "tnt_a", "resp_1")

    assert missing.value.message == "No response found with id 'resp_1'."
    assert missing.value.status == 404


def test_delete_answers_openais_deletion_object_and_the_response_is_gone() -> None:
    store = FakeStore()
    stored(store)

    answer = stored_responses.delete(store, "tnt_a", "resp_1")

    assert answer == {"id": "resp_1", "object": "response", "deleted": True}
    assert store.records == {}


def test_deleting_another_tenants_response_is_not_found_and_leaves_it() -> None:
    store = FakeStore()
    stored(store, tenant_id="tnt_b")

    with pytest.raises(NotFound):
        stored_responses.delete(store, "tnt_a", "resp_1")

    assert ("tnt_b", "resp_1") in store.records


def test_a_very_long_id_is_not_echoed_whole() -> None:
    with pytest.raises(NotFound) as missing:
        stored_responses.retrieve(FakeStore(), "tnt_a", "r" * 5000)

    assert len(missing.value.message) < 300


# input_items


def test_input_items_default_to_the_last_item_first() -> None:
    store = FakeStore()
    stored(store, items=3)

    page = stored_responses.input_items(store, "tnt_a", "resp_1")

    assert page["object"] == "list"
    assert ids(page) == ["msg_2", "msg_1", "msg_0"]
    assert (page["first_id"], page["last_id"], page["has_more"]) == ("msg_2", "msg_0", False)


def test_input_items_ascending_keep_the_requests_order() -> None:
    store = FakeStore()
    stored(store, items=3)

    assert ids(stored_responses.input_items(store, "tnt_a", "resp_1", order="asc")) == [
        "msg_0",
        "msg_1",
        "msg_2",
    ]


def test_a_limit_shorter_than_the_items_says_there_is_more() -> None:
    store = FakeStore()
    stored(store, items=5)

    page = stored_responses.input_items(store, "tnt_a", "resp_1", limit=2, order="asc")

    assert ids(page) == ["msg_0", "msg_1"] and page["has_more"] is True


def test_after_resumes_past_the_previous_pages_last_item_in_either_order() -> None:
    store = FakeStore()
    stored(store, items=5)

    asc = stored_responses.input_items(store, "tnt_a", "resp_1", after="msg_1", limit=2, order="asc")
    desc = stored_responses.input_items(store, "tnt_a", "resp_1", after="msg_3", limit=2)

    assert (ids(asc), asc["has_more"]) == (["msg_2", "msg_3"], True)
    assert (ids(desc), desc["has_more"]) == (["msg_2", "msg_1"], True)


def test_paging_with_after_visits_every_item_once() -> None:
    store = FakeStore()
    stored(store, items=7)

    pages = [stored_responses.input_items(store, "tnt_a", "resp_1", limit=3)]
    while pages[-1]["has_more"]:
        pages.append(
            stored_responses.input_items(store, "tnt_a", "resp_1", limit=3, after=pages[-1]["last_id"])
        )

    assert [i for p in pages for i in ids(p)] == [f"msg_{n}" for n in reversed(range(7))]
    assert [len(p["data"]) for p in pages] == [3, 3, 1]


def test_a_page_past_the_last_item_is_empty_without_ids() -> None:
    store = FakeStore()
    stored(store, items=2)

    page = stored_responses.input_items(store, "tnt_a", "resp_1", after="msg_0")

    assert page == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


@pytest.mark.parametrize("limit", [0, 101, -1, True])
def test_a_limit_outside_1_to_100_is_a_400_naming_limit(limit: int) -> None:
    store = FakeStore()
    stored(store)

    with pytest.raises(InvalidRequest) as refused:
        stored_responses.input_items(store, "tnt_a", "resp_1", limit=limit)

    assert refused.value.param == "limit"


@pytest.mark.parametrize(
    ("kwargs", "param"), [({"order": "newest"}, "order"), ({"include": ["bogus"]}, "include")]
)
def test_an_unknown_order_or_include_is_a_400_naming_it(kwargs: dict[str, Any], param: str) -> None:
    store = FakeStore()
    stored(store)

    with pytest.raises(InvalidRequest) as refused:
        stored_responses.input_items(store, "tnt_a", "resp_1", **kwargs)

    assert refused.value.param == param


def test_a_known_include_value_is_accepted() -> None:
    store = FakeStore()
    stored(store, items=1)

    page = stored_responses.input_items(store, "tnt_a", "resp_1", include=["message.input_image.image_url"])

    assert ids(page) == ["msg_0"]


def test_an_after_that_is_no_item_of_the_response_is_a_400_naming_after() -> None:
    store = FakeStore()
    stored(store)

    with pytest.raises(InvalidRequest) as refused:
        stored_responses.input_items(store, "tnt_a", "resp_1", after="msg_404")

    assert refused.value.param == "after"


def test_another_tenants_input_items_are_not_found() -> None:
    store = FakeStore()
    stored(store, tenant_id="tnt_b")

    with pytest.raises(NotFound):
        stored_responses.input_items(store, "tnt_a", "resp_1")
