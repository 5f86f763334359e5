"""Small HTTP/1.1 servers on loopback, each in a background thread (stdlib only)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

_DISCARD_LIMIT = 256 * 1024 * 1024  # beyond this an oversized body is not drained: the connection closes


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the stdlib's 5 makes concurrent clients wait for SYN retries

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], **state: Any) -> None:
        self.state = state
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def close_connections(self) -> None:
        """Ends idle keep-alive connections so their threads finish with the server."""
        with self.connections_lock:
            for connection in list(self.connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 with helpers for bodies, JSON answers and chunked streams."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers, ~40 ms per answer on a keep-alive connection.
    disable_nagle_algorithm = True
    server: LoopbackServer

    def version_string(self) -> str:
        return "byom-local"

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, type(self).__name__, *args)

    def read_body(self, limit: int | None = None) -> tuple[bytes, bool]:
        """(body, too_large). A body over limit is drained and dropped, so the answer can still be sent."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        length = int(self.headers.get("Content-Length") or 0)
        if limit is not None and length > limit:
            if length > _DISCARD_LIMIT:
                self.close_connection = True
                return b"", True
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
            return b"", True
        return (self.rfile.read(length) if length else b""), False

    def _read_chunked(self, limit: int | None) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        size_total = 0
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunk = self.rfile.read(size)
            self.rfile.readline()
            size_total += size
            if limit is None or size_total <= limit:
                parts.append(chunk)
        too_large = limit is not None and size_total > limit
        return (b"" if too_large else b"".join(parts)), too_large

    def send_all(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        skip = {"content-length", "transfer-encoding", "connection"}
        for name, value in headers:
            if name.lower() not in skip:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def start_chunked(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class BackgroundServer:
    """Runs a LoopbackServer in a daemon thread; port 0 picks a free port."""

    def __init__(
        self, handler: type[Handler], *, host: str = "127.0.0.1", port: int = 0, **state: Any
    ) -> None:
        self.server = LoopbackServer((host, port), handler, **state)
        self._thread = threading.Thread(
            target=self.server.serve_forever, name=f"{handler.__name__}-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join()
        self.server.close_connections()
        self.server.server_close()
