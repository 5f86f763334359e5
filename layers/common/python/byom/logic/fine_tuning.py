"""Files, fine-tuning jobs and the steps of the pipeline (SPEC §4.3).

The API half (upload, create, cancel, approve, read) and the Step Functions half (one function per
task) share the job record: every status change is a conditional write on an open job, so a task
still running after a cancel cannot bring a cancelled job back to life.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from byom import clock
from byom.domain import ModelAlias, Pricing
from byom.errors import Conflict, GatewayMisconfigured, InvalidRequest, ModelNotFound, NotFound
from byom.fine_tuning import (
    APPROVAL_REJECTED,
    CANCELLED,
    FILE_PURPOSE,
    Approve,
    CreateJob,
    DatasetInvalid,
    DeploymentFailed,
    Evaluation,
    EvaluationBelowThreshold,
    FileRecord,
    Job,
    JobClosed,
    JobError,
    JobEvent,
    PipelineError,
    ProviderRejected,
    TrainingFailed,
)
from byom.governance import screening
from byom.governance.policy import Policy
from byom.logic import datasets, evaluation
from byom.logic.access import Principal, require_tenant_key
from byom.pricing import catalog_price

_CATALOG = Path(__file__).resolve().parent.parent / "data" / "fine_tuning.json"

WRITERS = ("admin", "developer")
# What a tenant may upload: training data, batch input (byom.logic.batches), eval test sets.
UPLOAD_PURPOSES = (FILE_PURPOSE, "batch", "evals")
APPROVERS = ("admin",)
OPENAI: Final = "openai"
# OpenAI's per-example limit for the chat models it fine-tunes (gpt-4o-mini, gpt-4.1 family).
OPENAI_MAX_EXAMPLE_TOKENS = 65_536
# Bedrock's default learning rate for the models it fine-tunes; OpenAI's multiplier scales it.
BASE_LEARNING_RATE = 0.00001


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = json.loads(_CATALOG.read_text())["models"]
    return models


class Files(Protocol):
    """Uploaded training files (byom.dal.fine_tuning.FileRepository)."""

    def create(self, record: FileRecord) -> None: ...

    def get(self, tenant_id: str, file_id: str) -> FileRecord | None: ...

    def delete(self, tenant_id: str, file_id: str) -> bool:
        """False when there was no such file."""
        ...

    def list(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[FileRecord], bool]:
        """A page of the tenant's files, and whether more follow."""
        ...


class Jobs(Protocol):
    """Fine-tuning jobs and their events (byom.dal.fine_tuning.JobRepository)."""

    def create(self, job: Job) -> None: ...

    def get(self, job_id: str) -> Job | None: ...

    def get_for_tenant(self, tenant_id: str, job_id: str) -> Job | None: ...

    def task_token(self, job_id: str) -> tuple[str | None, str | None]: ...

    def list(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[Job], bool]: ...

    def update(
        self,
        job_id: str,
        fields: dict[str, Any],
        *,
        remove: tuple[str, ...] = (),
        expect_status: str | None = None,
    ) -> None:
        """Set fields on an open job; raises JobClosed once it has ended."""
        ...

    def close(self, job_id: str, status: str, fields: dict[str, Any]) -> bool:
        """End the job in `status`; False when it had ended already."""
        ...

    def add_event(
        self, job_id: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> None: ...

    def events(self, job_id: str, after: str | None, limit: int) -> tuple[builtins.list[JobEvent], bool]: ...


class Bucket(Protocol):
    """The data bucket (byom.dal.fine_tuning.DataBucket): datasets, reports, artifacts."""

    def put(self, key: str, body: bytes, content_type: str = "application/jsonl") -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def uri(self, key: str) -> str: ...


class Aliases(Protocol):
    """The tenants' model aliases (byom.dal.repositories.ModelRepository)."""

    def get(self, tenant_id: str, alias: str) -> ModelAlias | None: ...

    def create(self, model: ModelAlias) -> None:
        """Raises Conflict when the alias exists."""
        ...

    def delete(self, tenant_id: str, alias: str) -> None: ...


class Workflow(Protocol):
    """The job's state machine (byom.dal.fine_tuning.Workflow)."""

    def start(self, name: str, payload: dict[str, Any]) -> str:
        """The execution's ARN."""
        ...

    def stop(self, execution_arn: str, cause: str) -> None: ...

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        """False when the task token is no longer waited on."""
        ...

    def fail(self, token: str, error: str, cause: str) -> bool: ...


class Customization(Protocol):
    """Bedrock model customization and its deployments (byom.dal.fine_tuning.BedrockCustomization)."""

    def start(
        self,
        *,
        job_name: str,
        model_name: str,
        role_arn: str,
        base_model: str,
        training_uri: str,
        validation_uri: str | None,
        output_uri: str,
        hyperparameters: dict[str, str],
        kms_key_id: str | None,
        tags: dict[str, str],
    ) -> str:
        """The training job's ARN."""
        ...

    def job(self, job_identifier: str) -> dict[str, Any]: ...

    def stop(self, job_identifier: str) -> None: ...

    def deploy(self, *, mode: str, name: str, model_arn: str, tags: dict[str, str]) -> str:
        """The deployment's ARN."""
        ...

    def deployment_status(self, deployment_arn: str) -> tuple[str, str | None]:
        """The status, and why it failed when it did."""
        ...

    def undeploy(self, deployment_arn: str) -> None: ...


class OpenAIJobs(Protocol):
    """OpenAI's fine-tuning API with the tenant's credential (byom.providers.openai_fine_tuning)."""

    def upload(self, job: Job, data: bytes) -> str:
        """The uploaded training file's id."""
        ...

    def start(self, job: Job, training_file: str) -> str:
        """The OpenAI job's id."""
        ...

    def job(self, job: Job) -> dict[str, Any]: ...

    def cancel(self, job: Job) -> None: ...

    def runner(self, job: Job) -> Callable[[datasets.Example], str]:
        """Answers an evaluation example with the fine-tuned model."""
        ...


class JobEvents(Protocol):
    """Job lifecycle events on the event bus (byom.dal.fine_tuning.JobEvents)."""

    def put(self, detail_type: str, detail: dict[str, Any]) -> None: ...


class Policies(Protocol):
    """The tenants' governance policies (byom.dal.policies.PolicyRepository)."""

    def get(self, tenant_id: str) -> Policy: ...


@dataclass
class FineTuningStore:
    """The collaborators; tests pass in-memory fakes."""

    files: Files
    jobs: Jobs
    bucket: Bucket
    models: Aliases
    workflow: Workflow
    bedrock: Customization
    openai: OpenAIJobs | None = None
    """OpenAI's fine-tuning API (byom.providers.openai_fine_tuning) for jobs on `openai` aliases."""
    runner_for: Callable[[str], Callable[[datasets.Example], str]] | None = None
    events: JobEvents | None = None
    policies: Policies | None = None
    """Tenants' governance policies (byom.dal.policies.PolicyRepository): datasets are redacted as
    prompts are (SPEC §8). None: no redaction."""
    bedrock_role_arn: str = ""
    kms_key_id: str | None = None
    max_file_bytes: int = 4 * 1024 * 1024
    min_training_examples: int = 10
    max_training_examples: int = 20_000
    max_eval_examples: int = 100
    default_threshold: float = 0.9
    timings: dict[str, int] = field(default_factory=dict)
    """Waits the state machine reads from its input: training_poll_seconds,
    deployment_poll_seconds, approval_timeout_seconds."""


def _openai(store: FineTuningStore) -> OpenAIJobs:
    if store.openai is None:
        raise GatewayMisconfigured("OpenAI fine-tuning is not configured for this function")
    return store.openai


def file_key(tenant_id: str, file_id: str) -> str:
    return f"tenants/{tenant_id}/files/{file_id}.jsonl"


def job_prefix(job: Job) -> str:
    return f"tenants/{job.tenant_id}/fine-tuning/{job.id}"


# -- files ------------------------------------------------------------------------------------------


def upload_file(
    store: FineTuningStore, principal: Principal, *, filename: str, purpose: str, data: bytes
) -> FileRecord:
    tenant_id = require_tenant_key(principal, WRITERS)
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(f"purpose must be one of {', '.join(UPLOAD_PURPOSES)}", param="purpose")
    if not data.strip():
        raise InvalidRequest("The file is empty", param="file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        # JSONL is UTF-8; and the content route answers it as text, which API Gateway passes through
        # unchanged (a base64 answer would reach the client still encoded: binaryMediaTypes does not
        # match the SDK's `Accept: application/binary`).
        raise InvalidRequest(
            "The file is not UTF-8 text (fine-tuning files are JSONL)", param="file"
        ) from None
    record = FileRecord(
        id=clock.new_id("file").replace("_", "-"),
        tenant_id=tenant_id,
        filename=filename[:256] or "upload.jsonl",
        purpose=purpose,
        bytes=len(data),
        created_at=clock.now(),
        s3_key="",
        lines=len([line for line in data.splitlines() if line.strip()]),
    )
    record = record.model_copy(update={"s3_key": file_key(tenant_id, record.id)})
    store.bucket.put(record.s3_key, data)
    store.files.create(record)
    return record


def get_file(store: FineTuningStore, principal: Principal, file_id: str) -> FileRecord:
    tenant_id = require_tenant_key(principal, WRITERS)
    record = store.files.get(tenant_id, file_id)
    if record is None:
        raise NotFound(f"No such File object: {file_id}", param="id")
    return record


def file_content(store: FineTuningStore, principal: Principal, file_id: str) -> bytes:
    """The bytes as uploaded."""
    data: bytes = store.bucket.get(get_file(store, principal, file_id).s3_key)
    return data


def delete_file(store: FineTuningStore, principal: Principal, file_id: str) -> FileRecord:
    """Deletes the object (every version) and then the record, so that a retry after a failure in
    between finds the record and finishes. Allowed while a job uses the file, as OpenAI allows it:
    a job that has validated its data trains on its own copy; one that has not fails, saying the
    file no longer exists."""
    record = get_file(store, principal, file_id)
    store.bucket.delete(record.s3_key)
    if not store.files.delete(record.tenant_id, record.id):
        raise NotFound(f"No such File object: {file_id}", param="id")
    return record


def list_files(
    store: FineTuningStore, principal: Principal, *, after: str | None, limit: int
) -> tuple[list[FileRecord], bool]:
    tenant_id = require_tenant_key(principal, WRITERS)
    return store.files.list(tenant_id, after, limit)


# -- jobs: the API --------------------------------------------------------------------------------


def _training_file(store: FineTuningStore, tenant_id: str, file_id: str, param: str) -> FileRecord:
    # Another tenant's file is answered exactly as a file that does not exist.
    record = store.files.get(tenant_id, file_id)
    if record is None:
        raise InvalidRequest(f"{param}: no file '{file_id}'", param=param, code="file_not_found")
    if record.purpose != FILE_PURPOSE:
        raise InvalidRequest(
            f"{param}: file '{file_id}' was not uploaded with purpose '{FILE_PURPOSE}'", param=param
        )
    return record


def fine_tunable(alias: ModelAlias) -> dict[str, Any]:
    if alias.provider == OPENAI:
        # OpenAI decides which of its models can be fine-tuned; it refuses the others when the job
        # is created, and that message fails the job. The data is already its chat JSONL.
        return {
            "base_model": alias.model_id,
            "format": "openai-chat",
            "deployment": "on_demand",
            "max_example_tokens": OPENAI_MAX_EXAMPLE_TOKENS,
        }
    entry = catalog().get(alias.model_id) if alias.provider == "bedrock" else None
    if entry is None:
        supported = ", ".join(sorted(catalog()))
        raise InvalidRequest(
            f"model: alias '{alias.alias}' ({alias.provider} {alias.model_id}) cannot be fine-tuned here; "
            f"fine-tuning runs on openai aliases and on Bedrock aliases of: {supported}",
            param="model",
            code="model_not_fine_tunable",
        )
    return entry


def create_job(store: FineTuningStore, principal: Principal, body: CreateJob) -> Job:
    tenant_id = require_tenant_key(principal, WRITERS)
    if body.method is not None and body.method.get("type", "supervised") != "supervised":
        raise InvalidRequest("method.type: only 'supervised' fine-tuning is supported", param="method.type")
    if body.integrations:
        raise InvalidRequest("integrations are not supported", param="integrations")
    alias = store.models.get(tenant_id, body.model)
    if alias is None:
        raise ModelNotFound(f"The model '{body.model}' does not exist", param="model")
    entry = fine_tunable(alias)
    _training_file(store, tenant_id, body.training_file, "training_file")
    if body.validation_file:
        _training_file(store, tenant_id, body.validation_file, "validation_file")

    overridden = body.byom.threshold is not None
    alias_threshold = alias.eval_threshold if alias.eval_threshold is not None else store.default_threshold
    job = Job(
        id=clock.new_id("ftjob").replace("_", "-"),
        tenant_id=tenant_id,
        model=alias.alias,
        provider=alias.provider,
        credential=alias.credential if alias.provider == OPENAI else None,
        base_model_id=entry["base_model"],
        data_format=entry["format"],
        deployment=body.byom.deployment or entry["deployment"],
        training_file=body.training_file,
        validation_file=body.validation_file,
        hyperparameters=body.hyperparameters.model_dump(),
        suffix=body.suffix,
        seed=body.seed if body.seed is not None else clock.now() % 2_147_483_647,
        metadata=body.metadata,
        threshold=body.byom.threshold if overridden else alias_threshold,  # type: ignore[arg-type]
        threshold_overridden=overridden,
        holdout_fraction=body.byom.holdout_fraction,
        created_at=clock.now(),
    )
    store.jobs.create(job)
    store.jobs.add_event(job.id, f"Created fine-tuning job {job.id} on {alias.alias} ({alias.model_id})")
    try:
        execution_arn = store.workflow.start(
            job.id, {"job_id": job.id, "tenant_id": tenant_id, "settings": dict(store.timings)}
        )
    except Exception:
        store.jobs.close(
            job.id,
            "failed",
            {"error": {"code": "start_failed", "message": "The pipeline could not be started"}},
        )
        raise
    store.jobs.update(job.id, {"execution_arn": execution_arn})
    return job.model_copy(update={"execution_arn": execution_arn})


def _job(store: FineTuningStore, tenant_id: str, job_id: str) -> Job:
    job = store.jobs.get_for_tenant(tenant_id, job_id)
    if job is None:
        raise NotFound(f"No fine-tuning job '{job_id}'", param="fine_tuning_job_id")
    return job


def get_job(store: FineTuningStore, principal: Principal, job_id: str) -> Job:
    return _job(store, require_tenant_key(principal, WRITERS), job_id)


def list_jobs(
    store: FineTuningStore, principal: Principal, *, after: str | None, limit: int
) -> tuple[list[Job], bool]:
    tenant_id = require_tenant_key(principal, WRITERS)
    return store.jobs.list(tenant_id, after, limit)


def list_events(
    store: FineTuningStore, principal: Principal, job_id: str, *, after: str | None, limit: int
) -> tuple[list[JobEvent], bool]:
    job = _job(store, require_tenant_key(principal, WRITERS), job_id)
    return store.jobs.events(job.id, after, limit)


def release(store: FineTuningStore, job: Job) -> list[str]:
    """Stops what may still cost money: a running training job and the evaluation deployment.
    The custom model itself is kept (storage only) unless the job succeeded, which keeps it too."""
    released = []
    if job.provider == OPENAI:
        # OpenAI hosts the result itself (billed per token): only a running job costs money.
        if job.provider_job_arn and not job.provider_model_id:
            try:
                _openai(store).cancel(job)
            except ProviderRejected as error:
                # It ended meanwhile (OpenAI refuses to cancel a finished job): nothing runs.
                released.append(f"OpenAI fine-tuning job not cancelled: {error.message}")
            else:
                released.append("OpenAI fine-tuning job cancelled")
        return released
    if job.provider_job_arn and not job.custom_model_arn:
        store.bedrock.stop(job.id)
        released.append("training job stopped")
    if job.deployment_arn and job.byom_status != "succeeded" and not job.fine_tuned_model:
        store.bedrock.undeploy(job.deployment_arn)
        released.append("deployment deleted")
    return released


def cancel_job(store: FineTuningStore, principal: Principal, job_id: str) -> Job:
    tenant_id = require_tenant_key(principal, WRITERS)
    job = _job(store, tenant_id, job_id)
    if job.byom_status == "cancelled":
        return job
    if job.closed:
        raise InvalidRequest(f"Job {job_id} has already {job.byom_status}", param="fine_tuning_job_id")
    token, _ = store.jobs.task_token(job.id)
    if not store.jobs.close(job.id, "cancelled", {}):
        return _job(store, tenant_id, job_id)
    if job.execution_arn:
        store.workflow.stop(job.execution_arn, "Cancelled through the API")
    if token:
        # A stopped execution no longer waits on its callback; this reaches only an interpreter
        # that keeps waiting after a stop (docs/decisions.md, the local stack's emulation).
        store.workflow.fail(token, CANCELLED, "Cancelled through the API")
    released = release(store, store.jobs.get(job.id) or job)
    store.jobs.add_event(
        job.id, "Job cancelled" + (f" ({', '.join(released)})" if released else ""), level="warn"
    )
    return _job(store, tenant_id, job_id)


def approve_job(store: FineTuningStore, principal: Principal, job_id: str, body: Approve) -> Job:
    tenant_id = require_tenant_key(principal, APPROVERS)
    job = _job(store, tenant_id, job_id)
    token, waiting_for = store.jobs.task_token(job.id)
    if job.byom_status != "awaiting_approval" or not token or waiting_for != "approval":
        raise InvalidRequest(
            f"Job {job_id} is not awaiting approval (byom_status: {job.byom_status})",
            param="fine_tuning_job_id",
        )
    decision = {
        "approved": body.approved,
        "comment": body.comment,
        "by": principal.key_id,
        "at": clock.now(),
    }
    store.jobs.update(job.id, {"approval": decision}, remove=("task_token", "waiting_for"))
    if body.approved:
        delivered = store.workflow.succeed(token, {"approved": True})
    else:
        delivered = store.workflow.fail(token, APPROVAL_REJECTED, body.comment or "Rejected")
    if not delivered:
        raise Conflict(f"Job {job_id} no longer waits for approval")
    verdict = "Approved" if body.approved else "Rejected"
    store.jobs.add_event(
        job.id, f"{verdict} by key {principal.key_id}" + (f": {body.comment}" if body.comment else "")
    )
    return _job(store, tenant_id, job_id)


# -- jobs: the pipeline's tasks ---------------------------------------------------------------


def _open_job(store: FineTuningStore, job_id: str) -> Job:
    job = store.jobs.get(job_id)
    if job is None:
        raise JobClosed(f"job {job_id} does not exist")
    if job.closed:
        raise JobClosed(f"job {job_id} has {job.byom_status}")
    return job


def _limits(store: FineTuningStore, job: Job, minimum: int) -> datasets.Limits:
    entry = next((e for e in catalog().values() if e["base_model"] == job.base_model_id), {})
    default = OPENAI_MAX_EXAMPLE_TOKENS if job.provider == OPENAI else 32_000
    return datasets.Limits(
        min_examples=minimum,
        max_examples=store.max_training_examples,
        max_example_tokens=int(entry.get("max_example_tokens", default)),
    )


def _dataset_screen(store: FineTuningStore, job: Job) -> datasets.DatasetScreen | None:
    """The tenant's redaction policy over each example: masked, or the job fails naming the line."""
    if store.policies is None:
        return None
    redaction = store.policies.get(job.tenant_id).redaction
    if redaction.mode == "off":
        return None
    return lambda texts: screening.screen(texts, redaction, redaction.mode)[0]


def _read_dataset(store: FineTuningStore, job: Job, file_id: str, name: str) -> list[datasets.Example]:
    record = store.files.get(job.tenant_id, file_id)
    if record is None:
        raise DatasetInvalid(f"The {name} '{file_id}' no longer exists")
    data = store.bucket.get(record.s3_key)
    examples = datasets.parse_dataset(
        data, _limits(store, job, 1), name=name, screen=_dataset_screen(store, job)
    )
    # The provider's format may refuse what chat JSONL allows (multi-turn on prompt/completion).
    datasets.to_jsonl(examples, job.data_format)
    return examples


def validate(store: FineTuningStore, job_id: str) -> dict[str, Any]:
    job = _open_job(store, job_id)
    training = _read_dataset(store, job, job.training_file, "training file")
    if job.validation_file:
        held_out = _read_dataset(store, job, job.validation_file, "validation file")
        source = "validation_file"
    else:
        training, held_out = datasets.split_holdout(training, job.holdout_fraction, job.seed)
        source = "holdout"
    if len(training) < store.min_training_examples:
        raise DatasetInvalid(
            f"The training file has {len(training)} usable examples"
            + (" after holding out the evaluation split" if source == "holdout" else "")
            + f"; at least {store.min_training_examples} are needed"
        )
    if not held_out:
        raise DatasetInvalid("No example is left for evaluation; add a validation file")
    prefix = job_prefix(job)
    store.bucket.put(f"{prefix}/data/train.jsonl", datasets.to_jsonl(training, job.data_format))
    store.bucket.put(f"{prefix}/data/evaluation.jsonl", datasets.to_jsonl(held_out, "openai-chat"))
    epochs = job.hyperparameters.get("n_epochs")
    tokens = datasets.estimated_tokens(training) * (epochs if isinstance(epochs, int) else 2)
    store.jobs.update(
        job.id,
        {
            "byom_status": "training",
            "training_examples": len(training),
            "trained_tokens": tokens,
        },
    )
    store.jobs.add_event(
        job.id,
        f"Validated {len(training)} training examples; {len(held_out)} held for evaluation ({source})",
    )
    return {
        "training_examples": len(training),
        "evaluation_examples": len(held_out),
        "source": source,
        # The state machine's `Provider?` choice branches on it.
        "provider": job.provider,
    }


def bedrock_hyperparameters(hyper: dict[str, Any]) -> dict[str, str]:
    """OpenAI's names and defaults to Bedrock's (strings, as CreateModelCustomizationJob takes them)."""
    params = {"epochCount": str(hyper["n_epochs"] if isinstance(hyper.get("n_epochs"), int) else 2)}
    if isinstance(hyper.get("batch_size"), int):
        params["batchSize"] = str(hyper["batch_size"])
    multiplier = hyper.get("learning_rate_multiplier")
    if isinstance(multiplier, int | float):
        params["learningRate"] = f"{BASE_LEARNING_RATE * multiplier:.8f}".rstrip("0")
    return params


def start_training(store: FineTuningStore, job_id: str) -> dict[str, Any]:
    job = _open_job(store, job_id)
    prefix = job_prefix(job)
    arn = store.bedrock.start(
        job_name=job.id,
        model_name=f"{job.id}-{job.suffix}" if job.suffix else job.id,
        role_arn=store.bedrock_role_arn,
        base_model=job.base_model_id,
        training_uri=store.bucket.uri(f"{prefix}/data/train.jsonl"),
        validation_uri=None,
        output_uri=store.bucket.uri(f"{prefix}/output/"),
        hyperparameters=bedrock_hyperparameters(job.hyperparameters),
        kms_key_id=store.kms_key_id,
        tags={"byom:tenant": job.tenant_id, "byom:job": job.id},
    )
    try:
        store.jobs.update(job.id, {"provider_job_arn": arn})
    except JobClosed:
        # Cancelled while the job was being created: it must not train (and bill) unwatched.
        store.bedrock.stop(job.id)
        raise
    store.jobs.add_event(job.id, f"Started Bedrock model customization job {arn}")
    return {"provider_job_arn": arn}


def await_training(store: FineTuningStore, job_id: str, token: str) -> dict[str, Any]:
    """Parks the execution until Bedrock's state-change event (or the poll timeout) wakes it."""
    _open_job(store, job_id)
    store.jobs.update(job_id, {"task_token": token, "waiting_for": "training"})
    # The job may have ended before the token was stored, its event already delivered: look once.
    status = store.bedrock.job(job_id).get("status")
    if status in ("Completed", "Failed", "Stopped"):
        store.workflow.succeed(token, {"status": status})
    return {}


def training_state_changed(store: FineTuningStore, detail: dict[str, Any]) -> bool:
    """Bedrock's `Model Customization Job State Change` event: wakes the execution that waits on
    the job. Answers whether one was woken. The status itself is read afresh by check_training."""
    job_id = str(detail.get("jobName") or "")
    status = detail.get("status") or detail.get("jobStatus")
    if not job_id or status not in ("Completed", "Failed", "Stopped"):
        return False
    token, waiting_for = store.jobs.task_token(job_id)
    if not token or waiting_for != "training":
        return False
    return bool(store.workflow.succeed(token, {"status": status}))


def check_training(store: FineTuningStore, job_id: str) -> dict[str, Any]:
    job = _open_job(store, job_id)
    answer = store.bedrock.job(job.id)
    status = answer.get("status")
    if status == "Completed":
        store.jobs.update(job.id, {"custom_model_arn": answer.get("outputModelArn"), "task_token": None})
        store.jobs.add_event(job.id, f"Training completed: {answer.get('outputModelArn')}")
        return {"done": True}
    if status in ("Failed", "Stopped"):
        raise TrainingFailed(
            f"The Bedrock customization job {status.lower()}: "
            f"{answer.get('failureMessage') or 'no reason given'}"
        )
    return {"done": False}


def start_openai_training(store: FineTuningStore, job_id: str) -> dict[str, Any]:
    """Uploads the prepared training split to OpenAI (purpose fine-tune) and creates the job."""
    job = _open_job(store, job_id)
    file_id = job.provider_file_id
    if not file_id:
        file_id = _openai(store).upload(job, store.bucket.get(f"{job_prefix(job)}/data/train.jsonl"))
        store.jobs.update(job.id, {"provider_file_id": file_id})
        store.jobs.add_event(job.id, f"Uploaded the training split to OpenAI as {file_id}")
    openai_job = _openai(store).start(job.model_copy(update={"provider_file_id": file_id}), file_id)
    try:
        store.jobs.update(job.id, {"provider_job_arn": openai_job})
    except JobClosed:
        # Cancelled while the job was being created: it must not train (and bill) unwatched.
        _openai(store).cancel(job.model_copy(update={"provider_job_arn": openai_job}))
        raise
    store.jobs.add_event(job.id, f"Started OpenAI fine-tuning job {openai_job} on {job.base_model_id}")
    return {"provider_job_id": openai_job}


OPENAI_RUNNING = frozenset({"validating_files", "queued", "running"})


def check_openai_training(store: FineTuningStore, job_id: str) -> dict[str, Any]:
    """One look at OpenAI's job; the state machine waits between looks (OpenAI sends no events)."""
    job = _open_job(store, job_id)
    answer = _openai(store).job(job)
    status = answer.get("status")
    if status == "succeeded":
        model = answer.get("fine_tuned_model")
        if not model:
            raise TrainingFailed("The OpenAI fine-tuning job succeeded without a fine_tuned_model")
        fields: dict[str, Any] = {"provider_model_id": model, "byom_status": "evaluating"}
        if isinstance(answer.get("trained_tokens"), int):
            fields["trained_tokens"] = answer["trained_tokens"]
        store.jobs.update(job.id, fields)
        store.jobs.add_event(job.id, f"Training completed: {model}")
        return {"done": True}
    if status in OPENAI_RUNNING:
        return {"done": False, "status": status}
    error = answer.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else None
    raise TrainingFailed(
        f"The OpenAI fine-tuning job {answer.get('id') or job.provider_job_arn} ended {status}: "
        f"{str(message or 'no reason given')[:1000]}"
    )


def deploy(store: FineTuningStore, job_id: str) -> dict[str, Any]:
    job = _open_job(store, job_id)
    if not job.custom_model_arn:
        raise TrainingFailed("The customization job produced no model")
    arn = store.bedrock.deploy(
        mode=job.deployment,
        name=job.id,
        model_arn=job.custom_model_arn,
        tags={"byom:tenant": job.tenant_id, "byom:job": job.id},
    )
    try:
        store.jobs.update(job.id, {"deployment_arn": arn, "byom_status": "evaluating"})
    except JobClosed:
        store.bedrock.undeploy(arn)
        raise
    kind = "provisioned throughput" if job.deployment == "provisioned" else "on-demand deployment"
    store.jobs.add_event(job.id, f"Hosting the custom model ({kind}) for evaluation: {arn}")
    return {"deployment_arn": arn}


def check_deployment(store: FineTuningStore, job_id: str) -> dict[str, Any]:
    job = _open_job(store, job_id)
    if not job.deployment_arn:  # the state machine checks only after start_deployment recorded it
        raise DeploymentFailed("The job has no deployment to check")
    status, message = store.bedrock.deployment_status(job.deployment_arn)
    if status == "Failed":
        raise DeploymentFailed(f"Hosting the custom model failed: {message or 'no reason given'}")
    return {"active": status == "Active"}


def evaluate(store: FineTuningStore, job_id: str) -> dict[str, Any]:
    job = _open_job(store, job_id)
    data = store.bucket.get(f"{job_prefix(job)}/data/evaluation.jsonl")
    examples = datasets.parse_dataset(data, datasets.Limits(min_examples=1, max_example_tokens=10**9))
    examples = examples[: store.max_eval_examples]
    if job.provider == OPENAI:
        runner = _openai(store).runner(job)
    else:
        assert store.runner_for is not None
        runner = store.runner_for(job.deployment_arn or "")
    result = evaluation.score(examples, runner)
    source: Literal["validation_file", "holdout"] = "validation_file" if job.validation_file else "holdout"
    record = Evaluation(
        score=round(result.value, 4),
        threshold=job.threshold,
        passed=result.value >= job.threshold,
        examples=result.examples,
        correct=result.correct,
        source=source,
        overridden=job.threshold_overridden,
    )
    store.jobs.update(job.id, {"evaluation": record.model_dump()})
    summary = (
        f"Evaluation: {result.correct}/{result.examples} correct, score {record.score:.2%} "
        f"(threshold {job.threshold:.0%})"
    )
    store.jobs.add_event(job.id, summary, level="info" if record.passed else "error")
    if not record.passed:
        raise EvaluationBelowThreshold(
            f"Evaluation score {record.score:.2%} on {result.examples} held-out examples "
            "is below the threshold "
            f"{job.threshold:.0%}"
        )
    return {"score": record.score}


def request_approval(store: FineTuningStore, job_id: str, token: str) -> dict[str, Any]:
    job = _open_job(store, job_id)
    store.jobs.update(
        job.id, {"byom_status": "awaiting_approval", "task_token": token, "waiting_for": "approval"}
    )
    store.jobs.add_event(
        job.id, "Awaiting approval: POST /v1/fine_tuning/jobs/{id}/approve".replace("{id}", job.id)
    )
    if store.events is not None:
        store.events.put(
            "FineTuningJobAwaitingApproval",
            {
                "tenant_id": job.tenant_id,
                "job_id": job.id,
                "model": job.model,
                "evaluation": job.evaluation.model_dump() if job.evaluation else None,
            },
        )
    return {}


def fine_tuned_alias(job: Job) -> str:
    short = job.id.rsplit("-", 1)[-1][:12]
    return f"ft:{job.model}:{job.suffix or 'custom'}:{short}"[:128]


def _doubled(pricing: Pricing | None) -> Pricing | None:
    if pricing is None:
        return None
    return Pricing(
        input_per_1k_usd=pricing.input_per_1k_usd * 2, output_per_1k_usd=pricing.output_per_1k_usd * 2
    )


def register(store: FineTuningStore, job_id: str) -> dict[str, Any]:
    job = _open_job(store, job_id)
    store.jobs.update(job.id, {"byom_status": "registering"})
    base = store.models.get(job.tenant_id, job.model)
    alias = fine_tuned_alias(job)
    pricing = base.pricing if base else None
    if job.provider == OPENAI:
        # OpenAI bills a fine-tuned model's tokens at their own rates: the catalog's for its base
        # model, else twice the base alias's, the largest premium OpenAI charges (decision 49).
        pricing = catalog_price(job.provider_model_id or "") or _doubled(pricing)
    model = ModelAlias(
        tenant_id=job.tenant_id,
        alias=alias,
        provider=OPENAI if job.provider == OPENAI else "bedrock",
        model_id=(job.provider_model_id if job.provider == OPENAI else job.deployment_arn) or "",
        credential=job.credential if job.provider == OPENAI else None,
        pricing=pricing,
        budget_pricing=pricing,
        max_output_tokens=base.max_output_tokens if base else None,
        created_at=clock.now(),
    )
    try:
        store.models.create(model)
    except Conflict:
        existing = store.models.get(job.tenant_id, alias)
        if existing is None or existing.model_id != model.model_id:
            raise
    if not store.jobs.close(job.id, "succeeded", {"fine_tuned_model": alias}):
        store.models.delete(job.tenant_id, alias)
        raise JobClosed(f"job {job.id} ended while registering")
    store.jobs.add_event(job.id, f"Registered the fine-tuned model as alias '{alias}'")
    return {
        "fine_tuned_model": alias,
        "tenant_id": job.tenant_id,
        "job_id": job.id,
        "model_id": model.model_id,
    }


_ERROR_CODES = {
    APPROVAL_REJECTED: "approval_rejected",
    "States.Timeout": "timeout",
    "States.TaskFailed": "task_failed",
}


def failure_of(error: dict[str, Any]) -> JobError:
    """The job's `error` from what a Catch put in the state (`Error`, `Cause`). Only the messages
    of the pipeline's own typed errors are shown; anything else is named by its type alone."""
    name = str(error.get("Error") or "States.TaskFailed")
    cause = str(error.get("Cause") or "")
    if name == APPROVAL_REJECTED:
        return JobError(
            code="approval_rejected", message=f"Rejected at the approval gate: {cause or 'no comment'}"
        )
    if name == "States.Timeout":
        return JobError(
            code="timeout", message="A step of the pipeline timed out (approval not given in time?)"
        )
    try:
        payload = json.loads(cause)
    except ValueError:
        payload = {}
    error_type = str(payload.get("errorType") or name) if isinstance(payload, dict) else name
    known = {cls.__name__: cls for cls in _pipeline_errors()}
    if error_type in known and isinstance(payload, dict):
        return JobError(
            code=known[error_type].code, message=str(payload.get("errorMessage") or error_type)[:2000]
        )
    return JobError(
        code=_ERROR_CODES.get(name, "internal_error"), message=f"The pipeline failed ({error_type})"
    )


def _pipeline_errors() -> list[type[PipelineError]]:
    found: list[type[PipelineError]] = []
    pending: list[type[PipelineError]] = [PipelineError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def record_failure(store: FineTuningStore, job_id: str, error: dict[str, Any]) -> dict[str, Any]:
    job = store.jobs.get(job_id)
    if job is None:
        return {"recorded": False}
    if error.get("Error") == APPROVAL_REJECTED and not error.get("Cause") and job.approval:
        # The approver's comment is on the job too (moto's interpreter drops SendTaskFailure's cause).
        error = {**error, "Cause": job.approval.get("comment") or ""}
    failure = failure_of(error)
    closed = store.jobs.close(job.id, "failed", {"error": failure.model_dump()})
    current = store.jobs.get(job.id) or job
    released = release(store, current)
    if closed:
        store.jobs.add_event(
            job.id, f"Job failed: {failure.message}", level="error", data={"code": failure.code}
        )
        if store.events is not None:
            store.events.put(
                "FineTuningJobFailed",
                {
                    "tenant_id": job.tenant_id,
                    "job_id": job.id,
                    "error": failure.model_dump(),
                    "released": released,
                },
            )
    return {"recorded": closed, "status": current.byom_status, "released": released}
