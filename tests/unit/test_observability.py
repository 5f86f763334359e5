"""The shared Tracer: where tracing is off it records nothing and costs no X-Ray SDK import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aws_lambda_powertools import Tracer
from byom.observability import NoTracing, tracing_disabled

LAYER = Path(__file__).resolve().parents[2] / "layers" / "common" / "python"


@pytest.mark.parametrize(
    ("environment", "disabled"),
    [
        ({"POWERTOOLS_TRACE_DISABLED": "true", "LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap"}, True),
    ],
)
def test_tracing_is_off_when_told_and_outside_lambda(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], disabled: bool
) -> None:
    for name in (
        "POWERTOOLS_TRACE_DISABLED",
        "LAMBDA_TASK_ROOT",
        "AWS_SAM_LOCAL",
        "AWS_CHALICE_CLI_MODE",
        "AWS_LAMBDA_EXEC_WRAPPER",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert tracing_disabled() is disabled


def test_where_tracing_is_off_the_xray_sdk_is_not_imported() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LAMBDA_TASK_ROOT"} | {
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PYTHONPATH": str(LAYER),
    }
    probe = "import sys, byom.observability; print('aws_xray_sdk.core' in sys.modules)"

    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)

    assert done.stdout.strip() == "False", done.stderr


def test_a_handler_traced_without_tracing_answers_and_raises_as_it_would() -> None:
    tracer = Tracer(disabled=True, auto_patch=False, provider=NoTracing())

    @tracer.capture_lambda_handler
    def handler(event: dict[str, int], _context: object) -> int:
        if event["n"] < 0:
            raise ValueError("negative")
        return event["n"] * 2

    assert handler({"n": 21}, None) == 42
    with pytest.raises(ValueError, match="negative"):
        handler({"n": -1}, None)
