"""Shared test helpers: real API Gateway proxy events and a fake Lambda context."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def aws_emulation_setup_done_once() -> Iterator[None]:
    """Two costs every moto-backed test paid again at setup, cut for the session (issue 14):
    - each fresh boto3 session (moto resets the default one, and the code's cached clients are
      cleared per test) parsed botocore's endpoint and service-model JSON anew: one loader, whose
      files never change, serves every session;
    - moto generates a 2048-bit RSA key for every KMS key, symmetric ones included, where it is
      only ever used to sign (which KMS refuses on a symmetric key): symmetric keys share one."""
    from botocore import session as botocore_session
    from moto.kms import models

    generate: Callable[[str], Any] = models.generate_private_key
    shared_private_key = cache(generate)

    def private_key(key_spec: str) -> Any:
        return shared_private_key(key_spec) if key_spec in SYMMETRIC_KEY_SPECS else generate(key_spec)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore_session, "create_loader", cache(botocore_session.create_loader))
        patch.setattr(models, "generate_private_key", private_key)
        yield


SYMMETRIC_KEY_SPECS = frozenset({"SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512"})


@dataclass
class LambdaContext:
    function_name: str = "test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/test"
    log_stream_name: str = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


def api_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    authorizer: dict[str, str] | None = None,
    resource: str | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy event as API Gateway sends it."""
    request_id = str(uuid.uuid4())
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    headers = {"content-type": "application/json", "Authorization": "Bearer test"}
    return {
        "resource": resource or ("/" + path.strip("/").split("/")[0] + "/{proxy+}"),
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.strip("/").split("/", 1)[-1]},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "testapi",
            "stage": "prod",
            "requestId": request_id,
            "resourcePath": resource or "/{proxy+}",
            "httpMethod": method,
            "path": "/prod" + path,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
            "authorizer": authorizer,
        },
        "body": raw,
        "isBase64Encoded": False,
    }
