"""Deployment settings read once from CDK context, with the defaults of cdk.json."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_logs as logs
from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = REPO_ROOT / "cdk.json"

STACK_ID = "ByomGateway"

FUNCTIONS_DIR = REPO_ROOT / "functions"
COMMON_LAYER_DIR = REPO_ROOT / "layers" / "common"
DEPS_REQUIREMENTS_DIR = REPO_ROOT / "layers" / "deps"
DEPS_BUILD_DIR = REPO_ROOT / "build" / "layers" / "deps"
# `make layers`' copy of the common layer, compiled by the runtime's Python like the dependencies.
COMMON_BUILD_DIR = REPO_ROOT / "build" / "layers" / "common"

# Files that must never reach a Lambda asset: they would also change the asset hash on every run.
ASSET_EXCLUDES = ["__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache"]
# The layers `make layers` built keep their bytecode: compiled by the runtime's Python with hash-based
# invalidation (no timestamp in it), it is the same bytes for the same source, so the hash holds.
BUILT_LAYER_EXCLUDES = [".pytest_cache", ".mypy_cache", ".ruff_cache"]

BUNDLING_ENV = "BYOM_BUNDLING"
BUNDLING_CONTEXT = "byom:bundling"
LOG_RETENTION_CONTEXT = "byom:logRetentionDays"
AUTHORIZER_CACHE_CONTEXT = "byom:authorizerCacheSeconds"
THROTTLE_RATE_CONTEXT = "byom:throttleRateLimit"
THROTTLE_BURST_CONTEXT = "byom:throttleBurstLimit"
WEB_ACL_CONTEXT = "byom:webAclArn"
ALARM_5XX_RATE_CONTEXT = "byom:alarm5xxRatePercent"
ALARM_P99_LATENCY_CONTEXT = "byom:alarmP99LatencyMs"
ALARM_LAMBDA_ERRORS_CONTEXT = "byom:alarmLambdaErrors"
ALARM_LAMBDA_THROTTLES_CONTEXT = "byom:alarmLambdaThrottles"
ALARM_AUTHORIZER_ERRORS_CONTEXT = "byom:alarmAuthorizerErrors"
GUARDRAIL_ARNS_CONTEXT = "byom:guardrailArns"
DEFAULT_GUARDRAIL_ARNS = (f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:guardrail/*",)
# Lambda tenant isolation mode for the gateway function (docs/decisions.md); off by default.
TENANT_ISOLATION_CONTEXT = "byom:tenantIsolation"
# Lambda SnapStart on the gateway's published versions (docs/performance.md); off by default.
SNAP_START_CONTEXT = "byom:snapStart"

# GET /openapi.json and GET /docs (SPEC §4.3): behind the authorizer, or not routed at all.
API_DOCS_CONTEXT = "byom:apiDocs"

# Streams (SPEC §4.4; docs/operations.md): how long the gateway function and the streaming route
# may run. Below 30 s a stream would be cut before a buffered call is (29 s); 900 s is both API
# Gateway's 15-minute limit on a streamed response and Lambda's maximum timeout.
STREAM_TIMEOUT_CONTEXT = "byom:streamTimeoutSeconds"
DEFAULT_STREAM_TIMEOUT_SECONDS = 300
MIN_STREAM_TIMEOUT_SECONDS = 30
MAX_STREAM_TIMEOUT_SECONDS = 900

# The AWS Lambda Web Adapter's public arm64 layer; version 27 is adapter 1.0.0. Published by AWS
# in the commercial regions; elsewhere (China, a pinned copy in your own account) set the context.
WEB_ADAPTER_LAYER_CONTEXT = "byom:webAdapterLayerArn"
DEFAULT_WEB_ADAPTER_LAYER_ARN = (
    f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:753240598075:layer:LambdaAdapterLayerArm64:27"
)
_LAYER_VERSION_ARN = re.compile(
    r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]{1,140}:[0-9]+"
)

# CloudWatch Logs accepts only these retention periods.
_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def cdk_json_context() -> dict[str, Any]:
    """The `context` block of cdk.json, so that `python app.py` synthesizes like `cdk synth`."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return context


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _bundling(scope: Construct) -> bool:
    # An explicit context value wins, so tests can force bundling off whatever the environment says.
    value = scope.node.try_get_context(BUNDLING_CONTEXT)
    if value is None:
        value = os.environ.get(BUNDLING_ENV, "")
    return _truthy(value)


def _flag(scope: Construct, key: str, default: bool) -> bool:
    value = scope.node.try_get_context(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off", ""}:
        raise ValueError(f"{key}={value!r} is not a boolean")
    return _truthy(value)


def _tenant_isolation(scope: Construct) -> bool:
    return _flag(scope, TENANT_ISOLATION_CONTEXT, default=False)


def _snap_start(scope: Construct) -> bool:
    """`byom:snapStart`; Lambda accepts no function with both SnapStart and tenant isolation."""
    on = _flag(scope, SNAP_START_CONTEXT, default=False)
    if on and _tenant_isolation(scope):
        raise ValueError(
            f"{SNAP_START_CONTEXT} and {TENANT_ISOLATION_CONTEXT} cannot both be on: Lambda does not "
            "support SnapStart on a function in tenant isolation mode (one execution environment per "
            "tenant is never restored from a shared snapshot); turn one of them off"
        )
    return on


def stream_timeout_seconds(scope: Construct) -> int:
    """`byom:streamTimeoutSeconds`: a whole number of seconds in [30, 900], 300 by default."""
    raw = scope.node.try_get_context(STREAM_TIMEOUT_CONTEXT)
    if raw is None:
        return DEFAULT_STREAM_TIMEOUT_SECONDS
    bounds = f"a whole number of seconds from {MIN_STREAM_TIMEOUT_SECONDS} to {MAX_STREAM_TIMEOUT_SECONDS}"
    # bool is an int to Python, and `-c key=value` passes a string: accept digits only.
    if isinstance(raw, bool) or not re.fullmatch(r"[0-9]+", str(raw).strip()):
        raise ValueError(f"{STREAM_TIMEOUT_CONTEXT}={raw!r} is not {bounds}")
    value = int(str(raw).strip())
    if not MIN_STREAM_TIMEOUT_SECONDS <= value <= MAX_STREAM_TIMEOUT_SECONDS:
        raise ValueError(f"{STREAM_TIMEOUT_CONTEXT}={value} is out of range: use {bounds}")
    return value


def web_adapter_layer_arn(scope: Construct) -> str:
    """`byom:webAdapterLayerArn`: a Lambda layer version ARN; the public adapter layer by default."""
    raw = scope.node.try_get_context(WEB_ADAPTER_LAYER_CONTEXT)
    if raw is None:
        return DEFAULT_WEB_ADAPTER_LAYER_ARN
    arn = str(raw).strip()
    if not _LAYER_VERSION_ARN.fullmatch(arn):
        raise ValueError(
            f"{WEB_ADAPTER_LAYER_CONTEXT}={raw!r} is not a Lambda layer version ARN "
            "(arn:<partition>:lambda:<region>:<account>:layer:<name>:<version>)"
        )
    return arn


@dataclass(frozen=True)
class AlarmThresholds:
    """Thresholds of the platform alarms; each context key overrides its default (docs/operations.md)."""

    # Percent of requests answered 5xx over five minutes.
    api_5xx_rate_percent: float = 5.0
    # API Gateway's p99 Latency over every route. Buffered routes end at 29 s (the gateway's own
    # deadline is 27 s), so a p99 held above 20 s means callers are close to timing out. Streamed
    # chat completions may run to the stream timeout, and AWS does not document whether a streamed
    # response's Latency ends at its first or its last byte: if long streams lift the p99, raise
    # this (docs/operations.md).
    api_p99_latency_ms: float = 20_000.0
    # Errors and throttles per function and five minutes. Handled errors are HTTP answers, so a
    # Lambda error is a crash or a timeout: one is worth a look.
    lambda_errors: int = 1
    lambda_throttles: int = 1
    # An authorizer error turns every uncached request into a 500 (AUTHORIZER_FAILURE).
    authorizer_errors: int = 1

    @classmethod
    def from_context(cls, scope: Construct) -> AlarmThresholds:
        defaults = cls()

        def number(key: str, default: float, *, upper: float | None = None) -> float:
            raw = scope.node.try_get_context(key)
            try:
                value = default if raw is None else float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{key}={raw!r} is not a number") from None
            if value <= 0 or (upper is not None and value > upper):
                bound = f" and at most {upper:g}" if upper is not None else ""
                raise ValueError(f"{key}={raw} must be greater than 0{bound}")
            return value

        def count(key: str, default: int) -> int:
            value = number(key, default)
            if value != int(value):
                raise ValueError(f"{key}={value:g} must be a whole number")
            return int(value)

        return cls(
            api_5xx_rate_percent=number(ALARM_5XX_RATE_CONTEXT, defaults.api_5xx_rate_percent, upper=100),
            api_p99_latency_ms=number(ALARM_P99_LATENCY_CONTEXT, defaults.api_p99_latency_ms),
            lambda_errors=count(ALARM_LAMBDA_ERRORS_CONTEXT, defaults.lambda_errors),
            lambda_throttles=count(ALARM_LAMBDA_THROTTLES_CONTEXT, defaults.lambda_throttles),
            authorizer_errors=count(ALARM_AUTHORIZER_ERRORS_CONTEXT, defaults.authorizer_errors),
        )


FINE_TUNING_CONTEXT = "byom:fineTuning"


@dataclass(frozen=True)
class FineTuningConfig:
    """The `byom:fineTuning` context object; each field overrides its default (README)."""

    min_training_examples: int = 10
    max_eval_examples: int = 100
    # Lambda's 6 MB request limit holds the base64 of about 4.4 MB.
    max_file_bytes: int = 4 * 1024 * 1024
    # The polling fallback when no Bedrock event arrives, and the hosting's status checks.
    training_poll_seconds: int = 600
    deployment_poll_seconds: int = 60
    # OpenAI jobs: OpenAI sends no events, so the state machine looks this often (a Wait state).
    openai_poll_seconds: int = 60
    approval_timeout_seconds: int = 7 * 24 * 3600
    default_eval_threshold: float = 0.9

    @classmethod
    def from_context(cls, scope: Construct) -> FineTuningConfig:
        raw = scope.node.try_get_context(FINE_TUNING_CONTEXT) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{FINE_TUNING_CONTEXT} must be an object")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{FINE_TUNING_CONTEXT}: unknown settings {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            kind = type(getattr(cls(), name))
            try:
                values[name] = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"{FINE_TUNING_CONTEXT}.{name}={value!r} is not a {kind.__name__}") from None
            if values[name] <= 0:
                raise ValueError(f"{FINE_TUNING_CONTEXT}.{name} must be greater than 0")
        config = cls(**values)
        if config.default_eval_threshold > 1:
            raise ValueError(f"{FINE_TUNING_CONTEXT}.default_eval_threshold must be at most 1")
        return config


def guardrail_arns(scope: Construct) -> tuple[str, ...]:
    """The guardrails a tenant's redaction policy may name (`byom:guardrailArns`, a list of ARNs or
    ARN patterns); by default every guardrail of the stack's account and region."""
    raw = scope.node.try_get_context(GUARDRAIL_ARNS_CONTEXT)
    if raw is None:
        return DEFAULT_GUARDRAIL_ARNS
    if isinstance(raw, str):
        # `cdk -c key=value` passes a string: accept a JSON list or a comma-separated one.
        raw = json.loads(raw) if raw.lstrip().startswith("[") else [a for a in raw.split(",") if a.strip()]
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{GUARDRAIL_ARNS_CONTEXT} must be a non-empty list of guardrail ARNs")
    arns = tuple(str(arn).strip() for arn in raw)
    for arn in arns:
        parts = arn.split(":", 5)
        if (
            len(parts) != 6
            or parts[0] != "arn"
            or parts[2] != "bedrock"
            or not parts[5].startswith("guardrail/")
        ):
            raise ValueError(
                f"{GUARDRAIL_ARNS_CONTEXT}: {arn!r} is not a guardrail ARN "
                "(arn:<partition>:bedrock:<region>:<account>:guardrail/<id or *>)"
            )
    return arns


@dataclass(frozen=True)
class Settings:
    bundling: bool
    log_retention_days: int
    authorizer_cache_seconds: int
    throttle_rate_limit: float
    throttle_burst_limit: int
    web_acl_arn: str | None
    alarms: AlarmThresholds
    fine_tuning: FineTuningConfig = FineTuningConfig()
    guardrail_arns: tuple[str, ...] = DEFAULT_GUARDRAIL_ARNS
    tenant_isolation: bool = False
    snap_start: bool = False
    stream_timeout_seconds: int = DEFAULT_STREAM_TIMEOUT_SECONDS
    web_adapter_layer_arn: str = DEFAULT_WEB_ADAPTER_LAYER_ARN
    api_docs: bool = True

    @classmethod
    def from_context(cls, scope: Construct) -> Settings:
        def context(key: str) -> Any:
            value = scope.node.try_get_context(key)
            if value is None:
                raise ValueError(f"missing CDK context {key!r} (see cdk.json)")
            return value

        retention = int(context(LOG_RETENTION_CONTEXT))
        if retention not in _RETENTION:
            raise ValueError(
                f"{LOG_RETENTION_CONTEXT}={retention} is not a CloudWatch Logs retention period; "
                f"use one of {sorted(_RETENTION)}"
            )
        return cls(
            bundling=_bundling(scope),
            log_retention_days=retention,
            authorizer_cache_seconds=int(context(AUTHORIZER_CACHE_CONTEXT)),
            throttle_rate_limit=float(context(THROTTLE_RATE_CONTEXT)),
            throttle_burst_limit=int(context(THROTTLE_BURST_CONTEXT)),
            web_acl_arn=scope.node.try_get_context(WEB_ACL_CONTEXT) or None,
            alarms=AlarmThresholds.from_context(scope),
            fine_tuning=FineTuningConfig.from_context(scope),
            guardrail_arns=guardrail_arns(scope),
            tenant_isolation=_tenant_isolation(scope),
            snap_start=_snap_start(scope),
            stream_timeout_seconds=stream_timeout_seconds(scope),
            web_adapter_layer_arn=web_adapter_layer_arn(scope),
            api_docs=_flag(scope, API_DOCS_CONTEXT, default=True),
        )

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION[self.log_retention_days]

    @property
    def deps_layer_dir(self) -> Path:
        """The dependency layer asset: the pip-built folder when bundling, the requirements otherwise."""
        if not self.bundling:
            return DEPS_REQUIREMENTS_DIR
        if not (DEPS_BUILD_DIR / "python").is_dir():
            raise FileNotFoundError(
                f"bundling is on but {DEPS_BUILD_DIR / 'python'} does not exist: run `make layers` first"
            )
        return DEPS_BUILD_DIR

    @property
    def common_layer_dir(self) -> Path:
        """The `byom` layer asset: its source, or when bundling `make layers`' compiled copy of it."""
        if not self.bundling:
            return COMMON_LAYER_DIR
        if not (COMMON_BUILD_DIR / "python" / "byom").is_dir():
            raise FileNotFoundError(
                f"bundling is on but {COMMON_BUILD_DIR / 'python' / 'byom'} does not exist: "
                "run `make layers` first"
            )
        return COMMON_BUILD_DIR

    @property
    def layer_asset_excludes(self) -> list[str]:
        """Bytecode stays out of a source folder (a local interpreter's) and in a built layer."""
        return BUILT_LAYER_EXCLUDES if self.bundling else ASSET_EXCLUDES
