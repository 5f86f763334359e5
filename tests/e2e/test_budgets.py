"""Metering and hard budgets end to end: the openai SDK against the local stack, with an upstream in
this process that bills known token counts and counts every call it serves (SPEC §4.2, §4.3, §5)."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import boto3
import httpx2
import openai
import pytest

from tests.e2e.conftest import LocalStack, client_for
from tests.integration.fake_openai import FakeOpenAI, FakeOpenAIHandler, serve

pytestmark = pytest.mark.e2e

# 1 USD per 1K input tokens and 2 USD per 1K output tokens: a token is 1,000 or 2,000 micro-dollars.
PRICE = {"input_per_1k_usd": 1.0, "output_per_1k_usd": 2.0}
# Output tokens only, 1 USD per 1K: a call answering 100 tokens costs exactly 0.1 USD.
OUTPUT_ONLY_PRICE = {"input_per_1k_usd": 0.0, "output_per_1k_usd": 1.0}
FAILING_MODEL = "fail-500"
DRY_RUN = {"x-byom-dry-run": "true"}
# The gateway's bound on a prompt's tokens (README, byom/logic/money.py): its UTF-8 bytes, plus 16
# per message and 16 per request.
MESSAGE_OVERHEAD, REQUEST_OVERHEAD = 16, 16


def micros(usd: float | str) -> int:
    return int((Decimal(str(usd)) * 1_000_000).to_integral_value())


def input_bound(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"].encode()) + MESSAGE_OVERHEAD for m in messages) + REQUEST_OVERHEAD


# The upstream


@dataclass(frozen=True)
class Served:
    model: str
    prompt_tokens: int
    completion_tokens: int
    max_tokens: int | None
    stream: bool


class MeteredUpstream(FakeOpenAI):
    """fake_openai's upstream, billing each chat as a provider would for known counts: the prompt's
    UTF-8 bytes as input tokens and every output token it was allowed (`max_tokens`, else 50).
    Models named `fail-500*` always answer 500. `served` lists the chats it answered, `attempts`
    counts every chat request it received per model."""

    def __init__(self) -> None:
        super().__init__()
        self.RequestHandlerClass = _MeteredHandler
        self.lock = threading.Lock()
        self.served: list[Served] = []
        self.attempts: dict[str, int] = {}

    def served_for(self, model: str) -> list[Served]:
        with self.lock:
            return [s for s in self.served if s.model == model]

    def attempts_for(self, model: str) -> int:
        with self.lock:
            return self.attempts.get(model, 0)


class _MeteredHandler(FakeOpenAIHandler):
    server: MeteredUpstream

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = body["model"]
        with self.server.lock:
            self.server.attempts[model] = self.server.attempts.get(model, 0) + 1
        if model.startswith(FAILING_MODEL):
            return self._error(500, "The upstream had an internal error", "server_error")
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        usage = {
            "prompt_tokens": sum(len(m["content"].encode()) for m in body["messages"]),
            "completion_tokens": cap or 50,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        stream = bool(body.get("stream"))
        with self.server.lock:
            self.server.served.append(
                Served(model, usage["prompt_tokens"], usage["completion_tokens"], cap, stream)
            )
        head = {"id": "chatcmpl-upstream", "created": 1, "model": model}
        if stream:
            deltas = [({"role": "assistant", "content": ""}, None), ({"content": "ok"}, None), ({}, "stop")]
            chunks = [
                head
                | {
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": d, "finish_reason": f}],
                }
                for d, f in deltas
            ]
            # As OpenAI does: the usage chunk only for a caller that asked for it.
            if (body.get("stream_options") or {}).get("include_usage"):
                chunks.append(head | {"object": "chat.completion.chunk", "choices": [], "usage": usage})
            events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return self._send(200, events.encode(), "text/event-stream")
        message = {"role": "assistant", "content": "ok"}
        answer = head | {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage,
        }
        return self._send(200, json.dumps(answer).encode())


@pytest.fixture(scope="module")
def upstream() -> Iterator[MeteredUpstream]:
    yield from cast(Iterator[MeteredUpstream], serve(MeteredUpstream()))


# Tenants


@dataclass
class Tenant:
    id: str
    keys: dict[str, dict[str, Any]]
    stack: LocalStack
    admin: httpx2.Client

    def sdk(self, key: str) -> openai.OpenAI:
        # No SDK retries: a 429 must reach the test as it was answered.
        return openai.OpenAI(
            base_url=f"{self.stack.url}/v1", api_key=self.keys[key]["key"], max_retries=0, timeout=60
        )

    def key_id(self, key: str) -> str:
        return str(self.keys[key]["id"])

    def put_budget(self, **budget: Any) -> None:
        answer = self.admin.put(f"/admin/tenants/{self.id}/budget", json=budget)
        assert answer.status_code == 200, answer.text

    def usage(self, group_by: str = "model") -> dict[str, Any]:
        answer = self.admin.get(f"/admin/tenants/{self.id}/usage", params={"group_by": group_by})
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def new_tenant(
    local_stack: LocalStack, admin: httpx2.Client, upstream: MeteredUpstream
) -> Callable[..., Tenant]:
    """A tenant whose credential `up` points at the upstream, with these aliases (each on a model id
    of its own, so the upstream's counts are this tenant's) and keys (name: role)."""

    def create(aliases: dict[str, dict[str, Any]], keys: dict[str, str] | None = None) -> Tenant:
        tenant = admin.post("/admin/tenants", json={"name": "budgeted"}).json()
        base = f"/admin/tenants/{tenant['id']}"
        credential = {"provider": "openai_compatible", "base_url": upstream.url, "api_key": "sk-upstream"}
        assert admin.put(f"{base}/credentials/up", json=credential).status_code == 200
        for alias, settings in aliases.items():
            body = {"alias": alias, "provider": "openai_compatible", "credential": "up", **settings}
            created = admin.post(f"{base}/models", json=body)
            assert created.status_code == 201, created.text
        made = {}
        for name, role in (keys or {"dev": "developer"}).items():
            answer = admin.post(f"{base}/keys", json={"name": name, "role": role})
            assert answer.status_code == 201, answer.text
            made[name] = answer.json()
        return Tenant(tenant["id"], made, local_stack, admin)

    return create


def unique(name: str) -> str:
    """A model id no other test sends upstream."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def cost_header(raw: Any) -> int:
    return micros(raw.headers["x-byom-cost-usd"])


# 1. Concurrency cannot overspend

# The local stack serves these 40 calls side by side, as separate Lambda execution environments
# would, so their reservations race; the race is also run against DynamoDB in
# tests/integration/test_budgets.py.

BURST = 40
BURST_MESSAGES = [
    {"role": "user", "content": "Summarise the quarterly report in one line and keep it short, please"}
]


@pytest.mark.parametrize("ledger_shards", [1, 8])
def test_concurrent_calls_never_push_spend_past_a_hard_budget(
    new_tenant: Callable[..., Tenant], upstream: MeteredUpstream, ledger_shards: int
) -> None:
    """On eight ledger shards each call holds more than a shard's share ($0.125), so each borrows
    from the others: the same three fit."""
    model = unique("burst")
    tenant = new_tenant({"burst": {"model_id": model, "pricing": PRICE}})
    tenant.put_budget(monthly_limit_usd=1.0, hard=True, ledger_shards=ledger_shards)
    sdk = tenant.sdk("dev")
    prompt_bytes = len(BURST_MESSAGES[0]["content"].encode())
    hold = input_bound(BURST_MESSAGES) * 1000 + 100 * 2000
    cost = prompt_bytes * 1000 + 100 * 2000
    # Whatever the interleaving exactly three calls fit: three holds fit in $1, and a fourth never
    # does, not even once the first three settled at their (lower) real cost.
    assert (hold, cost) == (300_000, 268_000)
    assert 3 * hold <= 1_000_000 < 3 * cost + hold
    start = threading.Barrier(BURST)

    def call(_: int) -> tuple[str, Any]:
        start.wait()
        try:
            raw = sdk.chat.completions.with_raw_response.create(
                model="burst",
                messages=BURST_MESSAGES,  # type: ignore[arg-type]
                max_tokens=100,
            )
        except openai.RateLimitError as refused:
            return "refused", refused
        return "ok", raw

    with ThreadPoolExecutor(BURST) as pool:
        outcomes = list(pool.map(call, range(BURST)))

    successes = [raw for kind, raw in outcomes if kind == "ok"]
    refusals = [error for kind, error in outcomes if kind == "refused"]
    served = upstream.served_for(model)
    usage = tenant.usage()
    assert (len(successes), len(refusals)) == (3, BURST - 3)
    assert upstream.attempts_for(model) == len(served) == len(successes)
    for refused in refusals:
        assert refused.status_code == 429
        assert refused.code == "insufficient_quota"
        assert refused.body["type"] == "insufficient_quota"  # type: ignore[index]
        assert re.search(r"\$\d+\.\d{6} remaining", refused.message)
    assert sum(cost_header(raw) for raw in successes) == 3 * cost
    assert [raw.parse().usage.completion_tokens for raw in successes] == [100] * 3
    total, budget = usage["total"], usage["budget"]
    assert total["requests"] == len(successes)
    assert total["input_tokens"] == sum(s.prompt_tokens for s in served)
    assert total["output_tokens"] == sum(s.completion_tokens for s in served)
    assert total["errors"] == 0
    assert micros(total["cost_usd"]) == micros(budget["spent_usd"]) == 3 * cost <= 1_000_000
    assert budget["reserved_usd"] == 0
    assert micros(budget["remaining_usd"]) == 1_000_000 - 3 * cost


def test_a_refusal_names_what_remains_of_the_budget(
    new_tenant: Callable[..., Tenant], upstream: MeteredUpstream
) -> None:
    model = unique("refusal")
    tenant = new_tenant({"chat": {"model_id": model, "pricing": OUTPUT_ONLY_PRICE}})
    tenant.put_budget(monthly_limit_usd=0.25, hard=True)
    sdk = tenant.sdk("dev")
    messages: Any = [{"role": "user", "content": "hi"}]
    for _ in range(2):
        sdk.chat.completions.create(model="chat", messages=messages, max_tokens=100)

    with pytest.raises(openai.RateLimitError) as raised:
        sdk.chat.completions.create(model="chat", messages=messages, max_tokens=100)

    assert raised.value.code == "insufficient_quota"
    assert "$0.050000 remaining" in raised.value.message
    assert upstream.attempts_for(model) == 2


# 2. Streams


STREAM_MESSAGES: Any = [{"role": "user", "content": "stream a short answer"}]


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_streamed_call_is_metered_with_the_upstreams_token_counts(
    new_tenant: Callable[..., Tenant], upstream: MeteredUpstream, include_usage: bool
) -> None:
    model = unique("stream")
    tenant = new_tenant({"streamer": {"model_id": model, "pricing": PRICE, "max_output_tokens": 40}})
    tenant.put_budget(monthly_limit_usd=5.0, hard=True)
    options: Any = {"stream_options": {"include_usage": True}} if include_usage else {}

    # No max_tokens: under a hard budget the alias's max_output_tokens bounds the answer.
    raw = tenant.sdk("dev").chat.completions.with_raw_response.create(
        model="streamer", messages=STREAM_MESSAGES, stream=True, **options
    )
    chunks: list[Any] = list(raw.parse())

    [served] = upstream.served_for(model)
    usage = tenant.usage()
    cost = served.prompt_tokens * 1000 + served.completion_tokens * 2000
    assert served.stream and served.max_tokens == 40
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ok"
    reported = [c.usage for c in chunks if c.usage is not None]
    if include_usage:
        assert [(u.prompt_tokens, u.completion_tokens) for u in reported] == [
            (served.prompt_tokens, served.completion_tokens)
        ]
    else:
        assert reported == []
    # Settled when the stream ends, after its headers went: a stream carries no cost header.
    assert "x-byom-cost-usd" not in raw.headers
    assert usage["total"]["requests"] == 1
    assert (usage["total"]["input_tokens"], usage["total"]["output_tokens"]) == (
        served.prompt_tokens,
        served.completion_tokens,
    )
    assert micros(usage["total"]["cost_usd"]) == micros(usage["budget"]["spent_usd"]) == cost
    assert usage["budget"]["reserved_usd"] == 0


# 3. Threshold events


@pytest.fixture
def budget_events(local_stack: LocalStack) -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """An EventBridge rule on the default bus of the stack's AWS emulation, matching the budget
    events of one tenant, with an SQS queue as its target; yields a reader of what it received."""
    aws = {
        "endpoint_url": local_stack.aws_url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    events, sqs = boto3.client("events", **aws), boto3.client("sqs", **aws)
    rules: list[str] = []

    def watch(tenant_id: str) -> Callable[[], list[dict[str, Any]]]:
        name = unique("budget-events")
        queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        pattern = {
            "source": ["byom"],
            "detail-type": ["BudgetThresholdCrossed"],
            "detail": {"tenant_id": [tenant_id]},
        }
        events.put_rule(Name=name, EventPattern=json.dumps(pattern), EventBusName="default")
        events.put_targets(Rule=name, EventBusName="default", Targets=[{"Id": "queue", "Arn": queue_arn}])
        rules.append(name)

        def received() -> list[dict[str, Any]]:
            bodies: list[dict[str, Any]] = []
            while True:
                answer = sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=300
                )
                if not answer.get("Messages"):
                    return bodies
                bodies += [json.loads(m["Body"]) for m in answer["Messages"]]

        return received

    yield watch  # type: ignore[misc]
    for name in rules:
        events.remove_targets(Rule=name, EventBusName="default", Ids=["queue"])
        events.delete_rule(Name=name, EventBusName="default")


def test_each_budget_threshold_is_announced_exactly_once(
    new_tenant: Callable[..., Tenant], budget_events: Callable[[str], Any], upstream: MeteredUpstream
) -> None:
    model = unique("thresholds")
    tenant = new_tenant({"chat": {"model_id": model, "pricing": OUTPUT_ONLY_PRICE}})
    tenant.put_budget(monthly_limit_usd=1.0, warn_at=[0.5, 0.8, 1.0], hard=True)
    received = budget_events(tenant.id)
    sdk = tenant.sdk("dev")
    messages: Any = [{"role": "user", "content": "spend a dime"}]

    # Ten calls of $0.10 each reach 50%, 80% and 100%, and every call past a threshold sees it
    # reached again; the eleventh is refused.
    for _ in range(10):
        sdk.chat.completions.create(model="chat", messages=messages, max_tokens=100)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="chat", messages=messages, max_tokens=100)

    events = received()
    usage = tenant.usage()
    assert upstream.attempts_for(model) == 10
    assert micros(usage["budget"]["spent_usd"]) == 1_000_000
    assert [(e["source"], e["detail-type"]) for e in events] == [("byom", "BudgetThresholdCrossed")] * 3
    details = sorted((e["detail"] for e in events), key=lambda d: d["threshold"])
    assert details == [
        {"tenant_id": tenant.id, "month": usage["month"], "threshold": t, "limit_usd": 1.0, "spent_usd": t}
        for t in (0.5, 0.8, 1.0)
    ]
    assert usage["budget"]["warned"] == [0.5, 0.8, 1.0]


# 4. Provider failures


def test_a_failed_provider_call_releases_its_reservation_and_counts_an_error(
    new_tenant: Callable[..., Tenant], upstream: MeteredUpstream
) -> None:
    good, down = unique("works"), unique(FAILING_MODEL)
    tenant = new_tenant(
        {"works": {"model_id": good, "pricing": PRICE}, "down": {"model_id": down, "pricing": PRICE}}
    )
    tenant.put_budget(monthly_limit_usd=1.0, hard=True)
    sdk = tenant.sdk("dev")
    messages: Any = [{"role": "user", "content": "hello"}]
    sdk.chat.completions.create(model="works", messages=messages, max_tokens=100)
    before = tenant.usage()

    # The hold ($0.437) is more than half the budget: a leaked one would show in what remains.
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.chat.completions.create(model="down", messages=messages, max_tokens=200)

    after = tenant.usage()
    response = raised.value.response
    assert raised.value.status_code >= 500
    assert response.headers["x-byom-error-source"] == "provider"
    assert upstream.attempts_for(down) == int(response.headers["x-byom-attempts"]) >= 1
    assert after["budget"]["reserved_usd"] == 0
    assert after["budget"]["spent_usd"] == before["budget"]["spent_usd"] > 0
    assert micros(after["budget"]["remaining_usd"]) == 1_000_000 - micros(before["budget"]["spent_usd"])
    assert (after["total"]["requests"], after["total"]["errors"]) == (1, 1)
    assert after["total"]["cost_usd"] == before["total"]["cost_usd"]
    [down_row] = [row for row in after["items"] if row["model"] == "down"]
    assert (down_row["requests"], down_row["errors"], down_row["cost_usd"]) == (0, 1, 0)


def test_a_meter_kept_in_the_backlog_is_settled_by_the_reconciler_exactly_once(
    new_tenant: Callable[..., Tenant], local_stack: LocalStack
) -> None:
    """What a call leaves when its settle fails after the provider answered (tests/integration/
    test_faults.py injects that fault): its meter on the backlog queue, drained by the reconciler."""
    from byom.dal.meter_backlog import to_message
    from byom.money import Metered, Pending

    tenant = new_tenant({"chat": {"model_id": unique("kept"), "pricing": PRICE}})
    month = time.strftime("%Y-%m", time.gmtime())
    metered = Metered(
        tenant.id,
        month,
        time.strftime("%Y-%m-%d", time.gmtime()),
        f"kept-{uuid.uuid4().hex}",
        tenant.key_id("dev"),
        "chat",
        input_tokens=6,
        output_tokens=2,
        cost_micros=10_000,
    )
    sqs = boto3.client(
        "sqs",
        endpoint_url=local_stack.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    (backlog,) = [url for url in sqs.list_queues()["QueueUrls"] if "MeteringBacklog" in url]
    for _ in range(2):  # delivered twice, counted once
        sqs.send_message(QueueUrl=backlog, MessageBody=to_message(Pending(metered)))

    deadline = time.monotonic() + 30
    while tenant.usage()["total"]["requests"] == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # the second delivery too

    total = tenant.usage()["total"]
    assert (total["requests"], total["input_tokens"], total["cost_usd"]) == (1, 6, 0.01)


# 5. Dry runs


def test_a_dry_run_answers_the_estimate_without_calling_the_provider(
    new_tenant: Callable[..., Tenant], upstream: MeteredUpstream
) -> None:
    model = unique("dry")
    tenant = new_tenant({"dry": {"model_id": model, "pricing": PRICE}})
    tenant.put_budget(monthly_limit_usd=1.0, hard=True)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]

    raw = tenant.sdk("dev").chat.completions.with_raw_response.create(
        model="dry",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=50,
        extra_headers=DRY_RUN,
    )

    answer = json.loads(raw.text)
    usage = tenant.usage()
    inputs = len("Be brief.") + len("hello") + 2 * MESSAGE_OVERHEAD + REQUEST_OVERHEAD
    assert raw.status_code == 200
    assert answer["object"] == "byom.dry_run"
    assert answer["estimate"]["max_input_tokens"] == inputs == input_bound(messages)
    assert answer["estimate"]["max_output_tokens"] == 50
    assert micros(answer["estimate"]["max_cost_usd"]) == inputs * 1000 + 50 * 2000
    assert answer["budget"] == {"remaining_usd": 1.0, "would_admit": True}
    assert upstream.attempts_for(model) == 0
    assert usage["total"]["requests"] == usage["total"]["errors"] == 0
    assert usage["budget"]["spent_usd"] == usage["budget"]["reserved_usd"] == 0


def test_a_dry_run_says_when_the_budget_would_refuse_the_call(
    new_tenant: Callable[..., Tenant], upstream: MeteredUpstream
) -> None:
    model = unique("dry-refused")
    tenant = new_tenant({"dry": {"model_id": model, "pricing": PRICE}})
    tenant.put_budget(monthly_limit_usd=1.0, hard=True)
    messages: Any = [{"role": "user", "content": "hello"}]

    raw = tenant.sdk("dev").chat.completions.with_raw_response.create(
        model="dry", messages=messages, max_tokens=1000, extra_headers=DRY_RUN
    )

    answer = json.loads(raw.text)
    assert raw.status_code == 200
    assert answer["estimate"]["max_cost_usd"] > 1.0
    assert answer["budget"] == {"remaining_usd": 1.0, "would_admit": False}
    assert upstream.attempts_for(model) == 0


@pytest.mark.parametrize(
    ("alias_cap", "max_tokens", "bound"), [(None, 77, 77), (123, None, 123), (None, None, 4096)]
)
def test_the_output_bound_is_max_tokens_else_the_alias_cap_else_4096(
    new_tenant: Callable[..., Tenant], alias_cap: int | None, max_tokens: int | None, bound: int
) -> None:
    settings = {"model_id": unique("bound"), "pricing": PRICE}
    tenant = new_tenant({"dry": settings | ({"max_output_tokens": alias_cap} if alias_cap else {})})
    tenant.put_budget(monthly_limit_usd=100.0, hard=True)
    limit: Any = {"max_tokens": max_tokens} if max_tokens else {}

    raw = tenant.sdk("dev").chat.completions.with_raw_response.create(
        model="dry", messages=[{"role": "user", "content": "hi"}], extra_headers=DRY_RUN, **limit
    )

    assert json.loads(raw.text)["estimate"]["max_output_tokens"] == bound


# 6. Key limits


def test_a_key_over_its_own_limit_is_refused_while_another_key_is_admitted(
    new_tenant: Callable[..., Tenant], upstream: MeteredUpstream
) -> None:
    model = unique("keys")
    tenant = new_tenant(
        {"chat": {"model_id": model, "pricing": OUTPUT_ONLY_PRICE}},
        keys={"capped": "developer", "free": "developer"},
    )
    tenant.put_budget(monthly_limit_usd=1.0, hard=True, key_limits={tenant.key_id("capped"): 0.25})
    capped, free = tenant.sdk("capped"), tenant.sdk("free")
    messages: Any = [{"role": "user", "content": "a dime"}]
    for _ in range(2):
        capped.chat.completions.create(model="chat", messages=messages, max_tokens=100)

    with pytest.raises(openai.RateLimitError) as raised:
        capped.chat.completions.create(model="chat", messages=messages, max_tokens=100)
    admitted = free.chat.completions.with_raw_response.create(model="chat", messages=messages, max_tokens=100)

    by_key = {row["key"]: row for row in tenant.usage("key")["items"]}
    assert raised.value.code == "insufficient_quota"
    assert "this API key's" in raised.value.message
    assert "$0.050000 remaining" in raised.value.message
    assert admitted.status_code == 200 and cost_header(admitted) == 100_000
    assert upstream.attempts_for(model) == 3
    assert (by_key[tenant.key_id("capped")]["requests"], by_key[tenant.key_id("free")]["requests"]) == (2, 1)
    assert micros(by_key[tenant.key_id("capped")]["cost_usd"]) == 200_000


# 7. Usage reports


@pytest.fixture(scope="module")
def used_tenant(new_tenant: Callable[..., Tenant]) -> Tenant:
    """A tenant without a budget, with calls by two keys on two aliases, and one failed call."""
    tenant = new_tenant(
        {
            "cheap": {"model_id": unique("cheap"), "pricing": OUTPUT_ONLY_PRICE},
            "dear": {"model_id": unique("dear"), "pricing": PRICE},
            "down": {"model_id": unique(FAILING_MODEL), "pricing": PRICE},
        },
        keys={"one": "developer", "two": "admin", "viewer": "viewer"},
    )
    one, two = tenant.sdk("one"), tenant.sdk("two")
    messages: Any = [{"role": "user", "content": "count me"}]
    one.chat.completions.create(model="cheap", messages=messages, max_tokens=10)
    one.chat.completions.create(model="dear", messages=messages, max_tokens=20)
    two.chat.completions.create(model="cheap", messages=messages, max_tokens=30)
    with pytest.raises(openai.APIStatusError):
        two.chat.completions.create(model="down", messages=messages, max_tokens=30)
    return tenant


COUNTS = ("requests", "input_tokens", "output_tokens", "errors", "cache_hits")


@pytest.mark.parametrize("group_by", ["key", "day", "model"])
def test_a_viewer_reads_its_tenants_usage_and_the_groups_add_up_to_the_total(
    used_tenant: Tenant, group_by: str
) -> None:
    viewer = client_for(used_tenant.stack, used_tenant.keys["viewer"]["key"])

    answer = viewer.get("/v1/usage", params={"group_by": group_by})

    assert answer.status_code == 200, answer.text
    usage = answer.json()
    total, items = usage["total"], usage["items"]
    assert (usage["object"], usage["group_by"], usage["budget"]) == ("usage", group_by, None)
    assert total == used_tenant.usage(group_by)["total"]
    assert (total["requests"], total["errors"], total["output_tokens"]) == (3, 1, 60)
    assert micros(total["cost_usd"]) == 10 * 1000 + (8 * 1000 + 20 * 2000) + 30 * 1000
    for name in COUNTS:
        assert sum(row[name] for row in items) == total[name]
    assert sum(micros(row["cost_usd"]) for row in items) == micros(total["cost_usd"])
    expected_groups = {
        "key": {used_tenant.key_id("one"), used_tenant.key_id("two")},
        "model": {"cheap", "dear", "down"},
    }
    if group_by in expected_groups:
        assert {row[group_by] for row in items} == expected_groups[group_by]
    else:
        assert all(row["day"].startswith(usage["month"]) for row in items)


def test_usage_of_an_earlier_month_is_empty(used_tenant: Tenant) -> None:
    viewer = client_for(used_tenant.stack, used_tenant.keys["viewer"]["key"])

    answer = viewer.get("/v1/usage", params={"month": "2001-01"})

    usage = answer.json()
    assert answer.status_code == 200
    assert usage["month"] == "2001-01"
    assert usage["total"]["requests"] == 0
    assert usage["items"] == []


def test_recommendations_rank_the_cheaper_alias_first_and_honour_the_price_cap(
    new_tenant: Callable[..., Tenant],
) -> None:
    tenant = new_tenant(
        {
            "dear": {"model_id": unique("dear"), "pricing": PRICE},
            "cheap": {"model_id": unique("cheap"), "pricing": OUTPUT_ONLY_PRICE},
        }
    )
    client = client_for(tenant.stack, tenant.keys["dev"]["key"])

    ranked = client.get("/v1/models/recommend").json()["data"]
    capped = client.get("/v1/models/recommend", params={"max_cost_per_1k_usd": 0.5}).json()["data"]

    assert [row["id"] for row in ranked] == ["cheap", "dear"]
    assert [row["cost_per_1k_usd"] for row in ranked] == [0.25, 1.25]
    assert [row["id"] for row in capped] == ["cheap"]
