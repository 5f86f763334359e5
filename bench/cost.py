"""What a warm call costs in AWS, from the requests it really makes: DynamoDB capacity units
counted from the request bodies and the items they wrote, log bytes counted from what the gateway
wrote to its log stream, priced at on-demand list prices; then a month at 1 M, 10 M and 100 M calls.

    .venv/bin/python -m bench.cost [--calls 50] [--provider-seconds 1.0] [--own-ms 5]

The gateway handler answers /v1/chat/completions in-process (bench.in_process's setup: moto, the
OpenAI-compatible stand-in, three tenants by budget, audit on). A before-send hook keeps every AWS
request of the measured calls. Capacity units follow DynamoDB's rules: an item's size is its
attribute names and values (numbers about one byte per two digits, plus one); a write is 1 WRU per
KB of the larger of the item before and after (2 in a transaction), a strongly consistent read 1 RRU
per 4 KB (half eventually consistent). Sizes of updated items are read from the table afterwards.

No LiteLLM anchor: its proxy with a master key and no database writes nothing per call, and with
its database (PostgreSQL) its costs are another service's; the figures here are what BYOM adds to
an AWS bill.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.common import AwsRequests, machine, proxy_event, say, table, use_layer

# us-east-1 list prices (on demand), 2026-12.
DYNAMODB_PER_MILLION_WRU = 0.625
DYNAMODB_PER_MILLION_RRU = 0.125
API_GATEWAY_REST_TIERS = ((333e6, 3.50), (667e6, 2.80), (19e9, 2.38))  # per million, by monthly tier
LAMBDA_PER_MILLION_REQUESTS = 0.20
LAMBDA_ARM_PER_GB_SECOND = 0.0000133334
LOGS_PER_GB_INGESTED = 0.50
XRAY_PER_MILLION_TRACES = 5.00
XRAY_FREE_TRACES = 100_000
SECONDS_PER_MONTH = 30.4 * 86_400
GATEWAY_MEMORY_GB = 1.0  # infra.constructs.functions.GATEWAY
# Lambda's own lines per invocation in the JSON log format (platform.start and platform.report).
PLATFORM_LOG_BYTES = 420
# Where the gateway's own work (bench.in_process) and each DynamoDB round trip in-Region take.
ROUND_TRIP_MS = 6.0


def value_size(value: dict[str, Any]) -> int:
    """A typed attribute value's size, as DynamoDB counts it."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        return len(str(raw).lstrip("-").replace(".", "")) // 2 + 1
    if kind == "B":
        return len(str(raw)) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: member}) for member in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(member) for member in raw)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(member) for name, member in raw.items())
    return 0


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def _key_of(table_name: str, key: dict[str, Any]) -> tuple[str, str]:
    return table_name, json.dumps(key, sort_keys=True)


@dataclass
class Units:
    wru: float = 0.0
    rru: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    beside: int = 0
    """Of the requests, those sent beside another (the reservation beside the read): no round trip
    of their own."""


def capacity(
    sent: list[tuple[str, dict[str, Any]]], stored: dict[tuple[str, str], int], keys: dict[str, list[str]]
) -> Units:
    """The capacity units of these requests; `stored`: each item's size now, `keys`: each table's
    key attribute names."""
    units = Units()

    def size_of(table_name: str, item_or_key: dict[str, Any], *, whole: bool) -> int:
        key = {k: item_or_key[k] for k in keys.get(table_name, []) if k in item_or_key}
        now = stored.get(_key_of(table_name, key), 0)
        return max(now, item_size(item_or_key) if whole else item_size(key))

    def write(action: str, body: dict[str, Any], factor: int) -> None:
        table_name = body["TableName"]
        if action == "Put":
            size = size_of(table_name, body["Item"], whole=True)
        else:  # Update, Delete, ConditionCheck: the item as stored
            size = size_of(table_name, body["Key"], whole=False)
        units.wru += factor * max(1, math.ceil(size / 1024))

    for operation, body in sent:
        units.requests[operation] += 1
        if operation == "dynamodb.TransactWriteItems":
            for action in body.get("TransactItems", []):
                ((name, inner),) = action.items()
                write(name, inner, 2)
        elif operation in ("dynamodb.PutItem", "dynamodb.UpdateItem", "dynamodb.DeleteItem"):
            write(operation.removeprefix("dynamodb.").removesuffix("Item"), body, 1)
        elif operation == "dynamodb.BatchGetItem":
            for table_name, spec in body.get("RequestItems", {}).items():
                per = 1.0 if spec.get("ConsistentRead") else 0.5
                for key in spec.get("Keys", []):
                    size = stored.get(_key_of(table_name, key), 0)
                    units.rru += per * max(1, math.ceil(size / 4096))
        elif operation in ("dynamodb.GetItem",):
            per = 1.0 if body.get("ConsistentRead") else 0.5
            size = stored.get(_key_of(body["TableName"], body["Key"]), 0)
            units.rru += per * max(1, math.ceil(size / 4096))
    return units


def _stored_sizes(dynamodb: Any) -> tuple[dict[tuple[str, str], int], dict[str, list[str]]]:
    sizes: dict[tuple[str, str], int] = {}
    keys: dict[str, list[str]] = {}
    for name in dynamodb.list_tables()["TableNames"]:
        schema = dynamodb.describe_table(TableName=name)["Table"]["KeySchema"]
        keys[name] = [k["AttributeName"] for k in schema]
        for page in dynamodb.get_paginator("scan").paginate(TableName=name):
            for item in page["Items"]:
                key = {k: item[k] for k in keys[name]}
                sizes[_key_of(name, key)] = item_size(item)
    return sizes, keys


class _StdoutBytes:
    """Counts what the process writes to file descriptor 1 (the function's log stream) meanwhile."""

    def __enter__(self) -> _StdoutBytes:
        sys.stdout.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(1)
        os.dup2(self._file.fileno(), 1)
        self.bytes = 0
        return self

    def __exit__(self, *_: object) -> None:
        sys.stdout.flush()
        os.dup2(self._saved, 1)
        os.close(self._saved)
        self.bytes = self._file.seek(0, os.SEEK_END)
        self._file.close()


@dataclass
class Scenario:
    label: str
    units: Units
    log_bytes: float


def measure(calls: int) -> list[Scenario]:
    use_layer()
    from bench import in_process

    in_process._environment()
    hook = AwsRequests(keep_bodies=True)
    hook.install()
    import boto3
    from moto import mock_aws

    from local_stack.models.servers import openai_stand_in

    upstream = openai_stand_in().start()
    results: list[Scenario] = []
    try:
        with mock_aws():
            in_process._create_resources()
            url = upstream.url + "/v1"
            principals = {
                s.key: in_process._register_tenant(url, f"cost-{s.key}", s.budget)
                for s in in_process.SCENARIOS
            }
            gateway, stop = in_process.serve_web_app("gateway")
            request = {"model": in_process.ALIAS, "messages": in_process.MESSAGES, "max_tokens": 16}
            dynamodb = boto3.client("dynamodb")
            for scenario in in_process.SCENARIOS:
                principal = principals[scenario.key]

                def event(principal: dict[str, str] = principal) -> dict[str, Any]:
                    return proxy_event("POST", "/v1/chat/completions", request, principal)

                with _StdoutBytes():  # warm: the provider key and clients are cached
                    for _ in range(2):
                        gateway(event())
                hook.reset()
                with _StdoutBytes() as logged:
                    for _ in range(calls):
                        response = gateway(event())
                        if response["statusCode"] != 200:
                            raise SystemExit(f"gateway answered {response['statusCode']}")
                sent = list(hook.bodies)  # before the table scans below
                stored, keys = _stored_sizes(dynamodb)
                units = capacity(sent, stored, keys)
                units.beside = len(hook.beside)
                results.append(Scenario(scenario.label, units, logged.bytes / calls + PLATFORM_LOG_BYTES))
            stop()
    finally:
        upstream.stop()
        hook.uninstall()
    for scenario in results:
        scenario.units.wru /= calls
        scenario.units.rru /= calls
        scenario.units.requests = Counter({k: v // calls for k, v in scenario.units.requests.items()})
        scenario.units.beside //= calls
    return results


def dynamodb_per_million(units: Units) -> float:
    return units.wru * DYNAMODB_PER_MILLION_WRU + units.rru * DYNAMODB_PER_MILLION_RRU


def api_gateway(calls: float) -> float:
    cost, left = 0.0, calls
    for size, price in API_GATEWAY_REST_TIERS:
        taken = min(left, size)
        cost += taken / 1e6 * price
        left -= taken
    return cost


def xray(calls: float) -> float:
    """Default sampling: the first request each second, then 5 % of the rest; 100,000 traces free."""
    reservoir = min(calls, SECONDS_PER_MONTH)
    traces = reservoir + 0.05 * max(0.0, calls - reservoir)
    return max(0.0, traces - XRAY_FREE_TRACES) / 1e6 * XRAY_PER_MILLION_TRACES


def lambda_cost(calls: float, seconds: float) -> float:
    return (
        calls / 1e6 * LAMBDA_PER_MILLION_REQUESTS
        + calls * seconds * GATEWAY_MEMORY_GB * LAMBDA_ARM_PER_GB_SECOND
    )


def report(results: list[Scenario], calls: int, provider_seconds: float, own_ms: float) -> None:
    say(f"## What a warm call costs: {calls} calls per budget ({machine()})")
    say()
    rows = []
    for s in results:
        requests = ", ".join(
            f"{n} {op.removeprefix('dynamodb.')}" for op, n in sorted(s.units.requests.items())
        )
        rows.append(
            (
                s.label,
                requests,
                f"{s.units.wru:.1f}",
                f"{s.units.rru:.1f}",
                f"${dynamodb_per_million(s.units):.2f}",
                f"{s.log_bytes:.0f}",
            )
        )
    say(
        table(
            "DynamoDB per warm call, audit on (on demand: $0.625 per million WRU, $0.125 per million RRU)",
            ("budget", "requests per call", "WRU", "RRU", "DynamoDB per million calls", "log bytes per call"),
            rows,
        )
    )
    hard = results[-1]
    round_trips = (
        sum(n for op, n in hard.units.requests.items() if op.startswith("dynamodb.")) - hard.units.beside
    )
    seconds = provider_seconds + (own_ms + round_trips * ROUND_TRIP_MS) / 1000
    lambda_label = (
        f"Lambda (1 GB arm64, {seconds * 1000:.0f} ms: the provider's {provider_seconds:g} s and ours)"
    )
    per_million = {
        "API Gateway (REST, first tier)": api_gateway(1e6),
        lambda_label: lambda_cost(1e6, seconds),
        "  of which the gateway's own work and round trips": lambda_cost(1e6, seconds)
        - lambda_cost(1e6, provider_seconds),
        "DynamoDB (hard budget, audit on)": dynamodb_per_million(hard.units),
        "CloudWatch Logs ingestion (EMF metrics and log lines)": hard.log_bytes
        / 1e9
        * 1e6
        * LOGS_PER_GB_INGESTED,
        "X-Ray (default sampling, at 10 M calls a month)": xray(10e6) / 10,
    }
    say()
    say(
        table(
            "Per million warm calls with a hard budget (us-east-1 list prices)",
            ("part", "USD"),
            [(name, f"{cost:.2f}") for name, cost in per_million.items()],
        )
    )
    months = []
    for volume in (1e6, 10e6, 100e6):
        parts = (
            api_gateway(volume),
            lambda_cost(volume, seconds),
            dynamodb_per_million(hard.units) * volume / 1e6,
            hard.log_bytes * volume / 1e9 * LOGS_PER_GB_INGESTED,
            xray(volume),
        )
        months.append((f"{volume / 1e6:g} M", *(f"{p:,.2f}" for p in parts), f"{sum(parts):,.2f}"))
    say()
    say(
        table(
            "A month (hard budget, audit on; the provider's own bill not included)",
            ("calls", "API Gateway", "Lambda", "DynamoDB", "Logs", "X-Ray", "total"),
            months,
        )
    )
    say()
    say(
        "Not per call: the authorizer runs once per key and cache TTL; custom metrics are billed per "
        "metric and month ($0.30 each, by tenant and model); Secrets Manager reads are cached; "
        "DynamoDB's use of the stack's KMS key is cached per table; the meter backlog (SQS) is used "
        "only when the ledger fails."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50, help="warm calls per budget (1-1000)")
    parser.add_argument(
        "--provider-seconds", type=float, default=1.0, help="how long the provider takes to answer"
    )
    parser.add_argument(
        "--own-ms", type=float, default=5.0, help="the gateway's own work per call (bench.in_process)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 1000 or not 0 <= args.provider_seconds <= 900 or not 0 <= args.own_ms <= 1000:
        parser.error("--calls 1-1000, --provider-seconds 0-900, --own-ms 0-1000")
    report(measure(args.calls), args.calls, args.provider_seconds, args.own_ms)


if __name__ == "__main__":
    main()
