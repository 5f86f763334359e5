"""The emulated REST API: routes, events, authorizer results and gateway responses, without sockets."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from local_stack.apigateway import (
    AuthorizerConfigurationError,
    HttpRequest,
    MalformedProxyResponse,
    RestApi,
    authorizer_context,
    build_authorizer_event,
    build_proxy_event,
    build_rest_api,
    evaluate_policy,
    proxy_response,
    render_gateway_response,
)
from local_stack.template import Resolver, Template
from tests.unit.local_stack.sample import sample_template


@pytest.fixture
def api() -> RestApi:
    template = Template(body=sample_template(), stack_name="Sample")
    return build_rest_api(template, Resolver(template))


def request(method: str = "GET", path: str = "/v1/models", **kwargs: Any) -> HttpRequest:
    headers = kwargs.pop("headers", [("Host", "127.0.0.1:8787"), ("Authorization", "Bearer allow")])
    return HttpRequest(method=method, path=path, headers=headers, **kwargs)


# -- routes -------------------------------------------------------------------------------------


def test_routes_come_from_the_template_resources_and_methods(api: RestApi) -> None:
    routes = {(m.http_method, m.resource_path, m.function_id) for m in api.methods}
    assert ("GET", "/health", "EchoFn") in routes
    assert ("ANY", "/v1/{proxy+}", "EchoFn") in routes
    assert ("GET", "/v1/items/{item_id}", "EchoFn") in routes
    assert api.stage == "prod"
    assert api.binary_media_types == ["multipart/form-data"]


def test_the_authorizer_of_a_method_names_its_function_and_identity_source(api: RestApi) -> None:
    method, _ = api.match("POST", "/v1/chat/completions")
    assert method.authorization_type == "CUSTOM"
    assert method.authorizer.function_id == "AuthFn"
    assert method.authorizer.identity_sources == ("method.request.header.Authorization",)


def test_greedy_proxy_matches_every_deeper_path(api: RestApi) -> None:
    method, params = api.match("DELETE", "/v1/fine_tuning/jobs/ft-1")
    assert method.resource_path == "/v1/{proxy+}"
    assert params == {"proxy": "fine_tuning/jobs/ft-1"}


def test_static_and_parameter_resources_win_over_the_greedy_proxy(api: RestApi) -> None:
    method, params = api.match("GET", "/v1/items/abc")
    assert method.resource_path == "/v1/items/{item_id}"
    assert params == {"item_id": "abc"}


def test_a_resource_without_the_method_does_not_fall_back_to_a_less_specific_one(api: RestApi) -> None:
    assert api.match("POST", "/health") is None
    assert api.match("POST", "/v1/items/abc") is None


def test_paths_outside_the_api_do_not_match(api: RestApi) -> None:
    assert api.match("GET", "/v2/models") is None
    assert api.match("GET", "/v1") is None  # {proxy+} needs at least one segment


def test_a_trailing_slash_matches_the_same_resource(api: RestApi) -> None:
    method, _ = api.match("GET", "/health/")
    assert method.resource_path == "/health"


def test_gateway_responses_are_read_with_their_status(api: RestApi) -> None:
    assert api.gateway_responses["UNAUTHORIZED"].status_code == 401
    assert api.gateway_responses["DEFAULT_5XX"].status_code is None


# -- events -------------------------------------------------------------------------------------


def test_proxy_event_has_the_rest_api_v1_shape(api: RestApi) -> None:
    method, params = api.match("POST", "/v1/chat/completions")
    incoming = request("POST", "/v1/chat/completions", query="a=1&a=2&b=", body=b'{"x": 1}')
    incoming.headers.append(("Content-Type", "application/json"))
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    event = build_proxy_event(api, method, incoming, params, "req-1", {"principalId": "k"}, now=when)

    assert event["resource"] == "/v1/{proxy+}"
    assert event["path"] == "/v1/chat/completions"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"proxy": "chat/completions"}
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert event["headers"]["Authorization"] == "Bearer allow"
    assert event["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert event["stageVariables"] is None
    assert event["body"] == '{"x": 1}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["requestId"] == "req-1"
    assert context["stage"] == "prod"
    assert context["path"] == "/prod/v1/chat/completions"
    assert context["resourcePath"] == "/v1/{proxy+}"
    assert context["accountId"] == "123456789012"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["authorizer"] == {"principalId": "k"}
    assert context["requestTimeEpoch"] == int(when.timestamp() * 1000)


def test_proxy_event_without_query_or_body_uses_nulls_like_api_gateway(api: RestApi) -> None:
    method, params = api.match("GET", "/health")
    event = build_proxy_event(api, method, request("GET", "/health"), params, "req-1")
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["body"] is None
    assert "authorizer" not in event["requestContext"]


def test_binary_media_types_arrive_base64_encoded(api: RestApi) -> None:
    method, params = api.match("POST", "/v1/files")
    payload = b"--b\r\n\x00\xff binary\r\n--b--"
    incoming = request("POST", "/v1/files", body=payload)
    incoming.headers.append(("Content-Type", "multipart/form-data; boundary=b"))
    event = build_proxy_event(api, method, incoming, params, "req-1")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_authorizer_event_is_a_request_authorizer_event_for_the_method_arn(api: RestApi) -> None:
    method, params = api.match("GET", "/v1/models")
    event = build_authorizer_event(api, method, request(), params, "req-1")
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == f"arn:aws:execute-api:us-east-1:123456789012:{api.api_id}/prod/GET/v1/models"
    assert event["resource"] == "/v1/{proxy+}"
    assert event["path"] == "/v1/models"
    assert event["headers"]["Authorization"] == "Bearer allow"
    assert event["requestContext"]["requestId"] == "req-1"


# -- authorizer results ---------------------------------------------------------------------------


ARN = "arn:aws:execute-api:us-east-1:123456789012:api1/prod/GET/v1/models"


def policy(effect: str, resource: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
    }


def test_an_allow_on_the_stage_wildcard_allows_every_route() -> None:
    assert (
        evaluate_policy(policy("Allow", "arn:aws:execute-api:us-east-1:123456789012:api1/prod/*"), ARN)
        == "allow"
    )


def test_an_explicit_deny_wins() -> None:
    document = policy("Allow", "*")
    document["Statement"].append({"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ARN})
    assert evaluate_policy(document, ARN) == "deny"


def test_an_allow_for_another_route_is_an_implicit_deny() -> None:
    other = "arn:aws:execute-api:us-east-1:123456789012:api1/prod/POST/admin/*"
    assert evaluate_policy(policy("Allow", other), ARN) == "implicit_deny"


def test_authorizer_context_values_become_strings_with_the_principal() -> None:
    result = {
        "principalId": "key-1",
        "policyDocument": policy("Allow", "*"),
        "context": {"a": "x", "n": 3, "b": True},
    }
    _, context = authorizer_context(result, latency_ms=7)
    assert context == {"a": "x", "n": "3", "b": "true", "principalId": "key-1", "integrationLatency": 7}


@pytest.mark.parametrize(
    "result",
    [
        {},
        {"principalId": "k"},
        {"principalId": "k", "policyDocument": policy("Allow", "*"), "context": {"o": {}}},
    ],
)
def test_unusable_authorizer_answers_are_configuration_errors(result: dict[str, Any]) -> None:
    with pytest.raises(AuthorizerConfigurationError):
        authorizer_context(result, latency_ms=0)


# -- gateway responses ----------------------------------------------------------------------------


def test_gateway_response_renders_the_template_status_and_headers(api: RestApi) -> None:
    response = render_gateway_response(api, "UNAUTHORIZED", "req-9", 'Say "no"')
    assert response.status == 401
    assert json.loads(response.body) == {
        "error": {
            "message": 'Say "no"',
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert response.header("x-request-id") == "req-9"
    assert response.header("x-byom-error-source") == "gateway"
    assert response.header("content-type") == "application/json"


def test_uncustomised_types_fall_back_to_the_default_family_with_their_own_status(api: RestApi) -> None:
    response = render_gateway_response(api, "THROTTLED", "req-9")
    assert response.status == 429
    assert json.loads(response.body)["error"]["type"] == "invalid_request_error"  # DEFAULT_4XX's template


def test_default_5xx_keeps_the_integration_failure_status(api: RestApi) -> None:
    response = render_gateway_response(api, "DEFAULT_5XX", "req-9", "Internal server error")
    assert response.status == 502
    assert json.loads(response.body)["error"] == {
        "message": "Internal server error",
        "type": "api_error",
        "param": None,
        "code": None,
    }


def test_without_any_customisation_api_gateway_answers_message_json() -> None:
    bare = RestApi(api_id="a", stage="prod", resource_paths=["/"], methods=[], gateway_responses={})
    response = render_gateway_response(bare, "MISSING_AUTHENTICATION_TOKEN", "req-9")
    assert response.status == 403
    assert json.loads(response.body) == {"message": "Missing Authentication Token"}


# -- proxy responses ----------------------------------------------------------------------------


def test_proxy_response_merges_headers_with_multi_value_headers_first() -> None:
    response = proxy_response(
        {
            "statusCode": 201,
            "headers": {"a": "1", "b": 2},
            "multiValueHeaders": {"a": ["x", "y"]},
            "body": "hi",
        }
    )
    assert response.status == 201
    assert (
        ("a", "x") in response.headers
        and ("a", "y") in response.headers
        and ("a", "1") not in response.headers
    )
    assert ("b", "2") in response.headers
    assert response.body == b"hi"


def test_proxy_response_decodes_base64_bodies() -> None:
    body = base64.b64encode(b"\x00\x01").decode()
    assert proxy_response({"statusCode": 200, "body": body, "isBase64Encoded": True}).body == b"\x00\x01"


@pytest.mark.parametrize(
    "result",
    [None, "text", {"body": "x"}, {"statusCode": 200, "body": {"a": 1}}, {"statusCode": 200, "cookies": []}],
)
def test_malformed_proxy_responses_are_rejected(result: Any) -> None:
    with pytest.raises(MalformedProxyResponse):
        proxy_response(result)
