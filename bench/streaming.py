"""Time to first and last token of a stream: straight to a streaming upstream, through the BYOM
local stack and through LiteLLM's proxy, in front of the same upstream, in the same run.

    .venv/bin/python -m bench.streaming [--streams 20] [--tokens 50] [--token-delay-ms 10]
        [--concurrency 10] [--concurrent-rounds 3] [--template cdk.out/ByomGateway.template.json]
        [--no-litellm]

The same processes as bench.through_stack, started here and stopped at the end: the upstream is
the OpenAI-compatible stand-in (`python -m bench.upstream --token-delay-ms D`), asked for a model
`stand-in-chat-long-N`, so every stream is N tokens, one HTTP chunk each, D ms apart; BYOM's local
stack as `make run` starts it (authorizer answer cached), with a tenant whose alias is that model
on the upstream; LiteLLM's proxy (bench/.venv-litellm) with the same model in its model list.

One client (http.client, one keep-alive connection per server) sends `stream: true` chat
completions one at a time, round after round: direct, through BYOM, through LiteLLM. Each
answer's lines are read as they arrive; the time to first token (TTFT) and to last token (TTLT)
are taken when the first and the last `data:` event with content is read. Added time is a path's
minus the direct stream's of the same round.

Then, per path, `--concurrency` streams start together (each on a connection opened beforehand),
`--concurrent-rounds` times: the wall time until the last of them ends, next to one stream's time.
Streams that overlap take about one stream's time; streams served one after the other take about
`concurrency` times as long, and the slowest of them waits that long for its first token.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import machine, ms, percentile, say, table
from bench.through_stack import (
    ALIAS,
    LITELLM_MASTER_KEY,
    LITELLM_VENV,
    LITELLM_VERSION,
    MESSAGES,
    PROVIDER_KEY,
    UsageMarkers,
    ensure_litellm,
    progress,
    register,
    start_litellm,
    start_local_stack,
    start_upstream,
    synthesized,
)


@dataclass(frozen=True)
class Timing:
    """Seconds from sending the request: to the first token, the last token and the end ([DONE])."""

    first: float
    last: float
    done: float
    text: str


class StreamTarget:
    """One server's `stream: true` chat completions over one keep-alive connection."""

    def __init__(self, name: str, url: str, key: str, model: str) -> None:
        parts = urlsplit(url)
        self.name = name
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._path = parts.path.rstrip("/") + "/v1/chat/completions"
        self._conn: http.client.HTTPConnection | None = None
        self.body = json.dumps(
            {"model": model, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
        ).encode()
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def connect(self) -> StreamTarget:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=120)
            self._conn.connect()
            self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def stream(self) -> Timing:
        for attempt in (1, 2):
            connection = self.connect()._conn
            assert connection is not None
            started = time.perf_counter()
            try:
                connection.request("POST", self._path, body=self.body, headers=self.headers)
                response = connection.getresponse()
                if response.status != 200:
                    raise SystemExit(f"{self.name} answered {response.status}: {response.read()[:500]!r}")
                timing = self._read(response, started)
            except (http.client.HTTPException, ConnectionError):
                # The server closed an idle keep-alive connection: a new one, not timed twice.
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.getheader("connection", "").lower() == "close":
                self.close()
            return timing
        raise AssertionError("unreachable")

    def _read(self, response: http.client.HTTPResponse, started: float) -> Timing:
        first = last = None
        pieces: list[str] = []
        while line := response.readline():
            if not line.startswith(b"data: "):
                continue
            data = line.removeprefix(b"data: ").strip()
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise SystemExit(f"{self.name} ended its stream with an error: {event['error']}")
            content = event["choices"][0]["delta"].get("content") if event.get("choices") else None
            if content:
                last = time.perf_counter() - started
                first = last if first is None else first
                pieces.append(content)
        done = time.perf_counter() - started
        response.read()  # the terminating chunk, so the connection can be reused
        if first is None or last is None:
            raise SystemExit(f"{self.name} streamed no content")
        return Timing(first, last, done, "".join(pieces))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(frozen=True)
class Concurrent:
    wall: float  # from the common start to the end of the last stream
    slowest_first: float  # the latest first token among them


def concurrent_round(targets: Sequence[StreamTarget]) -> Concurrent:
    """All of `targets` (connected beforehand) stream at once; threads so the client never serializes."""
    timings: list[Timing | BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(targets) + 1)

    def one(target: StreamTarget) -> None:
        barrier.wait()
        try:
            result: Timing | BaseException = target.stream()
        except BaseException as error:  # reported below: a thread must not die silently
            result = error
        with lock:
            timings.append(result)

    threads = [threading.Thread(target=one, args=(t,), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    failures = [t for t in timings if isinstance(t, BaseException)]
    if failures:
        raise SystemExit(f"{targets[0].name}: {len(failures)} concurrent streams failed: {failures[0]!r}")
    return Concurrent(wall, max(t.first for t in timings if isinstance(t, Timing)))


# -- the run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    key: str
    model: str

    def target(self) -> StreamTarget:
        return StreamTarget(self.name, self.url, self.key, self.model)


def run(args: argparse.Namespace) -> None:
    litellm_exe = ensure_litellm(args.litellm_venv) if args.litellm else None
    model_id = f"stand-in-chat-long-{args.tokens}"
    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="byom-bench-")))
        template = synthesized(args.template, logs)
        upstream = start_upstream(stack, logs, "--token-delay-ms", str(args.token_delay_ms))
        endpoints = [Endpoint("direct", upstream, PROVIDER_KEY, model_id)]
        stack_url, moto_url = start_local_stack(stack, "byom", template, logs)
        markers = UsageMarkers(moto_url)
        endpoints.append(Endpoint("byom", stack_url, register(stack_url, upstream, model_id), ALIAS))
        if litellm_exe is not None:
            litellm_url = start_litellm(stack, litellm_exe, upstream, logs, model_id)
            endpoints.append(Endpoint("litellm", litellm_url, LITELLM_MASTER_KEY, ALIAS))

        targets = [endpoint.target() for endpoint in endpoints]
        progress(f"Warming up ({args.warmup} streams each), then {args.streams} rounds ...")
        for _ in range(args.warmup):
            for target in targets:
                target.stream()
            markers.forget()
        samples: dict[str, list[Timing]] = {endpoint.name: [] for endpoint in endpoints}
        for _ in range(args.streams):
            for target in targets:
                samples[target.name].append(target.stream())
            markers.forget()
        for target in targets:
            target.close()

        progress(f"{args.concurrency} concurrent streams per path, {args.concurrent_rounds} rounds ...")
        concurrent: dict[str, list[Concurrent]] = {endpoint.name: [] for endpoint in endpoints}
        for _ in range(args.concurrent_rounds):
            for endpoint in endpoints:
                group = [endpoint.target().connect() for _ in range(args.concurrency)]
                concurrent[endpoint.name].append(concurrent_round(group))
                for target in group:
                    target.close()
                markers.forget()

    report(samples, concurrent, args)


LABELS = {
    "direct": "direct: client -> upstream stand-in",
    "byom": "BYOM local stack (make run)",
    "litellm": f"LiteLLM proxy {LITELLM_VERSION} (1 worker)",
}


def _median_p95(values: Sequence[float]) -> list[str]:
    return [ms(statistics.median(values)), ms(percentile(values, 0.95))]


def delivery(timings: Sequence[Timing], spread_if_streamed: float) -> str:
    """`incremental` when the tokens arrive spread over at least half the upstream's own spread."""
    spread = statistics.median(t.last - t.first for t in timings)
    return "incremental" if spread >= spread_if_streamed / 2 else "all at once (buffered)"


def overlap(ratio: float, concurrency: int) -> str:
    """How `concurrency` streams were served, from their wall time over one stream's."""
    if ratio <= 1.5:
        return "overlap"
    if ratio >= concurrency / 2:
        return "queued"
    return "partly overlap"


def report(
    samples: dict[str, list[Timing]], concurrent: dict[str, list[Concurrent]], args: argparse.Namespace
) -> None:
    upstream_spread = (args.tokens - 1) * args.token_delay_ms / 1000
    say(
        f"Streams over HTTP on loopback: {args.tokens} tokens, {args.token_delay_ms} ms apart, from the "
        f"upstream; {args.streams} sequential streams per path, interleaved ({machine()})\n"
    )
    expected = samples["direct"][0].text
    rows = []
    for name, timings in samples.items():
        rows.append(
            [
                LABELS[name],
                *_median_p95([t.first for t in timings]),
                *_median_p95([t.last for t in timings]),
                ms(statistics.median(t.last - t.first for t in timings)),
                delivery(timings, upstream_spread),
            ]
        )
    say(
        table(
            "Time to first and last token (ms)",
            ["path", "TTFT median", "TTFT p95", "TTLT median", "TTLT p95", "last - first", "tokens arrive"],
            rows,
        )
    )
    added = []
    for name, timings in samples.items():
        if name == "direct":
            continue
        pairs = list(zip(timings, samples["direct"], strict=True))
        added.append(
            [
                LABELS[name],
                *_median_p95([t.first - d.first for t, d in pairs]),
                *_median_p95([t.last - d.last for t, d in pairs]),
            ]
        )
    say(
        table(
            "Added over the direct stream, paired per round (ms)",
            ["through", "TTFT median", "TTFT p95", "TTLT median", "TTLT p95"],
            added,
        )
    )
    rows = []
    for name, rounds in concurrent.items():
        single = statistics.median(t.done for t in samples[name])
        wall = statistics.median(r.wall for r in rounds)
        rows.append(
            [
                LABELS[name],
                ms(single),
                ms(wall),
                f"{wall / single:.1f}x",
                ms(statistics.median(r.slowest_first for r in rounds)),
                overlap(wall / single, args.concurrency),
            ]
        )
    say(
        table(
            f"{args.concurrency} concurrent streams, median of {args.concurrent_rounds} rounds (ms)",
            ["path", "one stream", "wall time", "wall / one", "slowest TTFT", "streams"],
            rows,
        )
    )
    wrong = [name for name, timings in samples.items() if any(t.text != expected for t in timings)]
    if wrong:
        say(f"Streams whose text differed from the direct one's: {wrong}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=20, help="rounds of one stream per path (default 20)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=50, help="tokens per stream (default 50)")
    parser.add_argument("--token-delay-ms", type=int, default=10, help="the upstream's pause between tokens")
    parser.add_argument("--concurrency", type=int, default=10, help="streams started together (default 10)")
    parser.add_argument("--concurrent-rounds", type=int, default=3)
    parser.add_argument(
        "--template", type=Path, default=None, help="a synthesized template (else synthesized)"
    )
    parser.add_argument(
        "--no-litellm", dest="litellm", action="store_false", help="leave LiteLLM's proxy out"
    )
    parser.add_argument("--litellm-venv", type=Path, default=LITELLM_VENV)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
