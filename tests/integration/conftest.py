"""Handlers called in-process with real API Gateway events, against moto's DynamoDB, KMS and Secrets Manager.

The tables follow docs/contracts.md, the same keys and indexes the stack deploys (tests/infra
asserts the template side of that contract).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws
from starlette.testclient import TestClient

from local_stack.web_adapter import forwarded_request
from tests.conftest import LambdaContext, api_event

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "integration-platform-admin-key"
PLATFORM_ADMIN = {
    "principal": "platform_admin",
    "tenant_id": "",
    "key_id": "platform-admin",
    "role": "platform_admin",
}

TABLES = {
    "TENANTS_TABLE": ("byom-tenants", [("tenant_id", "HASH")], []),
    "API_KEYS_TABLE": (
        "byom-api-keys",
        [("key_hash", "HASH")],
        [("by_tenant", [("tenant_id", "HASH"), ("key_id", "RANGE")])],
    ),
    "CREDENTIALS_TABLE": ("byom-credentials", [("tenant_id", "HASH"), ("name", "RANGE")], []),
    "MODELS_TABLE": ("byom-models", [("tenant_id", "HASH"), ("alias", "RANGE")], []),
    "CACHE_TABLE": ("byom-cache", [("cache_key", "HASH")], []),
    "USAGE_TABLE": ("byom-usage", [("pk", "HASH"), ("sk", "RANGE")], []),
    "POLICIES_TABLE": ("byom-policies", [("tenant_id", "HASH")], []),
    "AUDIT_TABLE": (
        "byom-audit",
        [("tenant_id", "HASH"), ("sk", "RANGE")],
        [("by_subject", [("subject", "HASH"), ("sk", "RANGE")])],
    ),
    "RESPONSES_TABLE": ("byom-responses", [("tenant_id", "HASH"), ("id", "RANGE")], []),
}
# Indexes project every attribute unless listed here (as the stack's do).
KEYS_ONLY_INDEXES = {("byom-audit", "by_subject")}
DATA_BUCKET = "byom-tenant-data"
# Retries wait milliseconds here, not the deployed 0.2 s and up.
FAST_RETRIES = {"RETRY_BASE_SECONDS": "0.001", "RETRY_CAP_SECONDS": "0.002"}


def _schema(keys: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"AttributeName": name, "KeyType": kind} for name, kind in keys]


def _create_tables(kms_key: str) -> None:
    dynamodb = boto3.client("dynamodb")
    for name, keys, indexes in TABLES.values():
        attributes = {n for n, _ in keys} | {n for _, index_keys in indexes for n, _ in index_keys}
        extra: dict[str, Any] = {}
        if indexes:
            extra["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index,
                    "KeySchema": _schema(index_keys),
                    "Projection": {
                        "ProjectionType": "KEYS_ONLY" if (name, index) in KEYS_ONLY_INDEXES else "ALL"
                    },
                }
                for index, index_keys in indexes
            ]
        dynamodb.create_table(
            TableName=name,
            KeySchema=_schema(keys),
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": kms_key},
            **extra,
        )


def _create_data_bucket(kms_key: str) -> None:
    """Versioned and SSE-KMS, as the stack's data bucket."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=DATA_BUCKET)
    s3.put_bucket_versioning(Bucket=DATA_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=DATA_BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": kms_key,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )


def _clear_caches() -> None:
    from byom import settings
    from byom.api import admin, authorizer, gateway, meter_reconciler
    from byom.api import governance as governance_api
    from byom.dal import aws, cache
    from byom.providers import bedrock

    for cached in (
        settings.admin_settings,
        settings.authorizer_settings,
        settings.gateway_settings,
        settings.reconciler_settings,
        meter_reconciler._tables,
        aws.session,
        aws.client,
        aws.table,
        cache.cache_table,
        admin.store,
        governance_api.store,
        governance_api.stored_responses,
        gateway.model_repository,
        gateway.invoke_store,
        gateway.usage_table,
        bedrock.runtime_client,
        authorizer._keys,
    ):
        cached.cache_clear()
    parameters.clear_caches()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "byom-test")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "BYOM")
    with mock_aws():
        kms_key = boto3.client("kms").create_key(Description="byom test key")["KeyMetadata"]["Arn"]
        _create_tables(kms_key)
        _create_data_bucket(kms_key)
        admin_secret = boto3.client("secretsmanager").create_secret(
            Name="byom/test/admin-key", SecretString=ADMIN_KEY, KmsKeyId=kms_key
        )["ARN"]
        env = {variable: name for variable, (name, _, _) in TABLES.items()} | {
            "KMS_KEY_ID": kms_key,
            "DATA_BUCKET": DATA_BUCKET,
            "SPEND_ALARM_PREFIX": "byom-test-tenant-spend-",
            "SECRET_PREFIX": "byom/test/tenants/",
            "ADMIN_KEY_SECRET_ARN": admin_secret,
            "ALLOW_LOOPBACK_HTTP": "false",
            **FAST_RETRIES,
        }
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        _clear_caches()
        yield env
        _clear_caches()


def load_handler(function: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """functions/<function>/handler.py imported the way Lambda does: by file, as its own module.
    A web-adapter function (an app.py) is called the way the adapter calls it: the event made an
    HTTP request with its request context in a header; its answer read back as a proxy response."""
    directory = ROOT / "functions" / function
    if (directory / "app.py").is_file():
        return _adapted(_module(function, directory / "app.py").app)
    handler: Callable[[dict[str, Any], Any], dict[str, Any]] = _module(
        function, directory / "handler.py"
    ).handler
    return handler


def _module(function: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"byom_function_{function}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _adapted(app: Any) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    client = TestClient(app, raise_server_exceptions=False)

    def call(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        request = forwarded_request(event)
        response = client.request(
            request.method, request.target, headers=request.headers, content=request.body
        )
        return {
            "statusCode": response.status_code,
            "multiValueHeaders": {name: response.headers.get_list(name) for name in response.headers},
            "body": response.text,
        }

    return call


class Api:
    """Calls a function's handler with real proxy events and decodes the answer."""

    def __init__(self, function: str) -> None:
        self._handler = load_handler(function)

    def __call__(
        self, method: str, path: str, body: Any = None, *, as_: dict[str, str] | None = PLATFORM_ADMIN
    ):
        response = self._handler(api_event(method, path, body=body, authorizer=as_), LambdaContext())
        # API Gateway merges both header maps into the HTTP answer.
        headers = dict(response.get("headers") or {})
        headers |= {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items()}
        return response["statusCode"], json.loads(response["body"]), headers


@pytest.fixture
def admin_api(aws: dict[str, str]) -> Api:
    return Api("admin")


@pytest.fixture
def gateway_api(aws: dict[str, str]) -> Api:
    return Api("gateway")


def tenant_context(tenant_id: str, role: str, key_id: str = "key_test") -> dict[str, str]:
    return {"principal": "tenant", "tenant_id": tenant_id, "key_id": key_id, "role": role}
