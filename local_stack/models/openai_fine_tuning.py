"""The local OpenAI fine-tuning API: files uploaded with purpose `fine-tune`, jobs that succeed after
`BYOM_LOCAL_TRAINING_SECONDS`, and the `ft:...` model each produces, answered through the
OpenAI-compatible stand-in's chat completions.

The fine-tuned model is the Bedrock stand-in's custom model (local_stack.models.customization): a
nearest-neighbour lookup over its training examples. Jobs advance when read, from the clock, so the
emulation needs no timers. Names steer failures, as elsewhere in the stand-ins: a job whose base
model's name contains `fail` ends failed with an error message.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from local_stack.models.customization import CustomModel, parse_training_data
from local_stack.models.logic import StandInError

TRAINING_FAILS = "fail"
ORGANIZATION = "byom-local"
FAILURE_MESSAGE = "stand-in: training failed, as the base model's name asked"


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields by name: (filename, bytes)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise StandInError(400, "expected a multipart/form-data body")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True)
            fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


class OpenAIFineTuningState:
    def __init__(self, *, training_seconds: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.training_seconds = training_seconds
        self._clock = clock
        self.files: dict[str, dict[str, Any]] = {}
        self._data: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.models: dict[str, CustomModel] = {}
        self._lock = threading.Lock()

    # -- files -------------------------------------------------------------------------------------

    def upload(self, content_type: str, body: bytes) -> dict[str, Any]:
        fields = parse_multipart(content_type, body)
        purpose = fields.get("purpose", (None, b""))[1].decode()
        filename, data = fields.get("file", (None, b""))
        if purpose != "fine-tune":
            raise StandInError(
                400, f"the stand-in stores files with purpose 'fine-tune' only, not '{purpose}'"
            )
        if not data.strip():
            raise StandInError(400, "the file is empty", param="file")
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        record: dict[str, Any] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(self._clock()),
            "filename": filename or "upload.jsonl",
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        with self._lock:
            self.files[file_id] = record
            self._data[file_id] = data
        return record

    # -- jobs ------------------------------------------------------------------------------------

    def create_job(self, request: dict[str, Any]) -> dict[str, Any]:
        model, training_file = request.get("model"), request.get("training_file")
        if not isinstance(model, str) or not model:
            raise StandInError(400, "you must provide a model parameter", param="model")
        with self._lock:
            if training_file not in self.files:
                raise StandInError(400, f"invalid training_file: {training_file}", param="training_file")
            job_id = f"ftjob-{uuid.uuid4().hex[:24]}"
            hyper = ((request.get("method") or {}).get("supervised") or {}).get("hyperparameters")
            self.jobs[job_id] = {
                "id": job_id,
                "object": "fine_tuning.job",
                "created_at": int(self._clock()),
                "model": model,
                "training_file": training_file,
                "validation_file": request.get("validation_file"),
                "hyperparameters": hyper or request.get("hyperparameters") or {},
                "suffix": request.get("suffix"),
                "user_provided_suffix": request.get("suffix"),
                "seed": request.get("seed") or 0,
                "organization_id": ORGANIZATION,
                "status": "validating_files",
                "fine_tuned_model": None,
                "finished_at": None,
                "error": None,
                "result_files": [],
                "trained_tokens": None,
                "_started": self._clock(),
            }
            return self._public(self.jobs[job_id])

    @staticmethod
    def _public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _advance(self, job: dict[str, Any]) -> None:
        if job["status"] not in ("validating_files", "queued", "running"):
            return
        if self._clock() - job["_started"] < self.training_seconds:
            job["status"] = "running"
            return
        job["finished_at"] = int(self._clock())
        if TRAINING_FAILS in job["model"]:
            job["status"] = "failed"
            job["error"] = {"code": "stand_in_failure", "message": FAILURE_MESSAGE, "param": None}
            return
        suffix = job["suffix"] or ""
        name = f"ft:{job['model']}:{ORGANIZATION}:{suffix}:{job['id'].removeprefix('ftjob-')[:8]}"
        data = self._data[job["training_file"]]
        self.models[name] = CustomModel(name, name, parse_training_data(data))
        job["status"] = "succeeded"
        job["fine_tuned_model"] = name
        job["trained_tokens"] = len(data) // 4

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise StandInError(404, f"No fine-tuning job found with id {job_id}", param="fine_tuning_job_id")
        return job

    def get_job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._job(job_id)
            self._advance(job)
            return self._public(job)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._job(job_id)
            self._advance(job)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                raise StandInError(400, f"Job {job_id} has already {job['status']}")
            job["status"] = "cancelled"
            job["finished_at"] = int(self._clock())
            return self._public(job)

    def model(self, name: str) -> CustomModel | None:
        with self._lock:
            return self.models.get(name)


def route(
    state: OpenAIFineTuningState, method: str, path: str, content_type: str, body: bytes
) -> tuple[int, dict[str, Any]] | None:
    """The fine-tuning part of OpenAI's API (paths without `/v1`); None for any other path."""
    parts = [p for p in path.split("/") if p]
    if method == "POST" and parts == ["files"]:
        return 200, state.upload(content_type, body)
    if parts[:2] != ["fine_tuning", "jobs"]:
        return None
    if method == "POST" and len(parts) == 2:
        try:
            request = json.loads(body or b"{}")
        except ValueError as error:
            raise StandInError(400, f"the request body is not valid JSON: {error}") from error
        return 200, state.create_job(request if isinstance(request, dict) else {})
    if method == "GET" and len(parts) == 3:
        return 200, state.get_job(parts[2])
    if method == "POST" and len(parts) == 4 and parts[3] == "cancel":
        return 200, state.cancel_job(parts[2])
    return None
