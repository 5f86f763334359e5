"""The gateway's own work per call: the gateway handler called in-process, AWS emulated by moto.

    .venv/bin/python -m bench.in_process [--calls 1000] [--profile]

One OpenAI-compatible stand-in model server (local_stack.models) listens on loopback. Each round
makes, one after the other:

- direct:        the `openai` SDK calls the stand-in (raw response, nothing parsed);
- handler, moto: the gateway handler answers a /v1/chat/completions proxy event for an alias on
                 that stand-in, its AWS calls answered by moto in this process;
- handler, AWS replayed: the same, each AWS request answered at once with the bytes moto
                 answered it with during the warm-up (a botocore before-send hook), so what is
                 left beyond the provider call is the gateway's own work: routing, validation,
                 the AWS SDK building, signing and parsing its requests, the provider SDK, answer.

Added latency is the handler's time minus the direct call's, paired per round. The AWS requests of
one warm call are counted with the same hook.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import io
import json
import os
import pstats
from collections import Counter
from typing import Any

from bench.common import (
    FUNCTIONS,
    AwsRequests,
    LambdaContext,
    Summary,
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
}
PLATFORM_ADMIN = {
    "principal": "platform_admin",
    "tenant_id": "",
    "key_id": "platform-admin",
    "role": "platform_admin",
}
ALIAS = "bench-chat"
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
    admin_secret = boto3.client("secretsmanager").create_secret(
        Name="byom/bench/admin-key", SecretString="bench-admin-key", KmsKeyId=kms_key
    )["ARN"]
    os.environ.update({"KMS_KEY_ID": kms_key, "ADMIN_KEY_SECRET_ARN": admin_secret})


def load_handler(function: str) -> Any:
    """functions/<function>/handler.py imported by file, the way Lambda imports it."""
    spec = importlib.util.spec_from_file_location(f"bench_fn_{function}", FUNCTIONS / function / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def _admin(handler: Any, method: str, path: str, body: Any) -> dict[str, Any]:
    response = handler(proxy_event(method, path, body, PLATFORM_ADMIN), LambdaContext())
    if response["statusCode"] >= 300:
        raise SystemExit(f"setup failed: {method} {path} -> {response['statusCode']} {response['body']}")
    return json.loads(response["body"])


def _register_tenant(upstream_url: str) -> dict[str, str]:
    admin = load_handler("admin")
    from byom.observability import logger

    logger.setLevel("WARNING")  # the admin function's INFO lines would land in the tables' output
    tenant = _admin(admin, "POST", "/admin/tenants", {"name": "bench"})
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
        {"alias": ALIAS, "provider": "openai_compatible", "model_id": STAND_IN_MODEL, "credential": "bench"},
    )
    logger.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"))
    return {"principal": "tenant", "tenant_id": tenant_id, "key_id": "key_bench", "role": "developer"}


def run(calls: int, warmup: int, profile: bool) -> None:
    use_layer()
    _environment()
    hook = AwsRequests()
    hook.install()

    import openai
    from moto import mock_aws

    from local_stack.models.servers import openai_stand_in

    upstream = openai_stand_in().start()
    try:
        with mock_aws():
            hook.take_over_from_moto()
            _create_resources()
            upstream_url = upstream.url + "/v1"
            principal = _register_tenant(upstream_url)
            gateway = load_handler("gateway")
            request = {"model": ALIAS, "messages": MESSAGES, "max_tokens": 16}

            def through_handler() -> None:
                response = gateway(
                    proxy_event("POST", "/v1/chat/completions", request, principal), LambdaContext()
                )
                if response["statusCode"] != 200:
                    raise SystemExit(f"gateway answered {response['statusCode']}: {response['body']}")

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

            hook.reset()
            through_handler()
            cold_calls = list(hook.calls)
            for _ in range(warmup):
                through_handler()
                direct()
            hook.reset()
            through_handler()
            warm_calls = list(hook.calls)

            samples: dict[str, list[float]] = {"direct": [], "moto": [], "replay": []}
            moto_seconds: list[float] = []
            gc.collect()
            for _ in range(calls):
                samples["direct"].append(timed(direct))
                hook.replay, hook.aws_seconds = False, 0.0
                samples["moto"].append(timed(through_handler))
                moto_seconds.append(hook.aws_seconds)
                hook.replay = True
                samples["replay"].append(timed(through_handler))
            hook.replay = False

            if profile:
                _profile(through_handler, hook, calls)
    finally:
        upstream.stop()
        hook.uninstall()

    _report(samples, moto_seconds, cold_calls, warm_calls, calls)


def _report(
    samples: dict[str, list[float]],
    moto_seconds: list[float],
    cold_calls: list[str],
    warm_calls: list[str],
    calls: int,
) -> None:
    direct, moto, replay = (Summary.of(samples[k]) for k in ("direct", "moto", "replay"))
    added_moto = Summary.of([h - d for h, d in zip(samples["moto"], samples["direct"], strict=True)])
    added_replay = Summary.of([h - d for h, d in zip(samples["replay"], samples["direct"], strict=True)])
    moto_time = Summary.of(moto_seconds)
    say(f"In-process gateway handler, {calls} calls per path ({machine()})\n")
    say(
        table(
            "Latency per call (ms)",
            ["path", "median", "p99", "mean"],
            [
                ["direct: openai SDK -> stand-in", ms(direct.median), ms(direct.p99), ms(direct.mean)],
                ["handler, AWS by moto", ms(moto.median), ms(moto.p99), ms(moto.mean)],
                ["handler, AWS replayed (0 ms)", ms(replay.median), ms(replay.p99), ms(replay.mean)],
            ],
        )
    )
    say(
        table(
            "Added over the direct call, paired per round (ms)",
            ["what", "median", "p99"],
            [
                ["gateway + moto's AWS emulation", ms(added_moto.median), ms(added_moto.p99)],
                ["time inside moto (of the above)", ms(moto_time.median), ms(moto_time.p99)],
                ["gateway's own work (AWS replayed)", ms(added_replay.median), ms(added_replay.p99)],
            ],
        )
    )
    say(
        table(
            "AWS requests per /v1/chat/completions call (all sequential)",
            ["call", "requests", "which"],
            [
                ["first (cold caches)", len(cold_calls), _names(cold_calls)],
                ["warm", len(warm_calls), _names(warm_calls)],
            ],
        )
    )


def _names(calls: list[str]) -> str:
    return (
        ", ".join(f"{name} x{count}" if count > 1 else name for name, count in Counter(calls).items()) or "-"
    )


def _profile(call: Any, hook: AwsRequests, calls: int) -> None:
    hook.replay = True
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    hook.replay = False
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
    say(out.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per path (default 1000)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the replayed path")
    args = parser.parse_args(argv)
    run(args.calls, args.warmup, args.profile)


if __name__ == "__main__":
    main()
