"""The stand-ins stream token by token over loopback: one HTTP chunk per token, flushed as it is
written; long answers, streams that fail part-way and clients that go away, read with a plain
socket (to see the chunks) and with the clients the gateway's providers use (openai, boto3).

Timing is asserted as order only: a chunk the client holds was received before the server wrote
its last one.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest
import urllib3
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import EventStreamError

from local_stack.httpbase import BackgroundServer
from local_stack.models.servers import bedrock_stand_in, openai_stand_in
from tests.integration.local_stack.conftest import http

# Slow enough that a client reading the first token is well ahead of the server's last write.
PACED_MS = 40


class RawStream:
    """One POST over a plain socket, its chunked answer read HTTP chunk by HTTP chunk."""

    def __init__(self, url: str, path: str, body: dict[str, Any]) -> None:
        parts = urlsplit(url)
        payload = json.dumps(body).encode()
        self.socket = socket.create_connection((parts.hostname, parts.port), timeout=15)
        self.socket.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        self._file = self.socket.makefile("rb")
        self.status = int(self._file.readline().split()[1])
        self.headers: dict[str, str] = {}
        while (line := self._file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.ended_cleanly = False  # the terminating zero-length chunk arrived

    def chunks(self) -> Iterator[bytes]:
        while size_line := self._file.readline():
            size = int(size_line.strip(), 16)
            if size == 0:
                self._file.readline()
                self.ended_cleanly = True
                return
            data = self._file.read(size)
            self._file.readline()
            yield data

    def close(self) -> None:
        self._file.close()
        self.socket.close()


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True, **extra}


CONVERSE = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}


def sse_events(chunks: list[bytes]) -> list[Any]:
    return [json.loads(chunk.removeprefix(b"data: ")) for chunk in chunks if chunk != b"data: [DONE]\n\n"]


def event_stream_messages(chunk: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(chunk)
    return list(buffer)


def last_stream(server: BackgroundServer) -> dict[str, Any]:
    return server.server.state["state"].streams()[-1]


def wait_for_end(server: BackgroundServer, timeout: float = 10) -> dict[str, Any]:
    """The last stream, once every stream has ended (the client can hold the last byte before the
    server has recorded it)."""
    deadline = time.monotonic() + timeout
    state = server.server.state["state"]
    while any(s["outcome"] == "streaming" for s in state.streams()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return last_stream(server)


@pytest.fixture(scope="module")
def openai_server() -> Iterator[BackgroundServer]:
    server = openai_stand_in().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def paced_openai() -> Iterator[BackgroundServer]:
    server = openai_stand_in(token_delay_ms=PACED_MS).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bedrock_server() -> Iterator[BackgroundServer]:
    server = bedrock_stand_in().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def paced_bedrock() -> Iterator[BackgroundServer]:
    server = bedrock_stand_in(token_delay_ms=PACED_MS).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_handler_errors(
    openai_server: BackgroundServer,
    paced_openai: BackgroundServer,
    bedrock_server: BackgroundServer,
    paced_bedrock: BackgroundServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[list[Any]]:
    """What the servers' handlers raised (socketserver would print it): nothing, in every test."""
    errors: list[Any] = []
    for server in (openai_server, paced_openai, bedrock_server, paced_bedrock):
        monkeypatch.setattr(server.server, "handle_error", lambda *args: errors.append(args))
    yield errors
    # Resets arrive after a test's last read: give the servers a moment to meet them.
    time.sleep(0.05)
    assert errors == []


# -- one token per chunk, written as it goes -------------------------------------------------------


def test_an_openai_stream_sends_every_token_in_an_http_chunk_of_its_own(
    openai_server: BackgroundServer,
) -> None:
    stream = RawStream(
        openai_server.url,
        "/v1/chat/completions",
        chat("stand-in-chat-long-20", stream_options={"include_usage": True}),
    )
    chunks = list(stream.chunks())
    stream.close()

    assert all(chunk.startswith(b"data: ") and chunk.count(b"data: ") == 1 for chunk in chunks)
    events = sse_events(chunks)
    tokens = [
        e["choices"][0]["delta"]["content"]
        for e in events
        if e["choices"] and e["choices"][0]["delta"].get("content")
    ]
    assert len(tokens) == 20
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 20
    assert chunks[-1] == b"data: [DONE]\n\n" and stream.ended_cleanly
    assert wait_for_end(openai_server)["outcome"] == "completed"


def test_an_openai_stream_reaches_the_client_before_the_server_writes_its_last_token(
    paced_openai: BackgroundServer,
) -> None:
    stream = RawStream(paced_openai.url, "/v1/chat/completions", chat("stand-in-chat-long-12"))
    chunks = stream.chunks()
    next(chunks)  # the role chunk
    first_token = next(chunks)
    received_at = time.time()
    still = last_stream(paced_openai)
    list(chunks)
    stream.close()

    assert b'"content": "This ' in first_token
    assert still["outcome"] == "streaming" and still["tokens"] < 12
    done = wait_for_end(paced_openai)
    assert done["outcome"] == "completed" and done["tokens"] == 12
    assert received_at < done["written_at"][-1]


def test_a_converse_stream_sends_every_token_in_an_http_chunk_of_its_own(
    bedrock_server: BackgroundServer,
) -> None:
    stream = RawStream(bedrock_server.url, "/model/m-long-15/converse-stream", CONVERSE)
    chunks = list(stream.chunks())
    stream.close()

    messages = [event_stream_messages(chunk) for chunk in chunks]
    assert all(len(decoded) == 1 for decoded in messages)
    kinds = [decoded[0].headers[":event-type"] for decoded in messages]
    assert kinds == [
        "messageStart",
        *["contentBlockDelta"] * 15,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert json.loads(messages[-1][0].payload)["usage"]["outputTokens"] == 15
    assert stream.ended_cleanly


def test_a_converse_stream_reaches_the_client_before_the_server_writes_its_last_token(
    paced_bedrock: BackgroundServer,
) -> None:
    stream = RawStream(paced_bedrock.url, "/model/m-long-12/converse-stream", CONVERSE)
    chunks = stream.chunks()
    next(chunks)  # messageStart
    first_token = event_stream_messages(next(chunks))[0]
    received_at = time.time()
    still = last_stream(paced_bedrock)
    list(chunks)
    stream.close()

    assert json.loads(first_token.payload)["delta"]["text"] == "This "
    assert still["outcome"] == "streaming"
    assert received_at < wait_for_end(paced_bedrock)["written_at"][-1]


def test_streams_are_served_side_by_side(paced_openai: BackgroundServer) -> None:
    streams = [
        RawStream(paced_openai.url, "/v1/chat/completions", chat("stand-in-chat-long-8")) for _ in range(2)
    ]
    for stream in streams:
        list(stream.chunks())
        stream.close()

    wait_for_end(paced_openai)
    first, second = paced_openai.server.state["state"].streams()[-2:]
    assert max(first["started_at"], second["started_at"]) < min(first["ended_at"], second["ended_at"])


# -- long answers ------------------------------------------------------------------------------------


def test_the_openai_sdk_streams_a_long_answer_token_by_token(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="stand-in-chat-long-300",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 300 and pieces[-1] == "300"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 300


# -- streams that fail part-way: what the providers' clients raise ------------------------------------


def test_an_openai_stream_asked_to_fail_ends_with_an_error_event_after_its_tokens(
    openai_server: BackgroundServer,
) -> None:
    stream = RawStream(openai_server.url, "/v1/chat/completions", chat("stand-in-chat-long-50-error-after-4"))
    chunks = list(stream.chunks())
    stream.close()

    events = sse_events(chunks)
    assert sum(1 for e in events if "choices" in e and e["choices"][0]["delta"].get("content")) == 4
    assert (
        events[-1]["error"]["type"] == "server_error" and "after 4 tokens" in events[-1]["error"]["message"]
    )
    assert b"data: [DONE]\n\n" not in chunks and stream.ended_cleanly
    assert wait_for_end(openai_server)["outcome"] == "failed"


def test_the_openai_sdk_raises_an_api_error_when_the_stream_fails(client: openai.OpenAI) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(
            model="stand-in-chat-long-50-error-after-3",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        ):
            received += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert not isinstance(raised.value, openai.APIStatusError | openai.APIConnectionError)
    assert raised.value.body == {
        "message": "stand-in model stand-in-chat-long-50-error-after-3 fails its stream after 3 tokens",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert len([piece for piece in received if piece]) == 3


def test_the_openai_sdk_raises_a_connection_error_when_the_stream_is_dropped(
    client: openai.OpenAI, openai_server: BackgroundServer
) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            model="stand-in-chat-long-50-drop-after-5",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        ):
            received += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert len([piece for piece in received if piece]) == 5
    assert wait_for_end(openai_server)["outcome"] == "dropped"


def test_a_shorter_answer_asked_to_fail_still_fails_in_place_of_its_closing_chunks(
    openai_server: BackgroundServer,
) -> None:
    stream = RawStream(openai_server.url, "/v1/chat/completions", chat("stand-in-chat-error-after-999"))
    events = sse_events(list(stream.chunks()))
    stream.close()
    assert "error" in events[-1]
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-1])


def test_boto3_raises_the_model_stream_error_event_as_a_client_error(
    bedrock: Any, bedrock_server: BackgroundServer
) -> None:
    answer = bedrock.converse_stream(modelId="m-long-50-error-after-3", **CONVERSE)
    kinds: list[str] = []
    with pytest.raises(EventStreamError) as raised:
        for event in answer["stream"]:
            kinds += list(event)
    assert kinds == ["messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockDelta"]
    assert raised.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert wait_for_end(bedrock_server)["outcome"] == "failed"


def test_boto3_raises_urllib3s_protocol_error_when_a_converse_stream_is_dropped(
    bedrock: Any, bedrock_server: BackgroundServer
) -> None:
    # botocore hands the event stream's socket errors over unwrapped: not a BotoCoreError.
    answer = bedrock.converse_stream(modelId="m-long-50-drop-after-2", **CONVERSE)
    kinds: list[str] = []
    with pytest.raises(urllib3.exceptions.ProtocolError):
        for event in answer["stream"]:
            kinds += list(event)
    assert kinds == ["messageStart", "contentBlockDelta", "contentBlockDelta"]
    assert wait_for_end(bedrock_server)["outcome"] == "dropped"


# -- a client that goes away ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "path", "body"),
    [
        ("openai", "/v1/chat/completions", chat("stand-in-chat-long-500")),
        ("bedrock", "/model/m-long-500/converse-stream", CONVERSE),
    ],
)
def test_a_client_that_goes_away_mid_stream_is_recorded_and_the_server_carries_on(
    api: str,
    path: str,
    body: dict[str, Any],
    paced_openai: BackgroundServer,
    paced_bedrock: BackgroundServer,
    no_handler_errors: list[Any],
) -> None:
    server = paced_openai if api == "openai" else paced_bedrock
    stream = RawStream(server.url, path, body)
    chunks = stream.chunks()
    for _ in range(3):
        next(chunks)
    stream.close()

    ended = wait_for_end(server)
    assert ended["outcome"] == "abandoned" and ended["tokens"] < 500
    assert no_handler_errors == []
    assert http("GET", server.url + "/_stand_in/requests").status == 200


def test_the_streams_log_is_served_and_cleared_over_http(openai_server: BackgroundServer) -> None:
    stream = RawStream(openai_server.url, "/v1/chat/completions", chat("stand-in-chat-long-3"))
    list(stream.chunks())
    stream.close()
    wait_for_end(openai_server)

    logged = http("GET", openai_server.url + "/_stand_in/streams").json()["streams"][-1]
    assert (logged["api"], logged["model"], logged["outcome"]) == (
        "chat.completions",
        "stand-in-chat-long-3",
        "completed",
    )
    assert logged["tokens"] == 3 and len(logged["written_at"]) == 6  # role, 3 tokens, finish, [DONE]
    assert http("DELETE", openai_server.url + "/_stand_in/streams").status == 204
    assert http("GET", openai_server.url + "/_stand_in/streams").json() == {"streams": []}
