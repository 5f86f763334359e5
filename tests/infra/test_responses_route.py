"""POST /v1/responses streams with the stream timeout, as chat completions do; the stored-response
routes below it reach the gateway function through the authorizer."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template

from tests.infra.stack_template import methods


def _method(template: Template, verb: str, path: str) -> dict[str, Any]:
    return methods(template)[(verb, path)]


def test_create_response_has_its_own_streaming_method_with_the_stream_timeout(template: Template) -> None:
    method = _method(template, "POST", "/v1/responses")
    chat = _method(template, "POST", "/v1/chat/completions")

    assert method["Integration"]["ResponseTransferMode"] == "STREAM"
    assert method["Integration"]["TimeoutInMillis"] == chat["Integration"]["TimeoutInMillis"]
    assert method["AuthorizationType"] == "CUSTOM" and method["ApiKeyRequired"] is True


def test_stored_responses_go_to_the_gateway_through_the_authorizer(template: Template) -> None:
    method = _method(template, "ANY", "/v1/responses/{proxy+}")

    assert method["Integration"]["ResponseTransferMode"] == "STREAM"
    assert "TimeoutInMillis" not in method["Integration"]  # quick reads: the 29 s default
    assert method["AuthorizationType"] == "CUSTOM" and method["ApiKeyRequired"] is True
