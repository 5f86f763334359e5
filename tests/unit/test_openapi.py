"""The API's one OpenAPI document (byom.api.openapi), generated from the three apps."""

from __future__ import annotations

import json
import re

import pytest
from byom.api.gateway import build_gateway_app
from byom.api.openapi import document, merge
from fastapi.testclient import TestClient


def test_the_document_is_openapi_3_1_for_the_whole_api() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "BYOM Gateway"
    assert {"/v1/chat/completions", "/admin/tenants", "/v1/fine_tuning/jobs"} <= set(doc["paths"])


def test_a_body_read_by_the_route_is_documented_with_its_model() -> None:
    body = document()["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ChatRequest"
    assert "messages" in document()["components"]["schemas"]["ChatRequest"]["properties"]


def test_every_reference_resolves_within_the_document() -> None:
    schemas = document()["components"]["schemas"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document())))
    assert refs - set(schemas) == set()


def test_bad_input_is_documented_as_openais_400_not_fastapis_422() -> None:
    for operations in document()["paths"].values():
        for operation in operations.values():
            assert "422" not in operation["responses"]
            assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }


def test_every_route_wants_the_bearer_key_but_health() -> None:
    doc = document()
    assert doc["security"] == [{"bearer": []}]
    public = {
        path for path, ops in doc["paths"].items() if any(op.get("security") == [] for op in ops.values())
    }
    assert public == {"/health"}


def test_two_apps_documenting_one_path_is_an_error() -> None:
    one = {"paths": {"/a": {"get": {"responses": {}}}}}
    with pytest.raises(ValueError, match="/a"):
        merge([one, one])


def test_the_gateway_serves_the_document_and_swagger_ui() -> None:
    client = TestClient(build_gateway_app())
    assert client.get("/openapi.json").json() == document()
    page = client.get("/docs")
    assert page.status_code == 200
    assert "swagger-ui" in page.text
    assert "'openapi.json'" in page.text or '"openapi.json"' in page.text
