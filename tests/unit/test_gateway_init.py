"""What the gateway's INIT imports: the provider SDK only where INIT is paid once for many environments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "functions" / "gateway" / "app.py"
LAYER = REPO / "layers" / "common" / "python"

PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print("openai" in sys.modules)
"""


def _openai_imported_at_init(initialization_type: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_INITIALIZATION_TYPE"}
    env |= {
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": str(LAYER),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(APP)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("initialization_type", "imported"), [("snap-start", "True"), ("on-demand", "False")]
)
def test_the_provider_sdk_is_imported_at_init_only_for_a_snapshot_or_provisioned_concurrency(
    initialization_type: str, imported: str
) -> None:
    assert _openai_imported_at_init(initialization_type) == imported
