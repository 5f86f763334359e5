"""Files and fine-tuning jobs: records, request bodies, statuses and the typed errors of the pipeline.

The typed errors are what the Step Functions tasks raise: their class name is the `errorType`
Lambda reports, which the state machine's Retry and Catch match on (infra/constructs/fine_tuning.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

FILE_PURPOSE = "fine-tune"

ByomStatus = Literal[
    "validating",
    "training",
    "evaluating",
    "awaiting_approval",
    "registering",
    "succeeded",
    "failed",
    "cancelled",
]
OpenAIStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]

TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

# byom_status -> OpenAI's job status.
OPENAI_STATUS: dict[str, OpenAIStatus] = {
    "validating": "validating_files",
    "training": "running",
    "evaluating": "running",
    "awaiting_approval": "running",
    "registering": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}

Deployment = Literal["on_demand", "provisioned"]


# -- typed errors of the pipeline ------------------------------------------------------------------


class PipelineError(Exception):
    """An error a task raises on purpose. `code` goes to the job's `error.code`; the message is the
    user's to read, so it never quotes a provider key or a stack trace."""

    code = "pipeline_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class DatasetInvalid(PipelineError):
    """The training or validation file cannot be used; the message names the line."""

    code = "invalid_training_file"


class ProviderThrottled(PipelineError):
    """The provider asked us to slow down: retried by the state machine with backoff."""

    code = "provider_throttled"


class ProviderRejected(PipelineError):
    """The provider refused the request (validation, quota, access): not retried."""

    code = "provider_rejected"


class TrainingFailed(PipelineError):
    """The provider's customization job ended Failed or Stopped."""

    code = "training_failed"


class DeploymentFailed(PipelineError):
    code = "deployment_failed"


class EvaluationBelowThreshold(PipelineError):
    code = "evaluation_below_threshold"


class JobClosed(PipelineError):
    """The job was cancelled (or otherwise ended) while a task ran: the task stops quietly."""

    code = "job_closed"


# Errors that come back through SendTaskFailure (the API and the training-events function).
APPROVAL_REJECTED = "ApprovalRejected"
CANCELLED = "JobCancelled"


# -- records ------------------------------------------------------------------------------------


class FileRecord(BaseModel):
    id: str
    tenant_id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    s3_key: str
    lines: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_epochs: Literal["auto"] | Annotated[int, Field(ge=1, le=5)] = "auto"
    batch_size: Literal["auto"] | Annotated[int, Field(ge=1, le=256)] = "auto"
    learning_rate_multiplier: Literal["auto"] | Annotated[float, Field(gt=0, le=10)] = "auto"


class ByomOptions(BaseModel):
    """What BYOM adds to OpenAI's job request (`extra_body={"byom": {...}}` with the SDK)."""

    model_config = ConfigDict(extra="forbid")

    threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    """Overrides the base alias's evaluation threshold for this job (recorded as an override)."""
    holdout_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.1
    """Share of the training file held out for evaluation when no validation file is given."""
    deployment: Deployment | None = None
    """How the result is hosted; the base model's default when unset."""


Suffix = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,39}$")]
FileId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class CreateJob(BaseModel):
    """OpenAI's fine-tuning job request. Unknown fields are refused: a typo is a 400."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    training_file: FileId
    validation_file: FileId | None = None
    hyperparameters: Hyperparameters = Hyperparameters()
    suffix: Suffix | None = None
    seed: Annotated[int, Field(ge=0, le=2_147_483_647)] | None = None
    metadata: Annotated[
        dict[str, Annotated[str, StringConstraints(max_length=512)]], Field(max_length=16)
    ] = {}
    method: dict[str, Any] | None = None
    integrations: list[Any] | None = None
    byom: ByomOptions = ByomOptions()


class Approve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved: bool
    comment: Annotated[str, StringConstraints(max_length=2000)] = ""


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class Evaluation(BaseModel):
    score: float
    threshold: float
    passed: bool
    examples: int
    correct: int
    source: Literal["validation_file", "holdout"]
    overridden: bool = False
    method: str = "exact_or_token_f1>=0.8"


class Job(BaseModel):
    id: str
    tenant_id: str
    model: str
    """The base alias the tenant named."""
    provider: str
    base_model_id: str
    """The provider's base model for customization (Bedrock's `...:128k` identifiers)."""
    data_format: str
    deployment: Deployment
    training_file: str
    validation_file: str | None = None
    hyperparameters: dict[str, Any]
    suffix: str | None = None
    seed: int
    metadata: dict[str, str] = {}
    threshold: float
    threshold_overridden: bool = False
    holdout_fraction: float = 0.1
    byom_status: ByomStatus = "validating"
    created_at: int
    finished_at: int | None = None
    error: JobError | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    training_examples: int | None = None
    evaluation: Evaluation | None = None
    execution_arn: str | None = None
    provider_job_arn: str | None = None
    """The provider's job: Bedrock's customization job ARN, or OpenAI's fine-tuning job id."""
    custom_model_arn: str | None = None
    credential: str | None = None
    """The base alias's credential (OpenAI jobs: the key that trains and serves the result)."""
    provider_file_id: str | None = None
    """OpenAI jobs: the training file as uploaded to OpenAI."""
    provider_model_id: str | None = None
    """OpenAI jobs: OpenAI's `fine_tuned_model` (`ft:...`), the new alias's model id."""
    deployment_arn: str | None = None
    approval: dict[str, Any] | None = None

    @property
    def status(self) -> OpenAIStatus:
        return OPENAI_STATUS[self.byom_status]

    @property
    def closed(self) -> bool:
        return self.byom_status in TERMINAL

    def public(self) -> dict[str, Any]:
        hyper = self.hyperparameters
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "created_at": self.created_at,
            "error": self.error.model_dump() if self.error else None,
            "fine_tuned_model": self.fine_tuned_model,
            "finished_at": self.finished_at,
            "hyperparameters": {
                "n_epochs": hyper.get("n_epochs", "auto"),
                "batch_size": hyper.get("batch_size", "auto"),
                "learning_rate_multiplier": hyper.get("learning_rate_multiplier", "auto"),
            },
            "model": self.model,
            "organization_id": self.tenant_id,
            "result_files": [],
            "seed": self.seed,
            "status": self.status,
            "trained_tokens": self.trained_tokens,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "estimated_finish": None,
            "integrations": [],
            "metadata": self.metadata or None,
            "method": {
                "type": "supervised",
                "supervised": {"hyperparameters": dict(hyper)},
            },
            "user_provided_suffix": self.suffix,
            "byom_status": self.byom_status,
            "evaluation": self.evaluation.model_dump() if self.evaluation else None,
            "approval": self.approval,
        }


class JobEvent(BaseModel):
    id: str
    created_at: int
    level: Literal["info", "warn", "error"] = "info"
    message: str
    data: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "fine_tuning.job.event",
            "created_at": self.created_at,
            "level": self.level,
            "message": self.message,
            "data": self.data or {},
            "type": "message",
        }
