"""Pipeline logic with in-memory fakes: a cancelled job stays cancelled, and what costs money is released."""

from __future__ import annotations

from typing import Any

import pytest
from byom.fine_tuning import TERMINAL, Job, JobClosed
from byom.logic import fine_tuning_jobs as jobs
from byom.logic import fine_tuning_pipeline as pipeline
from byom.logic.access import Principal

from tests.unit.fakes import FakeModels


class FakeJobs:
    def __init__(self, job: Job) -> None:
        self.jobs = {job.id: job}
        self.tokens: dict[str, tuple[str | None, str | None]] = {}
        self.events: list[str] = []

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def get_for_tenant(self, tenant_id: str, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        return job if job and job.tenant_id == tenant_id else None

    def task_token(self, job_id: str) -> tuple[str | None, str | None]:
        return self.tokens.get(job_id, (None, None))

    def update(
        self,
        job_id: str,
        fields: dict[str, Any],
        *,
        remove: tuple[str, ...] = (),
        expect_status: str | None = None,
    ) -> None:
        job = self.jobs[job_id]
        if job.byom_status in TERMINAL:
            raise JobClosed("closed")
        if "task_token" in fields:
            self.tokens[job_id] = (fields["task_token"], fields.get("waiting_for"))
        known = {k: v for k, v in fields.items() if k in Job.model_fields}
        self.jobs[job_id] = Job.model_validate({**job.model_dump(), **known})

    def close(self, job_id: str, status: str, fields: dict[str, Any]) -> bool:
        if self.jobs[job_id].byom_status in TERMINAL:
            return False
        self.jobs[job_id] = Job.model_validate(
            {**self.jobs[job_id].model_dump(), "byom_status": status, **fields}
        )
        self.tokens.pop(job_id, None)
        return True

    def add_event(self, job_id: str, message: str, **_: Any) -> None:
        self.events.append(message)


class FakeBedrock:
    def __init__(self) -> None:
        self.stopped: list[str] = []
        self.undeployed: list[str] = []

    def start(self, **kwargs: Any) -> str:
        return f"arn:job/{kwargs['job_name']}"

    def stop(self, name: str) -> None:
        self.stopped.append(name)

    def undeploy(self, arn: str) -> None:
        self.undeployed.append(arn)


class FakeWorkflow:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def stop(self, arn: str, cause: str) -> None:
        self.calls.append(("stop", arn))

    def fail(self, token: str, error: str, cause: str) -> bool:
        self.calls.append(("fail", token, error))
        return True


class FakeBucket:
    name = "bucket"

    def uri(self, key: str) -> str:
        return f"s3://bucket/{key}"


def job(**changes: Any) -> Job:
    base = Job(
        id="ftjob-1",
        tenant_id="tnt_a",
        model="fast",
        provider="bedrock",
        base_model_id="amazon.nova-micro-v1:0:128k",
        data_format="bedrock-conversation-2024",
        deployment="on_demand",
        training_file="file-1",
        hyperparameters={},
        seed=1,
        threshold=0.9,
        created_at=1,
        execution_arn="arn:execution",
    )
    return base.model_copy(update=changes)


def store(j: Job) -> jobs.FineTuningStore:
    return jobs.FineTuningStore(
        files=None,
        jobs=FakeJobs(j),
        bucket=FakeBucket(),
        models=FakeModels(),
        bedrock=FakeBedrock(),
        workflow=FakeWorkflow(),
    )


DEVELOPER = Principal(key_id="key_1", role="developer", tenant_id="tnt_a")


def test_cancel_stops_the_execution_wakes_its_callback_and_stops_training() -> None:
    s = store(job(byom_status="training", provider_job_arn="arn:job/ftjob-1"))
    s.jobs.tokens["ftjob-1"] = ("token-1", "training")

    cancelled = jobs.cancel_job(s, DEVELOPER, "ftjob-1")

    assert cancelled.byom_status == "cancelled"
    assert s.workflow.calls == [("stop", "arn:execution"), ("fail", "token-1", "JobCancelled")]
    assert s.bedrock.stopped == ["ftjob-1"]


def test_a_training_job_started_after_a_cancel_is_stopped_at_once() -> None:
    s = store(job(byom_status="training"))
    original = s.jobs.update

    def cancelled_meanwhile(job_id: str, fields: dict[str, Any], **kw: Any) -> None:
        s.jobs.close(job_id, "cancelled", {})
        original(job_id, fields, **kw)

    s.jobs.update = cancelled_meanwhile  # type: ignore[method-assign]
    with pytest.raises(JobClosed):
        pipeline.start_training(s, "ftjob-1")
    assert s.bedrock.stopped == ["ftjob-1"]


def test_another_tenant_cannot_cancel_a_job() -> None:
    s = store(job(byom_status="training"))
    with pytest.raises(jobs.NotFound):
        jobs.cancel_job(s, Principal(key_id="k", role="admin", tenant_id="tnt_b"), "ftjob-1")


def test_a_failure_releases_the_evaluation_deployment_and_records_the_error() -> None:
    s = store(job(byom_status="evaluating", custom_model_arn="arn:model", deployment_arn="arn:deployment"))

    outcome = pipeline.record_failure(s, "ftjob-1", {"Error": "States.Timeout"})

    assert outcome["recorded"] is True
    assert s.bedrock.undeployed == ["arn:deployment"] and s.bedrock.stopped == []
    failed = s.jobs.get("ftjob-1")
    assert failed.byom_status == "failed" and failed.error.code == "timeout"


def test_a_failure_after_a_cancel_keeps_the_job_cancelled() -> None:
    s = store(job(byom_status="cancelled"))
    assert pipeline.record_failure(s, "ftjob-1", {"Error": "JobCancelled"})["recorded"] is False
    assert s.jobs.get("ftjob-1").byom_status == "cancelled"
