"""Evaluations (SPEC §10): OpenAI's Evals API request bodies and the eval and run records.

An eval is a test set's shape and the criteria its answers are graded by; a run renders each item of
a `purpose=evals` file into a chat request, has one or more aliases answer every item (as batches)
and grades the answers (byom.logic.evaluation).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# Bounds: an eval is a handful of criteria and a run a handful of aliases over a test set that one
# Lambda can grade in its time (a grader call per item, criterion and alias).
MAX_CRITERIA = 8
MAX_ALIASES = 5
MAX_TEMPLATE_MESSAGES = 16
MAX_TEMPLATE_CHARS = 16_000
MAX_ITEMS = 500
MAX_METADATA = 16

Name = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Alias = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Template = Annotated[str, StringConstraints(max_length=MAX_TEMPLATE_CHARS)]
Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[str, StringConstraints(max_length=512)],
    ],
    Field(max_length=MAX_METADATA),
]

StringOperation = Literal["eq", "ne", "like", "ilike"]
# OpenAI's metrics this gateway computes: fuzzy_match (a similarity ratio of the two strings) and
# rouge_1 (unigram F1, the fine-tuning evaluation's token F1); `token_f1` names the same on purpose.
SimilarityMetric = Literal["fuzzy_match", "rouge_1", "token_f1"]
RunStatus = Literal["queued", "in_progress", "completed", "failed", "canceled"]


class _Body(BaseModel):
    # OpenAI's objects grow fields; an unknown one is refused rather than silently ignored.
    model_config = ConfigDict(extra="forbid")


class StringCheck(_Body):
    type: Literal["string_check"]
    name: Name
    input: Template
    reference: Template
    operation: StringOperation


class TextSimilarity(_Body):
    type: Literal["text_similarity"]
    name: Name
    input: Template
    reference: Template
    evaluation_metric: SimilarityMetric
    pass_threshold: float = Field(ge=0, le=1)


class GraderMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: Template
    type: Literal["message"] | None = None


class SamplingParams(_Body):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_completions_tokens: int | None = Field(default=None, ge=1, le=4096)
    seed: int | None = None


class ScoreModel(_Body):
    """A grader alias of the tenant answers the rubric with a number in `range`."""

    type: Literal["score_model"]
    name: Name
    model: Alias
    input: list[GraderMessage] = Field(min_length=1, max_length=MAX_TEMPLATE_MESSAGES)
    range: tuple[float, float] = (0.0, 1.0)
    pass_threshold: float | None = None
    sampling_params: SamplingParams | None = None

    @model_validator(mode="after")
    def _bounded(self) -> ScoreModel:
        low, high = self.range
        if not low < high:
            raise ValueError("range must be [low, high] with low < high")
        if self.pass_threshold is not None and not low <= self.pass_threshold <= high:
            raise ValueError("pass_threshold must lie within range")
        return self


Criterion = Annotated[StringCheck | TextSimilarity | ScoreModel, Field(discriminator="type")]


class CustomDataSource(_Body):
    type: Literal["custom"]
    item_schema: dict[str, Any]
    include_sample_schema: bool = False


class CreateEval(_Body):
    name: Name | None = None
    data_source_config: CustomDataSource
    testing_criteria: list[Criterion] = Field(min_length=1, max_length=MAX_CRITERIA)
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> CreateEval:
        names = [c.name for c in self.testing_criteria]
        if len(set(names)) != len(names):
            raise ValueError("every testing criterion needs its own name")
        return self


class TemplateMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: Template
    type: Literal["message"] | None = None


class InputTemplate(_Body):
    type: Literal["template"]
    template: list[TemplateMessage] = Field(min_length=1, max_length=MAX_TEMPLATE_MESSAGES)


class FileSource(_Body):
    type: Literal["file_id"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class CompletionsSampling(_Body):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=100_000)
    seed: int | None = None


class CompletionsDataSource(_Body):
    """OpenAI's `completions` run data source; `models` (a BYOM extension) runs several aliases at once."""

    type: Literal["completions"]
    model: Alias | None = None
    models: list[Alias] | None = Field(default=None, min_length=1, max_length=MAX_ALIASES)
    input_messages: InputTemplate
    source: FileSource
    sampling_params: CompletionsSampling | None = None

    @model_validator(mode="after")
    def _some_alias(self) -> CompletionsDataSource:
        if not self.aliases():
            raise ValueError("name the alias to run: data_source.model (or data_source.models)")
        if len(self.aliases()) > MAX_ALIASES:
            raise ValueError(f"a run may name at most {MAX_ALIASES} aliases")
        return self

    def aliases(self) -> list[str]:
        named = ([self.model] if self.model else []) + list(self.models or [])
        return list(dict.fromkeys(named))


class CreateRun(_Body):
    name: Name | None = None
    data_source: CompletionsDataSource
    metadata: Metadata | None = None


class EvalRecord(BaseModel):
    id: str
    tenant_id: str
    name: str
    created_at: int
    data_source_config: CustomDataSource
    testing_criteria: list[Criterion]
    metadata: dict[str, str] = Field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        config = self.data_source_config
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {"item": config.item_schema}
            | ({"sample": {"type": "object"}} if config.include_sample_schema else {}),
            "required": ["item"] + (["sample"] if config.include_sample_schema else []),
        }
        return {
            "id": self.id,
            "object": "eval",
            "name": self.name,
            "created_at": self.created_at,
            "data_source_config": {"type": "custom", "schema": schema},
            "testing_criteria": [c.model_dump(mode="json", exclude_none=True) for c in self.testing_criteria],
            "metadata": self.metadata,
        }


class AliasSummary(BaseModel):
    """One alias's figures in a run (the `byom_per_alias` extension)."""

    alias: str
    items: int
    score: float
    pass_rate: float
    passed: int
    failed: int
    errored: int
    cost_usd: float
    grader_cost_usd: float
    # None when no line was timed (a provider's batch job): the item drops None, so it reads back absent.
    latency_p50_ms: int | None = None
    latency_p95_ms: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    criteria: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Per criterion name: `passed`, `failed`."""


class AliasBatch(BaseModel):
    batch_id: str
    summary: AliasSummary | None = None
    """Set once the alias's batch finished and its lines were graded."""


class RunRecord(BaseModel):
    id: str
    eval_id: str
    tenant_id: str
    name: str
    created_at: int
    status: RunStatus
    data_source: CompletionsDataSource
    items: int
    key_id: str
    role: str
    """Who started the run: its batches were submitted, and its lines are read, as that caller."""
    aliases: dict[str, AliasBatch] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    error: dict[str, Any] | None = None
    completed_at: int | None = None
