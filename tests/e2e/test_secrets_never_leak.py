"""A provider key appears in Secrets Manager and nowhere else: responses, logs, DynamoDB."""

from __future__ import annotations

import json

import boto3
import httpx2
import pytest

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e

PROVIDER_KEY = "sk-proj-LEAKCANARY-7d41c9e2b8a3"


def _aws(local_stack: LocalStack, service: str):
    return boto3.client(
        service,
        endpoint_url=local_stack.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_a_provider_key_is_only_in_secrets_manager(local_stack: LocalStack, admin: httpx2.Client) -> None:
    tenant = admin.post("/admin/tenants", json={"name": "canary"}).json()
    base = f"/admin/tenants/{tenant['id']}"
    responses = [
        admin.put(f"{base}/credentials/oai", json={"provider": "openai", "api_key": PROVIDER_KEY}),
        admin.put(
            f"{base}/credentials/oai", json={"provider": "openai", "api_key": PROVIDER_KEY}
        ),  # update path
        admin.get(f"{base}/credentials"),
        admin.post(
            f"{base}/models",
            json={"alias": "m", "provider": "openai", "model_id": "gpt-4o", "credential": "oai"},
        ),
        admin.get(f"{base}/models"),
        # Refusals must not echo the key either.
        admin.put(f"{base}/credentials/bad name", json={"provider": "openai", "api_key": PROVIDER_KEY}),
        admin.put(
            f"{base}/credentials/x",
            json={"provider": "openai", "api_key": PROVIDER_KEY, "extra": PROVIDER_KEY},
        ),
        admin.put(f"{base}/credentials/y", json={"provider": "nope", "api_key": PROVIDER_KEY}),
        admin.put(f"{base}/credentials/z", json={"provider": "openai", "api_key": [PROVIDER_KEY]}),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 201, 200, 400, 400, 400, 400]

    dynamodb = _aws(local_stack, "dynamodb")
    # default=str: sealed attributes (stored responses) are bytes, searched as their repr.
    scanned = [dynamodb.scan(TableName=t)["Items"] for t in dynamodb.list_tables()["TableNames"]]
    items = json.dumps(scanned, default=str)
    secret_name = next(
        s["Name"]
        for s in _aws(local_stack, "secretsmanager").list_secrets()["SecretList"]
        if s["Name"].endswith(f"{tenant['id']}/oai")
    )
    secret = _aws(local_stack, "secretsmanager").get_secret_value(SecretId=secret_name)["SecretString"]

    assert secret == PROVIDER_KEY  # the canary is really there, so the searches below can find it
    for response in responses:
        assert PROVIDER_KEY not in response.text
        assert PROVIDER_KEY not in json.dumps(dict(response.headers))
    assert PROVIDER_KEY not in items
    assert PROVIDER_KEY not in local_stack.logs()
    stored = [
        line
        for line in local_stack.logs().splitlines()
        if "credential stored" in line and tenant["id"] in line
    ]
    assert len(stored) == 2  # the handlers' logs were captured, so the search above means something
