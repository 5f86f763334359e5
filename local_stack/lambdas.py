"""Running the template's Python Lambda functions in this process.

Each function's handler module is imported under a unique module name (every function's file is
called handler.py), its layers go on sys.path, and the functions' environment variables are
merged into os.environ: they all run in one process, so two functions may not disagree on a value.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_stack.logs import running_as
from local_stack.template import ACCOUNT_ID, PARTITION, REGION, Physical, Resolver, Template
from local_stack.web_adapter import APP_ATTRIBUTE, APP_MODULE, is_web_adapter

log = logging.getLogger(__name__)

ASSET_PATH_KEY = "aws:asset:path"
# Read once at import by Powertools, so each function gets its own value while its module is
# imported instead of conflicting in the shared environment.
PER_FUNCTION_AT_IMPORT = frozenset({"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_FUNCTION_NAME"})


class FunctionLoadError(Exception):
    """A function of the template cannot run locally."""


class EnvironmentConflict(FunctionLoadError):
    """Two functions set the same environment variable to different values."""


class FunctionError(Exception):
    """The handler raised, or returned something the Lambda runtime could not serialize."""


class InvocationTimeout(FunctionError):
    """The handler did not answer in time: its own timeout, or the caller's when that is shorter."""

    def __init__(self, message: str, *, caller_gave_up: bool) -> None:
        super().__init__(message)
        self.caller_gave_up = caller_gave_up


@dataclass
class FakeLambdaContext:
    """The attributes of the Lambda runtime's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: Any = None
    client_context: Any = None
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LambdaFunction:
    logical_id: str
    function_name: str
    handler: str
    code_dir: Path
    layer_dirs: list[Path]
    environment: dict[str, str]
    timeout_seconds: int = 3
    memory_mb: int = 128
    entry: Callable[..., Any] | None = None
    """The handler; for a web-adapter function, its ASGI app (local_stack.web_adapter)."""

    @property
    def web_adapter(self) -> bool:
        return is_web_adapter(self.environment)

    @property
    def service(self) -> str | None:
        """The name its log records carry (local_stack.logs)."""
        return self.environment.get("POWERTOOLS_SERVICE_NAME")

    @property
    def entry_point(self) -> str:
        """module.attribute: the handler, or what a web-adapter function's run.sh serves."""
        return f"{APP_MODULE}.{APP_ATTRIBUTE}" if self.web_adapter else self.handler

    @property
    def arn(self) -> str:
        return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def context(self) -> FakeLambdaContext:
        return FakeLambdaContext(
            function_name=self.function_name,
            invoked_function_arn=self.arn,
            memory_limit_in_mb=self.memory_mb,
            timeout_seconds=self.timeout_seconds,
        )

    def invoke(self, event: Any, caller_timeout: float | None = None) -> Any:
        """Calls the handler the way the Lambda runtime does: JSON in, JSON out, within its timeout.

        A handler past its time keeps running in its thread (it cannot be killed); its answer is dropped.
        """
        if self.entry is None:
            raise FunctionLoadError(f"{self.logical_id} is not loaded")
        if self.web_adapter:
            raise FunctionLoadError(f"{self.logical_id} is a web server: requests reach it over HTTP")
        entry = self.entry
        payload = json.loads(json.dumps(event))
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def run() -> None:
            try:
                with running_as(self.service):
                    outcome["result"] = entry(payload, self.context())
            except BaseException as error:  # handed to the caller, as the runtime reports it
                outcome["error"] = error
            finally:
                finished.set()

        threading.Thread(target=run, name=f"lambda-{self.logical_id}", daemon=True).start()
        caller_first = caller_timeout is not None and caller_timeout < self.timeout_seconds
        limit = caller_timeout if caller_first else self.timeout_seconds
        if not finished.wait(limit):
            what = "the caller gave up" if caller_first else "Task timed out"
            raise InvocationTimeout(
                f"{self.logical_id}: {what} after {limit} s",
                caller_gave_up=caller_first,
            )
        if "error" in outcome:
            error = outcome["error"]
            raise FunctionError(f"{self.logical_id}: {type(error).__name__}: {error}") from error
        try:
            return json.loads(json.dumps(outcome["result"]))
        except (TypeError, ValueError) as error:
            raise FunctionError(f"{self.logical_id}: response is not JSON serializable: {error}") from error


def _manifest_asset_paths(template: Template) -> dict[str, str]:
    """objectKey -> source path, from the cloud assembly's asset manifest."""
    paths: dict[str, str] = {}
    for manifest in template.asset_dir.glob("*.assets.json"):
        try:
            files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
        except (OSError, ValueError):
            continue
        for asset in files.values():
            source = asset.get("source", {}).get("path")
            for destination in asset.get("destinations", {}).values():
                if source and destination.get("objectKey"):
                    paths[destination["objectKey"]] = source
    return paths


def asset_dir(template: Template, resource: dict[str, Any], code: dict[str, Any]) -> Path | None:
    """The directory holding a function's (or layer's) code in the cloud assembly.

    Asset metadata is only written when the CDK context asks for it, so the S3 key (the asset
    hash) is the fallback: the assembly stages each asset as asset.<hash>.
    """
    candidates: list[str] = []
    metadata_path = resource.get("Metadata", {}).get(ASSET_PATH_KEY)
    if metadata_path:
        candidates.append(metadata_path)
    key = code.get("S3Key")
    if isinstance(key, str):
        manifest_path = _manifest_asset_paths(template).get(key)
        if manifest_path:
            candidates.append(manifest_path)
        candidates.append("asset." + re.sub(r"\.(zip|jar)$", "", key.rsplit("/", 1)[-1]))
    for candidate in candidates:
        path = Path(candidate)
        path = path if path.is_absolute() else template.asset_dir / path
        if path.is_dir():
            return path
    return None


def _layer_dirs(template: Template, props: dict[str, Any], function_id: str) -> list[Path]:
    dirs: list[Path] = []
    for layer in props.get("Layers", []):
        layer_id = layer.get("Ref") if isinstance(layer, dict) else None
        if layer_id is None or layer_id not in template.resources:
            log.warning("%s: layer %s is not part of the template; skipped", function_id, layer)
            continue
        resource = template.resources[layer_id]
        content = resource.get("Properties", {}).get("Content", {})
        path = asset_dir(template, resource, content)
        if path is None:
            raise FunctionLoadError(
                f"{function_id}: the code of layer {layer_id} is not in the cloud assembly"
            )
        dirs.append(path / "python")
    return dirs


def discover_functions(template: Template, resolver: Resolver) -> list[LambdaFunction]:
    """The template's Python functions with their code, layers and resolved environment."""
    functions: list[LambdaFunction] = []
    for logical_id, resource in template.of_type("AWS::Lambda::Function"):
        props = resource.get("Properties", {})
        runtime = str(props.get("Runtime", ""))
        if not runtime.startswith("python"):
            log.debug("not run locally: %s (runtime %s)", logical_id, runtime or "container image")
            continue
        code_dir = asset_dir(template, resource, props.get("Code", {}))
        if code_dir is None:
            log.warning("%s: code not found in the cloud assembly; not run locally", logical_id)
            continue
        variables = resolver.resolve(props.get("Environment", {}).get("Variables", {}))
        name = props.get("FunctionName") or f"{template.stack_name}-{logical_id}"
        function = LambdaFunction(
            logical_id=logical_id,
            function_name=name,
            handler=props.get("Handler", "handler.handler"),
            code_dir=code_dir,
            layer_dirs=_layer_dirs(template, props, logical_id),
            environment={k: str(v) for k, v in variables.items()},
            timeout_seconds=int(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
        )
        resolver.register(logical_id, Physical(ref=name, attributes={"Arn": function.arn}))
        functions.append(function)
    return functions


def register_function_arns(template: Template, resolver: Resolver) -> None:
    """Every function's name and ARN, known before any resource is created: a state machine's
    definition names its task functions, and those names must be the ones the stack invokes."""
    for logical_id, resource in template.of_type("AWS::Lambda::Function"):
        props = resource.get("Properties", {})
        name = props.get("FunctionName") or f"{template.stack_name}-{logical_id}"
        arn = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        resolver.register(logical_id, Physical(ref=name, attributes={"Arn": arn}))


def merge_environments(functions: Iterable[LambdaFunction]) -> dict[str, str]:
    """One environment for every function; the same name with two values is an error."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for function in functions:
        for name, value in function.environment.items():
            if name in PER_FUNCTION_AT_IMPORT:
                continue
            if name in merged and merged[name] != value:
                raise EnvironmentConflict(
                    f"environment variable {name} is {merged[name]!r} in {owner[name]} "
                    f"but {value!r} in {function.logical_id}; functions share one process locally"
                )
            merged[name] = value
            owner.setdefault(name, function.logical_id)
    return merged


def _is_dependency_layer(path: Path) -> bool:
    return any(path.glob("*.dist-info"))


class FunctionRuntime:
    """Imports handler modules into this process and undoes it on unload."""

    def __init__(self) -> None:
        self._added_paths: list[str] = []
        self._module_names: list[str] = []
        self._roots: list[Path] = []

    def add_layers(self, functions: Iterable[LambdaFunction]) -> None:
        for function in functions:
            for layer in function.layer_dirs:
                entry = str(layer)
                if entry in self._added_paths or not layer.is_dir():
                    continue
                # A dependency layer is built for Lambda's platform (arm64); the virtualenv's
                # packages come first, the layer only fills gaps. Code layers come first.
                if _is_dependency_layer(layer):
                    sys.path.append(entry)
                else:
                    sys.path.insert(0, entry)
                self._added_paths.append(entry)
                self._roots.append(layer)

    def load(self, function: LambdaFunction) -> None:
        module_name, _, attribute = function.entry_point.rpartition(".")
        source = function.code_dir / (module_name.replace(".", "/") + ".py")
        if not source.is_file():
            raise FunctionLoadError(f"{function.logical_id}: handler file {source} not found")
        unique = "byom_local_fn_" + re.sub(r"\W", "_", f"{function.logical_id}_{module_name}")
        spec = importlib.util.spec_from_file_location(unique, source)
        if spec is None or spec.loader is None:
            raise FunctionLoadError(f"{function.logical_id}: cannot import {source}")
        module = importlib.util.module_from_spec(spec)
        saved = {k: os.environ.get(k) for k in PER_FUNCTION_AT_IMPORT}
        for name in PER_FUNCTION_AT_IMPORT & function.environment.keys():
            os.environ[name] = function.environment[name]
        # Lambda puts the function's own directory on sys.path: sibling modules import as usual.
        sys.path.insert(0, str(function.code_dir))
        sys.modules[unique] = module
        self._module_names.append(unique)
        self._roots.append(function.code_dir)
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise FunctionLoadError(f"{function.logical_id}: importing {source} failed: {error!r}") from error
        finally:
            sys.path.remove(str(function.code_dir))
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        entry = getattr(module, attribute, None)
        if not callable(entry):
            raise FunctionLoadError(f"{function.logical_id}: {function.entry_point} is not a callable")
        function.entry = entry

    def unload(self) -> None:
        """Forgets the imported handlers and layer modules, so a later start imports them afresh."""
        roots = [str(root.resolve()) for root in self._roots]
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None) or ""
            if name in self._module_names or (file and any(file.startswith(root) for root in roots)):
                del sys.modules[name]
        for entry in self._added_paths:
            if entry in sys.path:
                sys.path.remove(entry)
        self._added_paths.clear()
        self._module_names.clear()
        self._roots.clear()
