"""The OpenAI stand-in's fine-tuning API through the real openai SDK: files, jobs, cancel, and the
`ft:` model answering from its training data."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from local_stack.httpbase import BackgroundServer
from local_stack.models.openai_fine_tuning import FAILURE_MESSAGE, OpenAIFineTuningState
from local_stack.models.servers import openai_stand_in

TRAINING = b"".join(
    json.dumps(
        {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": label}]}
    ).encode()
    + b"\n"
    for prompt, label in (("my parcel is late", "shipping"), ("charged twice on my card", "billing"))
)


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def client(clock: list[float]) -> Iterator[openai.OpenAI]:
    state = OpenAIFineTuningState(training_seconds=2, clock=lambda: clock[0])
    server: BackgroundServer = openai_stand_in(fine_tuning=state).start()
    yield openai.OpenAI(base_url=server.url + "/v1", api_key="sk-local", max_retries=0)
    server.stop()


def test_a_job_succeeds_after_the_training_time_and_its_model_answers(
    client: openai.OpenAI, clock: list[float]
) -> None:
    training = client.files.create(file=("t.jsonl", TRAINING), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="stand-in-chat", training_file=training.id, suffix="tickets")
    assert job.status == "validating_files"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "running"

    clock[0] += 2
    done = client.fine_tuning.jobs.retrieve(job.id)

    assert done.status == "succeeded"
    assert done.fine_tuned_model and done.fine_tuned_model.startswith("ft:stand-in-chat:byom-local:tickets:")
    reply = client.chat.completions.create(
        model=done.fine_tuned_model, messages=[{"role": "user", "content": "the parcel never came"}]
    )
    assert reply.choices[0].message.content == "shipping"


def test_a_base_model_named_fail_fails_the_job_with_a_message(
    client: openai.OpenAI, clock: list[float]
) -> None:
    training = client.files.create(file=("t.jsonl", TRAINING), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="stand-in-fail-training", training_file=training.id)
    clock[0] += 2

    failed = client.fine_tuning.jobs.retrieve(job.id)

    assert failed.status == "failed" and failed.error and failed.error.message == FAILURE_MESSAGE
    assert failed.fine_tuned_model is None


def test_a_running_job_can_be_cancelled_and_stays_cancelled(
    client: openai.OpenAI, clock: list[float]
) -> None:
    training = client.files.create(file=("t.jsonl", TRAINING), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="stand-in-chat", training_file=training.id)

    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    clock[0] += 5
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)


def test_unknown_files_and_jobs_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(model="stand-in-chat", training_file="file-nope")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("t.jsonl", TRAINING), purpose="assistants")
