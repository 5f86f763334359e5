"""The gateway's own work per call: the gateway's app called in-process as the Lambda Web Adapter
calls it (over loopback HTTP), AWS emulated by moto.

    .venv/bin/python -m bench.in_process [--calls 1000] [--profile [none|soft|hard]]

One OpenAI-compatible stand-in model server (local_stack.models) listens on loopback. Three tenants,
each with an alias on it: one without a budget, one with a soft budget (warnings only), one with a
hard budget (each call reserves its upper bound first). Each round makes, one after the other:

- direct:        the `openai` SDK calls the stand-in (raw response, nothing parsed);
- handler, moto: for each tenant in turn, the gateway handler answers a /v1/chat/completions
                 proxy event for its alias, its AWS calls answered by moto in this process;
- handler, AWS replayed: the same, each AWS request answered at once with the bytes moto
                 answered it with during the warm-up (a botocore before-send hook; a transaction,
                 never the same twice, with moto's last successful answer), so what is left
                 beyond the provider call is the gateway's own work: routing, validation, budget
                 logic, the AWS SDK building, signing and parsing its requests, the provider SDK,
                 the metric lines, the answer.

Added latency is the handler's time minus the direct call's, paired per round. The AWS requests of
one warm call per tenant are counted with the same hook, and the time spent inside moto measured.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import importlib.util
import io
import json
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    FUNCTIONS,
    STAND_IN_PRICING,
    AwsRequests,
    LambdaContext,
    Summary,
    forget_items,
    forget_markers,
    machine,
    ms,
    proxy_event,
    say,
    table,
    timed,
    use_layer,
)

TABLES = {
    "TENANTS_TABLE": ("byom-tenants", [("tenant_id", "HASH")], []),
    "API_KEYS_TABLE": (
        "byom-api-keys",
        [("key_hash", "HASH")],
        [("by_tenant", [("tenant_id", "HASH"), ("key_id", "RANGE")])],
    ),
    "CREDENTIALS_TABLE": ("byom-credentials", [("tenant_id", "HASH"), ("name", "RANGE")], []),
    "MODELS_TABLE": ("byom-models", [("tenant_id", "HASH"), ("alias", "RANGE")], []),
    "USAGE_TABLE": ("byom-usage", [("pk", "HASH"), ("sk", "RANGE")], []),
    # Governance: every call reads its tenant's policy and writes its audit record (SPEC §7); the
    # admin function erases a subject's cache entries.
    "POLICIES_TABLE": ("byom-policies", [("tenant_id", "HASH")], []),
    "CACHE_TABLE": ("byom-cache", [("cache_key", "HASH")], []),
    "AUDIT_TABLE": (
        "byom-audit",
        [("tenant_id", "HASH"), ("sk", "RANGE")],
        [("by_subject", [("subject", "HASH"), ("sk", "RANGE")])],
    ),
    # The admin function's settings name it (a subject's erasure deletes their stored responses).
    "RESPONSES_TABLE": ("byom-responses", [("tenant_id", "HASH"), ("id", "RANGE")], []),
}
PLATFORM_ADMIN = {
    "principal": "platform_admin",
    "tenant_id": "",
    "key_id": "platform-admin",
    "role": "platform_admin",
}
ALIAS = "bench-chat"
DATA_BUCKET = "byom-bench-data"
STAND_IN_MODEL = "stand-in-chat"
PROVIDER_KEY = "sk-bench-provider-key"
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello to the benchmark in five words."}]


def _environment() -> None:
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")] + ["AWS_PROFILE"]:
        os.environ.pop(name, None)
    os.environ.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "byom-bench",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "ALLOW_LOOPBACK_HTTP": "true",
            "SECRET_PREFIX": "byom/bench/tenants/",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )


def _create_resources() -> None:
    import boto3

    kms_key = boto3.client("kms").create_key(Description="byom bench")["KeyMetadata"]["Arn"]
    dynamodb = boto3.client("dynamodb")
    for variable, (name, keys, indexes) in TABLES.items():
        attributes = {n for n, _ in keys} | {n for _, index_keys in indexes for n, _ in index_keys}
        extra: dict[str, Any] = {}
        if indexes:
            extra["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index,
                    "KeySchema": [{"AttributeName": n, "KeyType": k} for n, k in index_keys],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index, index_keys in indexes
            ]
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": n, "KeyType": k} for n, k in keys],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
            BillingMode="PAY_PER_REQUEST",
            **extra,
        )
        os.environ[variable] = name
    # Stored content of tenants with content logging (none of the benchmark's tenants logs content).
    boto3.client("s3").create_bucket(Bucket=DATA_BUCKET)
    admin_secret = boto3.client("secretsmanager").create_secret(
        Name="byom/bench/admin-key", SecretString="bench-admin-key", KmsKeyId=kms_key
    )["ARN"]
    # The stack names each budgeted tenant's spend alarm with this prefix (the admin function's setting).
    os.environ.update(
        {
            "KMS_KEY_ID": kms_key,
            "DATA_BUCKET": DATA_BUCKET,
            "ADMIN_KEY_SECRET_ARN": admin_secret,
            "SPEND_ALARM_PREFIX": "byom-bench-tenant-spend-",
        }
    )


def load_handler(function: str) -> Any:
    """functions/<function>/handler.py imported by file, the way Lambda imports it."""
    spec = importlib.util.spec_from_file_location(f"bench_fn_{function}", FUNCTIONS / function / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def serve_web_app(function: str) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], Callable[[], None]]:
    """functions/<function>/app.py served by uvicorn on loopback, called the way the Lambda Web
    Adapter calls it (an HTTP request per event, its request context in a header): the hop the
    adapter makes in Lambda is part of what is measured. The adapter's client (hyper, pooled,
    4 s idle timeout) keeps its connection to the app between warm invocations, so this one does
    too. Answers the call and a stop."""
    from local_stack.web_adapter import WebApp, forwarded_request

    spec = importlib.util.spec_from_file_location(f"bench_app_{function}", FUNCTIONS / function / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = WebApp(function, module.app, "/health").start()
    kept: list[http.client.HTTPConnection] = []

    def call(event: dict[str, Any]) -> dict[str, Any]:
        request = forwarded_request(event, {})
        if not kept:
            connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
            connection.connect()
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            kept.append(connection)
        connection = kept[0]
        connection.putrequest(request.method, request.target, skip_accept_encoding=True)
        for name, value in request.headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(request.body)))
        connection.endheaders(request.body)
        response = connection.getresponse()
        body = response.read()
        if response.will_close:
            kept.pop().close()
        return {"statusCode": response.status, "body": body.decode()}

    def stop() -> None:
        for connection in kept:
            connection.close()
        app.stop()

    return call, stop


def _admin(handler: Any, method: str, path: str, body: Any) -> dict[str, Any]:
    response = handler(proxy_event(method, path, body, PLATFORM_ADMIN), LambdaContext())
    if response["statusCode"] >= 300:
        raise SystemExit(f"setup failed: {method} {path} -> {response['statusCode']} {response['body']}")
    return json.loads(response["body"])


def _register_tenant(
    upstream_url: str, name: str = "bench", budget: dict[str, Any] | None = None
) -> dict[str, str]:
    """A tenant with a credential and an alias on the stand-in (and a budget if given), through the
    admin handler; answers the authorizer context a developer key of that tenant would get."""
    admin = load_handler("admin")
    from byom.observability import logger

    logger.setLevel("WARNING")  # the admin function's INFO lines would land in the tables' output
    tenant = _admin(admin, "POST", "/admin/tenants", {"name": name})
    tenant_id = tenant["id"]
    _admin(
        admin,
        "PUT",
        f"/admin/tenants/{tenant_id}/credentials/bench",
        {"provider": "openai_compatible", "api_key": PROVIDER_KEY, "base_url": upstream_url},
    )
    _admin(
        admin,
        "POST",
        f"/admin/tenants/{tenant_id}/models",
        {
            "alias": ALIAS,
            "provider": "openai_compatible",
            "model_id": STAND_IN_MODEL,
            "credential": "bench",
            "pricing": STAND_IN_PRICING,
        },
    )
    if budget is not None:
        _admin(admin, "PUT", f"/admin/tenants/{tenant_id}/budget", budget)
    logger.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"))
    return {"principal": "tenant", "tenant_id": tenant_id, "key_id": "key_bench", "role": "developer"}


@dataclass(frozen=True)
class Scenario:
    """A tenant's budget: what a warm call reads and writes besides the provider call depends on it."""

    key: str
    label: str
    budget: dict[str, Any] | None


# $1,000 a month: the benchmark's calls never reach a warning threshold or the limit.
SCENARIOS = (
    Scenario("none", "no budget", None),
    Scenario("soft", "soft budget", {"monthly_limit_usd": 1000, "warn_at": [0.5, 0.8], "hard": False}),
    Scenario("hard", "hard budget", {"monthly_limit_usd": 1000, "warn_at": [], "hard": True}),
)


@dataclass
class Measured:
    """One scenario's figures: its first and warm calls' AWS requests, and per timed round the
    handler's time with AWS by moto, the time inside moto, and the handler's time with AWS replayed."""

    first: list[str] = field(default_factory=list)
    warm: list[str] = field(default_factory=list)
    warm_beside: list[str] = field(default_factory=list)
    """Of `warm`, the requests sent beside another (the reservation beside the read)."""
    moto: list[float] = field(default_factory=list)
    inside_moto: list[float] = field(default_factory=list)
    replay: list[float] = field(default_factory=list)
    replay_cpu: list[float] = field(default_factory=list)


def timed_cpu(call: Callable[[], None]) -> tuple[float, float]:
    """Wall time and this process's CPU time (every thread: the gateway's, the stand-in's, the
    client's) of one call. Other work on a shared machine stretches the first, hardly the second."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


# What `--no-audit` takes from the gateway's environment: its policies, audit records and content.
GOVERNANCE_ENV = ("POLICIES_TABLE", "AUDIT_TABLE", "DATA_BUCKET")


def _forget(dynamodb: Any) -> None:
    """Between rounds, outside the timings: the markers and audit records the calls left (moto's
    transactions slow down as the tables they write grow; DynamoDB's do not)."""
    forget_markers(dynamodb, os.environ["USAGE_TABLE"])
    if "AUDIT_TABLE" in os.environ:  # not with --no-audit
        forget_items(dynamodb, os.environ["AUDIT_TABLE"])


def run(
    calls: int,
    warmup: int,
    profile: str | None,
    audit: bool = True,
    profile_out: str | None = None,
    replay_only: bool = False,
) -> None:
    use_layer()
    _environment()
    hook = AwsRequests()
    hook.install()

    import boto3
    import openai
    from moto import mock_aws

    from local_stack.models.servers import openai_stand_in

    upstream = openai_stand_in().start()
    measured = {s.key: Measured() for s in SCENARIOS}
    direct_samples: list[float] = []
    direct_cpu: list[float] = []
    try:
        with mock_aws(), open(os.devnull, "w") as devnull:
            hook.take_over_from_moto()
            _create_resources()
            upstream_url = upstream.url + "/v1"
            principals = {
                s.key: _register_tenant(upstream_url, f"bench-{s.key}", s.budget) for s in SCENARIOS
            }
            if not audit:
                for name in GOVERNANCE_ENV:
                    os.environ.pop(name, None)
            gateway, stop_gateway = serve_web_app("gateway")
            request = {"model": ALIAS, "messages": MESSAGES, "max_tokens": 16}

            def through_handler(principal: dict[str, str]) -> Callable[[], None]:
                def call() -> None:
                    response = gateway(proxy_event("POST", "/v1/chat/completions", request, principal))
                    if response["statusCode"] != 200:
                        raise SystemExit(f"gateway answered {response['statusCode']}: {response['body']}")

                return call

            handlers = {key: through_handler(principal) for key, principal in principals.items()}
            dynamodb = boto3.client("dynamodb")
            client = openai.OpenAI(
                api_key=PROVIDER_KEY,
                base_url=upstream_url,
                max_retries=0,
                http_client=openai.DefaultHttpxClient(follow_redirects=False),
            )

            def direct() -> None:
                raw = client.chat.completions.with_raw_response.create(
                    model=STAND_IN_MODEL, messages=MESSAGES, max_tokens=16
                )
                raw.http_response.read()

            # Every call writes its CloudWatch metrics as EMF lines on stdout (the log stream, in
            # Lambda): still written, but not into the tables.
            with redirect_stdout(devnull):
                for scenario in SCENARIOS:
                    hook.reset()
                    handlers[scenario.key]()
                    measured[scenario.key].first = list(hook.calls)
                for _ in range(warmup):
                    direct()
                    for scenario in SCENARIOS:
                        handlers[scenario.key]()
                    _forget(dynamodb)
                for scenario in SCENARIOS:
                    hook.reset()
                    handlers[scenario.key]()
                    measured[scenario.key].warm = list(hook.calls)
                    measured[scenario.key].warm_beside = list(hook.beside)

                hook.reset()
                gc.collect()
                for i in range(calls):
                    wall, cpu = timed_cpu(direct)
                    direct_samples.append(wall)
                    direct_cpu.append(cpu)
                    # Each scenario in turn goes first, so none is always nearest the direct call.
                    for scenario in SCENARIOS[i % 3 :] + SCENARIOS[: i % 3]:
                        figures, call = measured[scenario.key], handlers[scenario.key]
                        if not replay_only:
                            hook.replay, hook.aws_seconds = False, 0.0
                            figures.moto.append(timed(call))
                            figures.inside_moto.append(hook.aws_seconds)
                        hook.replay = True
                        wall, cpu = timed_cpu(call)
                        figures.replay.append(wall)
                        figures.replay_cpu.append(cpu)
                    hook.replay = False
                    _forget(dynamodb)
                missed = hook.missed

                if profile:
                    _profile(handlers[profile], hook, calls, profile_out)
            stop_gateway()
    finally:
        upstream.stop()
        hook.uninstall()

    _report(direct_samples, direct_cpu, measured, missed, calls)


def _report(
    direct_samples: list[float],
    direct_cpu: list[float],
    measured: dict[str, Measured],
    missed: int,
    calls: int,
) -> None:
    direct = Summary.of(direct_samples)

    def added(samples: list[float], base: list[float] = direct_samples) -> Summary | None:
        if not samples:  # --replay-only: the path through moto was not timed
            return None
        return Summary.of([h - d for h, d in zip(samples, base, strict=True)])

    def of(samples: list[float]) -> Summary | None:
        return Summary.of(samples) if samples else None

    def cell(summary: Summary | None, figure: str) -> str:
        return "-" if summary is None else ms(getattr(summary, figure))

    say(f"In-process gateway handler, {calls} calls per path ({machine()})\n")
    rows = [["direct: openai SDK -> stand-in", ms(direct.median), ms(direct.p99), ms(direct.mean)]]
    for scenario in SCENARIOS:
        figures = measured[scenario.key]
        for path, samples in (("AWS by moto", figures.moto), ("AWS replayed (0 ms)", figures.replay)):
            summary = of(samples)
            rows.append(
                [
                    f"handler, {scenario.label}, {path}",
                    *(cell(summary, figure) for figure in ("median", "p99", "mean")),
                ]
            )
    say(table("Latency per call (ms)", ["path", "median", "p99", "mean"], rows))

    own = {s.key: added(measured[s.key].replay) for s in SCENARIOS}
    own_cpu = {s.key: added(measured[s.key].replay_cpu, direct_cpu) for s in SCENARIOS}
    moto = {s.key: of(measured[s.key].inside_moto) for s in SCENARIOS}
    both = {s.key: added(measured[s.key].moto) for s in SCENARIOS}

    def row(what: str, cell: Callable[[str], str]) -> list[str]:
        return [what, *(cell(s.key) for s in SCENARIOS)]

    say(
        table(
            "A warm chat completion by budget: AWS round trips, and time added over the direct call (ms)",
            ["", *(s.label for s in SCENARIOS)],
            [
                row(
                    "sequential AWS round trips (+ sent beside them)",
                    lambda k: _sequential(measured[k].warm, measured[k].warm_beside),
                ),
                row("by operation", lambda k: _counts(measured[k].warm)),
                row("gateway's own work (AWS replayed), median", lambda k: cell(own[k], "median")),
                row("gateway's own work (AWS replayed), p99", lambda k: cell(own[k], "p99")),
                row(
                    "gateway's own work, CPU time (AWS replayed), median",
                    lambda k: cell(own_cpu[k], "median"),
                ),
                row(
                    "time inside moto (emulated AWS, not DynamoDB), median",
                    lambda k: cell(moto[k], "median"),
                ),
                row("time inside moto (emulated AWS, not DynamoDB), p99", lambda k: cell(moto[k], "p99")),
                row("gateway + moto, median", lambda k: cell(both[k], "median")),
                row("gateway + moto, p99", lambda k: cell(both[k], "p99")),
            ],
        )
    )
    rows = []
    for scenario in SCENARIOS:
        figures = measured[scenario.key]
        rows.append([scenario.label, "first (cold caches)", str(len(figures.first)), _names(figures.first)])
        beside = f" ({len(figures.warm_beside)} beside another)" if figures.warm_beside else ""
        rows.append([scenario.label, "warm", f"{len(figures.warm)}{beside}", _names(figures.warm)])
    say(
        table(
            "AWS requests per /v1/chat/completions call (sequential but for those beside another)",
            ["tenant", "call", "requests", "which"],
            rows,
        )
    )
    if missed:
        say(f"Warning: {missed} AWS requests of the replayed calls were not replayed but sent to moto.\n")


def _sequential(calls: list[str], beside: list[str]) -> str:
    return f"{len(calls) - len(beside)}" + (f" (+ {len(beside)})" if beside else "")


def _names(calls: list[str]) -> str:
    return (
        ", ".join(f"{name} x{count}" if count > 1 else name for name, count in Counter(calls).items()) or "-"
    )


def _counts(calls: list[str]) -> str:
    """`BatchGetItem 1, TransactWriteItems 2`: operations without their service, in order of first use."""
    return ", ".join(f"{name.rsplit('.', 1)[-1]} {count}" for name, count in Counter(calls).items()) or "-"


def _profile(call: Any, hook: AwsRequests, calls: int, save_to: str | None) -> None:
    """yappi, not cProfile: the gateway's work runs in uvicorn's event loop and its worker threads,
    which a cProfile of the calling thread never sees (it would show the client waiting on a socket)."""
    import yappi

    hook.replay = True
    yappi.set_clock_type("cpu")  # CPU time: the threads' waits on each other are not the gateway's work
    yappi.start(builtins=False, profile_threads=True)
    for _ in range(calls):
        call()
    yappi.stop()
    hook.replay = False
    stats = yappi.get_func_stats()
    yappi.clear_stats()
    if save_to:  # for pstats: callers and callees (`python -m pstats FILE`)
        stats.save(save_to, type="pstat")
    out = io.StringIO()
    stats.sort("ttot").print_all(
        out=out,
        columns={0: ("name", 100), 1: ("ncall", 8), 2: ("tsub", 8), 3: ("ttot", 8), 4: ("tavg", 8)},
    )
    lines = out.getvalue().splitlines()
    print("\n".join(lines[:90]), file=sys.__stdout__, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per path (default 1000)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument(
        "--profile",
        nargs="?",
        const="none",
        choices=[s.key for s in SCENARIOS],
        help="also print a profile (yappi, every thread) of one tenant's replayed path: none, soft "
        "or hard budget (default none)",
    )
    parser.add_argument(
        "--no-audit",
        action="store_true",
        help="the gateway without its governance tables (no policy read, no audit record): the "
        "figures before governance, to compare with a run with them",
    )
    parser.add_argument("--profile-out", help="with --profile: also save it in pstats format to this file")
    parser.add_argument(
        "--replay-only",
        action="store_true",
        help="time only the replayed path (moto still answers the warm-up): the gateway's own work "
        "in a fraction of the time, for comparing two builds one after the other",
    )
    args = parser.parse_args(argv)
    run(
        args.calls,
        args.warmup,
        args.profile,
        audit=not args.no_audit,
        profile_out=args.profile_out,
        replay_only=args.replay_only,
    )


if __name__ == "__main__":
    main()
