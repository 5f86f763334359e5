"""The local stack: synthesized template -> AWS emulation, stand-in models, handlers, API Gateway.

Usable in-process (tests) as well as by `python -m local_stack`:

    with LocalStack(StackSettings(repo_root=ROOT, port=0, template=path)) as stack:
        httpx.get(stack.url + "/health")
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters
from moto import backends as moto_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from local_stack import moto_events, moto_transactions, moto_usage_plans
from local_stack.apigateway import LocalApiGateway, build_rest_api
from local_stack.events import LocalEventBus, lambda_rules
from local_stack.httpbase import BackgroundServer
from local_stack.iam_emulation import IamEmulation
from local_stack.lambdas import (
    FunctionRuntime,
    LambdaFunction,
    discover_functions,
    merge_environments,
    register_function_arns,
)
from local_stack.logs import ServiceStamp
from local_stack.models.batch_inference import BatchInferenceState
from local_stack.models.customization import CustomizationState
from local_stack.models.openai_batches import OpenAIBatchesState
from local_stack.models.openai_fine_tuning import OpenAIFineTuningState
from local_stack.models.servers import bedrock_stand_in, openai_stand_in
from local_stack.queues import QueuePollers, sqs_sources
from local_stack.resources import create_resources
from local_stack.server import gateway_server
from local_stack.stepfunctions import CONFIG as SFN_CONFIG
from local_stack.stepfunctions import LambdaRouter, lambda_tasks_in_process
from local_stack.template import REGION, Resolver, Template, load_template
from local_stack.web_adapter import LocalWebFunctions

log = logging.getLogger(__name__)

STACK_NAME = "ByomGateway"
DEFAULT_PORT = 8787
REPO_ROOT = Path(__file__).resolve().parent.parent

LOCAL_OVERRIDES = {
    "ALLOW_LOOPBACK_HTTP": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    # The stand-in hosts a custom model at once; the cloud's minute between checks would only wait.
    "DEPLOYMENT_POLL_SECONDS": "1",
    # The OpenAI stand-in's jobs end after BYOM_LOCAL_TRAINING_SECONDS: look every second.
    "OPENAI_POLL_SECONDS": "1",
    # The batch inference stand-in has no minimum; a small one keeps small Bedrock batches gateway-run.
    "BEDROCK_BATCH_MIN_RECORDS": "10",
}
# How long a local model-customization job trains before it completes (BYOM_LOCAL_TRAINING_SECONDS).
DEFAULT_TRAINING_SECONDS = 2.0
# How long a stand-in batch job (Bedrock batch inference, OpenAI's Batch API) runs (BYOM_LOCAL_BATCH_SECONDS).
DEFAULT_BATCH_SECONDS = 2.0
# The stand-in models' pause between streamed tokens (BYOM_STANDIN_TOKEN_DELAY_MS): long enough
# for `make run` users to see tokens arrive one by one.
DEFAULT_TOKEN_DELAY_MS = 20


_ONE_PER_PROCESS = threading.Lock()


class StackError(Exception):
    """The local stack cannot start."""


# Writes here can revoke keys or delete tenants, so they flush the local authorizer cache.
ADMIN_PATH_PREFIX = "/admin/"


@dataclass
class StackSettings:
    repo_root: Path = REPO_ROOT
    port: int = DEFAULT_PORT  # 0 picks a free port
    admin_key: str | None = None  # generated when None
    template: Path | None = None  # synthesized from app.py when None
    # API Gateway's authorizer cache (the template's TTL), as in the cloud; flushed after every
    # successful admin write so a revoked key is still refused at once. Off: the authorizer runs
    # on every call.
    authorizer_cache: bool = True
    training_seconds: float = DEFAULT_TRAINING_SECONDS
    token_delay_ms: int = DEFAULT_TOKEN_DELAY_MS
    batch_seconds: float = DEFAULT_BATCH_SECONDS
    # The stand-in models' ports (0 picks free ones); the demo fixes them, so aliases seeded
    # against them keep a URL a user can paste.
    openai_stand_in_port: int = 0
    bedrock_stand_in_port: int = 0

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, stand_in_ports: tuple[int, int] = (0, 0)
    ) -> StackSettings:
        """`stand_in_ports`: the defaults when BYOM_OPENAI_STANDIN_PORT / BYOM_BEDROCK_STANDIN_PORT
        are unset."""
        template = environ.get("BYOM_TEMPLATE")
        return cls(
            openai_stand_in_port=_port(environ, "BYOM_OPENAI_STANDIN_PORT", stand_in_ports[0]),
            bedrock_stand_in_port=_port(environ, "BYOM_BEDROCK_STANDIN_PORT", stand_in_ports[1]),
            port=int(environ.get("BYOM_PORT") or DEFAULT_PORT),
            admin_key=environ.get("BYOM_ADMIN_KEY") or None,
            template=Path(template) if template else None,
            authorizer_cache=(environ.get("BYOM_AUTHORIZER_CACHE") or "true").lower()
            not in ("0", "false", "no"),
            training_seconds=float(environ.get("BYOM_LOCAL_TRAINING_SECONDS") or DEFAULT_TRAINING_SECONDS),
            token_delay_ms=int(environ.get("BYOM_STANDIN_TOKEN_DELAY_MS") or DEFAULT_TOKEN_DELAY_MS),
            batch_seconds=float(environ.get("BYOM_LOCAL_BATCH_SECONDS") or DEFAULT_BATCH_SECONDS),
        )


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if not value:
        return default
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise StackError(f"{name} must be a port number from 0 to 65535")
    return int(value)


def check_admin_key(key: str) -> None:
    """A key a client cannot send in an `Authorization` header would make every admin call 401."""
    if key != key.strip() or not key.isascii() or not key.isprintable():
        raise StackError(
            "BYOM_ADMIN_KEY must be printable ASCII without leading or trailing spaces: "
            "it travels in the Authorization header"
        )


def synthesize(repo_root: Path, outdir: Path | None = None) -> Path:
    """Runs app.py with bundling off, as `make synth` does; answers the template's path."""
    outdir = outdir or repo_root / "cdk.out"
    env = {k: v for k, v in os.environ.items() if k != "BYOM_BUNDLING"}
    env |= {"JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1", "CDK_OUTDIR": str(outdir)}
    if not (repo_root / "app.py").is_file():
        raise StackError(f"{repo_root / 'app.py'} not found: nothing to synthesize")
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=repo_root, env=env, capture_output=True, text=True, timeout=900
    )
    template = outdir / f"{STACK_NAME}.template.json"
    if result.returncode != 0 or not template.is_file():
        raise StackError(f"synthesizing the CDK app failed:\n{result.stdout}\n{result.stderr}")
    return template


def _remember_moto_modules() -> None:
    """moto's server lists its own package directory (dozens of listdir/stat calls) to route every
    request to a backend; the list cannot change while it runs, so it is read once."""
    if getattr(moto_backends.list_of_moto_modules, "remembered", False):
        return
    modules = tuple(moto_backends.list_of_moto_modules())

    def remembered() -> tuple[str, ...]:
        return modules

    remembered.remembered = True  # type: ignore[attr-defined]
    moto_backends.list_of_moto_modules = remembered


class SerializedMotoServer(ThreadedMotoServer):
    """moto's threaded server with one request at a time: moto's backends take no locks, and
    DynamoDB conditional writes (budget reservations) must be atomic, as they are in AWS. Requests
    pass the IAM emulation of tenant-scoped sessions first (local_stack.iam_emulation)."""

    def __init__(self, *args: Any, iam: IamEmulation | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Unconfigured, the emulation passes every request through.
        self.iam = iam or IamEmulation()

    def _server_entry(self) -> None:
        _remember_moto_modules()
        moto_transactions.install()
        moto_usage_plans.install()
        moto_events.install()
        app = self.iam.wrap(DomainDispatcherApplication(create_backend_app))
        lock = threading.Lock()

        def serialized(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            with lock:
                result = app(environ, start_response)
                try:
                    return [b"".join(result)]
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()

        self._server = make_server(
            self._ip_address, self._port, serialized, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class LocalStack:
    settings: StackSettings = field(default_factory=StackSettings)
    admin_key: str = ""
    admin_key_generated: bool = False
    template: Template | None = None
    functions: dict[str, LambdaFunction] = field(default_factory=dict)
    moto_url: str = ""
    openai_url: str = ""
    bedrock_url: str = ""
    url: str = ""
    progress: Callable[[str], None] = field(default=lambda _message: None, repr=False)

    def __post_init__(self) -> None:
        self._moto: ThreadedMotoServer | None = None
        self._servers: list[BackgroundServer] = []
        self._runtime = FunctionRuntime()
        self._saved_environ: dict[str, str] | None = None
        self._saved_modules: dict[str, Any] = {}
        self._started = False
        self._lambda_tasks: contextlib.ExitStack | None = None
        self._web: LocalWebFunctions | None = None
        self.customization = CustomizationState()
        self.batch_inference = BatchInferenceState()
        self.event_bus: LocalEventBus | None = None
        self._queues: QueuePollers | None = None
        self.iam = IamEmulation()
        self._service_stamp = ServiceStamp()

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        if self._started:
            raise StackError("already started")
        # The emulation's state, os.environ and the imported handlers are process-wide.
        if not _ONE_PER_PROCESS.acquire(blocking=False):
            raise StackError("another local stack is running in this process")
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        settings = self.settings
        if settings.template is None:
            self.progress("Synthesizing the CDK app (app.py, bundling off) ...")
        template_path = settings.template or synthesize(settings.repo_root)
        self.template = load_template(template_path)
        if settings.admin_key is not None:
            check_admin_key(settings.admin_key)
        self.admin_key = settings.admin_key or secrets.token_urlsafe(32)
        self.admin_key_generated = settings.admin_key is None

        self._saved_environ = dict(os.environ)
        # Powertools' parameter cache is process-wide and outlives a stack: the same secret name (the
        # platform admin key's) would answer with an earlier stack's value.
        parameters.clear_caches()
        self._service_stamp.install()
        self._start_moto()
        self._isolate_aws_environment()
        self.progress(f"AWS emulation (moto) at {self.moto_url}")

        self.customization = CustomizationState(
            read_s3=self._read_s3, training_seconds=settings.training_seconds
        )
        self.batch_inference = BatchInferenceState(
            read_s3=self._read_s3, write_s3=self._write_s3, delay_seconds=settings.batch_seconds
        )
        openai_server = self._stand_in(
            "BYOM_OPENAI_STANDIN_PORT",
            settings.openai_stand_in_port,
            lambda port: openai_stand_in(
                port,
                fine_tuning=OpenAIFineTuningState(training_seconds=settings.training_seconds),
                token_delay_ms=settings.token_delay_ms,
                batches=OpenAIBatchesState(delay_seconds=settings.batch_seconds),
            ),
        )
        self._servers.append(openai_server)
        bedrock_server = self._stand_in(
            "BYOM_BEDROCK_STANDIN_PORT",
            settings.bedrock_stand_in_port,
            lambda port: bedrock_stand_in(
                port,
                customization=self.customization,
                token_delay_ms=settings.token_delay_ms,
                batch_jobs=self.batch_inference,
            ),
        )
        self._servers.append(bedrock_server)
        self.openai_url, self.bedrock_url = openai_server.url + "/v1", bedrock_server.url

        resolver = Resolver(self.template)
        register_function_arns(self.template, resolver)
        created = create_resources(self.template, resolver, self.moto_url, self.admin_key)
        log.info("created %d resources in the AWS emulation", len(created))
        self.iam.configure(self.template, resolver)
        log.info("IAM emulated for sessions of %s", sorted(self.iam.roles) or "no role")

        functions = discover_functions(self.template, resolver)
        self.functions = {f.logical_id: f for f in functions}
        os.environ.update(merge_environments(functions))
        os.environ.update(LOCAL_OVERRIDES)
        os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = self.bedrock_url
        # The Bedrock control plane too (model customization): the same stand-in server.
        os.environ["AWS_ENDPOINT_URL_BEDROCK"] = self.bedrock_url
        self._load_functions(functions)
        router = LambdaRouter(lambda: self.functions)
        self._lambda_tasks = contextlib.ExitStack()
        self._lambda_tasks.enter_context(lambda_tasks_in_process(router))
        self.event_bus = LocalEventBus(
            lambda_rules(self.template, resolver), lambda arn, event: self._invoke_arn(router, arn, event)
        )
        self.customization.emit = self.event_bus.put
        self.batch_inference.emit = self.event_bus.put
        # And what the functions put on the bus themselves (BatchFinished: the evals scorer's rule).
        moto_events.forward_to(self.event_bus.put)
        # Rules the admin API creates at runtime live in moto, which delivers to their SQS targets;
        # the template's SQS event sources (the automation runner) are polled here.
        self._queues = QueuePollers(
            sqs_sources(self.template, resolver),
            self.moto_url,
            lambda name, event: self._invoke_arn(router, name, event),
        ).start()

        api = build_rest_api(self.template, resolver)
        missing = {m.function_id for m in api.methods if m.function_id} - self.functions.keys()
        missing |= {m.authorizer.function_id for m in api.methods if m.authorizer} - self.functions.keys()
        if missing:
            raise StackError(f"the API integrates functions that cannot run locally: {sorted(missing)}")
        self._web = LocalWebFunctions(functions).start()
        gateway = LocalApiGateway(
            api,
            self._invoke,
            cache_authorizer_results=settings.authorizer_cache,
            flush_cache_after_writes_under=ADMIN_PATH_PREFIX,
            usage_plans=moto_usage_plans.MotoUsagePlans(),
            web_functions=self._web,
        )
        try:
            server = gateway_server(gateway, settings.port)
        except OSError as error:
            raise StackError(f"cannot listen on 127.0.0.1:{settings.port}: {error.strerror}") from error
        self._servers.append(server.start())
        self.url = server.url

    @staticmethod
    def _stand_in(setting: str, port: int, build: Callable[[int], BackgroundServer]) -> BackgroundServer:
        try:
            return build(port).start()
        except OSError as error:
            raise StackError(
                f"cannot listen on 127.0.0.1:{port} for a stand-in model: {error.strerror} "
                f"(set {setting} to another port, or 0 for any)"
            ) from error

    def _start_moto(self) -> None:
        werkzeug_log = logging.getLogger("werkzeug")
        if werkzeug_log.level == logging.NOTSET:
            werkzeug_log.setLevel(logging.WARNING)  # else it logs every AWS call moto serves
        self._moto = SerializedMotoServer(ip_address="127.0.0.1", port=0, verbose=False, iam=self.iam)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        # moto's backends are process-wide: start from nothing, as a fresh account would.
        _no_proxy_opener().open(
            urllib.request.Request(self.moto_url + "/moto-api/reset", method="POST")
        ).read()
        # State machines run in moto's ASL interpreter (before any is created: it is another backend).
        _no_proxy_opener().open(
            urllib.request.Request(
                self.moto_url + "/moto-api/config",
                data=json.dumps(SFN_CONFIG).encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
        ).read()

    def _isolate_aws_environment(self) -> None:
        """Every AWS SDK call of this process goes to the emulation, with dummy credentials."""
        for name in list(os.environ):
            if name.startswith("AWS_ENDPOINT_URL_") or name in (
                "AWS_PROFILE",
                "AWS_DEFAULT_PROFILE",
                "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
            ):
                del os.environ[name]
        no_proxy = ",".join(
            filter(None, [os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), "127.0.0.1,localhost"])
        )
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.moto_url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                # Where moto's ASL interpreter sends its service integrations (EventBridge, ...).
                "MOTO_PORT": self.moto_url.rsplit(":", 1)[-1],
                "NO_PROXY": no_proxy,
                "no_proxy": no_proxy,
            }
        )

    def _load_functions(self, functions: list[LambdaFunction]) -> None:
        # Packages the layers provide may already be imported (tests import the source tree):
        # set them aside so the handlers import the layer's copy against this stack, and put
        # them back on stop.
        for top_level in self._layer_packages(functions):
            for name in [n for n in sys.modules if n == top_level or n.startswith(top_level + ".")]:
                self._saved_modules[name] = sys.modules.pop(name)
        self._runtime.add_layers(functions)
        for function in functions:
            self._runtime.load(function)

    @staticmethod
    def _layer_packages(functions: list[LambdaFunction]) -> set[str]:
        names: set[str] = set()
        for function in functions:
            for layer in function.layer_dirs:
                if layer.is_dir() and not any(layer.glob("*.dist-info")):
                    names |= {p.stem for p in layer.iterdir() if p.is_dir() or p.suffix == ".py"}
        names.discard("__pycache__")
        return names

    def _invoke(self, logical_id: str, event: dict[str, Any], caller_timeout: float | None) -> Any:
        return self.functions[logical_id].invoke(event, caller_timeout)

    @staticmethod
    def _invoke_arn(router: LambdaRouter, arn: str, event: dict[str, Any]) -> Any:
        function = router.find(arn)
        if function is None:
            raise StackError(f"no local function {arn}")
        return function.invoke(event)

    def _s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.moto_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def _read_s3(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        body: bytes = self._s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def _write_s3(self, uri: str, body: bytes) -> None:
        """What a stand-in job writes as the service would, with the job's service role."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        self._s3().put_object(Bucket=bucket, Key=key, Body=body)

    def stop(self) -> None:
        """Stops every server and undoes this process's changes (environment, imports)."""
        if self._queues is not None:
            self._queues.stop()
            self._queues = None
        if self._lambda_tasks is not None:
            self._lambda_tasks.close()
            self._lambda_tasks = None
        for server in reversed(self._servers):
            with contextlib.suppress(Exception):
                server.stop()
        self._servers.clear()
        if self._web is not None:
            self._web.stop()
            self._web = None
        moto_events.forward_to(None)
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
            self._moto = None
        self._runtime.unload()
        self._service_stamp.uninstall()
        for name in [
            n for n in sys.modules if any(n == s or n.startswith(s + ".") for s in self._saved_modules)
        ]:
            del sys.modules[name]
        sys.modules.update(self._saved_modules)
        self._saved_modules.clear()
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None
        if self._started:
            self._started = False
            _ONE_PER_PROCESS.release()

    # -- telling the user ----------------------------------------------------------------------------

    def instructions(self) -> Iterator[str]:
        key_note = "  (generated: set BYOM_ADMIN_KEY to choose it)" if self.admin_key_generated else ""
        create_tenant = (
            f'curl -s -X POST {self.url}/admin/tenants -H "Authorization: Bearer {self.admin_key}" '
            "-H 'content-type: application/json' -d '{\"name\":\"acme\"}'"
        )
        yield f"BYOM local stack ready at {self.url}"
        yield f"  Platform admin key: {self.admin_key}{key_note}"
        yield "  Create a tenant:"
        yield f"    {create_tenant}"
        yield f'  OpenAI SDK: OpenAI(base_url="{self.url}/v1", api_key="<a tenant key>")'
        yield f"  OpenAI-compatible stand-in: {self.openai_url}  (models: stand-in-chat, stand-in-embed)"
        yield f"  Bedrock Converse stand-in: {self.bedrock_url}  (any model id; used by provider 'bedrock')"
        yield f"  AWS emulation (moto) at {self.moto_url}"
        yield (
            "  Events for automations: aws events put-events --endpoint-url "
            f"{self.moto_url} --entries file://examples/automations/guardduty-finding.entries.json"
        )
        yield "  Stand-in models are deterministic fakes that echo the prompt; they are not real models."
        yield "  They call a tool only when the last user message names it."
        yield "  All state is in memory: tenants, keys and usage are gone when the stack stops."
        yield "Press Ctrl-C to stop."
