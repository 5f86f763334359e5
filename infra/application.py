"""Builds the CDK app: used by app.py, the infrastructure tests and the local stack."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_cdk import App

from infra import nag
from infra.config import BUNDLING_CONTEXT, REPO_ROOT, STACK_ID, cdk_json_context
from infra.stack import ByomGatewayStack

# What the CDK CLI sets by default, so that `python app.py` writes the same template as `cdk synth`.
CLI_DEFAULT_CONTEXT = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
}


def create_app(
    *,
    bundling: bool | None = None,
    outdir: str | None = None,
    context: Mapping[str, Any] | None = None,
    with_nag: bool = True,
) -> tuple[App, ByomGatewayStack]:
    """The app and its stack. `bundling=None` follows BYOM_BUNDLING / the `byom:bundling` context."""
    app_context: dict[str, Any] = {
        **CLI_DEFAULT_CONTEXT,
        **nag.APP_CONTEXT,
        **cdk_json_context(),
        **(context or {}),
    }
    if bundling is not None:
        app_context[BUNDLING_CONTEXT] = bundling
    app = App(
        context=app_context,
        outdir=outdir or os.environ.get("CDK_OUTDIR") or str(REPO_ROOT / "cdk.out"),
    )
    stack = ByomGatewayStack(app, STACK_ID)
    if with_nag:
        nag.attach(app)
    return app, stack
