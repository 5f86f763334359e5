"""`make run` starts in the foreground and stops cleanly, leaving nothing behind."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx2
import pytest

from tests.e2e.conftest import LocalStack, start_local_stack

pytestmark = pytest.mark.e2e


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _port_is_free(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_local_stack_stops_cleanly(synthesized_template: Path, stop_signal: int) -> None:
    stack = start_local_stack(template=synthesized_template)
    assert httpx2.get(f"{stack.url}/health").status_code == 200
    servers = [stack.url, stack.aws_url]
    helpers = _descendants(stack.process.pid)

    exit_code = stack.stop(stop_signal)

    assert exit_code == 0
    assert not [pid for pid in helpers if _alive(pid)]
    assert all(_port_is_free(url) for url in servers)
    assert "Traceback" not in stack.logs()


def test_the_ready_line_says_how_to_call_it(local_stack: LocalStack) -> None:
    # The session's stack printed the same banner at its start: no third stack is started for it.
    assert "curl" in local_stack.logs()
    assert "Authorization: Bearer" in local_stack.logs()
