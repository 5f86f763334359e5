"""Stand-in Bedrock batch inference: model invocation jobs that finish after a few seconds.

CreateModelInvocationJob / GetModelInvocationJob / ListModelInvocationJobs / StopModelInvocationJob
as the bedrock control plane serves them (restJson, botocore's paths). A job reads its JSONL input
from S3 (the local stack's moto), answers each `{"recordId", "modelInput"}` record with the
Converse stand-in (local_stack.models.logic.bedrock_converse), and writes Bedrock's output files
under `<output s3Uri><job id>/`:

    input.jsonl.out      {"recordId", "modelInput", "modelOutput"} or {"recordId", "modelInput", "error"}
    manifest.json.out    {"totalRecordCount", "processedRecordCount", "successRecordCount", ...}

A record the Converse stand-in refuses (no messages, blank text, roles out of order) gets an
`error` record `{"errorCode": 400, "errorMessage"}`, as Bedrock writes one. Names steer failures,
as elsewhere in the stand-ins: a job on a model id with `fail-NNN` in it ends Failed. A state
change goes to `emit` as Bedrock's "Batch Inference Job State Change" event, when one is given.
Not Bedrock: no minimum record count, no quotas, no Scheduled state.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from local_stack.models import logic
from local_stack.models.logic import StandInError

log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
EVENT_DETAIL_TYPE = "Batch Inference Job State Change"
OUTPUT_SUFFIX = ".out"
MANIFEST = "manifest.json.out"
MAX_LIST = 1000
_RUNNING = ("Submitted", "Validating", "InProgress")
# CreateModelInvocationJob's roleArn pattern: IAM is global, its ARNs name no region.
ROLE_ARN = re.compile(r"^arn:aws(-[^:]+)?:iam::\d{12}:role/.+$")

ReadS3 = Callable[[str], bytes]
WriteS3 = Callable[[str, bytes], None]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _records(data: bytes) -> list[dict[str, Any]]:
    """The input's records; a line that is not a JSON object stays, as Bedrock reports it too."""
    records = []
    for raw in data.decode("utf-8").splitlines():
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        records.append(value if isinstance(value, dict) else {"modelInput": None})
    return records


def answer(model_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """One output record: the stand-in's Converse answer, or Bedrock's error record."""
    out = {
        "recordId": record.get("recordId") or uuid.uuid4().hex[:11],
        "modelInput": record.get("modelInput"),
    }
    model_input = record.get("modelInput")
    try:
        if not isinstance(model_input, dict):
            raise StandInError(400, "modelInput must be a Converse request object")
        return out | {"modelOutput": logic.bedrock_converse(model_id, model_input, latency_ms=1)}
    except StandInError as error:
        return out | {"error": {"errorCode": error.status, "errorMessage": error.message}}


class BatchInferenceState:
    """The stand-in's model invocation jobs, keyed by job id (the ARN's last part)."""

    def __init__(
        self,
        *,
        read_s3: ReadS3 | None = None,
        write_s3: WriteS3 | None = None,
        emit: Callable[[dict[str, Any]], object] | None = None,
        delay_seconds: float = 2.0,
    ) -> None:
        self.read_s3 = read_s3
        self.write_s3 = write_s3
        self.emit = emit
        self.delay_seconds = delay_seconds
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        for name in ("jobName", "roleArn", "modelId"):
            if not request.get(name):
                raise StandInError(400, f"{name} is required")
        if not ROLE_ARN.match(str(request["roleArn"])):
            raise StandInError(400, f"roleArn {request['roleArn']} is not an IAM role ARN")
        input_uri = ((request.get("inputDataConfig") or {}).get("s3InputDataConfig") or {}).get("s3Uri")
        output_uri = ((request.get("outputDataConfig") or {}).get("s3OutputDataConfig") or {}).get("s3Uri")
        if not input_uri or not output_uri:
            raise StandInError(400, "inputDataConfig and outputDataConfig need an s3Uri each")
        token = request.get("clientRequestToken")
        with self._lock:
            for job in self.jobs.values():
                if token and job["clientRequestToken"] == token:
                    return {"jobArn": job["jobArn"]}
                if job["jobName"] == request["jobName"]:
                    raise StandInError(
                        409, f"A model invocation job named {request['jobName']} already exists"
                    )
            job_id = uuid.uuid4().hex[:12]
            self.jobs[job_id] = {
                "jobArn": f"arn:aws:bedrock:{REGION}:{ACCOUNT_ID}:model-invocation-job/{job_id}",
                "jobName": request["jobName"],
                "modelId": request["modelId"],
                "clientRequestToken": token,
                "roleArn": request["roleArn"],
                "status": "Submitted",
                "submitTime": _now(),
                "lastModifiedTime": _now(),
                "inputDataConfig": request["inputDataConfig"],
                "outputDataConfig": request["outputDataConfig"],
                "modelInvocationType": request.get("modelInvocationType", "InvokeModel"),
                "timeoutDurationInHours": request.get("timeoutDurationInHours", 24),
            }
        timer = threading.Timer(self.delay_seconds, self._run, args=(job_id,))
        timer.daemon = True
        timer.start()
        return {"jobArn": self.jobs[job_id]["jobArn"]}

    def _run(self, job_id: str) -> None:
        with self._lock:
            job = self.jobs[job_id]
            if job["status"] not in _RUNNING:
                return
            job["status"] = "InProgress"
        try:
            self._answer(job)
        except Exception as error:  # the stand-in's own failure ends the job, as Bedrock's would
            with self._lock:
                job["status"], job["message"] = "Failed", f"stand-in: {type(error).__name__}: {error}"
        with self._lock:
            job["lastModifiedTime"] = job["endTime"] = _now()
        self._emit(job)

    def _answer(self, job: dict[str, Any]) -> None:
        failing = logic.behaviour(job["modelId"]).fail_status
        if failing:
            with self._lock:
                job["status"] = "Failed"
                job["message"] = f"stand-in model {job['modelId']} always fails with {failing}"
            return
        if self.read_s3 is None or self.write_s3 is None:
            raise RuntimeError("no S3 to read the input from")
        input_uri = job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        outputs = [answer(job["modelId"], r) for r in _records(self.read_s3(input_uri))]
        errors = sum(1 for o in outputs if "error" in o)
        usage = [o["modelOutput"]["usage"] for o in outputs if "modelOutput" in o]
        manifest = {
            "totalRecordCount": len(outputs),
            "processedRecordCount": len(outputs),
            "successRecordCount": len(outputs) - errors,
            "errorRecordCount": errors,
            "inputTokenCount": sum(u.get("inputTokens", 0) for u in usage),
            "outputTokenCount": sum(u.get("outputTokens", 0) for u in usage),
        }
        folder = (
            job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].rstrip("/")
            + "/"
            + job["jobArn"].rsplit("/", 1)[-1]
        )
        name = input_uri.rsplit("/", 1)[-1]
        with self._lock:
            if job["status"] != "InProgress":  # stopped while it ran: nothing is written
                return
        self.write_s3(
            f"{folder}/{name}{OUTPUT_SUFFIX}", b"".join(json.dumps(o).encode() + b"\n" for o in outputs)
        )
        self.write_s3(f"{folder}/{MANIFEST}", json.dumps(manifest).encode())
        with self._lock:
            job.update({k: v for k, v in manifest.items() if k.endswith("RecordCount")})
            job["status"] = "PartiallyCompleted" if errors else "Completed"
            job["_tokens"] = (manifest["inputTokenCount"], manifest["outputTokenCount"])

    def _emit(self, job: dict[str, Any]) -> None:
        if self.emit is None:
            return
        tokens = job.get("_tokens", (0, 0))
        detail = {
            "version": "0.0",
            "accountId": ACCOUNT_ID,
            "batchJobName": job["jobName"],
            "batchJobArn": job["jobArn"],
            "batchModelId": job["modelId"],
            "status": job["status"],
            "failureMessage": job.get("message", ""),
            "processedRecordCount": job.get("processedRecordCount", 0),
            "successRecordCount": job.get("successRecordCount", 0),
            "errorRecordCount": job.get("errorRecordCount", 0),
            "inputTokenCount": tokens[0],
            "outputTokenCount": tokens[1],
        }
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": EVENT_DETAIL_TYPE,
            "source": "aws.bedrock",
            "account": ACCOUNT_ID,
            "time": _now(),
            "region": REGION,
            "resources": [job["jobArn"]],
            "detail": detail,
        }
        try:
            self.emit(event)
        except Exception:
            log.exception("delivering the batch inference job's state change failed")

    def _job(self, identifier: str) -> dict[str, Any]:
        job = self.jobs.get(identifier.rsplit("/", 1)[-1])
        if job is None:
            raise StandInError(404, f"Model invocation job {identifier} not found")
        return job

    @staticmethod
    def _public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_") and v is not None}

    def get(self, identifier: str) -> dict[str, Any]:
        with self._lock:
            return self._public(self._job(identifier))

    def list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        status = next(iter(query.get("statusEquals") or []), None)
        contains = (query.get("nameContains") or [""])[0]
        limit = min(int((query.get("maxResults") or [str(MAX_LIST)])[0]), MAX_LIST)
        with self._lock:
            found = [
                self._public(job)
                for job in self.jobs.values()
                if (status is None or job["status"] == status) and contains in job["jobName"]
            ]
        found.sort(key=lambda job: job["submitTime"], reverse=True)
        return {"invocationJobSummaries": found[:limit]}

    def stop(self, identifier: str) -> dict[str, Any]:
        with self._lock:
            job = self._job(identifier)
            if job["status"] not in _RUNNING:
                raise StandInError(409, f"Model invocation job {identifier} is {job['status']}")
            job["status"] = "Stopped"
            job["lastModifiedTime"] = job["endTime"] = _now()
        self._emit(job)
        return {}


def handles(path: str) -> bool:
    return (
        path.startswith(("/model-invocation-job/", "/model-invocation-jobs"))
        or path == "/model-invocation-job"
    )


def route(
    state: BatchInferenceState, method: str, path: str, query: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    parts = [unquote(p) for p in path.split("/") if p]
    if parts == ["model-invocation-job"] and method == "POST":
        return 200, state.create(body)
    if parts == ["model-invocation-jobs"] and method == "GET":
        return 200, state.list(parse_qs(query))
    if len(parts) == 2 and parts[0] == "model-invocation-job" and method == "GET":
        return 200, state.get(parts[1])
    if len(parts) == 3 and parts[0] == "model-invocation-job" and parts[2] == "stop" and method == "POST":
        return 200, state.stop(parts[1])
    raise StandInError(404, f"Unknown operation: {method} {path}")
