"""One settings model per function, read from the environment once (never at import time)."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_env(cls):  # type: ignore[no-untyped-def]
        values = {name: os.environ.get(name.upper()) for name in cls.model_fields}
        return cls.model_validate({k: v for k, v in values.items() if v is not None})


class AuthorizerSettings(_Settings):
    api_keys_table: str
    admin_key_secret_arn: str
    admin_key_max_age_seconds: int = 300
    # The API key value of the stack's platform usage plan, returned for the platform admin.
    platform_usage_key: str | None = None


class AdminSettings(_Settings):
    tenants_table: str
    api_keys_table: str
    credentials_table: str
    models_table: str
    kms_key_id: str
    secret_prefix: str
    allow_loopback_http: bool = False
    usage_table: str
    alerts_topic_arn: str | None = None
    spend_alarm_prefix: str
    # Governance: audit records, policies, the response cache (erasure), stored content.
    audit_table: str
    policies_table: str
    cache_table: str
    data_bucket: str
    # Stored Responses (a data subject's erasure and export).
    responses_table: str
    # The REST API and stage the tenants' usage plans are bound to; unset: no usage plans managed.
    rest_api_id: str | None = None
    stage_name: str = "prod"


class GatewaySettings(_Settings):
    models_table: str
    credentials_table: str
    secret_prefix: str
    allow_loopback_http: bool = False
    # Inside API Gateway's 29 s integration timeout, with room for the reads around the call.
    provider_timeout_seconds: float = Field(default=25.0, gt=0)
    provider_key_max_age_seconds: int = Field(default=300, ge=0)
    # The whole invocation, retries and fallbacks included: 29 s less a margin for the work around it.
    invoke_deadline_seconds: float = Field(default=27.0, gt=0)
    retry_max_attempts: int = Field(default=3, ge=1, le=10)
    retry_base_seconds: float = Field(default=0.2, ge=0)
    retry_cap_seconds: float = Field(default=2.0, ge=0)
    # A stream's integration timeout (byom:streamTimeoutSeconds): the gateway ends a stream itself
    # STREAM_MARGIN_SECONDS before it, so the call is still settled and the client told why.
    stream_timeout_seconds: float = Field(default=300.0, ge=30, le=900)
    # Unset: no response cache, whatever the aliases ask for.
    cache_table: str | None = None
    usage_table: str
    event_bus_name: str = "default"
    alerts_topic_arn: str | None = None
    policies_table: str | None = None
    audit_table: str | None = None
    # Content logging: the bucket and key of tenants' stored prompts and answers.
    data_bucket: str | None = None
    kms_key_id: str | None = None
    # Stored Responses (`store`, `previous_response_id`): sealed with the key above, large bodies in
    # the data bucket. Unset: nothing is stored.
    responses_table: str | None = None
    # `/v1/models/recommend?task=`: the evals whose latest run ranks aliases. Unset: no evidence.
    evals_table: str | None = None
    # The meter backlog (byom.dal.meter_backlog): settles the ledger could not take wait here for
    # the reconciler. Unset: such a settle fails the call.
    meter_queue_url: str | None = None


@lru_cache(maxsize=1)
def authorizer_settings() -> AuthorizerSettings:
    return AuthorizerSettings.from_env()


@lru_cache(maxsize=1)
def admin_settings() -> AdminSettings:
    return AdminSettings.from_env()


@lru_cache(maxsize=1)
def gateway_settings() -> GatewaySettings:
    return GatewaySettings.from_env()


class ReconcilerSettings(_Settings):
    """The meter reconciler: drains the meter backlog into the usage (and audit) tables."""

    usage_table: str


@lru_cache(maxsize=1)
def reconciler_settings() -> ReconcilerSettings:
    return ReconcilerSettings.from_env()


class FineTuningSettings(_Settings):
    """The fine-tuning API function and the state machine's task functions (docs/contracts.md)."""

    files_table: str
    jobs_table: str
    models_table: str
    data_bucket: str
    kms_key_id: str | None = None
    event_bus_name: str = "default"
    # The API function only.
    state_machine_arn: str | None = None
    # Approvals and cancellations are audited admin actions.
    audit_table: str | None = None
    policies_table: str | None = None
    idempotency_table: str | None = None
    idempotency_seconds: int = Field(default=3600, ge=60)
    # Lambda's 6 MB payload holds the base64 of about 4.4 MB; the rest is the multipart envelope.
    max_file_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    # Larger files go through a presigned S3 PUT (byom.logic.uploads), up to this size.
    max_upload_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    upload_url_seconds: int = Field(default=3600, ge=60, le=7 * 86_400)
    # Waits the state machine reads from each execution's input.
    training_poll_seconds: int = Field(default=600, ge=1)
    deployment_poll_seconds: int = Field(default=60, ge=1)
    approval_timeout_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    # The task functions.
    bedrock_role_arn: str = ""
    min_training_examples: int = Field(default=10, ge=1)
    max_training_examples: int = Field(default=20_000, ge=1)
    max_eval_examples: int = Field(default=100, ge=1)
    default_eval_threshold: float = Field(default=0.9, ge=0, le=1)
    # OpenAI jobs: how often the state machine looks at the job (OpenAI sends no events), and what
    # the functions that call OpenAI need to read a tenant's credential as the data plane does.
    openai_poll_seconds: int = Field(default=60, ge=1)
    credentials_table: str | None = None
    secret_prefix: str = ""
    allow_loopback_http: bool = False
    provider_timeout_seconds: float = Field(default=25.0, gt=0)
    provider_key_max_age_seconds: int = Field(default=300, ge=0)


@lru_cache(maxsize=1)
def fine_tuning_settings() -> FineTuningSettings:
    return FineTuningSettings.from_env()


class AutomationSettings(_Settings):
    """Automations (SPEC §9): the admin routes, the runner and the approval tasks (docs/contracts.md)."""

    automations_table: str
    event_bus_name: str = "default"
    alerts_topic_arn: str | None = None
    # The admin routes: where triggers send, what they are named, the role Scheduler sends with.
    automation_queue_url: str | None = None
    automation_queue_arn: str | None = None
    automation_prefix: str = ""
    scheduler_role_arn: str = ""
    approval_state_machine_arn: str | None = None
    # The runner: SQS's maxReceiveCount (the last try records the failure), the approval wait.
    automation_max_receive_count: int = Field(default=3, ge=1, le=100)
    approval_timeout_seconds: int = Field(default=7 * 24 * 3600, ge=60)


@lru_cache(maxsize=1)
def automation_settings() -> AutomationSettings:
    return AutomationSettings.from_env()


class EvalSettings(_Settings):
    """Evaluations (SPEC §10): the evals API and the scorer (docs/evals.md); the scorer's grader
    calls read the gateway's settings as well (byom.api.gateway.invoke_store)."""

    evals_table: str
    files_table: str
    models_table: str
    data_bucket: str
    kms_key_id: str | None = None
    max_eval_items: int = Field(default=500, ge=1, le=500)


@lru_cache(maxsize=1)
def eval_settings() -> EvalSettings:
    return EvalSettings.from_env()


class BatchSettings(_Settings):
    """Batches (SPEC §10): the batch API function and the state machine's tasks (docs/batches.md).
    The tasks that run lines read the data plane's settings too (GatewaySettings)."""

    batches_table: str
    files_table: str
    models_table: str
    data_bucket: str
    kms_key_id: str | None = None
    usage_table: str | None = None
    policies_table: str | None = None
    audit_table: str | None = None
    event_bus_name: str = "default"
    batch_state_machine_arn: str | None = None
    # The service role Bedrock batch inference jobs run as (S3 under tenants/*/batches/* only).
    byom_batch_role_arn: str = ""
    # How long an execution waits for a provider job's event before it looks for itself.
    batch_poll_seconds: int = Field(default=300, ge=1, le=86_400)
    # Bedrock's "Minimum number of records per batch inference job" quota (100 unless raised or
    # lowered for the account): a smaller Bedrock batch is run by the gateway itself.
    bedrock_batch_min_records: int = Field(default=100, ge=1, le=50_000)


@lru_cache(maxsize=1)
def batch_settings() -> BatchSettings:
    return BatchSettings.from_env()
