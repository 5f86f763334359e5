"""Stand-in OpenAI Batch API: files uploaded with purpose `batch`, batches over them that complete
`delay_seconds` after creation, and their output and error files in OpenAI's format.

Each input line `{"custom_id", "method", "url", "body"}` is answered by the OpenAI stand-in's own
chat completions or embeddings (local_stack.models.logic). A line the stand-in refuses (no
messages, a `fail-NNN` model) lands in the error file as OpenAI writes one there: its
`response.status_code` and `response.body.error`. An input file that is not valid (a line that is
not JSON, a repeated custom_id, a url other than the batch's endpoint) fails the batch at
validation with `errors.data`, as OpenAI's does. Batches advance when read, from the clock, so the
emulation needs no timers; a cancelled batch runs none of its lines. Not OpenAI: no 24 h window,
no queue, no limits.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from local_stack.models import logic
from local_stack.models.logic import StandInError
from local_stack.models.openai_fine_tuning import parse_multipart

PURPOSE = "batch"
ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
_RUNNING = ("validating", "in_progress", "finalizing")


def _answer(endpoint: str, body: Any, created: int) -> tuple[int, dict[str, Any]]:
    """(status, body) of one request line, as the stand-in answers it online."""
    try:
        if not isinstance(body, dict):
            raise StandInError(400, "the request body must be a JSON object")
        failing = logic.behaviour(str(body.get("model") or "")).fail_status
        if failing:
            raise StandInError(failing, f"stand-in model {body.get('model')} always fails with {failing}")
        if endpoint == "/v1/embeddings":
            return 200, logic.openai_embeddings(body)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        return 200, logic.openai_chat_completion(body, completion_id=completion_id, created=created)
    except StandInError as error:
        return error.status, logic.openai_error(error)


def validation_errors(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(lines, errors): the input's lines, or what makes the file invalid, as OpenAI lists it."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            errors.append(
                {"code": "invalid_json_line", "message": "This line is not a valid request", "line": number}
            )
            continue
        if line.get("url") != endpoint:
            errors.append(
                {
                    "code": "mismatched_endpoint",
                    "message": f"The url must be {endpoint}",
                    "line": number,
                    "param": "url",
                }
            )
        if line["custom_id"] in seen:
            errors.append({"code": "duplicate_custom_id", "message": "custom_id is repeated", "line": number})
        seen.add(line["custom_id"])
        lines.append(line)
    if not lines and not errors:
        errors.append({"code": "empty_file", "message": "The input file has no requests", "line": None})
    return lines, errors


class OpenAIBatchesState:
    def __init__(self, *, delay_seconds: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.delay_seconds = delay_seconds
        self._clock = clock
        self.files: dict[str, dict[str, Any]] = {}
        self._data: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- files -------------------------------------------------------------------------------------

    def _store(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        record = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(self._clock()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        self.files[file_id] = record
        self._data[file_id] = data
        return record

    def upload(self, fields: dict[str, tuple[str | None, bytes]]) -> dict[str, Any]:
        filename, data = fields.get("file", (None, b""))
        if not data.strip():
            raise StandInError(400, "the file is empty", param="file")
        with self._lock:
            return self._store(filename or "batch.jsonl", PURPOSE, data)

    def file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            found = self.files.get(file_id)
        if found is None:
            raise StandInError(404, f"No such File object: {file_id}", param="id")
        return found

    def content(self, file_id: str) -> bytes:
        self.file(file_id)
        with self._lock:
            return self._data[file_id]

    # -- batches -----------------------------------------------------------------------------------

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        endpoint, input_file = request.get("endpoint"), request.get("input_file_id")
        if endpoint not in ENDPOINTS:
            raise StandInError(
                400, f"the stand-in runs batches on {', '.join(ENDPOINTS)} only", param="endpoint"
            )
        if request.get("completion_window") != "24h":
            raise StandInError(400, "completion_window must be '24h'", param="completion_window")
        with self._lock:
            if input_file not in self.files or self.files[input_file]["purpose"] != PURPOSE:
                raise StandInError(400, f"invalid input_file_id: {input_file}", param="input_file_id")
            batch_id = f"batch_{uuid.uuid4().hex[:24]}"
            now = int(self._clock())
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": endpoint,
                "errors": None,
                "input_file_id": input_file,
                "completion_window": "24h",
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": now,
                "in_progress_at": None,
                "expires_at": now + 24 * 3600,
                "finalizing_at": None,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelling_at": None,
                "cancelled_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": request.get("metadata"),
                "_started": self._clock(),
            }
            return self._public(self.batches[batch_id])

    @staticmethod
    def _public(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _advance(self, batch: dict[str, Any]) -> None:
        now = self._clock()
        if batch["status"] == "cancelling":
            batch["status"], batch["cancelled_at"] = "cancelled", int(now)
            return
        if batch["status"] not in _RUNNING:
            return
        lines, errors = validation_errors(self._data[batch["input_file_id"]], batch["endpoint"])
        if errors:
            batch["status"], batch["failed_at"] = "failed", int(now)
            batch["errors"] = {"object": "list", "data": [e | {"param": e.get("param")} for e in errors]}
            return
        batch["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
        if now - batch["_started"] < self.delay_seconds:
            batch["status"] = "in_progress"
            batch["in_progress_at"] = batch["in_progress_at"] or int(now)
            return
        self._finish(batch, lines, int(now))

    def _finish(self, batch: dict[str, Any], lines: list[dict[str, Any]], now: int) -> None:
        outputs: list[bytes] = []
        failures: list[bytes] = []
        for line in lines:
            status, body = _answer(batch["endpoint"], line.get("body"), now)
            record = {
                "id": f"batch_req_{uuid.uuid4().hex[:24]}",
                "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": uuid.uuid4().hex, "body": body},
                "error": None,
            }
            (outputs if status == 200 else failures).append(json.dumps(record).encode() + b"\n")
        name = batch["id"]
        if outputs:
            batch["output_file_id"] = self._store(f"{name}_output.jsonl", "batch_output", b"".join(outputs))[
                "id"
            ]
        if failures:
            batch["error_file_id"] = self._store(f"{name}_error.jsonl", "batch_output", b"".join(failures))[
                "id"
            ]
        batch["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(failures)}
        batch["status"], batch["finalizing_at"], batch["completed_at"] = "completed", now, now

    def _batch(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise StandInError(404, f"No batch found with id '{batch_id}'", param="batch_id")
        return batch

    def get(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self._batch(batch_id)
            self._advance(batch)
            return self._public(batch)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self._batch(batch_id)
            self._advance(batch)
            if batch["status"] not in _RUNNING:
                raise StandInError(409, f"Cannot cancel a batch with status '{batch['status']}'")
            batch["status"], batch["cancelling_at"] = "cancelling", int(self._clock())
            return self._public(batch)


def route(
    state: OpenAIBatchesState, method: str, path: str, content_type: str, body: bytes
) -> tuple[int, dict[str, Any] | bytes] | None:
    """The Batch API part of OpenAI's API (paths without `/v1`); None for any other request,
    uploads of other purposes included (the fine-tuning stand-in stores those)."""
    parts = [p for p in path.split("/") if p]
    if method == "POST" and parts == ["files"]:
        fields = parse_multipart(content_type, body)
        if fields.get("purpose", (None, b""))[1].decode() != PURPOSE:
            return None
        return 200, state.upload(fields)
    if method == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
        return (200, state.content(parts[1])) if parts[1] in state.files else None
    if method == "GET" and len(parts) == 2 and parts[0] == "files":
        return (200, state.file(parts[1])) if parts[1] in state.files else None
    if parts[:1] != ["batches"]:
        return None
    if method == "POST" and len(parts) == 1:
        try:
            request = json.loads(body or b"{}")
        except ValueError as error:
            raise StandInError(400, f"the request body is not valid JSON: {error}") from error
        return 200, state.create(request if isinstance(request, dict) else {})
    if method == "GET" and len(parts) == 2:
        return 200, state.get(parts[1])
    if method == "POST" and len(parts) == 3 and parts[2] == "cancel":
        return 200, state.cancel(parts[1])
    return None
