"""Files and fine-tuning jobs as the API serves them (SPEC §4.3): upload, create, read, cancel,
approve; and what the pipeline's tasks (byom.logic.fine_tuning_pipeline) share with them: the
collaborators, the catalog, where a job's data lives, and releasing what a job still runs.

Both halves share the job record: every status change is a conditional write on an open job, so a
task still running after a cancel cannot bring a cancelled job back to life.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Protocol

from byom import clock
from byom.domain import ModelAlias
from byom.errors import Conflict, GatewayMisconfigured, InvalidRequest, ModelNotFound, NotFound
from byom.fine_tuning import (
    APPROVAL_REJECTED,
    CANCELLED,
    FILE_PURPOSE,
    Approve,
    CreateJob,
    FileRecord,
    Job,
    JobEvent,
    ProviderRejected,
)
from byom.governance.policy import Policy
from byom.logic import datasets
from byom.logic.access import Principal, require_tenant_key

_CATALOG = Path(__file__).resolve().parent.parent / "data" / "fine_tuning.json"

WRITERS = ("admin", "developer")
# What a tenant may upload: training data, batch input (byom.logic.batches), eval test sets.
UPLOAD_PURPOSES = (FILE_PURPOSE, "batch", "evals")
APPROVERS = ("admin",)
OPENAI: Final = "openai"
# OpenAI's per-example limit for the chat models it fine-tunes (gpt-4o-mini, gpt-4.1 family).
OPENAI_MAX_EXAMPLE_TOKENS = 65_536


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

    def runner(self, job: Job) -> Runner:
        """Answers an evaluation example with the fine-tuned model."""
        ...


# Answers an evaluation example with the model under evaluation (byom.logic.evaluation.score).
Runner = Callable[[datasets.Example], str]


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
    runner_for: Callable[[Job], Runner] | None = None
    """Asks a Bedrock job's hosted model (byom.providers.eval_runner); OpenAI jobs ask `openai`."""
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


def openai_jobs(store: FineTuningStore) -> OpenAIJobs:
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
                openai_jobs(store).cancel(job)
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
