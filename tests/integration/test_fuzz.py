"""Fuzzing from the generated OpenAPI document (byom.api.openapi): schemathesis makes requests for
every documented operation, valid and not, a bounded number per operation, and each is sent to its
function's handler as the API Gateway proxy event it would be, with moto behind. Whatever it
sends, the answer is never a 5xx, and a refusal is OpenAI's error envelope."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from byom.api.openapi import document
from hypothesis import HealthCheck, given, settings
from starlette.testclient import TestClient

from tests.conftest import LambdaContext, api_event
from tests.integration.conftest import PLATFORM_ADMIN, load_handler, tenant_context
from tests.integration.test_fine_tuning_api import fine_tuning  # noqa: F401  (its tables and bucket)

# Examples per operation: enough to reach each route's validation and its handler, few enough for
# `make test` (about 45 operations).
MAX_EXAMPLES = 5
TENANT_ADMIN = tenant_context("tnt_fuzz", "admin")
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

SCHEMA = schemathesis.openapi.from_dict(document())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
# Only builds requests (never sends one): the bytes and headers a client would send.
_REQUESTS = TestClient(lambda scope, receive, send: None)


@pytest.fixture
def handlers(fine_tuning: Handler) -> dict[str, Handler]:  # noqa: F811
    return {"fine_tuning": fine_tuning, "admin": load_handler("admin"), "gateway": load_handler("gateway")}


def _function(path: str) -> str:
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith(("/v1/files", "/v1/fine_tuning")):
        return "fine_tuning"
    return "gateway"


def _bytes(value: Any) -> bytes | str:
    return value if isinstance(value, (bytes, str)) else json.dumps(value)


def _files(files: Any) -> Any:
    """A form's parts as a client sends them: schemathesis may generate a part's value as any JSON
    value, which the HTTP client would refuse to encode."""
    if not files:
        return None
    return [(name, (filename, _bytes(content))) for name, (filename, content, *_) in files]


def _event(case: Any) -> dict[str, Any]:
    """The proxy event of the case's request: the platform admin on admin routes (where it reaches
    every handler), a tenant admin elsewhere (the data plane refuses the platform key)."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    request = _REQUESTS.build_request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
        json=kwargs.get("json"),
        files=_files(kwargs.get("files")),
        data=kwargs.get("data"),
    )
    principal = PLATFORM_ADMIN if case.path.startswith("/admin/") else TENANT_ADMIN
    event = api_event(request.method, request.url.path, authorizer=principal)
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.multi_items():
        headers.setdefault(name, []).append(value)
    event["multiValueHeaders"] = headers
    event["headers"] = {name: values[-1] for name, values in headers.items()}
    query: dict[str, list[str]] = {}
    for name, value in request.url.params.multi_items():
        query.setdefault(name, []).append(value)
    event["multiValueQueryStringParameters"] = query or None
    event["queryStringParameters"] = {name: values[-1] for name, values in query.items()} or None
    event["body"] = base64.b64encode(request.read()).decode()
    event["isBase64Encoded"] = True
    return event


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_request_is_answered_with_a_5xx(operation: Any, handlers: dict[str, Handler]) -> None:
    handler = handlers[_function(operation.path)]

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = handler(_event(case), LambdaContext())
        status = response["statusCode"]
        assert status < 500, (case.method, case.formatted_path, response["body"][:300])
        if status >= 400:
            assert set(json.loads(response["body"])["error"]) == {"message", "type", "param", "code"}

    check()
