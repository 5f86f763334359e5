"""A warm call under a hard budget reserves beside its read (byom.logic.invoke._reserve_ahead),
through the gateway's handler against DynamoDB in moto: one round trip before the provider, and
a hold reserved ahead is never left behind, whatever the read then says."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from byom.dal import aws as aws_clients

from tests.integration.conftest import Api, tenant_context
from tests.integration.fake_openai import FakeOpenAI, Gateway, gateway, loopback
from tests.integration.test_budgets import HELLO, _budget, _chat, _usage, tenant, upstream

__all__ = ["gateway", "loopback", "tenant", "upstream"]  # shared fixtures


class Requests:
    """The DynamoDB requests the gateway sends, each with the thread that sent it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, event_name: str = "", **_: Any) -> None:
        self.sent.append((event_name.removeprefix("before-send.dynamodb."), threading.current_thread().name))

    def by_thread(self) -> tuple[list[str], list[str]]:
        """(the call's own requests, one after another; those sent beside them)."""
        own = [op for op, thread in self.sent if not thread.startswith("reserve-ahead")]
        beside = [op for op, thread in self.sent if thread.startswith("reserve-ahead")]
        return own, beside


@pytest.fixture
def requests(aws: dict[str, str]) -> Iterator[Requests]:
    seen = Requests()
    client = aws_clients.client("dynamodb")
    client.meta.events.register("before-send.dynamodb", seen)
    yield seen
    client.meta.events.unregister("before-send.dynamodb", seen)


def _warm(admin_api: Api, gateway: Gateway, tenant: str, limit_usd: float = 1) -> None:
    """A hard budget, and one call: the environment has read the alias under it."""
    _budget(admin_api, tenant, limit_usd)
    assert _chat(gateway, tenant)[0] == 200


def _assert_spent_and_nothing_held(admin_api: Api, tenant: str, spent_usd: float) -> None:
    budget = _usage(admin_api, tenant)["budget"]
    assert (budget["spent_usd"], budget["reserved_usd"]) == (pytest.approx(spent_usd), 0)


def test_a_warm_call_reserves_beside_its_read(
    admin_api: Api, gateway: Gateway, tenant: str, requests: Requests
) -> None:
    _warm(admin_api, gateway, tenant)  # the environment reads the alias for the first time
    requests.sent.clear()

    status, _, headers = _chat(gateway, tenant)

    own, beside = requests.by_thread()
    assert status == 200
    assert own == ["BatchGetItem", "TransactWriteItems"]  # the read, then the settle
    assert beside == ["TransactWriteItems"]  # the reservation, sent while the read was in flight
    _assert_spent_and_nothing_held(admin_api, tenant, 0.02)
    assert headers["x-byom-cost-usd"] == "0.010000"


def test_a_budget_no_longer_hard_gives_the_hold_reserved_ahead_back(
    admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    _warm(admin_api, gateway, tenant)
    _budget(admin_api, tenant, 1, hard=False)

    assert _chat(gateway, tenant)[0] == 200

    _assert_spent_and_nothing_held(admin_api, tenant, 0.02)


def test_a_dearer_alias_than_last_read_reserves_again_after_the_read(
    admin_api: Api, gateway: Gateway, tenant: str, requests: Requests
) -> None:
    _warm(admin_api, gateway, tenant)
    dearer = {
        "alias": "chat",
        "provider": "openai_compatible",
        "model_id": "local-model",
        "credential": "llm",
        "pricing": {"input_per_1k_usd": 10.0, "output_per_1k_usd": 20.0},
    }
    assert admin_api("DELETE", f"/admin/tenants/{tenant}/models/chat")[0] == 200
    assert admin_api("POST", f"/admin/tenants/{tenant}/models", dearer)[0] == 201
    requests.sent.clear()

    status, _, headers = _chat(gateway, tenant)

    own, beside = requests.by_thread()
    assert status == 200
    assert headers["x-byom-cost-usd"] == "0.100000"
    # Reserved ahead at the old prices, given back, reserved again at the new ones, then settled.
    assert beside == ["TransactWriteItems"]
    assert own == ["BatchGetItem", "TransactWriteItems", "TransactWriteItems", "TransactWriteItems"]
    _assert_spent_and_nothing_held(admin_api, tenant, 0.11)


def test_a_request_refused_after_its_read_gives_the_hold_reserved_ahead_back(
    admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    _warm(admin_api, gateway, tenant)
    policy = {"redaction": {"mode": "block"}}
    assert admin_api("PUT", f"/admin/tenants/{tenant}/policy", policy)[0] == 200
    blocked = HELLO | {"messages": [{"role": "user", "content": "Mail me at jane.doe@example.com"}]}

    status, body, _ = _chat(gateway, tenant, blocked)

    assert (status, body["error"]["code"]) == (400, "content_policy_violation")
    _assert_spent_and_nothing_held(admin_api, tenant, 0.01)


def test_a_reservation_ahead_the_budget_refuses_is_answered_as_any_refusal(
    admin_api: Api, gateway: Gateway, tenant: str, upstream: FakeOpenAI
) -> None:
    _warm(admin_api, gateway, tenant, 0.06)  # a call holds $0.057: a second does not fit beside $0.01 spent

    status, body, _ = _chat(gateway, tenant)

    assert (status, body["error"]["code"]) == (429, "insufficient_quota")
    _assert_spent_and_nothing_held(admin_api, tenant, 0.01)


def test_a_read_that_fails_gives_the_hold_reserved_ahead_back(
    admin_api: Api, gateway: Gateway, tenant: str, upstream: FakeOpenAI
) -> None:
    _warm(admin_api, gateway, tenant)
    client = aws_clients.client("dynamodb")

    def refuse(**_: Any) -> None:
        raise ConnectionError("the read timed out")

    client.meta.events.register("before-call.dynamodb.BatchGetItem", refuse)
    try:
        status, body, _ = _chat(gateway, tenant)
    finally:
        client.meta.events.unregister("before-call.dynamodb.BatchGetItem", refuse)

    assert (status, body["error"]["code"]) == (503, "store_unavailable")
    _assert_spent_and_nothing_held(admin_api, tenant, 0.01)
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", HELLO | {"stream": True}),
        ("/v1/responses", {"model": "chat", "input": "Hello", "max_output_tokens": 10}),
    ],
    ids=["stream", "responses"],
)
def test_a_stream_and_a_response_keep_the_hold_reserved_ahead_until_they_settle(
    admin_api: Api, gateway: Gateway, tenant: str, requests: Requests, path: str, body: dict[str, Any]
) -> None:
    _warm(admin_api, gateway, tenant)
    requests.sent.clear()

    status, _, _ = gateway(path, body, tenant_context(tenant, "developer", "key_test"))

    own, beside = requests.by_thread()
    assert status == 200
    assert beside == ["TransactWriteItems"]
    assert own.count("TransactWriteItems") == 1  # the settle: the hold reserved ahead stood
    _assert_spent_and_nothing_held(admin_api, tenant, 0.02)
