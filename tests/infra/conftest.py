"""Infrastructure tests synthesize offline: bundling off, so the dependency layer needs no pip."""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

import pytest
from aws_cdk.assertions import Template

from infra.application import create_app
from infra.config import TENANT_ISOLATION_CONTEXT


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The stack as the default context of cdk.json synthesizes it, cdk-nag left to test_nag."""
    _, stack = create_app(bundling=False, outdir=str(tmp_path_factory.mktemp("cdk.out")), with_nag=False)
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The stack with Lambda tenant isolation on (byom:tenantIsolation)."""
    _, stack = create_app(
        bundling=False,
        outdir=str(tmp_path_factory.mktemp("isolated")),
        context={TENANT_ISOLATION_CONTEXT: True},
        with_nag=False,
    )
    return Template.from_stack(stack)
