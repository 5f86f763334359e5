"""Shared by the benchmarks: paths, statistics, tables, API Gateway events and an AWS request hook."""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
LAYER = REPO_ROOT / "layers" / "common" / "python"
FUNCTIONS = REPO_ROOT / "functions"


def use_layer() -> None:
    """Import `byom` from the layer's source and `local_stack` from the repository, as the tests do."""
    for path in (str(REPO_ROOT), str(LAYER)):
        if path not in sys.path:
            sys.path.insert(0, path)


# The stand-in model is in no price catalogue: its alias is registered with a price of its own, that
# of a small hosted model (metering needs one; the figures do not depend on it).
STAND_IN_PRICING = {"input_per_1k_usd": 0.00015, "output_per_1k_usd": 0.0006}


# -- statistics and tables -------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p99: float
    mean: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        return cls(
            n=len(samples),
            median=statistics.median(samples),
            p99=percentile(samples, 0.99),
            mean=statistics.fmean(samples),
            minimum=min(samples),
            maximum=max(samples),
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table, readable as plain text too."""
    body = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [f"### {title}", "", line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in body]
    return "\n".join(out) + "\n"


def say(text: str = "") -> None:
    print(text, flush=True)


def machine() -> str:
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {sys.platform}"


# -- API Gateway -----------------------------------------------------------------------------------


@dataclass
class LambdaContext:
    function_name: str = "bench"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/bench"
    log_stream_name: str = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


def proxy_event(method: str, path: str, body: Any, authorizer: dict[str, str] | None) -> dict[str, Any]:
    """A REST API Lambda proxy event, as API Gateway sends it after the authorizer allowed the call."""
    headers = {"content-type": "application/json", "Authorization": "Bearer bench"}
    return {
        "resource": "/" + path.strip("/").split("/")[0] + "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.strip("/").split("/", 1)[-1]},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "benchapi",
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": "/prod" + path,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "bench"},
            "authorizer": authorizer,
        },
        "body": body if isinstance(body, str) or body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


# -- AWS requests ----------------------------------------------------------------------------------


@dataclass
class AwsRequests:
    """A botocore `before-send` hook in front of every client this process creates, counting requests.

    With `answer` on it also answers them itself, from moto's backends, instead of moto's own hook
    (botocore runs every `before-send` handler, so only one may do the work): then, in `replay`
    mode, a request seen before is answered at once with the bytes moto answered it with, and the
    time left is the gateway's own (request building, signing and parsing included), without the
    emulation's. A write that names its call (a request id, a timestamp) is never seen twice: the
    operations in `replay_any` are answered with the last success moto gave for the operation,
    which does not depend on the request (moto answers every successful TransactWriteItems alike).
    `missed` counts the requests replay mode still had to send to moto (0 when it replayed all).
    With `keep_bodies` on, `bodies` keeps each request's operation and JSON body (bench.cost).
    """

    answer: bool = False
    replay: bool = False
    replay_any: frozenset[str] = frozenset({"dynamodb.TransactWriteItems"})
    calls: list[str] = field(default_factory=list)
    beside: list[str] = field(default_factory=list)
    """Of `calls`, those a call sends beside another rather than after it (its reservation, sent
    by a `reserve-ahead` thread while its read is in flight: byom.logic.invoke._reserve_ahead)."""
    keep_bodies: bool = False
    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    aws_seconds: float = 0.0
    missed: int = 0
    _recorded: dict[tuple[str, bytes], tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    _last_success: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)

    def install(self) -> None:
        """Must run before any client is created: botocore copies its handlers into each new session."""
        from botocore import handlers

        handlers.BUILTIN_HANDLERS.insert(0, ("before-send", self))

    def uninstall(self) -> None:
        from botocore import handlers

        handlers.BUILTIN_HANDLERS[:] = [h for h in handlers.BUILTIN_HANDLERS if h[1] is not self]

    def take_over_from_moto(self) -> None:
        """Call inside `mock_aws()`: moto's own hook stands down, this one answers through moto."""
        from moto.core.models import botocore_stubber

        botocore_stubber.enabled = False
        self.answer = True

    def reset(self) -> None:
        self.calls.clear()
        self.beside.clear()
        self.bodies.clear()
        self.aws_seconds = 0.0
        self.missed = 0

    def __call__(self, request: Any, event_name: str = "", **_: Any) -> Any:
        operation = event_name.removeprefix("before-send.")
        self.calls.append(operation)
        if threading.current_thread().name.startswith("reserve-ahead"):
            self.beside.append(operation)
        if self.keep_bodies:
            self.bodies.append((operation, _json_body(request.body)))
        if not self.answer:
            return None
        from botocore.awsrequest import AWSResponse
        from moto.core.botocore_stubber import MockRawResponse
        from moto.core.models import botocore_stubber

        body = request.body or b""
        key = (operation, body if isinstance(body, bytes) else str(body).encode())
        if self.replay:
            recorded = self._recorded.get(key) or self._last_success.get(operation)
            if recorded is not None:
                status, headers, content = recorded
                return AWSResponse(request.url, status, headers, MockRawResponse(content))
            self.missed += 1
        started = time.perf_counter()
        answer = botocore_stubber.process_request(request)
        self.aws_seconds += time.perf_counter() - started
        if answer is None:
            return None
        status, headers, text = answer
        content = text.encode() if isinstance(text, str) else text
        recorded = (status, dict(headers), content)
        if operation not in self.replay_any:
            self._recorded[key] = recorded
        elif status == 200:
            self._last_success[operation] = recorded
        return AWSResponse(request.url, status, headers, MockRawResponse(content))


def _json_body(body: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def forget_markers(dynamodb: Any, table: str) -> int:
    """Delete the `req#` markers (docs/contracts.md) of the calls made so far; how many there were.

    moto's TransactWriteItems deep-copies the table it writes to once per action (its rollback), so
    its time grows with every marker a call leaves, where DynamoDB's does not. The benchmarks delete
    them between rounds, outside the timings: each call has a request id of its own, so no call
    finds another's marker, and the table keeps its starting size.
    """
    return forget_items(dynamodb, table, sk_prefix="req#")


def forget_items(dynamodb: Any, table: str, *, sk_prefix: str | None = None) -> int:
    """Delete the items of `table` (those whose `sk` starts with `sk_prefix`); how many there were.
    The audit records calls leave grow moto's transactions as markers do (forget_markers)."""
    kwargs: dict[str, Any] = {"TableName": table}
    if sk_prefix is not None:
        kwargs["FilterExpression"] = "begins_with(sk, :prefix)"
        kwargs["ExpressionAttributeValues"] = {":prefix": {"S": sk_prefix}}
    schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    kwargs["ProjectionExpression"] = ", ".join(k["AttributeName"] for k in schema)
    items = dynamodb.scan(**kwargs)["Items"]
    for start in range(0, len(items), 25):
        deletes = [{"DeleteRequest": {"Key": key}} for key in items[start : start + 25]]
        dynamodb.batch_write_item(RequestItems={table: deletes})
    return len(items)
