"""The local stack, started as `make run` starts it, driven over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "e2e-platform-admin-key"
READY = re.compile(r"BYOM local stack ready at (http://127\.0\.0\.1:\d+)")
MOTO = re.compile(r"AWS emulation \(moto\) at (http://127\.0\.0\.1:\d+)")
OPENAI_STAND_IN = re.compile(r"OpenAI-compatible stand-in: (http://127\.0\.0\.1:\d+/v1)")
BEDROCK_STAND_IN = re.compile(r"Bedrock Converse stand-in: (http://127\.0\.0\.1:\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalStack:
    process: subprocess.Popen
    url: str = ""
    aws_url: str = ""
    openai_stand_in_url: str = ""
    bedrock_stand_in_url: str = ""
    output: list[str] = field(default_factory=list)

    def logs(self) -> str:
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_local_stack(template: Path | None = None, timeout: float = 180) -> LocalStack:
    env = os.environ.copy()
    env |= {"BYOM_PORT": str(free_port()), "BYOM_ADMIN_KEY": ADMIN_KEY, "PYTHONUNBUFFERED": "1"}
    if template:
        env["BYOM_TEMPLATE"] = str(template)
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack = LocalStack(process)
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout
        for line in process.stdout:
            stack.output.append(line)
            if match := MOTO.search(line):
                stack.aws_url = match.group(1)
            if match := OPENAI_STAND_IN.search(line):
                stack.openai_stand_in_url = match.group(1)
            if match := BEDROCK_STAND_IN.search(line):
                stack.bedrock_stand_in_url = match.group(1)
            if match := READY.search(line):
                stack.url = match.group(1)
            # The banner names the stand-ins after the ready line.
            if stack.url and stack.openai_stand_in_url and stack.bedrock_stand_in_url:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            stack.stop(signal.SIGKILL)
            raise RuntimeError("local stack did not start:\n" + stack.logs())
    return stack


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    stack = start_local_stack()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def admin(local_stack: LocalStack) -> httpx2.Client:
    return httpx2.Client(
        base_url=local_stack.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
    )


def client_for(local_stack: LocalStack, key: str) -> httpx2.Client:
    return httpx2.Client(base_url=local_stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture(scope="session")
def synthesized_template(local_stack: LocalStack) -> Path:
    """The template the session's stack synthesized (cdk.out), reused so a second start needs no synth."""
    return ROOT / "cdk.out" / "ByomGateway.template.json"
