"""byom.api.web.JsonBodyRoute: bodies validated by FastAPI from their models, with the size limit
checked before parsing, a JSON body read as JSON whatever its Content-Type, and one plain message
for a body that is not a JSON object."""

from __future__ import annotations

import json
from typing import Any

import pytest
from byom.api.web import JsonBodyRoute, build_app, ok
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

LIMIT = 100


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    count: int = Field(default=1, ge=1, le=10)


def _client() -> TestClient:
    router = APIRouter(route_class=JsonBodyRoute.limited(LIMIT))

    @router.post("/items")
    def create_item(request: Item) -> JSONResponse:
        return ok(request.model_dump(), 201)

    @router.get("/items")
    def list_items() -> JSONResponse:
        return ok({"data": []})

    app = build_app("test")
    app.include_router(router)
    return TestClient(app)


def _post(content: bytes, content_type: str | None = "application/json") -> tuple[int, dict[str, Any]]:
    headers = {"content-type": content_type} if content_type else {}
    response = _client().post("/items", content=content, headers=headers)
    return response.status_code, response.json()


def test_a_valid_body_reaches_the_route_as_its_model() -> None:
    assert _post(b'{"name": "a", "count": 2}') == (201, {"name": "a", "count": 2})


def test_a_body_over_the_limit_is_a_413_before_it_is_parsed() -> None:
    status, answer = _post(b"{" * (LIMIT + 1))
    assert (status, answer["error"]["code"]) == (413, "request_too_large")
    assert answer["error"]["message"] == f"Request body is {LIMIT + 1} bytes; the limit is {LIMIT}"


def test_a_body_sent_in_chunks_without_a_length_is_measured_once_read() -> None:
    def chunks() -> Any:
        yield b'{"name": "'
        yield b"x" * LIMIT
        yield b'"}'

    response = _client().post("/items", content=chunks(), headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["error"]["code"]) == (413, "request_too_large")


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", None], ids=["form", "text", "none"]
)
def test_a_json_body_is_read_as_json_whatever_its_content_type(content_type: str | None) -> None:
    assert _post(b'{"name": "a"}', content_type) == (201, {"name": "a", "count": 1})


@pytest.mark.parametrize(
    "content", [b"", b"[1]", b'"a"', b"3", b"null"], ids=["empty", "list", "str", "int", "null"]
)
def test_a_body_that_is_not_an_object_gets_one_plain_message(content: bytes) -> None:
    status, answer = _post(content)
    assert (status, answer["error"]["message"], answer["error"]["param"]) == (
        400,
        "Request body must be a JSON object",
        None,
    )


@pytest.mark.parametrize("content", [b'{"name": ', b"\xff\xfe{}"], ids=["truncated", "not-utf8"])
def test_unreadable_json_is_said_to_be_so(content: bytes) -> None:
    status, answer = _post(content)
    assert (status, answer["error"]["message"]) == (400, "Request body is not valid JSON")


def test_a_bad_field_is_named_as_the_param() -> None:
    status, answer = _post(json.dumps({"name": "a", "count": 99}).encode())
    assert (status, answer["error"]["type"], answer["error"]["param"]) == (
        400,
        "invalid_request_error",
        "count",
    )
    assert answer["error"]["message"].startswith("count: ")


def test_a_route_without_a_body_is_served_as_fastapi_serves_it() -> None:
    assert _client().get("/items").json() == {"data": []}


def test_the_operation_documents_its_model_and_its_limit() -> None:
    document = _client().app.openapi()  # type: ignore[attr-defined]
    operation = document["paths"]["/items"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Item"
    }
    assert operation["x-byom-max-body-bytes"] == LIMIT
    assert "x-byom-max-body-bytes" not in document["paths"]["/items"]["get"]


def test_a_content_length_too_long_to_be_a_number_is_measured_not_parsed_as_one() -> None:
    response = _client().post(
        "/items",
        content=b'{"name": "a"}',
        headers={"content-type": "application/json", "content-length": "9" * 5000},
    )
    assert response.status_code == 201
