"""OpenAI's Batch API for `openai` aliases: the lines uploaded as one purpose=batch file, a batch
over it, its output and error files read back line by line.

It is the chat provider (byom.providers.openai_compat) with four more calls, so a batch goes through
the same destination checks, key refresh after a 401 and key scrubbing as every call to OpenAI; the
tenant's key is read from its credential the same way.

Status: `validating`, `in_progress`, `finalizing` and `cancelling` are in progress (a cancelling
batch still finishes the requests it started and writes its files only once `cancelled`);
`completed`, `failed`, `expired` and `cancelled` are OpenAI's terminal states.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError

from byom.providers import OPENAI_BASE_URL, KeyReader, Target, Usage
from byom.providers.batch import (
    BatchLine,
    JobState,
    LineOutcome,
    ProviderJob,
    error_object,
)
from byom.providers.openai_compat import MAX_QUOTED_CHARS, OpenAICompatibleProvider, _Usage, _usage

COMPLETION_WINDOW = "24h"
STATES: dict[str, JobState] = {
    "validating": "in_progress",
    "in_progress": "in_progress",
    "finalizing": "in_progress",
    "cancelling": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}
# Fields of a request body the gateway keeps to itself or that a batch cannot take: `user` is the
# data subject's id (audit, erasure), and batch requests are never streamed.
_DROPPED = ("user", "stream", "stream_options")


def input_line(line: BatchLine, endpoint: str, model_id: str) -> dict[str, Any]:
    """One line of OpenAI's batch input file."""
    body = {k: v for k, v in line.body.items() if k not in _DROPPED} | {"model": model_id}
    return {"custom_id": line.custom_id, "method": "POST", "url": endpoint, "body": body}


def line_usage(body: dict[str, Any]) -> Usage:
    """A response body's token counts (chat completions and embeddings both send `usage`)."""
    try:
        return _usage(_Usage.model_validate(body.get("usage") or {}))
    except ValidationError:
        return Usage()


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def outcome(line: dict[str, Any]) -> LineOutcome:
    """One line of an output or error file as the line's outcome."""
    custom_id = str(line.get("custom_id") or "")
    response = _object(line.get("response"))
    status = response.get("status_code") if isinstance(response.get("status_code"), int) else None
    body = _object(response.get("body"))
    if status == 200 and body and not line.get("error"):
        return LineOutcome(custom_id, 200, body, line_usage(body))
    # A request OpenAI answered with an error carries it in the body; one it never sent, in `error`.
    error = _object(body.get("error"))
    if not error:
        raw = _object(line.get("error"))
        message = str(raw.get("message") or "OpenAI reported an error for this request")
        error = error_object(message, code=raw.get("code"))
    shaped = {
        "message": str(error.get("message") or "")[:MAX_QUOTED_CHARS],
        "type": error.get("type") or "server_error",
        "param": error.get("param"),
        "code": error.get("code"),
    }
    return LineOutcome(custom_id, status if status and 400 <= status < 600 else 500, shaped, None)


def parse_lines(data: bytes) -> Iterator[dict[str, Any]]:
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _dict(answer: Any) -> dict[str, Any]:
    found: dict[str, Any] = answer.to_dict() if hasattr(answer, "to_dict") else dict(answer)
    return found


class OpenAIBatches(OpenAICompatibleProvider):
    @classmethod
    def from_env(cls, *, keys: KeyReader | None, allow_loopback_http: bool | None) -> OpenAIBatches:
        """With the gateway's own key reader when none is given: Secrets Manager, named and cached
        as the gateway function reads keys (its SECRET_PREFIX and PROVIDER_KEY_MAX_AGE_SECONDS)."""
        if keys is None:
            from byom.dal.secrets import ProviderKeys

            keys = ProviderKeys(
                os.environ.get("SECRET_PREFIX", ""),
                int(os.environ.get("PROVIDER_KEY_MAX_AGE_SECONDS", "300")),
            )
        if allow_loopback_http is None:
            allow_loopback_http = os.environ.get("ALLOW_LOOPBACK_HTTP", "").lower() in ("1", "true", "yes")
        return cls(
            keys,
            timeout_seconds=60.0,
            allow_loopback_http=allow_loopback_http,
            default_base_url=OPENAI_BASE_URL,
        )

    def submit(
        self, target: Target, endpoint: str, lines: Sequence[BatchLine], *, name: str, s3_prefix: str
    ) -> str:
        data = b"".join(
            json.dumps(input_line(line, endpoint, target.model_id), separators=(",", ":")).encode() + b"\n"
            for line in lines
        )
        uploaded, _ = self._call(
            target, lambda client: client.files.create(file=(f"{name}.jsonl", data), purpose="batch")
        )
        batch, _ = self._call(
            target,
            lambda client: client.batches.create(
                input_file_id=uploaded.id,
                endpoint=endpoint,
                completion_window=COMPLETION_WINDOW,
                metadata={"byom_batch": name[:512]},
            ),
        )
        return str(batch.id)

    def _batch(self, target: Target, job_id: str) -> dict[str, Any]:
        answer, _ = self._call(target, lambda client: client.batches.retrieve(job_id))
        return _dict(answer)

    def status(self, target: Target, job_id: str) -> ProviderJob:
        batch = self._batch(target, job_id)
        counts = batch.get("request_counts") or {}
        message = None
        if batch.get("status") == "failed":
            # Validation errors name the line and OpenAI's reason, never the line's content.
            errors = ((batch.get("errors") or {}).get("data")) or []
            message = "; ".join(str(e.get("message") or e.get("code") or "") for e in errors[:5]) or None
        return ProviderJob(
            state=STATES.get(str(batch.get("status")), "in_progress"),
            total=max(int(counts.get("total") or 0), 0),
            completed=max(int(counts.get("completed") or 0), 0),
            failed=max(int(counts.get("failed") or 0), 0),
            message=message[:MAX_QUOTED_CHARS] if message else None,
        )

    def _file(self, target: Target, file_id: str) -> bytes:
        answer, _ = self._call(target, lambda client: client.files.content(file_id))
        content: bytes = answer.content
        return content

    def outcomes(self, target: Target, job_id: str) -> Iterator[LineOutcome]:
        batch = self._batch(target, job_id)
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                for line in parse_lines(self._file(target, str(batch[key]))):
                    yield outcome(line)

    def cancel(self, target: Target, job_id: str) -> None:
        self._call(target, lambda client: client.batches.cancel(job_id))
