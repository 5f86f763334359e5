"""Entry points of the fine-tuning state machine's tasks: the event Step Functions sends in, one
logic call, the output it continues with. Typed errors propagate: Lambda reports their class name as
`errorType`, which the state machine's Retry and Catch match on."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from byom.dal.aws import client, table
from byom.dal.fine_tuning import (
    BedrockCustomization,
    DataBucket,
    FileRepository,
    JobEvents,
    JobRepository,
    Workflow,
)
from byom.dal.policies import PolicyRepository
from byom.dal.repositories import CredentialRepository, ModelRepository
from byom.dal.secrets import ProviderKeys
from byom.fine_tuning import Job
from byom.logic import fine_tuning_jobs
from byom.logic import fine_tuning_pipeline as pipeline
from byom.providers import OPENAI_BASE_URL, Provider, Target, eval_runner
from byom.providers.bedrock import BedrockProvider
from byom.providers.openai_compat import OpenAICompatibleProvider
from byom.providers.openai_fine_tuning import OpenAIFineTuning
from byom.settings import FineTuningSettings, fine_tuning_settings

# Evaluation asks the model once per example, as the gateway asks it (one attempt; the task's
# Retry does the rest), with room for a custom model's slower first answers.
EVALUATION_TIMEOUT_SECONDS = 60.0


@lru_cache(maxsize=1)
def _bedrock() -> BedrockProvider:
    return BedrockProvider(timeout_seconds=EVALUATION_TIMEOUT_SECONDS)


def bedrock_runner(job: Job, provider: Provider) -> fine_tuning_jobs.Runner:
    """The job's hosted custom model, asked through the gateway's Bedrock provider (Converse)."""
    target = Target(
        tenant_id=job.tenant_id, alias=job.model, provider="bedrock", model_id=job.deployment_arn or ""
    )
    return eval_runner.runner(provider, target, what="Asking the custom model")


def openai_fine_tuning(settings: FineTuningSettings) -> OpenAIFineTuning | None:
    """OpenAI's fine-tuning API with the tenant's credential, for the functions given the credentials
    table (those that call OpenAI); None for the others."""
    if not settings.credentials_table:
        return None
    keys = ProviderKeys(settings.secret_prefix, settings.provider_key_max_age_seconds)
    provider = OpenAICompatibleProvider(
        keys,
        timeout_seconds=settings.provider_timeout_seconds,
        allow_loopback_http=settings.allow_loopback_http,
        default_base_url=OPENAI_BASE_URL,
    )
    return OpenAIFineTuning(provider, CredentialRepository(table(settings.credentials_table)))


def shared_collaborators(settings: FineTuningSettings) -> dict[str, Any]:
    """What both the API function and the tasks work with: the records, the bucket, the model
    registry, the workflow and the providers' training APIs."""
    return {
        "files": FileRepository(table(settings.files_table)),
        "jobs": JobRepository(table(settings.jobs_table)),
        "bucket": DataBucket(client("s3"), settings.data_bucket, settings.kms_key_id),
        "models": ModelRepository(table(settings.models_table)),
        "workflow": Workflow(client("stepfunctions"), settings.state_machine_arn or ""),
        "bedrock": BedrockCustomization(client("bedrock")),
        "openai": openai_fine_tuning(settings),
    }


@lru_cache(maxsize=1)
def store() -> fine_tuning_jobs.FineTuningStore:
    settings = fine_tuning_settings()
    return fine_tuning_jobs.FineTuningStore(
        **shared_collaborators(settings),
        runner_for=lambda job: bedrock_runner(job, _bedrock()),
        events=JobEvents(client("events"), settings.event_bus_name),
        bedrock_role_arn=settings.bedrock_role_arn,
        kms_key_id=settings.kms_key_id,
        min_training_examples=settings.min_training_examples,
        max_training_examples=settings.max_training_examples,
        max_eval_examples=settings.max_eval_examples,
        default_threshold=settings.default_eval_threshold,
        policies=PolicyRepository(table(settings.policies_table)) if settings.policies_table else None,
    )


def _job_id(event: dict[str, Any]) -> str:
    return str(event["job_id"])


def validate(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.validate(store(), _job_id(event))


def start_training(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.start_training(store(), _job_id(event))


def await_training(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.await_training(store(), _job_id(event), event["task_token"])


def check_training(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.check_training(store(), _job_id(event))


def start_openai_training(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.start_openai_training(store(), _job_id(event))


def check_openai_training(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.check_openai_training(store(), _job_id(event))


def training_state_changed(event: dict[str, Any]) -> dict[str, Any]:
    """EventBridge: Bedrock's `Model Customization Job State Change`."""
    return {"woken": pipeline.training_state_changed(store(), event.get("detail") or {})}


def deploy(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.deploy(store(), _job_id(event))


def check_deployment(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.check_deployment(store(), _job_id(event))


def evaluate(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.evaluate(store(), _job_id(event))


def request_approval(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.request_approval(store(), _job_id(event), event["task_token"])


def register(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.register(store(), _job_id(event))


def record_failure(event: dict[str, Any]) -> dict[str, Any]:
    return pipeline.record_failure(store(), _job_id(event), event.get("error") or {})
