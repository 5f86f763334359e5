"""Requests per minute per key (SPEC §8) on the local stack, through the real OpenAI SDK: the
emulated API Gateway throttles each key by its tenant's usage plan, as the cloud's does."""

from __future__ import annotations

import boto3
import httpx2
import openai
import pytest
from byom.dal.usage_plans import PLAN_NAME_PREFIX, UsagePlanRepository
from byom.governance.rate_limits import throttle_for

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e

REQUESTS_PER_MINUTE = 12  # a burst of 2, then one request every 5 s


def _tenant_key(admin: httpx2.Client, name: str) -> tuple[str, str]:
    tenant = admin.post("/admin/tenants", json={"name": name}).json()
    key = admin.post(f"/admin/tenants/{tenant['id']}/keys", json={"name": "app", "role": "developer"})
    assert key.status_code == 201, key.text
    return tenant["id"], key.json()["key"]


def _limit(local_stack: LocalStack, tenant_id: str, requests_per_minute: int) -> int:
    """Set the tenant's plan as a policy's rate limits set it (byom.logic.admin.put_policy);
    answers its burst."""
    apigateway = boto3.client(
        "apigateway",
        endpoint_url=local_stack.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    (plan,) = [p for p in apigateway.get_usage_plans()["items"] if p["name"] == PLAN_NAME_PREFIX + tenant_id]
    throttle = throttle_for(requests_per_minute)
    assert throttle is not None
    (stage,) = plan["apiStages"]
    UsagePlanRepository(apigateway, rest_api_id=stage["apiId"], stage=stage["stage"]).set_throttle(
        plan["id"], throttle
    )
    return throttle.burst


def _openai(local_stack: LocalStack, key: str) -> openai.OpenAI:
    # No retries: the SDK would otherwise wait retry-after and try again.
    return openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0)


def test_the_call_after_a_keys_burst_is_rate_limited_and_another_tenant_is_not(
    local_stack: LocalStack, admin: httpx2.Client
) -> None:
    limited_tenant, limited_key = _tenant_key(admin, "rate-limited")
    _, other_key = _tenant_key(admin, "not-limited")
    burst = _limit(local_stack, limited_tenant, REQUESTS_PER_MINUTE)
    limited, other = _openai(local_stack, limited_key), _openai(local_stack, other_key)

    for _ in range(burst):
        limited.models.list()
    with pytest.raises(openai.RateLimitError) as raised:
        limited.models.list()
    others = [other.models.list() for _ in range(burst + 3)]

    error = raised.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.response.headers["retry-after"] == "1"
    assert len(others) == burst + 3
