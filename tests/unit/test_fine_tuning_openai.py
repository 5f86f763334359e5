"""Fine-tuning an `openai` alias: the pipeline's OpenAI tasks with in-memory fakes, the adapter's error
mapping, and the provider's fine-tuning calls through the real SDK on an in-process transport."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from byom.domain import Credential, ModelAlias, Pricing
from byom.errors import ProviderError
from byom.fine_tuning import CreateJob, Job, ProviderRejected, ProviderThrottled, TrainingFailed
from byom.logic import fine_tuning_jobs as jobs
from byom.logic import fine_tuning_pipeline as pipeline
from byom.logic.access import Principal
from byom.logic.datasets import Example
from byom.providers import Target
from byom.providers.openai_fine_tuning import OpenAIFineTuning

from tests.unit.fakes import FakeCredentials, FakeModels
from tests.unit.test_fine_tuning_logic import FakeJobs, FakeWorkflow
from tests.unit.test_providers_openai_compat import FakeKeys, Upstream, _provider

PRICE = Pricing(input_per_1k_usd=0.0003, output_per_1k_usd=0.0012, cache_read_per_1k_usd=0.00015)
DEVELOPER = Principal(key_id="key_1", role="developer", tenant_id="tnt_a")


class FakeOpenAI:
    """OpenAI's fine-tuning API as the pipeline sees it (byom.providers.openai_fine_tuning)."""

    def __init__(self, *answers: dict[str, Any] | Exception) -> None:
        self.answers = list(answers)
        self.uploads: list[bytes] = []
        self.started: list[tuple[str, str]] = []
        self.cancelled: list[str] = []
        self.fail_start: list[Exception] = []
        self.fail_cancel: Exception | None = None
        self.asked: list[str] = []

    def upload(self, job: Job, data: bytes) -> str:
        self.uploads.append(data)
        return f"file-oa-{len(self.uploads)}"

    def start(self, job: Job, training_file: str) -> str:
        if self.fail_start:
            raise self.fail_start.pop(0)
        self.started.append((job.base_model_id, training_file))
        return "ftjob-oa-1"

    def job(self, job: Job) -> dict[str, Any]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def cancel(self, job: Job) -> None:
        if self.fail_cancel:
            raise self.fail_cancel
        self.cancelled.append(job.provider_job_arn or "")

    def runner(self, job: Job) -> Any:
        def answer(example: Example) -> str:
            self.asked.append(job.provider_model_id or "")
            return example.answer

        return answer


class MemoryBucket:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def uri(self, key: str) -> str:
        return f"s3://bucket/{key}"


def openai_job(**changes: Any) -> Job:
    base = Job(
        id="ftjob-1",
        tenant_id="tnt_a",
        model="mini",
        provider="openai",
        credential="oa",
        base_model_id="gpt-4o-mini-2024-07-18",
        data_format="openai-chat",
        deployment="on_demand",
        training_file="file-1",
        hyperparameters={"n_epochs": 3},
        suffix="tickets",
        seed=1,
        threshold=0.9,
        created_at=1,
        execution_arn="arn:execution",
        byom_status="training",
    )
    return base.model_copy(update=changes)


def store(job: Job, openai: FakeOpenAI | None = None) -> jobs.FineTuningStore:
    models = FakeModels()
    models.create(
        ModelAlias(
            tenant_id="tnt_a",
            alias="mini",
            provider="openai",
            model_id="gpt-4o-mini-2024-07-18",
            credential="oa",
            pricing=PRICE,
            max_output_tokens=256,
            created_at=1,
        )
    )
    bucket = MemoryBucket()
    line = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "billing"}]}
    bucket.put("tenants/tnt_a/fine-tuning/ftjob-1/data/train.jsonl", b"train-split\n")
    bucket.put("tenants/tnt_a/fine-tuning/ftjob-1/data/evaluation.jsonl", json.dumps(line).encode() + b"\n")
    return jobs.FineTuningStore(
        files=None,
        jobs=FakeJobs(job),
        bucket=bucket,
        models=models,
        workflow=FakeWorkflow(),
        bedrock=None,
        openai=openai or FakeOpenAI(),
    )


class CreatingJobs(FakeJobs):
    def create(self, job: Job) -> None:
        self.jobs[job.id] = job


def test_an_openai_alias_can_be_fine_tuned_with_its_credential_and_model_id() -> None:
    s = store(openai_job())
    s.jobs = CreatingJobs(openai_job())
    s.files = type("Files", (), {"get": lambda self, t, f: type("F", (), {"purpose": "fine-tune"})()})()
    s.workflow.start = lambda name, payload: "arn:execution:new"  # type: ignore[attr-defined]

    job = jobs.create_job(s, DEVELOPER, CreateJob(model="mini", training_file="file-1"))

    assert (job.provider, job.credential, job.base_model_id, job.data_format) == (
        "openai",
        "oa",
        "gpt-4o-mini-2024-07-18",
        "openai-chat",
    )


def test_an_openai_compatible_alias_is_still_refused() -> None:
    alias = ModelAlias(
        tenant_id="tnt_a", alias="llama", provider="openai_compatible", model_id="llama", created_at=1
    )
    with pytest.raises(jobs.InvalidRequest) as refused:
        jobs.fine_tunable(alias)
    assert refused.value.code == "model_not_fine_tunable"


def test_starting_uploads_the_training_split_and_creates_the_job_on_the_base_model() -> None:
    openai = FakeOpenAI()
    s = store(openai_job(), openai)

    assert pipeline.start_openai_training(s, "ftjob-1") == {"provider_job_id": "ftjob-oa-1"}

    assert openai.uploads == [b"train-split\n"]
    assert openai.started == [("gpt-4o-mini-2024-07-18", "file-oa-1")]
    job = s.jobs.get("ftjob-1")
    assert job.provider_file_id == "file-oa-1" and job.provider_job_arn == "ftjob-oa-1"


def test_a_retried_start_reuses_the_file_already_uploaded() -> None:
    openai = FakeOpenAI()
    openai.fail_start = [ProviderThrottled("slow down")]
    s = store(openai_job(), openai)
    with pytest.raises(ProviderThrottled):
        pipeline.start_openai_training(s, "ftjob-1")

    pipeline.start_openai_training(s, "ftjob-1")

    assert len(openai.uploads) == 1 and openai.started == [("gpt-4o-mini-2024-07-18", "file-oa-1")]


def test_a_job_cancelled_while_openai_created_its_job_cancels_it_at_once() -> None:
    openai = FakeOpenAI()
    s = store(openai_job(provider_file_id="file-oa-1"), openai)
    original = s.jobs.update

    def cancelled_meanwhile(job_id: str, fields: dict[str, Any], **kw: Any) -> None:
        s.jobs.close(job_id, "cancelled", {})
        original(job_id, fields, **kw)

    s.jobs.update = cancelled_meanwhile  # type: ignore[method-assign]
    with pytest.raises(pipeline.JobClosed):
        pipeline.start_openai_training(s, "ftjob-1")
    assert openai.cancelled == ["ftjob-oa-1"]


@pytest.mark.parametrize("status", ["validating_files", "queued", "running"])
def test_a_running_openai_job_is_not_done(status: str) -> None:
    s = store(openai_job(provider_job_arn="ftjob-oa-1"), FakeOpenAI({"status": status}))
    assert pipeline.check_openai_training(s, "ftjob-1")["done"] is False


def test_a_succeeded_openai_job_records_the_fine_tuned_model() -> None:
    answer = {
        "status": "succeeded",
        "fine_tuned_model": "ft:gpt-4o-mini:org:tickets:abc",
        "trained_tokens": 42,
    }
    s = store(openai_job(provider_job_arn="ftjob-oa-1"), FakeOpenAI(answer))

    assert pipeline.check_openai_training(s, "ftjob-1") == {"done": True}

    job = s.jobs.get("ftjob-1")
    assert job.provider_model_id == "ft:gpt-4o-mini:org:tickets:abc"
    assert job.byom_status == "evaluating" and job.trained_tokens == 42


def test_a_failed_openai_job_fails_with_openai_s_message() -> None:
    answer = {
        "id": "ftjob-oa-1",
        "status": "failed",
        "error": {"code": "invalid_n_examples", "message": "too few"},
    }
    s = store(openai_job(provider_job_arn="ftjob-oa-1"), FakeOpenAI(answer))

    with pytest.raises(TrainingFailed) as failed:
        pipeline.check_openai_training(s, "ftjob-1")

    assert str(failed.value) == "The OpenAI fine-tuning job ftjob-oa-1 ended failed: too few"


def test_evaluation_asks_the_fine_tuned_model_through_openai() -> None:
    openai = FakeOpenAI()
    s = store(
        openai_job(provider_model_id="ft:gpt-4o-mini:org:tickets:abc", byom_status="evaluating"), openai
    )

    assert pipeline.evaluate(s, "ftjob-1") == {"score": 1.0}
    assert openai.asked == ["ft:gpt-4o-mini:org:tickets:abc"]


def test_registering_makes_an_openai_alias_with_the_base_credential_and_pricing() -> None:
    s = store(openai_job(provider_model_id="ft:gpt-4o-mini:org:tickets:abc", byom_status="awaiting_approval"))

    registered = pipeline.register(s, "ftjob-1")

    alias = s.models.get("tnt_a", registered["fine_tuned_model"])
    assert registered["fine_tuned_model"].startswith("ft:mini:tickets:")
    assert (alias.provider, alias.model_id, alias.credential) == (
        "openai",
        "ft:gpt-4o-mini:org:tickets:abc",
        "oa",
    )
    assert alias.pricing == PRICE and alias.budget_pricing == PRICE and alias.max_output_tokens == 256
    assert s.jobs.get("ftjob-1").byom_status == "succeeded"


def test_cancelling_a_training_openai_job_cancels_it_at_openai() -> None:
    openai = FakeOpenAI()
    s = store(openai_job(provider_job_arn="ftjob-oa-1"), openai)

    assert jobs.cancel_job(s, DEVELOPER, "ftjob-1").byom_status == "cancelled"
    assert openai.cancelled == ["ftjob-oa-1"]


def test_a_cancel_openai_refuses_still_cancels_the_job() -> None:
    openai = FakeOpenAI()
    openai.fail_cancel = ProviderRejected("OpenAI answered 400: already succeeded")
    s = store(openai_job(provider_job_arn="ftjob-oa-1"), openai)

    assert jobs.cancel_job(s, DEVELOPER, "ftjob-1").byom_status == "cancelled"


def test_a_failure_cancels_a_running_openai_job_but_not_a_finished_one() -> None:
    openai = FakeOpenAI()
    s = store(openai_job(provider_job_arn="ftjob-oa-1"), openai)
    assert pipeline.record_failure(s, "ftjob-1", {"Error": "States.Timeout"})["released"] == [
        "OpenAI fine-tuning job cancelled"
    ]

    finished = FakeOpenAI()
    s = store(openai_job(provider_job_arn="ftjob-oa-1", provider_model_id="ft:x"), finished)
    pipeline.record_failure(s, "ftjob-1", {"Error": "States.Timeout"})
    assert finished.cancelled == []


# -- the adapter -----------------------------------------------------------------------------------


class FailingProvider:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.targets: list[Target] = []

    def fine_tuning_job(self, target: Target, job_id: str) -> dict[str, Any]:
        self.targets.append(target)
        raise self.error


def _credentials(base_url: str | None = "https://openai.example.com/v1") -> FakeCredentials:
    credentials = FakeCredentials()
    credentials.put(
        Credential(
            tenant_id="tnt_a",
            name="oa",
            provider="openai",
            base_url=base_url,
            secret_arn="arn:s",
            updated_at=1,
        )
    )
    return credentials


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ProviderError("OpenAI answered 429: slow down", status=429, retryable=True), ProviderThrottled),
        (ProviderError("OpenAI answered 503: busy", status=503, retryable=True), ProviderThrottled),
        (ProviderError("OpenAI answered 400: bad model", status=400), ProviderRejected),
    ],
)
def test_openai_errors_become_the_pipeline_s_typed_errors(error: ProviderError, expected: type) -> None:
    provider = FailingProvider(error)
    adapter = OpenAIFineTuning(provider, _credentials())  # type: ignore[arg-type]

    with pytest.raises(expected) as raised:
        adapter.job(openai_job(provider_job_arn="ftjob-oa-1"))

    assert error.message in str(raised.value)
    (target,) = provider.targets
    assert (target.base_url, target.credential, target.has_key) == (
        "https://openai.example.com/v1",
        "oa",
        True,
    )


def test_a_deleted_credential_is_a_clear_refusal() -> None:
    adapter = OpenAIFineTuning(FailingProvider(RuntimeError()), FakeCredentials())  # type: ignore[arg-type]
    with pytest.raises(ProviderRejected, match="credential 'oa' of alias 'mini' no longer exists"):
        adapter.job(openai_job(provider_job_arn="ftjob-oa-1"))


# -- the provider's calls through the SDK ------------------------------------------------------------

TARGET = Target(
    tenant_id="tnt_a",
    alias="mini",
    provider="openai",
    model_id="gpt-4o-mini-2024-07-18",
    credential="oa",
    base_url="https://api.openai.com/v1",
    has_key=True,
)


def test_the_training_file_is_uploaded_with_purpose_fine_tune() -> None:
    upstream = Upstream(
        httpx2.Response(
            200,
            json={
                "id": "file-abc",
                "object": "file",
                "bytes": 3,
                "created_at": 1,
                "filename": "t.jsonl",
                "purpose": "fine-tune",
                "status": "processed",
            },
        )
    )

    assert _provider(upstream).upload_file(TARGET, "t.jsonl", b"{}\n") == "file-abc"

    request = upstream.requests[0]
    assert request.url.path == "/v1/files"
    assert b'name="purpose"\r\n\r\nfine-tune' in request.content
    assert request.headers["Authorization"] == "Bearer sk-test-CANARY-5b1e7f0c9a"


def test_the_job_is_created_on_the_base_model_with_the_supervised_method() -> None:
    upstream = Upstream(
        httpx2.Response(
            200,
            json={
                "id": "ftjob-abc",
                "object": "fine_tuning.job",
                "model": "gpt-4o-mini-2024-07-18",
                "created_at": 1,
                "status": "validating_files",
                "training_file": "file-abc",
                "hyperparameters": {},
                "organization_id": "org",
                "result_files": [],
                "seed": 1,
            },
        )
    )

    job_id = _provider(upstream).create_fine_tuning_job(
        TARGET, training_file="file-abc", hyperparameters={"n_epochs": 3}, suffix="tickets", seed=1
    )

    assert job_id == "ftjob-abc"
    assert upstream.requests[0].url.path == "/v1/fine_tuning/jobs"
    assert upstream.body() == {
        "model": "gpt-4o-mini-2024-07-18",
        "training_file": "file-abc",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}},
        "suffix": "tickets",
        "seed": 1,
    }


def test_a_refused_cancel_quotes_openai_without_the_key() -> None:
    upstream = Upstream(
        httpx2.Response(
            400, json={"error": {"message": "Job has already completed (sk-test-CANARY-5b1e7f0c9a)"}}
        )
    )
    with pytest.raises(ProviderError) as refused:
        _provider(upstream, FakeKeys()).cancel_fine_tuning_job(TARGET, "ftjob-abc")
    assert upstream.requests[0].url.path == "/v1/fine_tuning/jobs/ftjob-abc/cancel"
    assert "already completed" in refused.value.message and "CANARY" not in refused.value.message


def test_a_fine_tuned_model_of_a_base_the_catalog_does_not_list_costs_twice_the_base_price() -> None:
    s = store(openai_job(provider_model_id="ft:acme-base:org:tickets:abc", byom_status="awaiting_approval"))

    registered = pipeline.register(s, "ftjob-1")

    alias = s.models.get("tnt_a", registered["fine_tuned_model"])
    assert alias.pricing == Pricing(input_per_1k_usd=0.0006, output_per_1k_usd=0.0024)
