"""Request handling of the emulated API Gateway, with in-process fake functions instead of sockets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from local_stack.apigateway import MAX_BODY_BYTES, HttpRequest, LocalApiGateway, TokenBucket, build_rest_api
from local_stack.lambdas import LambdaFunction
from local_stack.template import Resolver, Template
from tests.unit.local_stack.sample import sample_template


class FakeFunctions:
    """Authorizer and echo functions behaving like the sample's handlers; records their events."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict[str, Any]]] = {"AuthFn": [], "EchoFn": []}
        self.functions = {
            "AuthFn": self._function("AuthFn", self.authorize),
            "EchoFn": self._function("EchoFn", self.echo),
        }

    def _function(self, logical_id: str, entry: Any) -> LambdaFunction:
        function = LambdaFunction(logical_id, logical_id, "handler.handler", Path("."), [], {})
        function.entry = entry
        return function

    def invoke(self, logical_id: str, event: dict[str, Any], timeout: float | None) -> Any:
        self.events[logical_id].append(event)
        return self.functions[logical_id].invoke(event, timeout)

    @staticmethod
    def authorize(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        token = event["headers"]["Authorization"].removeprefix("Bearer ")
        if token == "broken":
            raise ValueError("bug")
        if token not in ("allow", "deny"):
            raise Exception("Unauthorized")
        resource = event["methodArn"].rsplit("/", 2)[0].rsplit("/", 1)[0] + "/*"
        effect = "Allow" if token == "allow" else "Deny"
        return {
            "principalId": "key-1",
            "policyDocument": {
                "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]
            },
            "context": {"tenant_id": "t-1"},
        }

    @staticmethod
    def echo(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        if event["path"] == "/v1/boom":
            raise RuntimeError("bug")
        if event["path"] == "/v1/items/slow":
            time.sleep(0.6)  # the sample's integration timeout for this route is 300 ms
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}


@pytest.fixture
def functions() -> FakeFunctions:
    return FakeFunctions()


@pytest.fixture
def gateway(functions: FakeFunctions) -> LocalApiGateway:
    template = Template(body=sample_template(), stack_name="Sample")
    return LocalApiGateway(build_rest_api(template, Resolver(template)), functions.invoke)


def call(gateway: LocalApiGateway, method: str, path: str, token: str | None = "allow", **kwargs: Any):
    headers = [("Authorization", f"Bearer {token}")] if token else []
    return gateway.handle(HttpRequest(method=method, path=path, headers=headers, **kwargs))


def error_of(response: Any) -> dict[str, Any]:
    return json.loads(response.body)["error"]


def test_an_unknown_route_is_the_missing_authentication_token_response(gateway: LocalApiGateway) -> None:
    response = call(gateway, "GET", "/nowhere")
    assert response.status == 404
    assert error_of(response)["type"] == "not_found_error"
    assert response.header("x-request-id")


def test_a_public_route_is_served_without_the_authorizer(
    gateway: LocalApiGateway, functions: FakeFunctions
) -> None:
    response = call(gateway, "GET", "/health", token=None)
    assert response.status == 200
    assert functions.events["AuthFn"] == []


def test_a_missing_identity_source_is_401_without_calling_the_authorizer(
    gateway: LocalApiGateway, functions: FakeFunctions
) -> None:
    response = call(gateway, "GET", "/v1/models", token=None)
    assert response.status == 401
    assert error_of(response)["code"] == "invalid_api_key"
    assert functions.events["AuthFn"] == []


def test_an_authorizer_raising_unauthorized_is_401(gateway: LocalApiGateway) -> None:
    response = call(gateway, "GET", "/v1/models", token="unknown")
    assert response.status == 401
    assert error_of(response)["message"] == "Unauthorized"
    assert response.header("x-byom-error-source") == "gateway"


def test_an_authorizer_failing_otherwise_is_500(gateway: LocalApiGateway) -> None:
    response = call(gateway, "GET", "/v1/models", token="broken")
    assert response.status == 500
    assert error_of(response)["type"] == "api_error"


def test_a_deny_policy_is_403(gateway: LocalApiGateway) -> None:
    response = call(gateway, "GET", "/v1/models", token="deny")
    assert response.status == 403
    assert error_of(response)["type"] == "permission_error"


def test_an_allow_passes_the_authorizer_context_to_the_integration(gateway: LocalApiGateway) -> None:
    response = call(gateway, "POST", "/v1/chat/completions", body=b"{}")
    assert response.status == 200
    event = json.loads(response.body)
    assert event["requestContext"]["authorizer"]["tenant_id"] == "t-1"
    assert event["requestContext"]["authorizer"]["principalId"] == "key-1"
    assert event["requestContext"]["requestId"] == response.header("x-request-id")


def test_the_authorizer_runs_on_every_request(gateway: LocalApiGateway, functions: FakeFunctions) -> None:
    call(gateway, "GET", "/v1/models")
    call(gateway, "GET", "/v1/models")
    assert len(functions.events["AuthFn"]) == 2  # no caching: a revoked key is refused at once


def test_a_handler_exception_is_502_internal_server_error(gateway: LocalApiGateway) -> None:
    response = call(gateway, "GET", "/v1/boom")
    assert response.status == 502
    assert error_of(response)["message"] == "Internal server error"


def test_a_body_over_10_mb_is_413(gateway: LocalApiGateway, functions: FakeFunctions) -> None:
    response = call(gateway, "POST", "/v1/files", body=b"x" * (MAX_BODY_BYTES + 1))
    assert response.status == 413
    assert error_of(response)["code"] == "request_too_large"
    assert functions.events["AuthFn"] == []


def test_a_mock_integration_answers_its_static_response(gateway: LocalApiGateway) -> None:
    response = call(gateway, "OPTIONS", "/v1/models", token=None)
    assert response.status == 204
    assert response.header("Access-Control-Allow-Origin") == "*"


def test_an_integration_slower_than_its_timeout_is_504(gateway: LocalApiGateway) -> None:
    response = call(gateway, "GET", "/v1/items/slow")
    assert response.status == 504
    assert error_of(response)["message"] == "Endpoint request timed out"


def test_requests_beyond_the_stage_burst_are_throttled(functions: FakeFunctions) -> None:
    template = Template(body=sample_template(), stack_name="Sample")
    api = build_rest_api(template, Resolver(template))
    assert api.throttle == (100.0, 200)
    api.throttle = (0.001, 2)
    gateway = LocalApiGateway(api, functions.invoke)
    statuses = [call(gateway, "GET", "/health", token=None).status for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_the_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=1, clock=lambda: now[0])
    assert (bucket.take(), bucket.take()) == (True, False)
    now[0] = 0.5
    assert bucket.take() is True
