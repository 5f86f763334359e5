"""HTTP endpoints of the stand-in models: OpenAI-compatible and Bedrock-runtime-compatible.

Both keep the last requests they received (no credentials) at GET /_stand_in/requests, so a test
can check what the gateway sent to the provider, and their last streams at GET /_stand_in/streams:
when each frame was flushed and how the stream ended (`completed`; `failed` or `dropped` as the
model name asked; `abandoned` when the client went away before the end, so a test can see that
the gateway closed the provider stream). DELETE on either path clears both.

A stream (OpenAI `stream: true` as server-sent events, Bedrock ConverseStream as AWS event
stream) goes out one token per HTTP chunk, each flushed, `token_delay_ms` apart. Model names
ask for long answers and for streams that fail part-way (local_stack.models.logic):
  stand-in-chat-long-200               200 tokens
  stand-in-chat-long-50-error-after-5  5 tokens, then an error event (OpenAI: `data: {"error":
                                       ...}`; Bedrock: a modelStreamErrorException event)
  stand-in-chat-long-50-drop-after-5   5 tokens, then the connection closes mid-body
What the providers' clients raise then (tests/integration/local_stack/test_stand_in_streaming.py):
the openai SDK an `openai.APIError` (not an APIStatusError) for the error event and an
`openai.APIConnectionError` for the drop; boto3 a `botocore.exceptions.EventStreamError` (a
ClientError, code `modelStreamErrorException`) for the error event and, for the drop, urllib3's
`ProtocolError` unwrapped (no BotoCoreError).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from local_stack.httpbase import BackgroundServer, Handler
from local_stack.models import batch_inference, logic, openai_responses
from local_stack.models.batch_inference import BatchInferenceState
from local_stack.models.customization import CustomizationState, route
from local_stack.models.eventstream import encode_event, encode_exception
from local_stack.models.guardrails import GuardrailsState
from local_stack.models.guardrails import handles as guardrail_path
from local_stack.models.guardrails import route as guardrails_route
from local_stack.models.logic import StandInError
from local_stack.models.openai_batches import OpenAIBatchesState
from local_stack.models.openai_batches import route as batches_route
from local_stack.models.openai_fine_tuning import OpenAIFineTuningState
from local_stack.models.openai_fine_tuning import route as fine_tuning_route

REQUEST_LOG_SIZE = 200
STREAM_LOG_SIZE = 200
_LOG_PATHS = ("/_stand_in/requests", "/_stand_in/streams")


@dataclass
class StreamRecord:
    """One stream a stand-in served. `outcome` is `streaming` until it ends: `completed`, `failed`
    (an error event, as the model name asked), `dropped` (cut mid-body, as asked) or `abandoned`
    (the client went away: a write failed). Times are `time.time()`, one per frame flushed."""

    api: str
    model: str
    started_at: float
    written_at: list[float] = field(default_factory=list)
    tokens: int = 0
    outcome: str = "streaming"
    ended_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "model": self.model,
            "started_at": self.started_at,
            "written_at": list(self.written_at),
            "tokens": self.tokens,
            "outcome": self.outcome,
            "ended_at": self.ended_at,
        }


@dataclass(frozen=True)
class Frame:
    """One HTTP chunk of a stream; a frame that carries a token waits the token delay before it
    (but the first)."""

    data: bytes
    token: bool


class StandInState:
    """What a stand-in endpoint remembers: recent requests and streams, and how often flaky models
    were called; and how long its streams wait between tokens."""

    def __init__(self, token_delay_ms: int = 0) -> None:
        self.token_delay_ms = token_delay_ms
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._streams: deque[StreamRecord] = deque(maxlen=STREAM_LOG_SIZE)
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self.prompt_cache = logic.PromptCache()

    def record(self, api: str, model: str, body: Any) -> None:
        with self._lock:
            self.requests.append({"api": api, "model": model, "body": body, "at": time.time()})

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._streams.clear()
            self._calls.clear()
        self.prompt_cache.clear()

    def stream_started(self, api: str, model: str) -> StreamRecord:
        stream = StreamRecord(api, model, started_at=time.time())
        with self._lock:
            self._streams.append(stream)
        return stream

    def wrote(self, stream: StreamRecord, frame: Frame) -> None:
        with self._lock:
            stream.written_at.append(time.time())
            stream.tokens += 1 if frame.token else 0

    def stream_ended(self, stream: StreamRecord, outcome: str) -> None:
        with self._lock:
            stream.outcome, stream.ended_at = outcome, time.time()

    def streams(self) -> list[dict[str, Any]]:
        """Snapshots of the recent streams, oldest first."""
        with self._lock:
            return [stream.as_dict() for stream in self._streams]

    def apply_behaviour(self, model: str) -> None:
        """Sleeps or raises as the model name asks (see local_stack.models.logic)."""
        wanted = logic.behaviour(model)
        if wanted.delay_ms:
            time.sleep(wanted.delay_ms / 1000)
        if wanted.fail_status:
            raise StandInError(
                wanted.fail_status, f"stand-in model {model} always fails with {wanted.fail_status}"
            )
        if wanted.flaky_status:
            with self._lock:
                calls = self._calls[model] = self._calls.get(model, 0) + 1
            if calls <= wanted.flaky_failures:
                raise StandInError(
                    wanted.flaky_status,
                    f"stand-in model {model} fails call {calls} of its first {wanted.flaky_failures}",
                )


class _StandInHandler(Handler):
    @property
    def state(self) -> StandInState:
        return self.server.state["state"]

    def handle_one_request(self) -> None:
        # A client that gives up on a stream (the gateway closing a provider stream, an SDK after
        # an error event) may reset its keep-alive connection while this waits for its next request.
        try:
            super().handle_one_request()
        except ConnectionError:
            self.close_connection = True

    def _json_body(self) -> Any:
        body, _ = self.read_body()
        try:
            return json.loads(body or b"null")
        except ValueError as error:
            raise StandInError(400, f"the request body is not valid JSON: {error}") from error

    def _send_json(self, status: int, document: Any, headers: list[tuple[str, str]] | None = None) -> None:
        body = json.dumps(document).encode("utf-8")
        self.send_all(status, [("Content-Type", "application/json"), *(headers or [])], body)

    def _request_log(self) -> bool:
        path = urlsplit(self.path).path.rstrip("/")
        if path not in _LOG_PATHS:
            return False
        if self.command == "DELETE":
            self.state.clear()
            self.send_all(204, [], b"")
        elif path.endswith("/streams"):
            self._send_json(200, {"streams": self.state.streams()})
        else:
            self._send_json(200, {"requests": list(self.state.requests)})
        return True

    def _stream(
        self, api: str, model: str, content_type: str, frames: list[Frame], error: Callable[[str], bytes]
    ) -> None:
        """Writes a stream one frame per chunk, each flushed, the token delay between tokens; ends
        it part-way when the model name asks: with the frame `error(message)` makes, or by closing
        the connection. A client that goes away ends the stream quietly, recorded as abandoned."""
        failure = logic.behaviour(model).stream_failure
        cut = (
            len(frames) if failure is None else logic.failure_point([f.token for f in frames], failure.after)
        )
        outcome = "completed" if failure is None else {"error": "failed", "drop": "dropped"}[failure.kind]
        delay = self.state.token_delay_ms / 1000
        stream = self.state.stream_started(api, model)
        tokens = 0
        try:
            self.start_chunked(200, [("Content-Type", content_type), ("Cache-Control", "no-cache")])
            for frame in frames[:cut]:
                if frame.token:
                    if tokens and delay:
                        time.sleep(delay)
                    tokens += 1
                self.write_chunk(frame.data)
                self.state.wrote(stream, frame)
            if failure is not None and tokens and delay:
                time.sleep(delay)  # the failure comes when the next token would have
            if failure is not None and failure.kind == "error":
                last = Frame(error(logic.stream_failure_message(model, failure)), token=False)
                self.write_chunk(last.data)
                self.state.wrote(stream, last)
            if failure is not None and failure.kind == "drop":
                self.close_connection = True  # no terminating chunk: the body ends mid-stream
            else:
                self.end_chunked()
        except ConnectionError:  # BrokenPipeError, ConnectionResetError: the client closed its end
            self.close_connection = True
            outcome = "abandoned"
        self.state.stream_ended(stream, outcome)


class OpenAIStandInHandler(_StandInHandler):
    """POST /v1/chat/completions (and streaming), POST /v1/embeddings, GET /v1/models; the
    fine-tuning API (POST /v1/files, /v1/fine_tuning/jobs...: local_stack.models.openai_fine_tuning),
    whose `ft:...` models chat here; and the Batch API (purpose=batch files, /v1/batches, file
    content: local_stack.models.openai_batches)."""

    @property
    def fine_tuning(self) -> OpenAIFineTuningState:
        return self.server.state["fine_tuning"]

    def _fine_tuning(self, body: bytes) -> bool:
        try:
            answer = fine_tuning_route(
                self.fine_tuning, self.command, self._route(), self.headers.get("Content-Type") or "", body
            )
        except StandInError as error:
            self._error(error)
            return True
        if answer is None:
            return False
        self.state.record(f"fine_tuning {self.command} {self._route()}", "", None)
        self._send_json(*answer)
        return True

    def _batches(self, body: bytes) -> bool:
        try:
            answer = batches_route(
                self.server.state["batches"],
                self.command,
                self._route(),
                self.headers.get("Content-Type") or "",
                body,
            )
        except StandInError as error:
            self._error(error)
            return True
        if answer is None:
            return False
        self.state.record(f"batches {self.command} {self._route()}", "", None)
        status, document = answer
        if isinstance(document, bytes):
            self.send_all(status, [("Content-Type", "application/octet-stream")], document)
        else:
            self._send_json(status, document)
        return True

    def do_GET(self) -> None:
        if self._request_log() or self._batches(b"") or self._fine_tuning(b""):
            return
        path = self._route()
        if path == "/models":
            self._send_json(200, logic.openai_models(int(time.time())))
        elif path.startswith("/models/"):
            model = unquote(path.removeprefix("/models/"))
            self._send_json(200, {"id": model, "object": "model", "created": 0, "owned_by": logic.OWNER})
        else:
            self._error(StandInError(404, f"Unknown request URL: GET {self.path}"))

    def do_DELETE(self) -> None:
        if not self._request_log():
            self._error(StandInError(404, f"Unknown request URL: DELETE {self.path}"))

    def do_POST(self) -> None:
        path = self._route()
        if path == "/files" or path.startswith(("/fine_tuning/", "/batches")):
            body, _ = self.read_body()
            if not self._batches(body) and not self._fine_tuning(body):
                self._error(StandInError(404, f"Unknown request URL: POST {self.path}"))
            return
        try:
            request = self._json_body()
            model = request.get("model", "") if isinstance(request, dict) else ""
            if path == "/chat/completions":
                self.state.record("chat.completions", model, request)
                self.state.apply_behaviour(model)
                self._chat(request)
            elif path == "/responses":
                self.state.record("responses", model, request)
                self.state.apply_behaviour(model)
                self._respond(request)
            elif path == "/embeddings":
                self.state.record("embeddings", model, request)
                self.state.apply_behaviour(model)
                self._send_json(200, logic.openai_embeddings(request))
            else:
                raise StandInError(404, f"Unknown request URL: POST {self.path}")
        except StandInError as error:
            self._error(error)

    def _route(self) -> str:
        path = urlsplit(self.path).path
        return path.removeprefix("/v1") if path.startswith("/v1/") else path

    def _chat(self, request: dict[str, Any]) -> None:
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        tuned = self.fine_tuning.model(str(request.get("model") or ""))
        if tuned is not None:
            self._tuned_chat(tuned.answer, request, completion_id, created)
            return
        if not request.get("stream"):
            self._send_json(
                200,
                logic.openai_chat_completion(
                    request, completion_id=completion_id, created=created, cache=self.state.prompt_cache
                ),
            )
            return
        chunks = logic.openai_chat_chunks(
            request, completion_id=completion_id, created=created, cache=self.state.prompt_cache
        )
        self._sse(request, chunks)

    def _respond(self, request: dict[str, Any]) -> None:
        if not request.get("stream"):
            self._send_json(200, openai_responses.response(request))
            return
        model = str(request.get("model") or "")
        frames = [
            Frame(openai_responses.sse(event), token) for event, token in openai_responses.events(request)
        ]
        self._stream("responses", model, "text/event-stream; charset=utf-8", frames, _response_error)

    def _tuned_chat(self, answer: Any, request: dict[str, Any], completion_id: str, created: int) -> None:
        if not request.get("stream"):
            completion = logic.custom_model_chat_completion(
                answer, request, completion_id=completion_id, created=created
            )
            self._send_json(200, completion)
            return
        self._sse(
            request,
            logic.custom_model_chat_chunks(answer, request, completion_id=completion_id, created=created),
        )

    def _sse(self, request: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
        model = str(request.get("model") or "")
        frames = [
            Frame(f"data: {json.dumps(chunk)}\n\n".encode(), logic.openai_chunk_carries_token(chunk))
            for chunk in chunks
        ]
        frames.append(Frame(b"data: [DONE]\n\n", token=False))
        self._stream("chat.completions", model, "text/event-stream; charset=utf-8", frames, _sse_error)

    def _error(self, error: StandInError) -> None:
        self._send_json(error.status, logic.openai_error(error))


def _sse_error(message: str) -> bytes:
    """The event that ends an OpenAI stream failing part-way, as OpenAI sends one (no [DONE])."""
    return f"data: {json.dumps(logic.openai_error(StandInError(500, message)))}\n\n".encode()


def _response_error(message: str) -> bytes:
    """The event that ends a Responses stream failing part-way."""
    return openai_responses.sse({"type": "error", "code": "server_error", "message": message, "param": None})


def _stream_exception(message: str) -> bytes:
    """The event that ends a ConverseStream failing part-way: botocore raises it as a ClientError."""
    return encode_exception(logic.BEDROCK_STREAM_ERROR, message)


class BedrockStandInHandler(_StandInHandler):
    """POST /model/{modelId}/converse, /converse-stream and /invoke, as bedrock-runtime serves them;
    the model-customization part of the bedrock control plane (local_stack.models.customization),
    its batch inference jobs (local_stack.models.batch_inference); and ApplyGuardrail /
    GetGuardrail of stand-in guardrails (local_stack.models.guardrails)."""

    @property
    def customization(self) -> CustomizationState:
        return self.server.state["customization"]

    def _guardrails(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._json_body() if self.command == "POST" else {}
            if self.command == "POST":
                self.state.record("apply-guardrail", unquote(url.path.split("/")[2]), body)
            status, answer = guardrails_route(
                self.server.state["guardrails"],
                self.command,
                url.path,
                url.query,
                body if isinstance(body, dict) else {},
            )
        except StandInError as error:
            self._error(error)
            return
        self._send_json(status, answer)

    def _control_plane(self) -> None:
        path = urlsplit(self.path).path
        if guardrail_path(path):
            self._guardrails()
            return
        if batch_inference.handles(path):
            self._batch_inference()
            return
        try:
            body = self._json_body() if self.command in ("POST", "PATCH") else {}
            status, answer = route(
                self.customization, self.command, path, body if isinstance(body, dict) else {}
            )
        except StandInError as error:
            self._error(error)
            return
        self._send_json(status, answer)

    def _batch_inference(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._json_body() if self.command == "POST" else {}
            self.state.record(f"batch-inference {self.command}", "", None)
            status, answer = batch_inference.route(
                self.server.state["batch_inference"],
                self.command,
                url.path,
                url.query,
                body if isinstance(body, dict) else {},
            )
        except StandInError as error:
            self._error(error)
            return
        self._send_json(status, answer)

    def do_GET(self) -> None:
        if not self._request_log():
            self._control_plane()

    def do_DELETE(self) -> None:
        if not self._request_log():
            self._control_plane()

    def do_POST(self) -> None:
        if not urlsplit(self.path).path.startswith("/model/"):
            self._control_plane()
            return
        # The model id is one URL-encoded path label (ARNs of custom models contain '/' and ':').
        parts = urlsplit(self.path).path.split("/")
        try:
            if len(parts) != 4 or parts[1] != "model":
                raise StandInError(404, f"Unknown operation: POST {self.path}")
            model_id, operation = unquote(parts[2]), parts[3]
            request = self._json_body()
            started = time.monotonic()
            custom = self.customization.custom_model_for(model_id)
            if operation == "converse":
                self.state.record("converse", model_id, request)
                self.state.apply_behaviour(model_id)
                latency = int((time.monotonic() - started) * 1000)
                if custom is not None:
                    self._send_json(
                        200, logic.custom_model_converse(custom.answer, request, latency_ms=latency)
                    )
                else:
                    answer = logic.bedrock_converse(
                        model_id, request, latency_ms=latency, cache=self.state.prompt_cache
                    )
                    self._send_json(200, answer)
            elif operation == "converse-stream":
                self.state.record("converse-stream", model_id, request)
                self.state.apply_behaviour(model_id)
                latency = int((time.monotonic() - started) * 1000)
                if custom is not None:
                    events = logic.custom_model_converse_stream(custom.answer, request, latency_ms=latency)
                else:
                    events = logic.bedrock_converse_stream(
                        model_id, request, latency_ms=latency, cache=self.state.prompt_cache
                    )
                frames = [
                    Frame(encode_event(kind, payload), logic.bedrock_event_carries_token(kind, payload))
                    for kind, payload in events
                ]
                self._stream(
                    "converse-stream",
                    model_id,
                    "application/vnd.amazon.eventstream",
                    frames,
                    _stream_exception,
                )
            elif operation == "invoke":
                self.state.record("invoke", model_id, request)
                self.state.apply_behaviour(model_id)
                answer = logic.bedrock_invoke(model_id, request)
                tokens = str(answer.get("inputTextTokenCount", 0))
                self._send_json(200, answer, [("X-Amzn-Bedrock-Input-Token-Count", tokens)])
            else:
                raise StandInError(404, f"Unknown operation: {operation}")
        except StandInError as error:
            self._error(error)

    def _error(self, error: StandInError) -> None:
        error_type = logic.bedrock_error_type(error.status)
        self._send_json(error.status, {"message": error.message}, [("x-amzn-ErrorType", error_type)])


def openai_stand_in(
    port: int = 0,
    fine_tuning: OpenAIFineTuningState | None = None,
    *,
    token_delay_ms: int = 0,
    batches: OpenAIBatchesState | None = None,
) -> BackgroundServer:
    return BackgroundServer(
        OpenAIStandInHandler,
        port=port,
        state=StandInState(token_delay_ms),
        fine_tuning=fine_tuning or OpenAIFineTuningState(),
        batches=batches or OpenAIBatchesState(),
    )


def bedrock_stand_in(
    port: int = 0,
    customization: CustomizationState | None = None,
    guardrails: GuardrailsState | None = None,
    *,
    token_delay_ms: int = 0,
    batch_jobs: BatchInferenceState | None = None,
) -> BackgroundServer:
    return BackgroundServer(
        BedrockStandInHandler,
        port=port,
        state=StandInState(token_delay_ms),
        customization=customization or CustomizationState(),
        guardrails=guardrails or GuardrailsState(),
        batch_inference=batch_jobs or BatchInferenceState(),
    )
