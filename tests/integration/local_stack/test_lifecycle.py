"""Starting and stopping the local stack: in-process cleanup, and `python -m local_stack` (`make run`)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local_stack.stack import REPO_ROOT, LocalStack, StackError, StackSettings
from tests.integration.local_stack.conftest import http

READY = re.compile(r"BYOM local stack ready at (http://127\.0\.0\.1:(\d+))")


def settings(template: Path, port: int = 0, admin_key: str | None = "lifecycle-key") -> StackSettings:
    return StackSettings(port=port, admin_key=admin_key, template=template)


def test_stopping_restores_the_environment_and_imports(sample_template_path: Path) -> None:
    before = dict(os.environ)
    with LocalStack(settings(sample_template_path)) as running:
        assert os.environ["AWS_ENDPOINT_URL"] == running.moto_url
        assert "sample_lib" in sys.modules
    assert dict(os.environ) == before
    assert "sample_lib" not in sys.modules
    assert not any(name.startswith("byom_local_fn_") for name in sys.modules)


def test_a_stack_can_start_again_after_stopping(sample_template_path: Path) -> None:
    for _ in range(2):
        with LocalStack(settings(sample_template_path)) as running:
            assert http("GET", running.url + "/health").status == 200


def test_only_one_stack_runs_in_a_process(sample_template_path: Path) -> None:
    with LocalStack(settings(sample_template_path)), pytest.raises(StackError, match="another local stack"):
        LocalStack(settings(sample_template_path)).start()


def test_a_busy_port_is_a_clear_error_and_leaves_nothing_behind(sample_template_path: Path) -> None:
    before = dict(os.environ)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(StackError, match="cannot listen"):
            LocalStack(settings(sample_template_path, port=busy.getsockname()[1])).start()
    assert dict(os.environ) == before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_local_stack(template: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack"],
        cwd=REPO_ROOT,
        env={**os.environ, "BYOM_TEMPLATE": str(template), "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if READY.search(line):
            # the instructions follow the ready line in the same write
            while not lines[-1].startswith("Press Ctrl-C"):
                lines.append(process.stdout.readline())
            return process, lines
    process.kill()
    pytest.fail("the local stack did not become ready:\n" + "".join(lines))


def children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_python_m_local_stack_serves_and_stops_cleanly_on_a_signal(
    sample_template_path: Path, sig: int
) -> None:
    port = free_port()
    process, lines = run_local_stack(sample_template_path, {"BYOM_PORT": str(port), "BYOM_ADMIN_KEY": "k-1"})
    output = "".join(lines)
    try:
        assert f"BYOM local stack ready at http://127.0.0.1:{port}" in output
        assert http("GET", f"http://127.0.0.1:{port}/health").status == 200
        assert "k-1" in output
        assert f"curl -s -X POST http://127.0.0.1:{port}/admin/tenants" in output
        assert re.search(r"OpenAI-compatible stand-in: http://127\.0\.0\.1:\d+/v1", output)
        assert re.search(r"Bedrock Converse stand-in: http://127\.0\.0\.1:\d+", output)
        moto_line = next(
            i for i, line in enumerate(lines) if "AWS emulation (moto) at http://127.0.0.1:" in line
        )
        ready_line = next(i for i, line in enumerate(lines) if READY.search(line))
        assert moto_line < ready_line  # known before the ready line is read
        assert children_of(process.pid) == []
    finally:
        process.send_signal(sig)
        assert process.wait(timeout=30) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_python_m_local_stack_generates_and_prints_an_admin_key_when_unset(
    sample_template_path: Path,
) -> None:
    env = {"BYOM_PORT": str(free_port())}
    process, lines = run_local_stack(sample_template_path, {**env, "BYOM_ADMIN_KEY": ""})
    try:
        match = re.search(r"Platform admin key: (\S+)\s+\(generated", "".join(lines))
        assert match and len(match.group(1)) >= 32
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_python_m_local_stack_stops_when_signals_arrive_in_a_burst(sample_template_path: Path) -> None:
    # A handler taking the lock its own thread holds would deadlock on the second signal.
    process, _ = run_local_stack(
        sample_template_path, {"BYOM_PORT": str(free_port()), "BYOM_ADMIN_KEY": "k-2"}
    )
    deadline = time.monotonic() + 30
    try:
        # Signals keep coming while it stops: each may land inside the previous one's handler.
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            time.sleep(0.0005)
        assert process.wait(timeout=1) == 0
    finally:
        process.kill()


def test_an_admin_key_no_client_can_send_is_refused_at_start(sample_template_path: Path) -> None:
    with pytest.raises(StackError, match="BYOM_ADMIN_KEY must be printable ASCII"):
        LocalStack(settings(sample_template_path, admin_key=" padded-key ")).start()
