"""Metering and hard budgets through the handlers, against DynamoDB, EventBridge, SQS and
CloudWatch in moto, with a loopback OpenAI-compatible upstream that answers 6 prompt and 2
completion tokens per call (tests/integration/fake_openai.py).

At the alias's price (1 USD / 2 USD per 1K tokens) a call costs $0.010 and a request "Hello" with
max_tokens 10 reserves at most 37 + 10 tokens: $0.057.
"""

from __future__ import annotations

import calendar
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from byom.dal.ledger import TOTAL, UsageTable, ledger_of
from byom.domain import Budget, ModelAlias, Pricing
from byom.errors import BudgetExceeded
from byom.logic import invoke
from byom.logic.access import Principal
from byom.logic.call_meter import CallMeter
from byom.logic.money import Estimate, month_of
from byom.money import BudgetState, Hold, Ledger, Metered, ReservationRefused
from byom.openai_types import ChatRequest
from byom.providers import StreamDelta, Target, Usage

from local_stack.stack import SerializedMotoServer
from tests.conftest import LambdaContext, api_event
from tests.integration.conftest import Api, load_handler, tenant_context
from tests.integration.fake_openai import FakeOpenAI, Gateway, gateway, loopback, serve
from tests.unit.fakes import FakeCalls, FakeModels

__all__ = ["gateway", "loopback"]  # shared fixtures

PRICING = {"input_per_1k_usd": 1.0, "output_per_1k_usd": 2.0}
CALL_COST = 0.010
HELLO = {"model": "chat", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 10}


@pytest.fixture
def upstream(loopback: None) -> Iterator[FakeOpenAI]:
    yield from serve(FakeOpenAI())


@pytest.fixture
def tenant(admin_api: Api, upstream: FakeOpenAI) -> str:
    status, body, _ = admin_api("POST", "/admin/tenants", {"name": "acme"})
    assert status == 201
    base = f"/admin/tenants/{body['id']}"
    credential = {"provider": "openai_compatible", "api_key": "sk-budget-test", "base_url": upstream.url}
    assert admin_api("PUT", f"{base}/credentials/llm", credential)[0] == 200
    alias = {
        "alias": "chat",
        "provider": "openai_compatible",
        "model_id": "local-model",
        "credential": "llm",
        "pricing": PRICING,
    }
    assert admin_api("POST", f"{base}/models", alias)[0] == 201
    return str(body["id"])


def _budget(admin_api: Api, tenant: str, limit: float, **fields: Any) -> dict[str, Any]:
    body = {"monthly_limit_usd": limit, "warn_at": [], "hard": True} | fields
    status, answer, _ = admin_api("PUT", f"/admin/tenants/{tenant}/budget", body)
    assert status == 200, answer
    return answer


def _usage(admin_api: Api, tenant: str, group_by: str = "model") -> dict[str, Any]:
    status, body = _usage_query(tenant, group_by=group_by)
    assert status == 200, body
    return body


def _usage_query(tenant: str, **query: str) -> tuple[int, dict[str, Any]]:
    handler = load_handler("admin")
    event = api_event("GET", f"/admin/tenants/{tenant}/usage", query=query or None, authorizer=_platform())
    response = handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def _platform() -> dict[str, str]:
    return {
        "principal": "platform_admin",
        "tenant_id": "",
        "key_id": "platform-admin",
        "role": "platform_admin",
    }


def _chat(gateway: Gateway, tenant: str, body: dict[str, Any] = HELLO, key_id: str = "key_test"):  # type: ignore[no-untyped-def]
    status, raw, headers = gateway("/v1/chat/completions", body, tenant_context(tenant, "developer", key_id))
    return status, json.loads(raw) if not raw.startswith("data:") else raw, headers


# Metering


def test_a_call_is_metered_with_the_providers_tokens_at_the_alias_price(
    admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    status, _, headers = _chat(gateway, tenant)

    usage = _usage(admin_api, tenant)
    assert status == 200
    assert headers["x-byom-cost-usd"] == "0.010000"
    assert usage["total"] | {"avg_latency_ms": None} == {
        "requests": 1,
        "input_tokens": 6,
        "output_tokens": 2,
        "cached_tokens": 0,
        "cost_usd": CALL_COST,
        "errors": 0,
        "fallbacks": 0,
        "cache_hits": 0,
        "avg_latency_ms": None,
    }
    assert [item["model"] for item in usage["items"]] == ["chat"]


@pytest.fixture
def smart(admin_api: Api, tenant: str) -> str:
    """An alias that falls back to `chat` on the same upstream."""
    alias = {
        "alias": "smart",
        "provider": "openai_compatible",
        "model_id": "smart-model",
        "credential": "llm",
        "pricing": PRICING,
        "fallbacks": ["chat"],
    }
    assert admin_api("POST", f"/admin/tenants/{tenant}/models", alias)[0] == 201
    return "smart"


def test_an_alias_whose_fallback_answered_shows_its_failure_as_an_error_at_no_cost(
    admin_api: Api, gateway: Gateway, tenant: str, upstream: FakeOpenAI, smart: str
) -> None:
    upstream.fail(1, 401, "Incorrect API key provided")

    status, _, headers = _chat(gateway, tenant, HELLO | {"model": smart})

    rows = {item["model"]: item for item in _usage(admin_api, tenant)["items"]}
    assert (status, headers["x-byom-cost-usd"]) == (200, "0.010000")
    assert {name: rows["smart"][name] for name in ("requests", "errors", "fallbacks", "cost_usd")} == {
        "requests": 0,
        "errors": 1,
        "fallbacks": 1,
        "cost_usd": 0,
    }
    assert (rows["chat"]["requests"], rows["chat"]["errors"], rows["chat"]["cost_usd"]) == (1, 0, CALL_COST)


def test_a_failure_a_fallback_covered_is_an_error_of_the_month_the_key_and_the_day(
    admin_api: Api, gateway: Gateway, tenant: str, upstream: FakeOpenAI, smart: str
) -> None:
    upstream.fail(1, 401, "Incorrect API key provided")

    _chat(gateway, tenant, HELLO | {"model": smart})

    by_key, by_day = _usage(admin_api, tenant, "key"), _usage(admin_api, tenant, "day")
    counted = [by_key["total"], *by_key["items"], *by_day["items"]]
    assert [(row["requests"], row["errors"], row["fallbacks"], row["cost_usd"]) for row in counted] == [
        (1, 1, 1, CALL_COST)
    ] * 3


def test_a_stream_is_metered_with_the_providers_tokens(admin_api: Api, gateway: Gateway, tenant: str) -> None:
    status, _, headers = _chat(gateway, tenant, HELLO | {"stream": True})

    total = _usage(admin_api, tenant)["total"]
    # A stream is settled when it ends: its cost is not known when its headers are sent.
    assert (status, "x-byom-cost-usd" in headers) == (200, False)
    assert (total["requests"], total["input_tokens"], total["output_tokens"], total["cost_usd"]) == (
        1,
        6,
        2,
        0.01,
    )


def test_the_same_request_id_is_metered_once(admin_api: Api, tenant: str) -> None:
    handler = load_handler("gateway")
    event = api_event(
        "POST", "/v1/chat/completions", body=HELLO, authorizer=tenant_context(tenant, "developer")
    )

    first = handler(event, LambdaContext())
    again = handler(event, LambdaContext())

    assert (first["statusCode"], again["statusCode"]) == (200, 200)
    assert _usage(admin_api, tenant)["total"]["requests"] == 1


def test_a_replayed_request_under_a_hard_budget_is_metered_once_and_holds_nothing(
    admin_api: Api, tenant: str
) -> None:
    _budget(admin_api, tenant, 1)
    handler = load_handler("gateway")
    event = api_event(
        "POST", "/v1/chat/completions", body=HELLO, authorizer=tenant_context(tenant, "developer")
    )

    statuses = [handler(event, LambdaContext())["statusCode"] for _ in range(2)]

    budget = _usage(admin_api, tenant)["budget"]
    assert statuses == [200, 200]
    assert (budget["spent_usd"], budget["reserved_usd"]) == (CALL_COST, 0)


def test_usage_groups_by_key_and_day_add_up_to_the_total(
    admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    for key_id in ("key_a", "key_b", "key_b"):
        assert _chat(gateway, tenant, key_id=key_id)[0] == 200

    by_key = _usage(admin_api, tenant, "key")
    by_day = _usage(admin_api, tenant, "day")

    assert [(i["key"], i["requests"]) for i in by_key["items"]] == [("key_a", 1), ("key_b", 2)]
    assert sum(i["cost_usd"] for i in by_day["items"]) == pytest.approx(by_day["total"]["cost_usd"])
    assert by_day["total"]["requests"] == 3


def test_a_viewer_reads_its_tenants_usage_on_v1(admin_api: Api, gateway: Gateway, tenant: str) -> None:
    _chat(gateway, tenant)
    handler = load_handler("gateway")
    event = api_event("GET", "/v1/usage", authorizer=tenant_context(tenant, "viewer"))

    response = handler(event, LambdaContext())

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["total"]["requests"] == 1


@pytest.mark.parametrize(
    ("query", "param"), [({"month": "2026-13"}, "month"), ({"group_by": "user"}, "group_by")]
)
def test_a_bad_usage_query_is_a_400_naming_the_parameter(
    admin_api: Api, tenant: str, query: dict[str, str], param: str
) -> None:
    status, body = _usage_query(tenant, **query)

    assert (status, body["error"]["param"]) == (400, param)


# Hard budgets


def test_a_hard_budget_refuses_the_call_that_could_exceed_it_without_calling_the_provider(
    admin_api: Api, gateway: Gateway, tenant: str, upstream: FakeOpenAI
) -> None:
    _budget(admin_api, tenant, 0.10)
    answers = [_chat(gateway, tenant) for _ in range(8)]

    statuses = [status for status, _, _ in answers]
    usage = _usage(admin_api, tenant)
    # $0.100 left, each call reserves $0.057 and spends $0.010: five fit, the sixth would not.
    assert statuses == [200] * 5 + [429] * 3
    assert answers[5][1]["error"]["code"] == "insufficient_quota"
    assert answers[5][1]["error"]["type"] == "insufficient_quota"
    assert "$0.050000 remaining" in answers[5][1]["error"]["message"]
    assert len(upstream.requests) == 5
    assert usage["budget"]["spent_usd"] == pytest.approx(0.05)
    assert usage["budget"]["reserved_usd"] == 0
    assert usage["budget"]["remaining_usd"] == pytest.approx(0.05)


def test_a_request_without_max_tokens_is_capped_to_its_reservation(
    admin_api: Api, gateway: Gateway, tenant: str, upstream: FakeOpenAI
) -> None:
    _budget(admin_api, tenant, 100)
    body = {key: value for key, value in HELLO.items() if key != "max_tokens"}

    assert _chat(gateway, tenant, body)[0] == 200
    assert upstream.requests[-1]["body"]["max_tokens"] == 4096


def test_a_soft_budget_never_refuses(admin_api: Api, gateway: Gateway, tenant: str) -> None:
    _budget(admin_api, tenant, 0.01, hard=False)

    assert [_chat(gateway, tenant)[0] for _ in range(3)] == [200, 200, 200]
    assert _usage(admin_api, tenant)["budget"]["spent_usd"] == pytest.approx(0.03)


def test_a_key_limit_refuses_that_key_while_others_go_on(
    admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    status, key, _ = admin_api("POST", f"/admin/tenants/{tenant}/keys", {"name": "intern"})
    assert status == 201
    _budget(admin_api, tenant, 10, key_limits={key["id"]: 0.06})

    limited = [_chat(gateway, tenant, key_id=key["id"])[0] for _ in range(2)]
    other = _chat(gateway, tenant, key_id="key_other")

    assert (limited, other[0]) == ([200, 429], 200)
    assert "this API key's" in _chat(gateway, tenant, key_id=key["id"])[1]["error"]["message"]


def test_a_provider_failure_releases_the_reservation_and_counts_an_error(
    admin_api: Api, gateway: Gateway, tenant: str, upstream: FakeOpenAI
) -> None:
    _budget(admin_api, tenant, 1)
    upstream.fail(3, 500, "upstream exploded")

    status, _, _ = _chat(gateway, tenant)

    usage = _usage(admin_api, tenant)
    assert status == 502
    assert (usage["total"]["errors"], usage["total"]["requests"]) == (1, 0)
    assert (usage["budget"]["reserved_usd"], usage["budget"]["spent_usd"]) == (0, 0)
    assert usage["budget"]["remaining_usd"] == 1


def test_a_crashed_calls_hold_is_swept_once_it_expires(
    admin_api: Api, gateway: Gateway, tenant: str, aws: dict[str, str]
) -> None:
    _budget(admin_api, tenant, 0.10)
    usage = UsageTable(boto3.resource("dynamodb").Table(aws["USAGE_TABLE"]))
    month = _usage(admin_api, tenant)["month"]
    # A function that reserved everything and died: its hold expired a second ago.
    usage.reserve(Hold(tenant, month, "crashed", "key_test", 100_000, 100_000, None, expires_at=1))

    status, _, _ = _chat(gateway, tenant)

    assert status == 200
    assert _usage(admin_api, tenant)["budget"]["reserved_usd"] == 0


def test_a_dry_run_estimates_without_calling_the_provider_or_spending(
    admin_api: Api, tenant: str, upstream: FakeOpenAI
) -> None:
    _budget(admin_api, tenant, 0.05)
    handler = load_handler("gateway")
    event = api_event(
        "POST", "/v1/chat/completions", body=HELLO, authorizer=tenant_context(tenant, "developer")
    )
    event["headers"]["x-byom-dry-run"] = "true"
    event["multiValueHeaders"]["x-byom-dry-run"] = ["true"]

    response = handler(event, LambdaContext())

    body = json.loads(response["body"])
    assert response["statusCode"] == 200
    assert body["object"] == "byom.dry_run"
    assert body["estimate"] == {"max_input_tokens": 37, "max_output_tokens": 10, "max_cost_usd": 0.057}
    assert body["budget"] == {"remaining_usd": 0.05, "would_admit": False}
    assert upstream.requests == []
    assert _usage(admin_api, tenant)["total"]["requests"] == 0


# Thresholds, alarms


def test_each_warn_at_threshold_is_announced_once_on_eventbridge(
    admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="budget-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events")
    events.put_rule(Name="budgets", EventPattern=json.dumps({"source": ["byom"]}))
    events.put_targets(Rule="budgets", Targets=[{"Id": "q", "Arn": queue_arn}])
    _budget(admin_api, tenant, 0.04, hard=False, warn_at=[0.5, 0.75])

    for _ in range(6):  # $0.01 each: 25 %, 50 %, 75 %, 100 %, 125 %, 150 %
        assert _chat(gateway, tenant)[0] == 200

    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    received = [json.loads(m["Body"]) for m in messages]
    assert [(e["detail-type"], e["detail"]["threshold"]) for e in received] == [
        ("BudgetThresholdCrossed", 0.5),
        ("BudgetThresholdCrossed", 0.75),
    ]
    assert received[0]["detail"]["tenant_id"] == tenant
    assert _usage(admin_api, tenant)["budget"]["warned"] == [0.5, 0.75]


def test_a_budget_creates_the_tenants_spend_alarm_and_deleting_it_removes_it(
    admin_api: Api, tenant: str
) -> None:
    _budget(admin_api, tenant, 25)
    cloudwatch = boto3.client("cloudwatch")
    alarm = cloudwatch.describe_alarms(AlarmNamePrefix="byom-test-tenant-spend-")["MetricAlarms"]

    assert [(a["AlarmName"], a["MetricName"], a["Threshold"]) for a in alarm] == [
        (f"byom-test-tenant-spend-{tenant}", "MonthToDateSpendUSD", 25.0)
    ]
    assert admin_api("DELETE", f"/admin/tenants/{tenant}/budget")[0] == 200
    assert cloudwatch.describe_alarms(AlarmNamePrefix="byom-test-tenant-spend-")["MetricAlarms"] == []


def test_a_budget_naming_an_unknown_key_is_a_400(admin_api: Api, tenant: str) -> None:
    status, body, _ = admin_api(
        "PUT", f"/admin/tenants/{tenant}/budget", {"monthly_limit_usd": 5, "key_limits": {"key_nope": 1}}
    )

    assert (status, body["error"]["param"]) == (400, "key_limits")


def test_another_tenants_budget_is_a_404(admin_api: Api, tenant: str) -> None:
    status, _, _ = admin_api(
        "PUT",
        f"/admin/tenants/{tenant}/budget",
        {"monthly_limit_usd": 5},
        as_=tenant_context("tnt_someone_else", "admin"),
    )

    assert status == 404


def test_an_alias_with_no_known_price_is_refused_without_pricing(admin_api: Api, tenant: str) -> None:
    alias = {"alias": "mystery", "provider": "bedrock", "model_id": "acme.mystery-model-v1"}

    status, body, _ = admin_api("POST", f"/admin/tenants/{tenant}/models", alias)

    assert (status, body["error"]["param"]) == (400, "pricing")


# The ledger's conditional writes, directly


def _ledger(usage: UsageTable, month: str) -> Ledger:
    """The tenant's ledger, through the usage report's read of the month."""
    return ledger_of(next((i for i in usage.month_items("tnt_a", month) if i["sk"] == TOTAL), None))


def _state(usage: UsageTable, month: str) -> BudgetState:
    """What a call reads of money: the budget and the month's ledger."""
    return BudgetState(usage.get_budget("tnt_a"), _ledger(usage, month))


@pytest.fixture
def served_usage(monkeypatch: pytest.MonkeyPatch) -> Iterator[UsageTable]:
    """The usage table on a moto server that handles one request at a time, as DynamoDB applies
    one conditional write to an item at a time: concurrent callers really race on it."""
    server = SerializedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    on_server: dict[str, Any] = {
        "endpoint_url": f"http://{host}:{port}",
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    resource = boto3.resource("dynamodb", **on_server)
    table = resource.create_table(
        TableName=f"usage-{uuid.uuid4().hex}",  # the server's state outlives it
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    # Its transactions through a low-level client of the same server (the items are typed).
    yield UsageTable(table, boto3.client("dynamodb", **on_server))
    server.stop()


def reserve_at_once(usage: UsageTable, holds: list[Hold]) -> tuple[list[str], list[int | None]]:
    """The holds reserved by one thread each, all at once: the request ids admitted, and what
    remained by each refusal."""
    admitted: list[str] = []
    refused: list[int | None] = []

    def reserve(hold: Hold) -> None:
        try:
            usage.reserve(hold)
            admitted.append(hold.request_id)
        except ReservationRefused as error:
            refused.append(error.remaining_micros)

    threads = [threading.Thread(target=reserve, args=(hold,)) for hold in holds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return admitted, refused


def test_fifty_concurrent_reservations_admit_exactly_what_the_limit_holds(served_usage: UsageTable) -> None:
    holds = [Hold("tnt_a", "2026-11", f"r{n}", "key_1", 70_000, 1_000_000, None, 10**10) for n in range(50)]

    admitted, refused = reserve_at_once(served_usage, holds)

    ledger = _ledger(served_usage, "2026-11")
    assert (len(admitted), len(refused)) == (14, 36)  # 14 x 70,000 <= 1,000,000 < 15 x 70,000
    assert (ledger.committed_micros, ledger.remaining_micros) == (980_000, 20_000)
    assert set(refused) == {20_000}


def test_settling_twice_counts_once_and_a_swept_hold_is_not_refunded_twice(served_usage: UsageTable) -> None:
    hold = Hold("tnt_a", "2026-11", "r1", "key_1", 50_000, 1_000_000, None, expires_at=100)
    served_usage.reserve(hold)
    assert served_usage.sweep("tnt_a", "2026-11", now=101) == 1
    metered = Metered("tnt_a", "2026-11", "2026-11-23", "r1", "key_1", "chat", 6, 2, 10_000)

    first, again = served_usage.settle(metered, hold).counted, served_usage.settle(metered, hold).counted

    ledger = _ledger(served_usage, "2026-11")
    assert (first, again) == (True, False)
    assert (ledger.spent_micros, ledger.committed_micros, ledger.remaining_micros) == (
        10_000,
        10_000,
        990_000,
    )


def test_a_new_month_starts_from_the_full_budget(served_usage: UsageTable) -> None:
    budget = Budget(tenant_id="tnt_a", monthly_limit_usd=0.1, warn_at=[], hard=True, updated_at=0)
    served_usage.put_budget(budget, "2026-01", {}, 100_000)
    clock = {"now": calendar.timegm((2026, 1, 31, 23, 59, 0))}
    price = Pricing(**PRICING)

    def spend_the_whole_budget() -> None:
        state = _state(served_usage, month_of(clock["now"]))
        meter = CallMeter(
            served_usage, None, None, "tnt_a", "k", f"r{clock['now']}", state, lambda: clock["now"]
        )
        with meter:
            meter.admit(Estimate(50, 25, 100_000))
            meter.succeeded("chat", Usage(50, 25), price, latency_ms=1)  # 100,000 micro-dollars

    spend_the_whole_budget()
    clock["now"] += 30
    with pytest.raises(BudgetExceeded):
        spend_the_whole_budget()
    clock["now"] = calendar.timegm((2026, 2, 1, 0, 0, 1))
    spend_the_whole_budget()

    assert _ledger(served_usage, "2026-02").spent_micros == 100_000


def test_a_threshold_reached_by_overlapping_calls_is_announced_by_the_one_that_reaches_it(
    served_usage: UsageTable,
) -> None:
    budget = Budget(tenant_id="tnt_a", monthly_limit_usd=1, warn_at=[0.5, 0.8], hard=True, updated_at=0)
    served_usage.put_budget(budget, "2026-11", {}, 1_000_000)
    now = calendar.timegm((2026, 11, 23, 12, 0, 0))
    sent: list[float] = []

    class Notifier:
        def budget_threshold_crossed(self, threshold: Any) -> None:
            sent.append(threshold.fraction)

    def meter(request_id: str) -> CallMeter:
        state = _state(served_usage, "2026-11")
        return CallMeter(served_usage, Notifier(), None, "tnt_a", "k", request_id, state, lambda: now)

    # Both read the ledger at $0, both reserve, then each spends $0.45: the second reaches 50 % and
    # 80 % though neither saw the other's spend when it started.
    first, second = meter("r1"), meter("r2")
    for call in (first, second):
        call.admit(Estimate(0, 450, 450_000))
    for call in (first, second):
        with call:
            call.succeeded("chat", Usage(0, 225), Pricing(**PRICING), latency_ms=1)

    ledger = _ledger(served_usage, "2026-11")
    assert (ledger.spent_micros, ledger.warned) == (900_000, frozenset({"0.5", "0.8"}))
    assert sent == [0.5, 0.8]


# A cancelled stream


class _CancelledStream:
    """A provider whose stream is cut off part-way by something that is not a provider error."""

    def stream(self, request: ChatRequest, target: Target, timeout: float | None = None) -> Iterator[Any]:
        yield StreamDelta({"role": "assistant", "content": "Hel"})
        raise KeyboardInterrupt


def test_a_cancelled_stream_releases_its_reservation(served_usage: UsageTable) -> None:
    models = FakeModels()
    models.create(
        ModelAlias(
            tenant_id="tnt_a",
            alias="chat",
            provider="openai_compatible",
            model_id="local-model",
            pricing=Pricing(**PRICING),
            created_at=0,
        )
    )
    served_usage.put_budget(
        Budget(tenant_id="tnt_a", monthly_limit_usd=1, hard=True, updated_at=0), "2026-11", {}, 1_000_000
    )
    store = invoke.InvokeStore(
        calls=FakeCalls(models, state=lambda _tenant, month: _state(served_usage, month)),
        providers={"openai_compatible": _CancelledStream()},
        now=lambda: calendar.timegm((2026, 11, 23, 12, 0, 0)),
        usage=served_usage,
    )
    request = ChatRequest.model_validate(HELLO | {"stream": True})

    answer = invoke.chat_stream(
        store, invoke.Call(Principal("key_1", "developer", "tnt_a"), "req-cancel"), request
    )
    with pytest.raises(KeyboardInterrupt):
        list(answer.events)

    ledger = _ledger(served_usage, "2026-11")
    assert (ledger.committed_micros, ledger.remaining_micros, ledger.spent_micros) == (0, 1_000_000, 0)
