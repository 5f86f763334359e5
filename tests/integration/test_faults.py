"""Faults at each write of a call's life, injected the way DynamoDB fails (a throttled item answers
ThrottlingException to every attempt botocore makes), through the gateway handler against moto:

- read, reserve: before the provider is called. The caller gets 503 `store_unavailable`; nothing
  is held, spent or asked of the provider.
- settle: after the provider answered. The caller gets the answer; the hold stays held; the meter
  (and its audit record) wait in the meter backlog (SQS) until the reconciler settles them,
  exactly once however often the message is delivered.
- audit on its own (a refused call): the record waits in the backlog; the reconciler writes it.
- cache: a read that fails is a miss, a write that fails is skipped; the call is metered once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.endpoint
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore import handlers
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto.core.botocore_stubber import MockRawResponse

from tests.conftest import LambdaContext
from tests.integration.conftest import Api, _clear_caches, load_handler
from tests.integration.fake_openai import FakeOpenAI, Gateway, gateway, loopback
from tests.integration.test_budgets import CALL_COST, HELLO, PRICING, _budget, _chat, _usage, tenant, upstream

__all__ = ["gateway", "loopback", "tenant", "upstream"]  # shared fixtures

Fault = Callable[[str, dict[str, Any]], bool]
"""Whether to fail a request: its `service.Operation` and its JSON body."""


THROTTLED = {
    "Error": {"Code": "ThrottlingException", "Message": "Rate of requests exceeds the allowed throughput."},
    "ResponseMetadata": {"HTTPStatusCode": 400},
}


def _answer(status: int, code: str) -> AWSResponse:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}"}).encode()
    headers = {"x-amzn-errortype": code, "content-type": "application/x-amz-json-1.0"}
    return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", status, headers, MockRawResponse(body))


class Faults:
    """`rules` fail a request before it is sent, as a throttled item refuses it (nothing written);
    `lost` let it be written and then lose its answer (every attempt botocore makes)."""

    def __init__(self) -> None:
        self.rules: list[Fault] = []
        self.lost: list[Fault] = []
        self.failed: list[str] = []

    @staticmethod
    def _body(raw: Any) -> dict[str, Any]:
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError, TypeError):
            return {}
        return body if isinstance(body, dict) else {}

    def refuse(self, event_name: str, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        operation = event_name.removeprefix("before-call.")
        if any(rule(operation, self._body(params.get("body"))) for rule in self.rules):
            self.failed.append(operation)
            return _answer(400, "ThrottlingException"), THROTTLED
        return None

    def lose(self, event_name: str, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        # Every before-send handler runs (moto's too, which writes); the first answer is taken.
        operation = event_name.removeprefix("before-send.")
        if any(rule(operation, self._body(request.body)) for rule in self.lost):
            self.failed.append(operation)
            return _answer(500, "InternalServerError")
        return None


@pytest.fixture
def queue(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    url: str = boto3.client("sqs").create_queue(QueueName="byom-meter-backlog")["QueueUrl"]
    monkeypatch.setenv("METER_QUEUE_URL", url)
    _clear_caches()
    return url


@pytest.fixture
def faults(queue: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    """Ask for it before the fixtures that make clients: every client is made again after it."""
    injected = Faults()
    monkeypatch.setattr(
        handlers,
        "BUILTIN_HANDLERS",
        [("before-call", injected.refuse), ("before-send", injected.lose), *handlers.BUILTIN_HANDLERS],
    )
    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda _seconds: None)  # retries, at once
    _clear_caches()
    yield injected
    _clear_caches()


def _transaction_writes(body: dict[str, Any], prefix: str) -> bool:
    return any(
        str(action.get("Put", {}).get("Item", {}).get("sk", {}).get("S", "")).startswith(prefix)
        for action in body.get("TransactItems", [])
    )


def settle(operation: str, body: dict[str, Any]) -> bool:
    return operation == "dynamodb.TransactWriteItems" and _transaction_writes(body, "req#")


def reserve(operation: str, body: dict[str, Any]) -> bool:
    return operation == "dynamodb.TransactWriteItems" and _transaction_writes(body, "hold#")


def read(operation: str, _body: dict[str, Any]) -> bool:
    return operation == "dynamodb.BatchGetItem"


def audit_put(operation: str, body: dict[str, Any]) -> bool:
    return operation == "dynamodb.PutItem" and body.get("TableName") == "byom-audit"


def cache(operation: str, body: dict[str, Any]) -> bool:
    return operation in ("dynamodb.GetItem", "dynamodb.PutItem") and body.get("TableName") == "byom-cache"


def _messages(queue: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return list(answer.get("Messages", []))


def _reconcile(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The reconciler function with these messages as its SQS batch."""
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:byom-meter-backlog",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }
    return load_handler("meter_reconciler")(event, LambdaContext())


def _audit_statuses(admin_api: Api, tenant: str) -> list[str]:
    status, body, _ = admin_api("GET", f"/admin/tenants/{tenant}/audit")
    assert status == 200, body
    return [record["status"] for record in body["data"] if record["kind"] == "interaction"]


def _assert_unavailable(status: int, body: Any, headers: dict[str, str]) -> None:
    assert status == 503
    assert body["error"]["code"] == "store_unavailable"
    assert body["error"]["type"] == "api_error"
    assert headers["retry-after"] == "1"


# After the provider answered


def test_a_settle_the_ledger_refuses_keeps_the_answer_the_hold_and_the_meter(
    faults: Faults, queue: str, admin_api: Api, gateway: Gateway, tenant: str, upstream: FakeOpenAI
) -> None:
    _budget(admin_api, tenant, 1)
    faults.rules.append(settle)

    status, body, _ = _chat(gateway, tenant)

    assert status == 200 and body["choices"][0]["message"]["content"]
    # The ledger tried again (throttling passes), then kept it.
    assert set(faults.failed) == {"dynamodb.TransactWriteItems"} and len(faults.failed) > 1
    faults.rules.clear()
    budget = _usage(admin_api, tenant)["budget"]
    assert (budget["spent_usd"], budget["reserved_usd"]) == (0, pytest.approx(0.057))
    assert len(_messages(queue)) == 1


def test_the_reconciler_settles_a_kept_meter_once_turning_its_hold_into_the_cost(
    faults: Faults, queue: str, admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    _budget(admin_api, tenant, 1)
    faults.rules.append(settle)
    _chat(gateway, tenant)
    faults.rules.clear()
    messages = _messages(queue)

    first = _reconcile(messages)
    again = _reconcile(messages)  # SQS delivers at least once

    assert first == again == {"batchItemFailures": []}
    usage = _usage(admin_api, tenant)
    assert usage["total"]["requests"] == 1
    assert usage["total"]["cost_usd"] == pytest.approx(CALL_COST)
    assert (usage["budget"]["spent_usd"], usage["budget"]["reserved_usd"]) == (pytest.approx(CALL_COST), 0)
    assert _audit_statuses(admin_api, tenant) == ["succeeded"]


def test_a_stream_whose_settle_the_ledger_refuses_ends_as_usual_and_is_kept(
    faults: Faults, queue: str, admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    _budget(admin_api, tenant, 1)
    faults.rules.append(settle)

    status, body, _ = _chat(gateway, tenant, HELLO | {"stream": True})

    assert status == 200 and body.rstrip().endswith("data: [DONE]")
    faults.rules.clear()
    assert _reconcile(_messages(queue)) == {"batchItemFailures": []}
    assert _usage(admin_api, tenant)["total"]["requests"] == 1


def test_a_settle_that_landed_but_lost_its_answer_is_counted_once(
    faults: Faults, queue: str, admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    _budget(admin_api, tenant, 1)
    faults.lost.append(settle)

    status, _, _ = _chat(gateway, tenant)

    assert status == 200
    assert faults.failed.count("dynamodb.TransactWriteItems") >= 3  # botocore's attempts
    faults.lost.clear()
    assert _reconcile(_messages(queue)) == {"batchItemFailures": []}
    usage = _usage(admin_api, tenant)
    assert usage["total"]["requests"] == 1
    assert (usage["budget"]["spent_usd"], usage["budget"]["reserved_usd"]) == (pytest.approx(CALL_COST), 0)
    assert _audit_statuses(admin_api, tenant) == ["succeeded"]


def test_a_message_the_ledger_still_refuses_goes_back_to_the_queue(
    faults: Faults, queue: str, admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    _budget(admin_api, tenant, 1)
    faults.rules.append(settle)
    _chat(gateway, tenant)
    messages = _messages(queue)

    # A batch that failed whole is raised, so Lambda returns all of it to the queue.
    with pytest.raises(BatchProcessingError):
        _reconcile(messages)

    faults.rules.clear()
    assert _usage(admin_api, tenant)["budget"]["reserved_usd"] == pytest.approx(0.057)


def test_a_provider_failure_whose_error_count_cannot_be_written_is_kept_too(
    faults: Faults, queue: str, admin_api: Api, gateway: Gateway, tenant: str, upstream: FakeOpenAI
) -> None:
    upstream.failures.extend([(400, "bad request")])
    faults.rules.append(settle)

    status, _, _ = _chat(gateway, tenant)

    assert status == 400
    faults.rules.clear()
    assert _reconcile(_messages(queue)) == {"batchItemFailures": []}
    assert _usage(admin_api, tenant)["total"]["errors"] == 1
    assert _audit_statuses(admin_api, tenant) == ["provider_error"]


def test_when_the_backlog_fails_too_the_caller_still_gets_the_answer(
    faults: Faults, queue: str, admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    _budget(admin_api, tenant, 1)
    faults.rules.extend([settle, lambda operation, _body: operation == "sqs.SendMessage"])

    status, body, _ = _chat(gateway, tenant)

    assert status == 200 and body["choices"]
    faults.rules.clear()
    # Nothing was counted; the hold stays until a sweep gives it back (the budget errs safe).
    assert _usage(admin_api, tenant)["budget"]["reserved_usd"] == pytest.approx(0.057)


# Before the provider is called


@pytest.mark.parametrize("fault", [read, reserve], ids=["read", "reserve"])
def test_a_read_or_reservation_that_fails_answers_503_asks_nothing_of_the_provider_and_holds_nothing(
    fault: Fault, faults: Faults, admin_api: Api, gateway: Gateway, tenant: str, upstream: FakeOpenAI
) -> None:
    _budget(admin_api, tenant, 1)
    faults.rules.append(fault)

    status, body, headers = _chat(gateway, tenant)

    _assert_unavailable(status, body, headers)
    faults.rules.clear()
    assert upstream.requests == []
    budget = _usage(admin_api, tenant)["budget"]
    assert (budget["spent_usd"], budget["reserved_usd"]) == (0, 0)


# The audit record on its own, and the cache


def test_an_audit_record_the_table_refuses_is_kept_and_written_by_the_reconciler(
    faults: Faults, queue: str, admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    faults.rules.append(audit_put)

    status, _, _ = _chat(gateway, tenant, HELLO | {"model": "no-such-alias"})

    assert status == 404
    faults.rules.clear()
    assert _audit_statuses(admin_api, tenant) == []
    assert _reconcile(_messages(queue)) == {"batchItemFailures": []}
    assert _audit_statuses(admin_api, tenant) == ["invalid_request"]


def test_a_failing_cache_is_a_miss_and_the_call_is_metered_once(
    faults: Faults, queue: str, admin_api: Api, gateway: Gateway, tenant: str
) -> None:
    base = f"/admin/tenants/{tenant}/models"
    alias = {
        "alias": "chat",
        "provider": "openai_compatible",
        "model_id": "local-model",
        "credential": "llm",
        "pricing": PRICING,
        "cache_ttl_seconds": 60,
    }
    assert admin_api("DELETE", f"{base}/chat")[0] == 200
    assert admin_api("POST", base, alias)[0] == 201
    faults.rules.append(cache)

    first = _chat(gateway, tenant)
    second = _chat(gateway, tenant)

    assert first[0] == second[0] == 200
    assert "dynamodb.GetItem" in faults.failed and "dynamodb.PutItem" in faults.failed
    faults.rules.clear()
    assert _usage(admin_api, tenant)["total"]["requests"] == 2
    assert _messages(queue) == []
