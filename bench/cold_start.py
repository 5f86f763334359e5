"""Cold start of the Lambda functions: INIT (importing functions/<name>/handler.py) in fresh interpreters;
for the gateway, a web app behind the Lambda Web Adapter, INIT is importing its app.py and serving
it with uvicorn until the adapter's readiness check (GET /health) is answered, and its calls are
HTTP requests the way the adapter makes them. The adapter's own start (a Rust extension) cannot be
run here and is not counted.

    .venv/bin/python -m bench.cold_start [--runs 15] [--top 15]

Each run is a new Python process, as a new Lambda execution environment is. It imports the handler
by file the way the Lambda runtime does (INIT), then the gateway's also makes its first
/v1/chat/completions call and a second one. AWS is a moto server and the provider the
OpenAI-compatible stand-in model, both on loopback in this (parent) process, so the child imports
nothing the function would not.

Interpreter and bytecode (--python): by default the Lambda runtime's Python (LAYER_PYTHON in the
Makefile) when this machine has it, reading both layers as `make layers` ships them: the
dependencies pip installs for that Python (and boto3, which the runtime brings) and a copy of the
`byom` package, both compiled by it with unchecked-hash bytecode (built once under build/bench/;
the dependencies for this machine's platform, not Lambda's arm64). `--python current` runs this
virtualenv's Python instead, the `byom` package compiled afresh in every run as from a layer without
bytecode (PYTHONDONTWRITEBYTECODE=1: /opt is read-only in Lambda).

--openai-at-init adds a row: the gateway as deployed with the provider SDK imported during INIT,
to weigh INIT against INIT + first call.

Two environments for the gateway:
- "tracing off": POWERTOOLS_TRACE_DISABLED=true, what the local stack and the tests run;
- "as deployed": LAMBDA_TASK_ROOT set and no POWERTOOLS_TRACE_DISABLED, so Powertools' Tracer is
  active and patches botocore for X-Ray, as in the stack (Tracing: Active).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import FUNCTIONS, LAYER, REPO_ROOT, Summary, machine, say, table, use_layer

CHILD = r"""
import json, os, sys, time
started = time.perf_counter()
import importlib.util
function, path = sys.argv[1], sys.argv[2]
sys.path[:0] = [os.path.dirname(path), *sys.argv[3].split(os.pathsep)]
spec = importlib.util.spec_from_file_location("handler", path)
module = importlib.util.module_from_spec(spec)
sys.modules["handler"] = module
print("BENCH-INIT-START", file=sys.stderr, flush=True)
spec.loader.exec_module(module)
for name in filter(None, os.environ.get("BENCH_IMPORT_AT_INIT", "").split(",")):
    importlib.import_module(name)  # what a module-level import of it in the function would do
web = path.endswith("app.py")
if web:
    # What run.sh does under the Lambda Web Adapter: uvicorn serves the app; INIT ends when the
    # adapter's readiness check (GET /health) is answered.
    import http.client, socket, threading, uvicorn
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(module.app, log_level="warning", access_log=False, lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            connection.getresponse().read()
            break
        except OSError:
            time.sleep(0.005)
init = time.perf_counter() - started
result = {"init": init, "modules": len(sys.modules), "openai": "openai" in sys.modules,
          "xray": "aws_xray_sdk.core" in sys.modules, "boto3": "boto3" in sys.modules}
if len(sys.argv) > 4:
    event = json.loads(sys.argv[4])

    class Context:
        function_name = "bench"; function_version = "$LATEST"; memory_limit_in_mb = 1024
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
        aws_request_id = "00000000-0000-0000-0000-000000000000"
        log_group_name = "/aws/lambda/bench"; log_stream_name = "bench"
        def get_remaining_time_in_millis(self): return 29000

    def forwarded(event):
        # The adapter's part: the event as an HTTP request, its request context in a header.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = dict(event["headers"]) | {"x-amzn-request-context": json.dumps(event["requestContext"])}
        connection.request(event["httpMethod"], event["path"], body=event["body"] or "", headers=headers)
        response = connection.getresponse()
        return {"statusCode": response.status, "body": response.read().decode()}

    for name in ("first", "second"):
        t = time.perf_counter()
        answer = forwarded(event) if web else module.handler(event, Context())
        result[name] = time.perf_counter() - t
        status = answer.get("statusCode") if isinstance(answer, dict) else 200
        if status not in (None, 200):
            raise SystemExit(f"{function} answered {status}: {answer.get('body')}")
    result["openai_after_call"] = "openai" in sys.modules
print(json.dumps(result))
"""

BASE_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_LOGGER_LOG_EVENT": "false",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
    "PYTHONDONTWRITEBYTECODE": "1",
    "NO_PROXY": "127.0.0.1,localhost",
}
TRACING_OFF = {"POWERTOOLS_TRACE_DISABLED": "true"}
# Powertools enables its Tracer inside Lambda only; the trace header is what the runtime would set.
AS_DEPLOYED = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
    "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
}


@contextmanager
def aws_and_upstream() -> Iterator[dict[str, str]]:
    """A moto server and the OpenAI-compatible stand-in on loopback, with a tenant, a key, a
    credential and an alias registered through the admin handler; yields the functions' environment."""
    use_layer()
    from moto.server import ThreadedMotoServer

    from bench import in_process
    from local_stack.models.servers import openai_stand_in

    saved = dict(os.environ)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # else it logs every AWS call it serves
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    upstream = openai_stand_in().start()
    try:
        host, port = moto.get_host_and_port()
        os.environ.update(BASE_ENV | TRACING_OFF)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                "ALLOW_LOOPBACK_HTTP": "true",
                "SECRET_PREFIX": "byom/bench/tenants/",
                "POWERTOOLS_SERVICE_NAME": "byom-bench",
            }
        )
        in_process._create_resources()
        principal = in_process._register_tenant(upstream.url + "/v1")
        admin = in_process.load_handler("admin")
        key = in_process._admin(
            admin,
            "POST",
            f"/admin/tenants/{principal['tenant_id']}/keys",
            {"name": "bench", "role": "developer"},
        )["key"]
        names = [
            "AWS_ENDPOINT_URL",
            "ALLOW_LOOPBACK_HTTP",
            "SECRET_PREFIX",
            "KMS_KEY_ID",
            "DATA_BUCKET",
            "ADMIN_KEY_SECRET_ARN",
            "SPEND_ALARM_PREFIX",
            *in_process.TABLES,
        ]
        env = {name: os.environ[name] for name in names}
        env |= {"BENCH_TENANT": json.dumps(principal), "BENCH_KEY": key}
        yield env
    finally:
        upstream.stop()
        moto.stop()
        os.environ.clear()
        os.environ.update(saved)


def _events(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    from bench.common import proxy_event
    from bench.in_process import ALIAS, MESSAGES, PLATFORM_ADMIN

    chat = {"model": ALIAS, "messages": MESSAGES, "max_tokens": 16}
    method_arn = "arn:aws:execute-api:us-east-1:123456789012:benchapi/prod/POST/v1/chat/completions"
    return {
        "gateway": proxy_event("POST", "/v1/chat/completions", chat, json.loads(env["BENCH_TENANT"])),
        "admin": proxy_event("GET", "/admin/tenants", None, PLATFORM_ADMIN),
        "authorizer": {
            "type": "REQUEST",
            "methodArn": method_arn,
            "headers": {"Authorization": f"Bearer {env['BENCH_KEY']}"},
        },
    }


def _child_env(function: str, env: dict[str, str], deployed: bool) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "_X_AMZN"))}
    inherited.pop("LAMBDA_TASK_ROOT", None)
    child = inherited | BASE_ENV | {k: v for k, v in env.items() if not k.startswith("BENCH_")}
    child |= {"POWERTOOLS_SERVICE_NAME": f"byom-{function}"}
    if entry_file(function).name == "app.py":
        child |= WEB_ADAPTER_ENV
    return child | (AS_DEPLOYED if deployed else TRACING_OFF)


# The environment the stack gives a function behind the Lambda Web Adapter.
WEB_ADAPTER_ENV = {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap", "AWS_LWA_INVOKE_MODE": "response_stream"}


def entry_file(function: str) -> Path:
    """handler.py, or the app.py a web-adapter function's run.sh serves."""
    app = FUNCTIONS / function / "app.py"
    return app if app.is_file() else FUNCTIONS / function / "handler.py"


# -- the interpreter and the layers it reads ----------------------------------------------------------

BUILD = REPO_ROOT / "build" / "bench" / "cold_start"
DEPS_REQUIREMENTS = REPO_ROOT / "layers" / "deps" / "requirements.txt"
# As `make layers` compiles the layers (the Makefile says why unchecked-hash).
COMPILE = ["-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
PIP_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class Interpreter:
    python: str
    layers: tuple[Path, ...]
    label: str
    env: tuple[tuple[str, str], ...] = ()

    def without_bytecode(self) -> Interpreter:
        """The same layers read as if they shipped no bytecode: Python then looks for .pyc files only
        under an empty PYTHONPYCACHEPREFIX, and writes none (PYTHONDONTWRITEBYTECODE)."""
        empty = BUILD / "no-bytecode"
        shutil.rmtree(empty, ignore_errors=True)
        empty.mkdir(parents=True)
        label = self.label.split(",")[0] + ", layers without bytecode"
        return replace(self, label=label, env=(("PYTHONPYCACHEPREFIX", str(empty)),))


@dataclass(frozen=True)
class Row:
    function: str
    deployed: bool
    import_at_init: str = ""
    """Modules imported during INIT besides the handler's own (comma-separated)."""
    interpreter: Interpreter | None = None
    """None: the run's (--python)."""

    @property
    def environment(self) -> str:
        words = ["as deployed" if self.deployed else "tracing off"]
        if self.import_at_init:
            words.append(f"{self.import_at_init} imported at INIT")
        if self.interpreter is not None:
            words.append(self.interpreter.label)
        return ", ".join(words)


def layer_python_version() -> str:
    """LAYER_PYTHON of the Makefile: the Lambda runtime's Python (tests/infra checks they agree)."""
    match = re.search(r"^LAYER_PYTHON \?= (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit("no LAYER_PYTHON in the Makefile")
    return match.group(1)


def find_python(version: str) -> str | None:
    """That Python on PATH or kept by pyenv, as the Makefile's RUNTIME_PYTHON finds it."""
    pyenv = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = [
        shutil.which(f"python{version}"),
        *sorted(glob.glob(f"{pyenv}/versions/{version}*/bin/python{version}")),
    ]
    probe = f"import sys; sys.exit(not sys.version.startswith('{version}.'))"
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", probe], capture_output=True, timeout=30).returncode == 0:
            return candidate
    return None


def _compile(python: str, folder: Path) -> None:
    subprocess.run([python, *COMPILE, str(folder)], check=True, timeout=PIP_TIMEOUT_SECONDS)


def shipped_layers(python: str, version: str) -> tuple[Path, ...]:
    """Both layers as `make layers` ships them, for this machine's platform: the dependencies (once
    per set of requirements) and the `byom` package (every run: it changes more often)."""
    tag = version.replace(".", "")
    # boto3 is not in the dependency layer: the runtime brings it. This virtualenv's version stands in.
    requirements = DEPS_REQUIREMENTS.read_text() + f"boto3=={metadata.version('boto3')}\n"
    deps = BUILD / f"deps-py{tag}"
    stamp = deps / ".requirements"
    if not stamp.is_file() or stamp.read_text() != requirements:
        say(
            f"Installing the dependency layer for Python {version} "
            f"into {deps.relative_to(REPO_ROOT)} (once)..."
        )
        shutil.rmtree(deps, ignore_errors=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as listed:
            listed.write(requirements)
            listed.flush()
            subprocess.run(
                [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-compile",
                    "--only-binary=:all:",
                    "--target",
                    str(deps),
                    "-r",
                    listed.name,
                ],
                check=True,
                timeout=PIP_TIMEOUT_SECONDS,
            )
        _compile(python, deps)
        stamp.write_text(requirements)
    common = BUILD / f"common-py{tag}"
    shutil.rmtree(common, ignore_errors=True)
    shutil.copytree(LAYER, common, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _compile(python, common)
    return common, deps


def interpreter(choice: str) -> Interpreter:
    version = layer_python_version()
    python = find_python(version) if choice == "runtime" else None
    if choice == "runtime" and python is None:
        say(
            f"note: no Python {version} on this machine (PATH or pyenv): "
            "measuring this one, without bytecode\n"
        )
    if python is None:
        return Interpreter(
            sys.executable, (LAYER,), f"Python {sys.version.split()[0]}, byom compiled afresh (no bytecode)"
        )
    return Interpreter(
        python,
        shipped_layers(python, version),
        f"the runtime's Python {version}, layers with their shipped bytecode",
    )


def run_child(
    function: str,
    env: dict[str, str],
    deployed: bool,
    event: dict[str, Any] | None,
    runtime: Interpreter,
    import_at_init: str = "",
) -> dict[str, Any]:
    layers = os.pathsep.join(str(layer) for layer in runtime.layers)
    args = [runtime.python, "-c", CHILD, function, str(entry_file(function)), layers]
    if event is not None:
        args.append(json.dumps(event))
    started = time.perf_counter()
    done = subprocess.run(
        args,
        env=_child_env(function, env, deployed)
        | {"BENCH_IMPORT_AT_INIT": import_at_init}
        | dict(runtime.env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{function} child failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process"] = wall
    return result


# -- python -X importtime ----------------------------------------------------------------------------

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def import_times(stderr: str) -> list[dict[str, Any]]:
    """-X importtime lines with each module's importer (the lines come children first)."""
    entries: list[dict[str, Any]] = []
    pending: dict[int, list[dict[str, Any]]] = {}
    # What the harness imported before it started the handler's INIT is not the function's.
    stderr = stderr.split("BENCH-INIT-START", 1)[-1]
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        depth = (len(match.group(3)) - 1) // 2
        entry = {
            "name": match.group(4),
            "self": int(match.group(1)),
            "cum": int(match.group(2)),
            "parent": None,
        }
        for child in pending.pop(depth + 1, []):
            child["parent"] = entry["name"]
        pending.setdefault(depth, []).append(entry)
        entries.append(entry)
    return entries


def heaviest(
    function: str, env: dict[str, str], deployed: bool, top: int, runtime: Interpreter
) -> tuple[list[list[str]], float]:
    layers = os.pathsep.join(str(layer) for layer in runtime.layers)
    args = [runtime.python, "-X", "importtime", "-c", CHILD, function, str(entry_file(function)), layers]
    done = subprocess.run(
        args,
        env=_child_env(function, env, deployed),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    entries = import_times(done.stderr)

    def ours(name: str | None) -> bool:
        return name is None or name == "byom" or name.startswith("byom.")

    direct = [e for e in entries if ours(e["parent"]) and not ours(e["name"])]
    direct.sort(key=lambda e: e["cum"], reverse=True)
    byom_self = sum(e["self"] for e in entries if ours(e["name"]))
    rows = [[e["name"], e["parent"] or "handler.py", f"{e['cum'] / 1000:.1f}"] for e in direct[:top]]
    return rows, byom_self / 1000


# -- the report --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=15, help="fresh interpreters per function and environment"
    )
    parser.add_argument("--top", type=int, default=12, help="heaviest imports to list")
    parser.add_argument(
        "--python",
        choices=["runtime", "current"],
        default="runtime",
        help="the Lambda runtime's Python with the layers' bytecode (when present), or this one",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 100:
        parser.error("--runs must be from 1 to 100")
    runtime = interpreter(args.python)

    with aws_and_upstream() as env:
        events = _events(env)
        plan = [
            Row("gateway", False),
            Row("gateway", True),
            Row("gateway", True, import_at_init="openai"),
            Row("authorizer", False),
            Row("authorizer", True),
            Row("admin", False),
            Row("admin", True),
        ]
        if runtime.python != sys.executable:  # the runtime's Python, with the layers' bytecode
            # The same run without the layers' bytecode: the comparison holds however busy the machine is.
            plan.insert(2, Row("gateway", True, interpreter=runtime.without_bytecode()))
        results: dict[Row, list[dict[str, Any]]] = {row: [] for row in plan}
        run_child("gateway", env, False, events["gateway"], runtime)  # warms the OS file cache
        for _ in range(args.runs):
            for row in plan:
                results[row].append(
                    run_child(
                        row.function,
                        env,
                        row.deployed,
                        events[row.function],
                        row.interpreter or runtime,
                        row.import_at_init,
                    )
                )
        imports = {
            deployed: heaviest("gateway", env, deployed, args.top, runtime) for deployed in (False, True)
        }

    say(f"Cold start, {args.runs} fresh interpreters each ({machine()}; children: {runtime.label})\n")
    rows = []
    for row, runs in results.items():
        init = Summary.of([r["init"] for r in runs])
        first = Summary.of([r["first"] for r in runs])
        both = Summary.of([r["init"] + r["first"] for r in runs])
        second = Summary.of([r["second"] for r in runs])
        process = Summary.of([r["process"] for r in runs])
        loaded = runs[-1]
        rows.append(
            [
                row.function,
                row.environment,
                f"{init.median * 1000:.0f}",
                f"{init.minimum * 1000:.0f}-{init.maximum * 1000:.0f}",
                f"{first.median * 1000:.0f}",
                f"{both.median * 1000:.0f}",
                f"{second.median * 1000:.1f}",
                f"{process.median * 1000:.0f}",
                loaded["modules"],
                _yes(loaded["xray"]),
                _yes(loaded["openai"]),
            ]
        )
    say(
        table(
            "INIT = importing handler.py, or app.py served until ready (ms, median); then two invocations",
            [
                "function",
                "environment",
                "INIT",
                "INIT min-max",
                "1st call",
                "INIT + 1st call",
                "2nd call",
                "whole process",
                "modules at INIT",
                "X-Ray SDK at INIT",
                "openai at INIT",
            ],
            rows,
        )
    )
    say(
        "1st call: gateway = POST /v1/chat/completions on an OpenAI-compatible alias (alias, credential "
        "and provider key read, provider SDK imported, the call metered; 2nd call: a read and the "
        "metering transaction); authorizer = a tenant key looked up; admin = GET /admin/tenants. AWS "
        "is a moto server on loopback. INIT + 1st call: the median of each run's sum. As deployed, the "
        "invocations are sampled out by X-Ray (Sampled=0), so botocore is never patched.\n"
    )
    for deployed, (rows, byom_self) in imports.items():
        say(
            table(
                f"Heaviest imports of the gateway's INIT, {'as deployed' if deployed else 'tracing off'} "
                "(python -X importtime, one run)",
                ["module", "imported by", "cumulative ms"],
                rows,
            )
        )
        say(f"The byom package's own modules (loading and running them): {byom_self:.1f} ms.\n")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


if __name__ == "__main__":
    main()
