"""Latency added over HTTP: the BYOM local stack and LiteLLM's proxy in front of the same upstream.

    .venv/bin/python -m bench.through_stack [--calls 1000] [--template cdk.out/ByomGateway.template.json]

Three processes on loopback, started here and stopped at the end:

- upstream:  the OpenAI-compatible stand-in model server (`python -m bench.upstream`);
- BYOM:      the local stack (`python -m local_stack`): API Gateway emulation, the authorizer and the
             gateway Lambda handlers, AWS emulated by a moto server; a tenant, a developer key, a
             credential and an alias on the upstream are registered through its admin API. Twice:
             as `make run` starts it (the authorizer's answer reused for the template's TTL, as
             API Gateway does in the deployed stack, flushed after admin writes) and with
             BYOM_AUTHORIZER_CACHE=false (the authorizer runs on every request);
- LiteLLM:   LiteLLM's proxy (`litellm --config`), installed at a pinned version in its own
             virtualenv (bench/.venv-litellm, created on first run: it is no dependency of the
             project), one worker, a master key and no database, its model list naming the upstream.

One client (http.client, one keep-alive connection per server) sends the same chat completion, one
call at a time, round after round: straight to the upstream, through BYOM, through LiteLLM. Each
answer is read whole and parsed. Added latency is a server's time minus the direct call's of the
same round.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import REPO_ROOT, STAND_IN_PRICING, Summary, forget_markers, machine, ms, say, table

LITELLM_VERSION = "1.102.4"
LITELLM_VENV = REPO_ROOT / "bench" / ".venv-litellm"
ADMIN_KEY = "bench-admin-key"
LITELLM_MASTER_KEY = "sk-bench-litellm-master"
PROVIDER_KEY = "sk-bench-provider-key"
ALIAS = "bench-chat"
STAND_IN_MODEL = "stand-in-chat"
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark in five words."}]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- processes ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith(prefix):
                    return line.removeprefix(prefix).strip()
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not start:\n{self.output()[-4000:]}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        if self.popen.stdin:
            self.popen.stdin.close()


@contextmanager
def started(
    name: str, args: list[str], env: dict[str, str], logs: Path, stdin: int | None = None
) -> Iterator[Process]:
    log = logs / f"{name}.log"
    with log.open("wb") as sink:
        popen = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=env,
            stdin=stdin,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process = Process(name, popen, log)
    try:
        yield process
    finally:
        process.stop()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BYOM_PORT", "BYOM_ADMIN_KEY")}
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1,localhost"]))
    return env | {"NO_PROXY": no_proxy, "no_proxy": no_proxy, "PYTHONUNBUFFERED": "1"} | extra


def ensure_litellm(venv: Path) -> Path:
    """LiteLLM's proxy at the pinned version in its own virtualenv; installed once."""
    marker = venv / f".installed-litellm-{LITELLM_VERSION}"
    if not marker.exists():
        progress(f"Installing litellm[proxy]=={LITELLM_VERSION} into {venv} (once) ...")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
        marker.touch()
    return venv / "bin" / "litellm"


def litellm_config(upstream: str, model_id: str = STAND_IN_MODEL) -> str:
    return f"""model_list:
  - model_name: {ALIAS}
    litellm_params:
      model: openai/{model_id}
      api_base: {upstream}/v1
      api_key: {PROVIDER_KEY}
general_settings:
  master_key: {LITELLM_MASTER_KEY}
"""


# -- HTTP --------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    path: str
    key: str
    model: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None
        self.reconnects = 0
        self.body = json.dumps({"model": self.model, "messages": MESSAGES, "max_tokens": 16}).encode()
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.key}",
            "Connection": "keep-alive",
        }

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
            self._conn.connect()
            self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._conn

    def call(self) -> float:
        """One chat completion, read and parsed; the seconds it took."""
        for attempt in (1, 2):
            connection = self._connection()
            started_at = time.perf_counter()
            try:
                connection.request("POST", self._prefix + self.path, body=self.body, headers=self.headers)
                response = connection.getresponse()
                data = response.read()
            except (http.client.HTTPException, ConnectionError):
                # The server closed an idle keep-alive connection: a new one, counted, not timed twice.
                self.close()
                self.reconnects += 1
                if attempt == 2:
                    raise
                continue
            elapsed = time.perf_counter() - started_at
            if response.status != 200:
                raise SystemExit(f"{self.name} answered {response.status}: {data[:500]!r}")
            answer = json.loads(data)
            if not answer["choices"][0]["message"]["content"]:
                raise SystemExit(f"{self.name} answered no content: {answer}")
            if response.getheader("connection", "").lower() == "close":
                self.close()
            return elapsed
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def admin(url: str, method: str, path: str, body: Any, key: str = ADMIN_KEY) -> Any:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
    try:
        connection.request(
            method,
            path,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status >= 300:
        raise SystemExit(f"local stack setup: {method} {path} -> {response.status} {data[:500]!r}")
    return json.loads(data)


def register(stack_url: str, upstream: str, model_id: str = STAND_IN_MODEL) -> str:
    """A tenant with an alias on the upstream's `model_id`; answers a developer key of that tenant."""
    tenant = admin(stack_url, "POST", "/admin/tenants", {"name": "bench"})["id"]
    base = f"/admin/tenants/{tenant}"
    admin(
        stack_url,
        "PUT",
        f"{base}/credentials/bench",
        {"provider": "openai_compatible", "api_key": PROVIDER_KEY, "base_url": upstream + "/v1"},
    )
    model = {
        "alias": ALIAS,
        "provider": "openai_compatible",
        "model_id": model_id,
        "credential": "bench",
        "pricing": STAND_IN_PRICING,
    }
    admin(stack_url, "POST", f"{base}/models", model)
    return str(admin(stack_url, "POST", f"{base}/keys", {"name": "bench", "role": "developer"})["key"])


class UsageMarkers:
    """The usage table of a local stack, in its moto server: its `req#` markers are deleted between
    rounds (bench.common.forget_markers), so every round meets the table at the same size."""

    def __init__(self, moto_url: str) -> None:
        import boto3

        self._dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=moto_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        # The one table keyed (pk, sk): docs/contracts.md
        tables = self._dynamodb.list_tables()["TableNames"]
        usage = [name for name in tables if _keys(self._dynamodb, name) == ["pk", "sk"]]
        if len(usage) != 1:
            raise SystemExit(f"local stack: no single usage table (pk, sk) among {tables}")
        self.table = usage[0]

    def forget(self) -> None:
        forget_markers(self._dynamodb, self.table)


def _keys(dynamodb: Any, table: str) -> list[str]:
    schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    return [key["AttributeName"] for key in sorted(schema, key=lambda k: k["KeyType"] != "HASH")]


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.25)
    raise SystemExit(f"{what} did not become ready in {timeout:.0f} s")


def _alive(url: str, path: str) -> bool:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    finally:
        connection.close()


# -- the run -----------------------------------------------------------------------------------------


def synthesized(template: Path | None, logs: Path) -> Path:
    """The given template, else the CDK app synthesized into `logs`."""
    if template is not None:
        return template
    progress("Synthesizing the CDK app for the local stack (app.py, bundling off) ...")
    sys.path.insert(0, str(REPO_ROOT))
    from local_stack.stack import synthesize

    return synthesize(REPO_ROOT, logs / "cdk.out")


def start_upstream(stack: ExitStack, logs: Path, *args: str) -> str:
    """`python -m bench.upstream` with `args`, stopped with `stack`; answers its URL."""
    process = stack.enter_context(
        started(
            "upstream", [sys.executable, "-m", "bench.upstream", *args], _env(), logs, stdin=subprocess.PIPE
        )
    )
    return process.wait_for_line("UPSTREAM ", 30)


def start_local_stack(stack: ExitStack, name: str, template: Path, logs: Path, **env: str) -> tuple[str, str]:
    """`python -m local_stack` on a free port, stopped with `stack`; answers its URL and its moto
    server's."""
    process = stack.enter_context(
        started(
            name,
            [sys.executable, "-m", "local_stack"],
            _env(
                BYOM_PORT=str(_free_port()),
                BYOM_ADMIN_KEY=ADMIN_KEY,
                BYOM_TEMPLATE=str(template),
                BYOM_LOG_LEVEL="WARNING",
                **env,
            ),
            logs,
        )
    )
    progress(f"Starting the local stack ({name}) ...")
    url = process.wait_for_line("BYOM local stack ready at ", 180)
    return url, process.wait_for_line("AWS emulation (moto) at ", 10)


def start_litellm(
    stack: ExitStack, executable: Path, upstream: str, logs: Path, model_id: str = STAND_IN_MODEL
) -> str:
    """LiteLLM's proxy with ALIAS on the upstream's `model_id`, stopped with `stack`; answers its URL."""
    port = _free_port()
    config = logs / "litellm.yaml"
    config.write_text(litellm_config(upstream, model_id))
    stack.enter_context(
        started(
            "litellm",
            [
                str(executable),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            _env(
                LITELLM_OFFLINE_MODE="true",
                LITELLM_LOCAL_MODEL_COST_MAP="True",
                LITELLM_LOG="ERROR",
                LITELLM_MODE="PRODUCTION",
            ),
            logs,
        )
    )
    url = f"http://127.0.0.1:{port}"
    progress("Starting LiteLLM's proxy ...")
    wait_until(lambda: _alive(url, "/health/liveliness"), "LiteLLM's proxy", 180)
    return url


def run(calls: int, warmup: int, template: Path | None, litellm: bool, venv: Path) -> None:
    litellm_exe = ensure_litellm(venv) if litellm else None
    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="byom-bench-")))
        template = synthesized(template, logs)
        upstream = start_upstream(stack, logs)

        targets = [Target("direct", upstream, "/v1/chat/completions", PROVIDER_KEY, STAND_IN_MODEL)]
        markers: list[UsageMarkers] = []
        for name, cache in (("byom", "true"), ("byom-uncached", "false")):
            stack_url, moto_url = start_local_stack(stack, name, template, logs, BYOM_AUTHORIZER_CACHE=cache)
            markers.append(UsageMarkers(moto_url))
            tenant_key = register(stack_url, upstream)
            targets.append(Target(name, stack_url, "/v1/chat/completions", tenant_key, ALIAS))
        if litellm_exe is not None:
            litellm_url = start_litellm(stack, litellm_exe, upstream, logs)
            targets.append(Target("litellm", litellm_url, "/v1/chat/completions", LITELLM_MASTER_KEY, ALIAS))

        progress(f"Warming up ({warmup} calls each), then {calls} rounds ...")
        for _ in range(warmup):
            for target in targets:
                target.call()
            for usage in markers:
                usage.forget()
        samples: dict[str, list[float]] = {t.name: [] for t in targets}
        for _ in range(calls):
            for target in targets:
                samples[target.name].append(target.call())
            for usage in markers:
                usage.forget()
        for target in targets:
            target.close()
        reconnects = {t.name: t.reconnects for t in targets}

    report(samples, reconnects, calls)


LABELS = {
    "direct": "direct: client -> upstream stand-in",
    "byom": "BYOM local stack (make run: authorizer answer cached, as deployed)",
    "byom-uncached": "BYOM local stack, authorizer on every call",
    "litellm": f"LiteLLM proxy {LITELLM_VERSION} (1 worker, master key, no DB)",
}


def report(samples: dict[str, list[float]], reconnects: dict[str, int], calls: int) -> None:
    say(f"Over HTTP on loopback, {calls} sequential calls per path, interleaved ({machine()})\n")
    rows = []
    for name, values in samples.items():
        summary = Summary.of(values)
        rows.append([LABELS[name], ms(summary.median), ms(summary.p99), ms(summary.mean)])
    say(table("Latency per chat completion (ms)", ["path", "median", "p99", "mean"], rows))
    added = []
    for name in samples:
        if name == "direct":
            continue
        delta = Summary.of([a - d for a, d in zip(samples[name], samples["direct"], strict=True)])
        added.append([LABELS[name], ms(delta.median), ms(delta.p99)])
    say(table("Added over the direct call, paired per round (ms)", ["through", "median", "p99"], added))
    if any(reconnects.values()):
        say(f"Reconnections (a server closed a keep-alive connection): {reconnects}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000, help="rounds of one call per path (default 1000)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument(
        "--template", type=Path, default=None, help="a synthesized template (else synthesized)"
    )
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    parser.add_argument("--litellm-venv", type=Path, default=LITELLM_VENV)
    args = parser.parse_args(argv)
    run(args.calls, args.warmup, args.template, not args.no_litellm, args.litellm_venv)


if __name__ == "__main__":
    main()
