"""The whole local stack in-process, serving the sample template's handlers over loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from byom.providers import Target
from byom.providers.batch import BatchLine
from byom.providers.bedrock_batch import BedrockBatches

from local_stack.apigateway import MAX_BODY_BYTES
from local_stack.stack import LocalStack, StackSettings
from tests.integration.local_stack.conftest import Reply, http

ADMIN_KEY = "sample-admin-key"


@pytest.fixture(scope="module")
def stack(sample_template_path: Path) -> Iterator[LocalStack]:
    # The sample revokes through /v1, outside the admin prefix whose writes flush the cache.
    settings = StackSettings(
        port=0, admin_key=ADMIN_KEY, template=sample_template_path, authorizer_cache=False
    )
    with LocalStack(settings) as running:
        yield running


def call(stack: LocalStack, method: str, path: str, token: str | None = "allow", **kwargs) -> Reply:
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http(method, stack.url + path, headers=headers, **kwargs)


def echoed(reply: Reply) -> dict:
    assert reply.status == 200, reply.body
    return reply.json()


def test_the_public_route_answers_without_a_key(stack: LocalStack) -> None:
    reply = call(stack, "GET", "/health", token=None)
    assert echoed(reply)["event"]["resource"] == "/health"
    assert reply.headers["x-request-id"] == echoed(reply)["event"]["requestContext"]["requestId"]


def test_handlers_get_a_real_proxy_event_with_the_authorizer_context(stack: LocalStack) -> None:
    body = echoed(
        call(
            stack,
            "POST",
            "/v1/chat/completions?x=1",
            body=b'{"a": 1}',
            headers={"content-type": "application/json"},
        )
    )
    event = body["event"]
    assert event["resource"] == "/v1/{proxy+}"
    assert event["path"] == "/v1/chat/completions"
    assert event["pathParameters"] == {"proxy": "chat/completions"}
    assert event["queryStringParameters"] == {"x": "1"}
    assert event["body"] == '{"a": 1}'
    assert event["requestContext"]["path"] == "/prod/v1/chat/completions"
    authorizer = event["requestContext"]["authorizer"]
    assert authorizer["principalId"] == "key-allow"
    assert authorizer["greeting"] == "hello from the layer"  # the authorizer imported the code layer
    assert (authorizer["admin"], authorizer["level"]) == ("true", "3")


def test_handlers_run_against_the_emulation_with_the_template_environment(stack: LocalStack) -> None:
    body = echoed(call(stack, "GET", "/v1/env"))
    env = body["env"]
    assert body["table"] == env["ITEMS_TABLE"] == "Items"
    assert env["KMS_KEY_ID"].startswith("arn:aws:kms:us-east-1:123456789012:key/")
    assert env["SECRET_PREFIX"] == "byom/Sample/tenants/"
    assert env["POWERTOOLS_SERVICE_NAME"] is None  # per function, read at import only
    assert env["ALLOW_LOOPBACK_HTTP"] == "true"
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert env["AWS_ENDPOINT_URL"] == stack.moto_url
    assert env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == stack.bedrock_url
    assert body["context"]["function_name"] == "Sample-EchoFn"
    assert 0 < body["context"]["remaining_ms"] <= 10_000


def test_multi_value_response_headers_reach_the_client(stack: LocalStack) -> None:
    reply = call(stack, "GET", "/v1/anything")
    assert reply.headers["x-multi"] == "a, b"


def test_binary_uploads_arrive_base64_encoded_and_binary_answers_decoded(stack: LocalStack) -> None:
    upload = echoed(
        call(
            stack,
            "POST",
            "/v1/files",
            body=b"\x00\xff",
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
    )
    assert upload["event"]["isBase64Encoded"] is True
    assert call(stack, "GET", "/v1/binary-out").body == bytes(range(8))


def test_no_key_is_401_in_the_openai_envelope(stack: LocalStack) -> None:
    reply = call(stack, "GET", "/v1/models", token=None)
    assert reply.status == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"
    assert reply.headers["x-byom-error-source"] == "gateway"
    assert reply.headers["x-request-id"]


def test_without_the_authorizer_cache_a_revoked_key_is_refused_at_once(stack: LocalStack) -> None:
    assert call(stack, "GET", "/v1/models", token="allow-revocable").status == 200
    assert call(stack, "POST", "/v1/revoke/allow-revocable").status == 200
    reply = call(stack, "GET", "/v1/models", token="allow-revocable")
    assert reply.status == 401


@pytest.mark.parametrize(
    ("token", "path", "status", "error_type"),
    [
        ("deny", "/v1/models", 403, "permission_error"),
        ("broken", "/v1/models", 500, "api_error"),
        ("bad-shape", "/v1/models", 500, "api_error"),
        ("allow", "/v1/boom", 502, "api_error"),
        ("allow", "/v1/malformed", 502, "api_error"),
        ("allow", "/nowhere", 404, "not_found_error"),
        ("allow", "/v1/items/slow", 504, "api_error"),
    ],
)
def test_gateway_errors_use_the_template_responses(
    stack: LocalStack, token: str, path: str, status: int, error_type: str
) -> None:
    reply = call(stack, "GET", path, token=token)
    assert reply.status == status
    assert reply.json()["error"]["type"] == error_type
    assert reply.headers["x-request-id"]


def test_a_body_over_10_mb_is_413(stack: LocalStack) -> None:
    reply = call(stack, "POST", "/v1/files", body=b"x" * (MAX_BODY_BYTES + 1))
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "request_too_large"


def test_the_stand_ins_are_reachable_from_the_stack(stack: LocalStack) -> None:
    models = http("GET", stack.openai_url + "/models").json()
    assert {m["id"] for m in models["data"]} == {"stand-in-chat", "stand-in-embed"}
    assert http("GET", stack.bedrock_url + "/_stand_in/requests").status == 200
    assert json.loads(http("GET", stack.moto_url + "/moto-api/data.json").body) is not None


def test_a_bedrock_batch_job_reads_and_writes_the_emulations_s3(stack: LocalStack) -> None:
    boto3.client("s3").create_bucket(Bucket="batch-wiring")
    target = Target(tenant_id="tnt_a", alias="fast", provider="bedrock", model_id="stand-in-chat")
    lines = [BatchLine("only", {"model": "stand-in-chat", "messages": [{"role": "user", "content": "hi"}]})]
    # The default clients: the stack points boto3 at moto, and the bedrock control plane at the stand-in.
    batches = BedrockBatches(role_arn="arn:aws:iam::123456789012:role/batch")

    job_id = batches.submit(
        target, "/v1/chat/completions", lines, name="wiring", s3_prefix="s3://batch-wiring/b/"
    )
    deadline = time.monotonic() + 30
    while batches.status(target, job_id).state == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.2)

    assert [o.custom_id for o in batches.outcomes(target, job_id)] == ["only"]
