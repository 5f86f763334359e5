"""Streams delivered as they are produced (SPEC §4.4): the openai SDK against the local stack, with
an upstream in this process whose streams wait on the test, so each claim is one of order, not time.

A buffered gateway would hold the first chunk until the upstream finished; here the upstream does
not finish until the client has the first chunk, so buffering would be a timeout, not a pass.
"""

from __future__ import annotations

import json
import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, LocalStack, start_local_stack

pytestmark = pytest.mark.e2e

WAIT = 30.0  # seconds any step may take before the test fails instead of hanging
PRICE = {"input_per_1k_usd": 1.0, "output_per_1k_usd": 2.0}
USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}


@dataclass
class Script:
    """What the upstream does for one model: its chunks, where it waits, how it ends."""

    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    closed_by_gateway: threading.Event = field(default_factory=threading.Event)
    ending: str = "finish"  # finish | error | trickle (chunks until the gateway hangs up, no usage)


class ScriptedUpstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.scripts: dict[str, Script] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def script(self, model: str, **fields: Any) -> Script:
        self.scripts[model] = Script(**fields)
        return self.scripts[model]


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 0, "model": model}
    return f"data: {json.dumps(body | {'choices': choices, 'usage': usage})}\n\n".encode()


class ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedUpstream

    def log_message(self, *_args: Any) -> None:
        pass

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = body["model"]
        script = self.server.scripts[model]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self._send(_chunk(model, {"role": "assistant", "content": ""}))
            self._send(_chunk(model, {"content": "first "}))
            script.started.set()
            if script.ending == "trickle":
                for _ in range(int(WAIT * 20)):
                    script.release.wait(0.05)
                    self._send(_chunk(model, {"content": "more "}))
                return
            script.release.wait(WAIT)
            if script.ending == "error":
                self._send(b'data: {"error": {"message": "upstream fell over", "type": "server_error"}}\n\n')
                return
            self._send(_chunk(model, {"content": "last"}))
            self._send(_chunk(model, {}, finish="stop"))
            self._send(_chunk(model, {}, usage=USAGE))
            self._send(b"data: [DONE]\n\n")
        except OSError:
            script.closed_by_gateway.set()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    server = ScriptedUpstream()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@dataclass
class Tenant:
    id: str
    key: str
    admin: httpx2.Client
    url: str

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0, timeout=WAIT)

    def model(self, alias: str, model_id: str, **fields: Any) -> None:
        body = {"alias": alias, "provider": "openai_compatible", "model_id": model_id, "credential": "up"}
        created = self.admin.post(f"/admin/tenants/{self.id}/models", json=body | {"pricing": PRICE} | fields)
        assert created.status_code == 201, created.text

    def usage(self) -> dict[str, Any]:
        answer = self.admin.get(f"/admin/tenants/{self.id}/usage")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


def new_tenant(url: str, admin: httpx2.Client, upstream: ScriptedUpstream) -> Tenant:
    """A tenant with a developer key and a credential for the scripted upstream."""
    created = admin.post("/admin/tenants", json={"name": "streaming"}).json()
    base = f"/admin/tenants/{created['id']}"
    credential = {"provider": "openai_compatible", "base_url": upstream.url, "api_key": "sk-stream-1234"}
    assert admin.put(f"{base}/credentials/up", json=credential).status_code == 200
    key = admin.post(f"{base}/keys", json={"name": "dev", "role": "developer"}).json()["key"]
    return Tenant(created["id"], key, admin, url)


@pytest.fixture
def tenant(local_stack: LocalStack, admin: httpx2.Client, upstream: ScriptedUpstream) -> Tenant:
    return new_tenant(local_stack.url, admin, upstream)


def _model(upstream: ScriptedUpstream, **fields: Any) -> tuple[str, Script]:
    model = f"scripted-{uuid.uuid4().hex[:8]}"
    return model, upstream.script(model, **fields)


def _stream(sdk: openai.OpenAI, alias: str, **options: Any) -> Any:
    return sdk.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "tell me"}], stream=True, **options
    )


def _text(chunk: Any) -> str:
    return "".join(choice.delta.content or "" for choice in chunk.choices)


def test_the_first_chunk_arrives_before_the_upstream_has_sent_its_last(
    tenant: Tenant, upstream: ScriptedUpstream
) -> None:
    model, script = _model(upstream)
    tenant.model("live", model)

    stream = _stream(tenant.sdk(), "live", stream_options={"include_usage": True})
    received = [_text(next(stream)), _text(next(stream))]  # the role chunk, then "first "
    script.release.set()  # only now may the upstream finish
    rest = list(stream)

    assert received == ["", "first "]
    assert "".join(_text(c) for c in rest) == "last"
    assert [(c.usage.prompt_tokens, c.usage.completion_tokens) for c in rest if c.usage] == [(9, 3)]
    total = tenant.usage()["total"]
    assert (total["requests"], total["input_tokens"], total["output_tokens"]) == (1, 9, 3)


def test_ten_concurrent_streams_overlap(tenant: Tenant, upstream: ScriptedUpstream) -> None:
    scripts = []
    for index in range(10):
        model, script = _model(upstream)
        tenant.model(f"many-{index}", model)
        scripts.append(script)
    every_one_started = threading.Barrier(10, timeout=WAIT)

    def one(index: int) -> str:
        stream = _stream(tenant.sdk(), f"many-{index}")
        text = _text(next(stream)) + _text(next(stream))
        every_one_started.wait()  # a gateway serving one stream at a time never gets past this
        scripts[index].release.set()
        return text + "".join(_text(c) for c in stream)

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(one, range(10)))

    assert answers == ["first last"] * 10


def test_a_client_that_goes_away_closes_the_upstream_and_the_call_is_metered_at_its_bound(
    tenant: Tenant, upstream: ScriptedUpstream
) -> None:
    model, script = _model(upstream, ending="trickle")
    tenant.model("left", model, max_output_tokens=50)
    tenant.admin.put(f"/admin/tenants/{tenant.id}/budget", json={"monthly_limit_usd": 5.0, "hard": True})

    stream = _stream(tenant.sdk(), "left")
    assert _text(next(stream)) + _text(next(stream)) == "first "
    stream.close()  # the client hangs up mid-answer

    assert script.closed_by_gateway.wait(WAIT), "the gateway kept reading the upstream's stream"
    usage = _settled(tenant)
    total, budget = usage["total"], usage["budget"]
    # The upstream reported no usage: the reservation's bound, never zero.
    assert total["requests"] == 1 and total["output_tokens"] == 50 and total["input_tokens"] > 0
    assert budget["reserved_usd"] == 0 and budget["spent_usd"] == total["cost_usd"] > 0


def _settled(tenant: Tenant) -> dict[str, Any]:
    """The usage once the gateway has settled a stream it saw end (it settles after the client left)."""
    done = threading.Event()
    for _ in range(int(WAIT * 10)):
        usage = tenant.usage()
        if usage["total"]["requests"] and (usage["budget"] or {}).get("reserved_usd", 0) == 0:
            return usage
        done.wait(0.1)
    raise AssertionError(f"the stream was never settled: {usage}")


def test_an_upstream_failure_midway_ends_the_stream_with_an_error_event(
    tenant: Tenant, upstream: ScriptedUpstream
) -> None:
    model, script = _model(upstream, ending="error")
    tenant.model("flaky", model)

    stream = _stream(tenant.sdk(), "flaky")
    assert _text(next(stream)) + _text(next(stream)) == "first "
    script.release.set()
    with pytest.raises(openai.APIError) as failed:
        list(stream)

    assert "upstream fell over" in str(failed.value.message)
    assert tenant.usage()["total"]["requests"] == 1


def test_a_refusal_comes_before_the_first_byte_as_an_ordinary_error(
    tenant: Tenant, upstream: ScriptedUpstream
) -> None:
    model, _ = _model(upstream)
    tenant.model("pricey", model, max_output_tokens=1000)
    tenant.admin.put(f"/admin/tenants/{tenant.id}/budget", json={"monthly_limit_usd": 0.5, "hard": True})

    with pytest.raises(openai.RateLimitError) as refused:
        _stream(tenant.sdk(), "pricey")

    assert refused.value.status_code == 429 and refused.value.code == "insufficient_quota"


def test_a_hard_budget_holds_under_twenty_concurrent_streams(
    tenant: Tenant, upstream: ScriptedUpstream
) -> None:
    model, script = _model(upstream)
    # Each stream reserves its bound (about 0.24 USD at 100 output tokens) until it ends; no stream
    # ends before all twenty have been admitted or refused, so 2 USD admits at most 8 of them.
    tenant.model("shared", model, max_output_tokens=100)
    tenant.admin.put(f"/admin/tenants/{tenant.id}/budget", json={"monthly_limit_usd": 2.0, "hard": True})
    all_decided = threading.Barrier(20, action=script.release.set, timeout=WAIT)

    def one(_: int) -> str:
        try:
            stream = _stream(tenant.sdk(), "shared")
        except openai.RateLimitError:
            all_decided.wait()
            return "refused"
        all_decided.wait()
        return "".join(_text(c) for c in stream)

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(one, range(20)))

    usage = tenant.usage()
    answered = outcomes.count("first last")
    assert answered + outcomes.count("refused") == 20 and 0 < answered <= 8
    assert usage["total"]["requests"] == answered
    assert usage["budget"]["spent_usd"] <= 2.0 and usage["budget"]["reserved_usd"] == 0


def test_a_plain_request_on_the_streaming_route_still_answers_json(
    tenant: Tenant, upstream: ScriptedUpstream, local_stack: LocalStack
) -> None:
    answer = httpx2.post(
        f"{local_stack.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {tenant.key}"},
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        timeout=WAIT,
    )

    assert answer.status_code == 404 and answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"]["code"] == "model_not_found" and answer.headers["x-request-id"]


def test_ctrl_c_during_a_stream_stops_everything_cleanly(
    synthesized_template: Path, upstream: ScriptedUpstream
) -> None:
    stack = start_local_stack(template=synthesized_template)
    admin = httpx2.Client(base_url=stack.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=WAIT)
    tenant = new_tenant(stack.url, admin, upstream)
    model, script = _model(upstream, ending="trickle")
    tenant.model("long", model)
    stream = _stream(tenant.sdk(), "long")
    assert _text(next(stream)) + _text(next(stream)) == "first "

    exit_code = stack.stop(signal.SIGINT)

    with pytest.raises((openai.APIConnectionError, httpx2.TransportError)):
        list(stream)  # cut short for the client, instead of hanging
    assert exit_code == 0
    assert script.closed_by_gateway.wait(WAIT), "the upstream's stream was left open"
    assert "Traceback" not in stack.logs()


# Bedrock ConverseStream, through the local stack's Bedrock stand-in (its model names ask for
# long answers and for streams that fail part-way; local_stack.models.servers).


@pytest.fixture
def bedrock_tenant(tenant: Tenant) -> Tenant:
    for alias, model_id in (("br-long", "m-long-400"), ("br-broken", "m-long-50-error-after-5")):
        body = {"alias": alias, "provider": "bedrock", "model_id": model_id, "pricing": PRICE}
        created = tenant.admin.post(f"/admin/tenants/{tenant.id}/models", json=body)
        assert created.status_code == 201, created.text
    return tenant


def test_a_bedrock_stream_broken_midway_ends_with_an_error_event(bedrock_tenant: Tenant) -> None:
    stream = _stream(bedrock_tenant.sdk(), "br-broken")
    first = _text(next(stream)) + _text(next(stream))

    with pytest.raises(openai.APIError) as failed:
        list(stream)

    assert first  # the answer had begun before Bedrock broke off
    assert "modelStreamErrorException" in str(failed.value.message) or "Bedrock" in str(failed.value.message)


def test_a_client_leaving_a_bedrock_stream_closes_it(bedrock_tenant: Tenant, local_stack: LocalStack) -> None:
    streams = f"{local_stack.bedrock_stand_in_url}/_stand_in/streams"
    stream = _stream(bedrock_tenant.sdk(), "br-long")
    assert _text(next(stream)) + _text(next(stream))
    stream.close()

    outcome = "streaming"
    for _ in range(int(WAIT * 10)):
        records = [r for r in httpx2.get(streams).json()["streams"] if r["model"] == "m-long-400"]
        outcome = records[-1]["outcome"] if records else "none"
        if outcome != "streaming":
            break
        threading.Event().wait(0.1)
    assert outcome == "abandoned"
    assert _settled(bedrock_tenant)["total"]["requests"] == 1
