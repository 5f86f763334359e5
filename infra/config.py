"""Deployment settings read once from CDK context, with the defaults of cdk.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import aws_logs as logs
from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = REPO_ROOT / "cdk.json"

STACK_ID = "ByomGateway"

FUNCTIONS_DIR = REPO_ROOT / "functions"
COMMON_LAYER_DIR = REPO_ROOT / "layers" / "common"
DEPS_REQUIREMENTS_DIR = REPO_ROOT / "layers" / "deps"
DEPS_BUILD_DIR = REPO_ROOT / "build" / "layers" / "deps"

# Files that must never reach a Lambda asset: they would also change the asset hash on every run.
ASSET_EXCLUDES = ["__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache"]

BUNDLING_ENV = "BYOM_BUNDLING"
BUNDLING_CONTEXT = "byom:bundling"
LOG_RETENTION_CONTEXT = "byom:logRetentionDays"
AUTHORIZER_CACHE_CONTEXT = "byom:authorizerCacheSeconds"
THROTTLE_RATE_CONTEXT = "byom:throttleRateLimit"
THROTTLE_BURST_CONTEXT = "byom:throttleBurstLimit"
WEB_ACL_CONTEXT = "byom:webAclArn"

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


@dataclass(frozen=True)
class Settings:
    bundling: bool
    log_retention_days: int
    authorizer_cache_seconds: int
    throttle_rate_limit: float
    throttle_burst_limit: int
    web_acl_arn: str | None

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
