"""The local Bedrock control plane for fine-tuning: model-customization jobs that finish after a few
seconds, on-demand deployments and provisioned throughput of their custom models, and the stand-in
custom model itself, answered through the Converse stand-in.

The stand-in custom model is a nearest-neighbour lookup over its training examples: it answers a
prompt with the assistant reply of the most similar training prompt (word overlap). A deterministic
fake, not a model, but it learns what its data teaches, so evaluation on held-out examples of a
consistent dataset scores high and on an inconsistent one scores low.

Names steer failures, as elsewhere in the stand-ins: a job whose customModelName contains
`fail-training` ends Failed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from local_stack.models.logic import StandInError

log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
TRAINING_FAILS = "fail-training"
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
EVENT_DETAIL_TYPE = "Model Customization Job State Change"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _arn(resource: str) -> str:
    return f"arn:aws:bedrock:{REGION}:{ACCOUNT_ID}:{resource}"


@dataclass
class CustomModel:
    arn: str
    name: str
    examples: list[tuple[str, str]] = field(default_factory=list)

    def answer(self, prompt: str) -> str:
        if not self.examples:
            return ""
        words = Counter(_WORD.findall(prompt.lower()))

        def overlap(example: tuple[str, str]) -> int:
            return sum((words & Counter(_WORD.findall(example[0].lower()))).values())

        return max(self.examples, key=overlap)[1]


def _text(content: Any) -> str:
    """A message's text: OpenAI's string content, or Bedrock's (and OpenAI's) list of blocks."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content or [] if isinstance(block, dict))


def parse_training_data(data: bytes) -> list[tuple[str, str]]:
    """(prompt, answer) pairs from Bedrock's conversation, prompt / completion or OpenAI's chat JSONL."""
    pairs = []
    for line in data.decode("utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "prompt" in record:
            pairs.append((str(record["prompt"]), str(record.get("completion", ""))))
            continue
        texts = [(m.get("role"), _text(m.get("content"))) for m in record.get("messages", [])]
        prompt = " ".join(text for role, text in texts[:-1] if role == "user")
        pairs.append((prompt, texts[-1][1] if texts else ""))
    return pairs


class CustomizationState:
    """Jobs, custom models and hostings of the local Bedrock control plane."""

    def __init__(
        self,
        *,
        read_s3: Callable[[str], bytes] | None = None,
        emit: Callable[[dict[str, Any]], object] | None = None,
        training_seconds: float = 2.0,
    ) -> None:
        self.read_s3 = read_s3
        self.emit = emit
        self.training_seconds = training_seconds
        self.jobs: dict[str, dict[str, Any]] = {}
        self.models: dict[str, CustomModel] = {}
        self.hostings: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- jobs --------------------------------------------------------------------------------------

    def create_job(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("jobName") or ""
        if not name or not request.get("customModelName") or not request.get("baseModelIdentifier"):
            raise StandInError(400, "jobName, customModelName and baseModelIdentifier are required")
        with self._lock:
            if name in self.jobs:
                job = self.jobs[name]
                if job["clientRequestToken"] and job["clientRequestToken"] == request.get(
                    "clientRequestToken"
                ):
                    return {"jobArn": job["jobArn"]}
                raise StandInError(409, f"Model customization job {name} already exists")
            job = {
                "jobArn": _arn(f"model-customization-job/{name}"),
                "jobName": name,
                "outputModelName": request["customModelName"],
                "clientRequestToken": request.get("clientRequestToken"),
                "roleArn": request.get("roleArn", ""),
                "status": "InProgress",
                "creationTime": _now(),
                "lastModifiedTime": _now(),
                "baseModelArn": f"arn:aws:bedrock:{REGION}::foundation-model/"
                + request["baseModelIdentifier"],
                "hyperParameters": request.get("hyperParameters", {}),
                "trainingDataConfig": request.get("trainingDataConfig", {}),
                "outputDataConfig": request.get("outputDataConfig", {}),
                "customizationType": request.get("customizationType", "FINE_TUNING"),
            }
            self.jobs[name] = job
        timer = threading.Timer(self.training_seconds, self._finish, args=(name,))
        timer.daemon = True
        timer.start()
        return {"jobArn": job["jobArn"]}

    def _finish(self, name: str) -> None:
        with self._lock:
            job = self.jobs[name]
            if job["status"] != "InProgress":
                return
            if TRAINING_FAILS in job["outputModelName"]:
                job["status"] = "Failed"
                job["failureMessage"] = "stand-in: training failed, as the custom model's name asked"
            else:
                try:
                    uri = job["trainingDataConfig"].get("s3Uri", "")
                    examples = parse_training_data(self.read_s3(uri)) if self.read_s3 else []
                except Exception as error:
                    job["status"] = "Failed"
                    job["failureMessage"] = f"stand-in: cannot read the training data: {type(error).__name__}"
                else:
                    model_arn = _arn(f"custom-model/{job['outputModelName']}/{uuid.uuid4().hex[:12]}")
                    self.models[model_arn] = CustomModel(model_arn, job["outputModelName"], examples)
                    job["status"] = "Completed"
                    job["outputModelArn"] = model_arn
            job["lastModifiedTime"] = job["endTime"] = _now()
        self._emit(job)

    def _emit(self, job: dict[str, Any]) -> None:
        if self.emit is None:
            return
        detail = {
            "version": "0.0",
            "jobName": job["jobName"],
            "jobArn": job["jobArn"],
            "outputModelName": job["outputModelName"],
            "outputModelArn": job.get("outputModelArn"),
            "roleArn": job["roleArn"],
            "status": job["status"],
            "failureMessage": job.get("failureMessage"),
            "creationTime": job["creationTime"],
            "lastModifiedTime": job["lastModifiedTime"],
            "endTime": job.get("endTime"),
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
            log.exception("delivering the customization job's state change failed")

    def _job(self, identifier: str) -> dict[str, Any]:
        name = identifier.rsplit("/", 1)[-1]
        job = self.jobs.get(name)
        if job is None:
            raise StandInError(404, f"Model customization job {identifier} not found")
        return job

    def get_job(self, identifier: str) -> dict[str, Any]:
        with self._lock:
            return {k: v for k, v in self._job(identifier).items() if k != "clientRequestToken"}

    def stop_job(self, identifier: str) -> dict[str, Any]:
        with self._lock:
            job = self._job(identifier)
            if job["status"] != "InProgress":
                raise StandInError(409, f"Model customization job {identifier} is {job['status']}")
            job["status"] = "Stopped"
            job["lastModifiedTime"] = job["endTime"] = _now()
        self._emit(job)
        return {}

    # -- hosting ---------------------------------------------------------------------------------

    def create_hosting(self, kind: str, name: str, model_arn: str) -> str:
        with self._lock:
            if model_arn not in self.models:
                raise StandInError(404, f"Custom model {model_arn} not found")
            resource = "custom-model-deployment" if kind == "deployment" else "provisioned-model"
            existing = next(
                (h for h in self.hostings.values() if h["name"] == name and h["kind"] == kind), None
            )
            if existing is not None:
                return str(existing["arn"])
            arn = _arn(f"{resource}/{uuid.uuid4().hex[:12]}")
            self.hostings[arn] = {
                "arn": arn,
                "name": name,
                "kind": kind,
                "modelArn": model_arn,
                "createdAt": _now(),
            }
            return arn

    def hosting(self, identifier: str) -> dict[str, Any]:
        with self._lock:
            found = self.hostings.get(identifier) or next(
                (
                    h
                    for h in self.hostings.values()
                    if h["arn"].endswith("/" + identifier) or h["name"] == identifier
                ),
                None,
            )
            if found is None:
                raise StandInError(404, f"{identifier} not found")
            return found

    def delete_hosting(self, identifier: str) -> None:
        found = self.hosting(identifier)
        with self._lock:
            self.hostings.pop(found["arn"], None)

    def custom_model_for(self, model_id: str) -> CustomModel | None:
        """The stand-in custom model a Converse model id names (its hosting or itself). Any other id,
        unknown ARNs of custom models included, keeps the echoing stand-in: it answers any model id."""
        with self._lock:
            hosting = self.hostings.get(model_id)
            return self.models.get(hosting["modelArn"] if hosting else model_id)


def route(
    state: CustomizationState, method: str, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """The control-plane REST API of bedrock (restJson, botocore's paths)."""
    # Identifiers are single URL-encoded labels (ARNs hold '/' and ':').
    parts = [unquote(p) for p in path.split("/") if p]
    if parts[:1] == ["model-customization-jobs"]:
        if method == "POST" and len(parts) == 1:
            return 201, state.create_job(body)
        if method == "GET" and len(parts) == 2:
            return 200, state.get_job(parts[1])
        if method == "POST" and len(parts) == 3 and parts[2] == "stop":
            return 200, state.stop_job(parts[1])
    if parts[:2] == ["model-customization", "custom-model-deployments"]:
        if method == "POST" and len(parts) == 2:
            arn = state.create_hosting(
                "deployment", body.get("modelDeploymentName", ""), body.get("modelArn", "")
            )
            return 202, {"customModelDeploymentArn": arn}
        if len(parts) == 3:
            hosting = state.hosting(parts[2])
            if method == "DELETE":
                state.delete_hosting(parts[2])
                return 200, {}
            return 200, {
                "customModelDeploymentArn": hosting["arn"],
                "modelDeploymentName": hosting["name"],
                "modelArn": hosting["modelArn"],
                "createdAt": hosting["createdAt"],
                "status": "Active",
            }
    if parts[:1] == ["provisioned-model-throughput"]:
        if method == "POST" and len(parts) == 1:
            arn = state.create_hosting(
                "provisioned", body.get("provisionedModelName", ""), body.get("modelId", "")
            )
            return 201, {"provisionedModelArn": arn}
        if len(parts) == 2:
            hosting = state.hosting(parts[1])
            if method == "DELETE":
                state.delete_hosting(parts[1])
                return 200, {}
            return 200, {
                "modelUnits": 1,
                "desiredModelUnits": 1,
                "provisionedModelName": hosting["name"],
                "provisionedModelArn": hosting["arn"],
                "modelArn": hosting["modelArn"],
                "desiredModelArn": hosting["modelArn"],
                "foundationModelArn": hosting["modelArn"],
                "status": "InService",
                "creationTime": hosting["createdAt"],
                "lastModifiedTime": hosting["createdAt"],
            }
    raise StandInError(404, f"Unknown operation: {method} {path}")


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
