"""The emulated API Gateway's usage plans: methods requiring an API key are throttled per key by the
plan of the key the authorizer names, and refused (403) for a key in no plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local_stack.apigateway import (
    HttpRequest,
    LocalApiGateway,
    PlanLimits,
    UsagePlanThrottles,
    build_rest_api,
)
from local_stack.lambdas import LambdaFunction
from local_stack.template import Resolver, Template
from tests.unit.local_stack.sample import _gateway_response, sample_template

# Bearer token -> the usageIdentifierKey the fake authorizer names for it.
USAGE_KEYS = {"tenant-a": "usage-a-0123456789abcdef", "tenant-b": "usage-b-0123456789abcdef", "nokey": None}


class FakePlans:
    """UsagePlanLookup over a dict; counts its lookups."""

    def __init__(self, plans: dict[str, PlanLimits]) -> None:
        self.plans = plans
        self.lookups: list[tuple[str, str, str]] = []

    def plan_of(self, usage_key: str, api_id: str, stage: str) -> PlanLimits | None:
        self.lookups.append((usage_key, api_id, stage))
        return self.plans.get(usage_key)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _template() -> dict[str, Any]:
    body = sample_template()
    resources = body["Resources"]
    resources["V1ProxyAny"]["Properties"]["ApiKeyRequired"] = True
    throttled = _gateway_response("THROTTLED", "429", "rate_limit_exceeded", "rate_limit_exceeded")
    throttled["Properties"]["ResponseParameters"]["gatewayresponse.header.retry-after"] = "'1'"
    resources["Throttled"] = throttled
    return body


def _authorize(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    token = event["headers"]["Authorization"].removeprefix("Bearer ")
    if token not in USAGE_KEYS:
        raise Exception("Unauthorized")
    resource = event["methodArn"].split("/")[0] + "/*"
    answer: dict[str, Any] = {
        "principalId": token,
        "policyDocument": {
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}]
        },
        "context": {"tenant_id": token},
    }
    if USAGE_KEYS[token]:
        answer["usageIdentifierKey"] = USAGE_KEYS[token]
    return answer


def _echo(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "headers": {"x-request-id": "r"}, "body": json.dumps({"path": event["path"]})}


class Functions:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {"AuthFn": 0, "EchoFn": 0}
        self.functions = {}
        for logical_id, entry in (("AuthFn", _authorize), ("EchoFn", _echo)):
            function = LambdaFunction(logical_id, logical_id, "handler.handler", Path("."), [], {})
            function.entry = entry
            self.functions[logical_id] = function

    def invoke(self, logical_id: str, event: dict[str, Any], timeout: float | None) -> Any:
        self.calls[logical_id] += 1
        return self.functions[logical_id].invoke(event, timeout)


@pytest.fixture
def plans() -> FakePlans:
    return FakePlans(
        {
            "usage-a-0123456789abcdef": PlanLimits("plan-a", (0.2, 2)),
            "usage-b-0123456789abcdef": PlanLimits("plan-b", None),
        }
    )


@pytest.fixture
def functions() -> Functions:
    return Functions()


def _gateway(functions: Functions, plans: FakePlans, **kwargs: Any) -> LocalApiGateway:
    template = Template(body=_template(), stack_name="Sample")
    return LocalApiGateway(
        build_rest_api(template, Resolver(template)), functions.invoke, usage_plans=plans, **kwargs
    )


def _call(gateway: LocalApiGateway, token: str, path: str = "/v1/models"):  # type: ignore[no-untyped-def]
    return gateway.handle(HttpRequest("GET", path, headers=[("Authorization", f"Bearer {token}")]))


def test_api_key_required_is_read_from_the_template() -> None:
    template = Template(body=_template(), stack_name="Sample")
    api = build_rest_api(template, Resolver(template))

    matched = api.match("GET", "/v1/models")
    health = api.match("GET", "/health")

    assert matched is not None and matched[0].api_key_required is True
    assert health is not None and health[0].api_key_required is False


def test_the_call_after_the_burst_is_throttled_with_retry_after(
    functions: Functions, plans: FakePlans
) -> None:
    gateway = _gateway(functions, plans)

    statuses = [_call(gateway, "tenant-a").status for _ in range(2)]
    throttled = _call(gateway, "tenant-a")

    assert statuses == [200, 200]
    assert throttled.status == 429
    assert json.loads(throttled.body)["error"]["code"] == "rate_limit_exceeded"
    assert throttled.header("retry-after") == "1"
    assert functions.calls["EchoFn"] == 2


def test_another_keys_plan_is_unaffected(functions: Functions, plans: FakePlans) -> None:
    gateway = _gateway(functions, plans)
    for _ in range(3):
        _call(gateway, "tenant-a")

    assert [_call(gateway, "tenant-b").status for _ in range(5)] == [200] * 5


def test_a_key_in_no_plan_is_forbidden(functions: Functions) -> None:
    gateway = _gateway(functions, FakePlans({}))

    response = _call(gateway, "tenant-a")

    assert response.status == 403
    assert functions.calls["EchoFn"] == 0


def test_an_authorizer_naming_no_key_is_forbidden(functions: Functions, plans: FakePlans) -> None:
    response = _call(_gateway(functions, plans), "nokey")

    assert response.status == 403
    assert functions.calls["EchoFn"] == 0


def test_a_method_without_api_key_required_is_not_checked(functions: Functions) -> None:
    gateway = _gateway(functions, FakePlans({}))

    response = gateway.handle(HttpRequest("GET", "/health"))

    assert response.status == 200


def test_plans_are_looked_up_once_per_key_while_cached(functions: Functions, plans: FakePlans) -> None:
    gateway = _gateway(functions, plans)

    for _ in range(3):
        _call(gateway, "tenant-b")

    assert len(plans.lookups) == 1
    (usage_key, api_id, stage), *_ = plans.lookups
    assert (usage_key, api_id, stage) == ("usage-b-0123456789abcdef", gateway.api.api_id, "prod")


def test_a_flush_looks_the_plan_up_again_but_refills_no_bucket(
    functions: Functions, plans: FakePlans
) -> None:
    gateway = _gateway(functions, plans)
    for _ in range(2):
        _call(gateway, "tenant-a")

    gateway.flush_authorizer_cache()
    response = _call(gateway, "tenant-a")

    assert response.status == 429
    assert len(plans.lookups) == 2


def test_a_cached_authorizer_result_keeps_its_usage_key(functions: Functions, plans: FakePlans) -> None:
    gateway = _gateway(functions, plans, cache_authorizer_results=True)

    statuses = [_call(gateway, "tenant-a").status for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert functions.calls["AuthFn"] == 1


def test_a_bucket_refills_at_its_plans_rate() -> None:
    clock = Clock()
    throttles = UsagePlanThrottles(FakePlans({"k": PlanLimits("p", (0.2, 2))}), "api", "prod", clock)
    assert [throttles.admit("k") for _ in range(3)] == [None, None, "THROTTLED"]

    clock.now += 4.9
    throttled_still = throttles.admit("k")
    clock.now += 0.2

    assert throttled_still == "THROTTLED"
    assert throttles.admit("k") is None


def test_a_changed_throttle_takes_effect_once_the_plan_is_looked_up_again() -> None:
    clock = Clock()
    plans = FakePlans({"k": PlanLimits("p", (0.2, 1))})
    throttles = UsagePlanThrottles(plans, "api", "prod", clock)
    throttles.admit("k")
    assert throttles.admit("k") == "THROTTLED"

    plans.plans["k"] = PlanLimits("p", None)
    clock.now += 5.0  # PLAN_CACHE_SECONDS

    assert throttles.admit("k") is None
