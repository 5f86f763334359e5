"""The shared Tracer: where tracing is off it records nothing and costs no X-Ray SDK import."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aws_lambda_powertools import Tracer
from byom.observability import NoTracing, patch_when_sampled, sampled, tracing_disabled

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


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", True),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0", False),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1;Lineage=a87bd80c:0", True),
        ("Root=1-5759e988-bd862e3fe1be46a994272793", False),
        ("", False),
        (None, False),
    ],
)
def test_an_invocation_is_sampled_when_its_trace_header_says_so(header: str | None, expected: bool) -> None:
    assert sampled(header) is expected


class _Client:
    def call(self, operation: str) -> str:
        return f"sent {operation}"


def _patcher(owner: type, patches: list[str]) -> Callable[[], None]:
    """What the X-Ray SDK's patch does: wraps the method as it finds it."""

    def patch() -> None:
        inner = owner.call  # type: ignore[attr-defined]

        def traced(self: object, operation: str) -> str:
            return "traced " + inner(self, operation)

        owner.call = traced  # type: ignore[attr-defined]
        patches.append("botocore")

    return patch


def test_no_patch_while_invocations_are_sampled_out() -> None:
    owner = type("Client", (_Client,), {"call": _Client.call})
    patches: list[str] = []
    patch_when_sampled(owner, "call", _patcher(owner, patches), lambda: "Root=1-a;Sampled=0")

    assert owner().call("GetItem") == "sent GetItem"
    assert patches == []


def test_the_first_sampled_call_patches_once_and_is_itself_traced() -> None:
    owner = type("Client", (_Client,), {"call": _Client.call})
    patches: list[str] = []
    header = ["Root=1-a;Sampled=0"]
    patch_when_sampled(owner, "call", _patcher(owner, patches), lambda: header[0])
    client = owner()
    client.call("GetItem")

    header[0] = "Root=1-b;Sampled=1"
    first, second = client.call("GetItem"), client.call("PutItem")

    assert (first, second, patches) == ("traced sent GetItem", "traced sent PutItem", ["botocore"])


def _deployed_probe(trace_header: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_LAMBDA_EXEC"))}
    env |= {
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": "probe",
        "_X_AMZN_TRACE_ID": trace_header,
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        # Segments go over UDP to the daemon's address: a closed port on loopback loses them quietly.
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PYTHONPATH": str(LAYER),
    }
    probe = (
        "import sys, boto3, byom.observability\n"
        "from botocore.stub import Stubber\n"
        "at_init = 'aws_xray_sdk.ext.botocore.patch' in sys.modules\n"
        "client = boto3.client('dynamodb')\n"
        "with Stubber(client) as stub:\n"
        "    stub.add_response('get_item', {})\n"
        "    client.get_item(TableName='t', Key={'k': {'S': 'v'}})\n"
        "print(at_init, 'aws_xray_sdk.ext.botocore.patch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_in_lambda_botocore_is_patched_by_the_first_sampled_aws_call_not_at_init() -> None:
    assert _deployed_probe("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1") == "False True"


def test_in_lambda_a_sampled_out_aws_call_leaves_botocore_unpatched() -> None:
    assert _deployed_probe("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0") == "False False"
