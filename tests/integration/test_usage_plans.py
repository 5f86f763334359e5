"""byom.dal.usage_plans against moto's API Gateway, and the local stack's reading of what it wrote
(local_stack.moto_usage_plans): the same backend the local API Gateway throttles from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from byom.dal.usage_plans import UsagePlanRepository
from byom.governance.rate_limits import throttle_for
from moto import mock_aws

from local_stack import moto_usage_plans
from local_stack.apigateway import PlanLimits

API_ID = "abc123defg"
STAGE = "prod"


@pytest.fixture
def client() -> Iterator[Any]:
    # moto keeps a patched rateLimit as an int; the local stack installs the same fix.
    moto_usage_plans.install()
    with mock_aws():
        yield boto3.client("apigateway", region_name="us-east-1")


@pytest.fixture
def plans(client: Any) -> UsagePlanRepository:
    return UsagePlanRepository(client, rest_api_id=API_ID, stage=STAGE)


def test_a_plan_is_bound_to_the_apis_stage_with_the_throttle_given(
    client: Any, plans: UsagePlanRepository
) -> None:
    plan_id = plans.create_plan("tnt_a", throttle_for(120))

    plan = client.get_usage_plan(usagePlanId=plan_id)
    assert plan["apiStages"] == [{"apiId": API_ID, "stage": STAGE}]
    assert plan["throttle"] == {"rateLimit": 2.0, "burstLimit": 20}
    assert plan["name"] == "byom-tnt_a"


def test_a_plan_without_a_limit_has_no_throttle(client: Any, plans: UsagePlanRepository) -> None:
    plan_id = plans.create_plan("tnt_a", None)

    assert "throttle" not in client.get_usage_plan(usagePlanId=plan_id)


def test_a_throttle_is_added_changed_and_removed(client: Any, plans: UsagePlanRepository) -> None:
    plan_id = plans.create_plan("tnt_a", None)

    plans.set_throttle(plan_id, throttle_for(12))
    added = client.get_usage_plan(usagePlanId=plan_id)["throttle"]
    plans.set_throttle(plan_id, throttle_for(600))
    changed = client.get_usage_plan(usagePlanId=plan_id)["throttle"]
    plans.set_throttle(plan_id, None)

    assert added == {"rateLimit": 0.2, "burstLimit": 2}
    assert changed == {"rateLimit": 10.0, "burstLimit": 100}
    assert "throttle" not in client.get_usage_plan(usagePlanId=plan_id)


def test_a_key_is_an_enabled_api_key_in_the_plan(client: Any, plans: UsagePlanRepository) -> None:
    plan_id = plans.create_plan("tnt_a", None)

    key = plans.create_key(plan_id, "key_1")

    stored = client.get_api_key(apiKey=key.id, includeValue=True)
    assert stored["enabled"] is True
    assert stored["value"] == key.value
    assert [k["id"] for k in client.get_usage_plan_keys(usagePlanId=plan_id)["items"]] == [key.id]


def test_a_key_that_cannot_join_its_plan_is_deleted(client: Any) -> None:
    # moto adds a key to any plan id, so API Gateway's refusal is stubbed.
    stubber = Stubber(client)
    stubber.add_response("create_api_key", {"id": "k1", "value": "v" * 40})
    stubber.add_client_error("create_usage_plan_key", "NotFoundException", http_status_code=404)
    stubber.add_response("delete_api_key", {}, {"apiKey": "k1"})
    plans = UsagePlanRepository(client, rest_api_id=API_ID, stage=STAGE)

    with stubber, pytest.raises(ClientError):
        plans.create_key("no-such-plan", "key_1")

    stubber.assert_no_pending_responses()


def test_deleting_keys_and_plans_is_idempotent(client: Any, plans: UsagePlanRepository) -> None:
    plan_id = plans.create_plan("tnt_a", None)
    key = plans.create_key(plan_id, "key_1")

    plans.delete_key(key.id)
    plans.delete_key(key.id)
    plans.delete_plan(plan_id)
    plans.delete_plan(plan_id)

    assert client.get_api_keys()["items"] == []
    assert client.get_usage_plans()["items"] == []


def test_the_local_stack_finds_a_keys_plan_and_throttle_by_its_value(plans: UsagePlanRepository) -> None:
    plan_id = plans.create_plan("tnt_a", throttle_for(12))
    key = plans.create_key(plan_id, "key_1")

    found = moto_usage_plans.MotoUsagePlans().plan_of(key.value, API_ID, STAGE)

    assert found == PlanLimits(plan_id, (0.2, 2))


def test_the_local_stack_finds_no_plan_for_another_stage_or_a_deleted_key(plans: UsagePlanRepository) -> None:
    plan_id = plans.create_plan("tnt_a", None)
    key = plans.create_key(plan_id, "key_1")
    lookup = moto_usage_plans.MotoUsagePlans()

    other_stage = lookup.plan_of(key.value, API_ID, "dev")
    plans.delete_key(key.id)

    assert other_stage is None
    assert lookup.plan_of(key.value, API_ID, STAGE) is None
