"""The fine-tuning pipeline's tasks (SPEC §4.3), one function per Step Functions task: validate the
data, train (Bedrock model customization or OpenAI fine-tuning), host the result, evaluate it on the
held-out examples, wait for approval, register the alias; and record a failure. Each task works on an
open job only: once the API has cancelled it, a task raises JobClosed and stops.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from byom import clock
from byom.domain import ModelAlias, Pricing
from byom.errors import Conflict
from byom.fine_tuning import (
    APPROVAL_REJECTED,
    DatasetInvalid,
    DeploymentFailed,
    Evaluation,
    EvaluationBelowThreshold,
    Job,
    JobClosed,
    JobError,
    PipelineError,
    TrainingFailed,
)
from byom.governance import screening
from byom.logic import datasets, evaluation
from byom.logic.fine_tuning_jobs import (
    OPENAI,
    OPENAI_MAX_EXAMPLE_TOKENS,
    FineTuningStore,
    catalog,
    job_prefix,
    openai_jobs,
    release,
)
from byom.pricing import catalog_price

# Bedrock's default learning rate for the models it fine-tunes; OpenAI's multiplier scales it.
BASE_LEARNING_RATE = 0.00001


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
        file_id = openai_jobs(store).upload(job, store.bucket.get(f"{job_prefix(job)}/data/train.jsonl"))
        store.jobs.update(job.id, {"provider_file_id": file_id})
        store.jobs.add_event(job.id, f"Uploaded the training split to OpenAI as {file_id}")
    openai_job = openai_jobs(store).start(job.model_copy(update={"provider_file_id": file_id}), file_id)
    try:
        store.jobs.update(job.id, {"provider_job_arn": openai_job})
    except JobClosed:
        # Cancelled while the job was being created: it must not train (and bill) unwatched.
        openai_jobs(store).cancel(job.model_copy(update={"provider_job_arn": openai_job}))
        raise
    store.jobs.add_event(job.id, f"Started OpenAI fine-tuning job {openai_job} on {job.base_model_id}")
    return {"provider_job_id": openai_job}


OPENAI_RUNNING = frozenset({"validating_files", "queued", "running"})


def check_openai_training(store: FineTuningStore, job_id: str) -> dict[str, Any]:
    """One look at OpenAI's job; the state machine waits between looks (OpenAI sends no events)."""
    job = _open_job(store, job_id)
    answer = openai_jobs(store).job(job)
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
        runner = openai_jobs(store).runner(job)
    else:
        assert store.runner_for is not None
        runner = store.runner_for(job)
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
