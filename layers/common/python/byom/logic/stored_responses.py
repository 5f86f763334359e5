"""Stored Responses (SPEC §4.3): `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`,
and `GET /v1/responses/{id}/input_items` (the context a `previous_response_id` continues is read by
byom.logic.invoke).

Every read is by the caller's tenant and the id: another tenant's response, an expired one and one
that never existed are the same 404, with OpenAI's message, so no caller learns which it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from byom.domain import StoredResponse
from byom.errors import InvalidRequest, NotFound

Order = Literal["asc", "desc"]
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# OpenAI's IncludeEnum (openapi.yaml). The gateway stores none of these extras, so a valid value adds
# nothing, but an unknown one is the 400 OpenAI would answer.
INCLUDABLE = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    }
)
# Ids are echoed in messages; a hostile one is not echoed whole.
_ECHOED_ID_CHARS = 200


class StoredResponses(Protocol):
    """byom.dal.responses.ResponseStore."""

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None: ...

    def delete(self, tenant_id: str, response_id: str) -> bool: ...


def _not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"No response found with id '{response_id[:_ECHOED_ID_CHARS]}'.", param=param)


def _record(
    store: StoredResponses, tenant_id: str, response_id: str, param: str | None = None
) -> StoredResponse:
    record = store.get(tenant_id, response_id)
    if record is None:
        raise _not_found(response_id, param)
    return record


def retrieve(store: StoredResponses, tenant_id: str, response_id: str) -> dict[str, Any]:
    """The Response object as it was returned when it was made."""
    return _record(store, tenant_id, response_id).response


def delete(store: StoredResponses, tenant_id: str, response_id: str) -> dict[str, Any]:
    if not store.delete(tenant_id, response_id):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


def _check_page(limit: int, order: str, include: Sequence[str]) -> None:
    # bool is an int to Python; a query string parsed loosely could hand one over.
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}", param="limit")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order: must be 'asc' or 'desc'", param="order")
    unknown = sorted(set(include) - INCLUDABLE)
    if unknown:
        raise InvalidRequest(
            f"include: unsupported value '{unknown[0][:_ECHOED_ID_CHARS]}'; supported values are "
            + ", ".join(sorted(INCLUDABLE)),
            param="include",
        )


def input_items(
    store: StoredResponses,
    tenant_id: str,
    response_id: str,
    *,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
    order: Order = "desc",
    include: Sequence[str] = (),
) -> dict[str, Any]:
    """One page of the response's input items in OpenAI's ResponseItemList shape. `desc` (OpenAI's
    default) lists the last input item first; `after` is an item id of the previous page."""
    _check_page(limit, order, include)
    items = _record(store, tenant_id, response_id).input_items
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        position = next((n for n, item in enumerate(ordered) if item.get("id") == after), None)
        if position is None:
            raise InvalidRequest(
                f"after: no input item with id '{after[:_ECHOED_ID_CHARS]}' in this response", param="after"
            )
        start = position + 1
    page = ordered[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0].get("id") if page else None,
        "last_id": page[-1].get("id") if page else None,
        "has_more": start + limit < len(ordered),
    }
