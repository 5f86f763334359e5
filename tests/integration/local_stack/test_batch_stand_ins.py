"""Provider batch jobs against their stand-ins, in-process: Bedrock batch inference (S3 in moto's
server) and OpenAI's Batch API, each driven through its ProviderBatches implementation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from byom.errors import ByomError, ProviderError
from byom.providers import Target
from byom.providers.batch import BatchLine, ProviderBatches, ProviderJob
from byom.providers.bedrock_batch import BedrockBatches
from byom.providers.openai_batch import OpenAIBatches
from moto.server import ThreadedMotoServer

from local_stack.httpbase import BackgroundServer
from local_stack.models.batch_inference import BatchInferenceState
from local_stack.models.openai_batches import OpenAIBatchesState
from local_stack.models.servers import bedrock_stand_in, openai_stand_in

BUCKET = "byom-batch-test"
ROLE = "arn:aws:iam::123456789012:role/byom-batch"
CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
_CREDENTIALS = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


def chat_lines(model: str, count: int) -> list[BatchLine]:
    return [
        BatchLine(f"line-{i}", {"model": model, "messages": [{"role": "user", "content": f"question {i}"}]})
        for i in range(count)
    ]


def wait_until_done(
    batches: ProviderBatches, target: Target, job_id: str, timeout: float = 15
) -> ProviderJob:
    deadline = time.monotonic() + timeout
    while True:
        job = batches.status(target, job_id)
        if job.state != "in_progress" or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


# -- Bedrock batch inference ------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", **_CREDENTIALS)
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def _write(s3: Any, uri: str, body: bytes) -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def _read(s3: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


@pytest.fixture(scope="module")
def jobs(s3: Any) -> BatchInferenceState:
    return BatchInferenceState(
        read_s3=lambda uri: _read(s3, uri),
        write_s3=lambda uri, body: _write(s3, uri, body),
        delay_seconds=0.3,
    )


@pytest.fixture(scope="module")
def bedrock_server(jobs: BatchInferenceState) -> Iterator[BackgroundServer]:
    server = bedrock_stand_in(batch_jobs=jobs).start()
    yield server
    server.stop()


@pytest.fixture
def control_plane(bedrock_server: BackgroundServer) -> Any:
    return boto3.client(
        "bedrock", endpoint_url=bedrock_server.url, config=Config(retries={"max_attempts": 1}), **_CREDENTIALS
    )


@pytest.fixture
def bedrock_batches(control_plane: Any, s3: Any) -> BedrockBatches:
    return BedrockBatches(role_arn=ROLE, bedrock=control_plane, s3=s3)


BEDROCK_TARGET = Target(tenant_id="tnt_a", alias="fast", provider="bedrock", model_id="stand-in-chat")


def _prefix(name: str) -> str:
    return f"s3://{BUCKET}/tenants/tnt_a/batches/{name}/"


def test_a_bedrock_job_completes_with_every_lines_answer_and_usage(bedrock_batches: BedrockBatches) -> None:
    job_id = bedrock_batches.submit(
        BEDROCK_TARGET, CHAT, chat_lines("stand-in-chat", 5), name="batch_ok", s3_prefix=_prefix("batch_ok")
    )

    job = wait_until_done(bedrock_batches, BEDROCK_TARGET, job_id)
    outcomes = {o.custom_id: o for o in bedrock_batches.outcomes(BEDROCK_TARGET, job_id)}

    assert (job.state, job.total, job.completed, job.failed) == ("completed", 5, 5, 0)
    assert set(outcomes) == {f"line-{i}" for i in range(5)}
    answer = outcomes["line-3"]
    assert answer.status_code == 200 and answer.body["object"] == "chat.completion"
    assert answer.body["choices"][0]["message"]["content"].endswith("You said: question 3")
    assert answer.usage is not None and answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0


def test_a_record_bedrock_refuses_is_a_failed_outcome_and_the_rest_complete(
    bedrock_batches: BedrockBatches,
) -> None:
    blank = BatchLine("blank", {"model": "stand-in-chat", "messages": [{"role": "user", "content": "   "}]})
    lines = [*chat_lines("stand-in-chat", 2), blank]
    job_id = bedrock_batches.submit(
        BEDROCK_TARGET, CHAT, lines, name="batch_bad", s3_prefix=_prefix("batch_bad")
    )

    job = wait_until_done(bedrock_batches, BEDROCK_TARGET, job_id)
    outcomes = {o.custom_id: o for o in bedrock_batches.outcomes(BEDROCK_TARGET, job_id)}

    assert (job.state, job.completed, job.failed) == ("completed", 2, 1)
    assert outcomes["blank"].status_code == 400 and outcomes["blank"].usage is None
    assert "blank" in outcomes["blank"].body["message"]


def test_a_stopped_bedrock_job_is_cancelled(
    bedrock_batches: BedrockBatches, jobs: BatchInferenceState
) -> None:
    jobs.delay_seconds = 30
    try:
        job_id = bedrock_batches.submit(
            BEDROCK_TARGET,
            CHAT,
            chat_lines("stand-in-chat", 2),
            name="batch_stop",
            s3_prefix=_prefix("batch_stop"),
        )
        bedrock_batches.cancel(BEDROCK_TARGET, job_id)
    finally:
        jobs.delay_seconds = 0.3

    assert bedrock_batches.status(BEDROCK_TARGET, job_id).state == "cancelled"
    assert list(bedrock_batches.outcomes(BEDROCK_TARGET, job_id)) == []


def test_a_job_with_a_regional_role_arn_is_refused_as_bedrock_refuses_it(control_plane: Any, s3: Any) -> None:
    regional = BedrockBatches(
        role_arn="arn:aws:iam:us-east-1:123456789012:role/batch", bedrock=control_plane, s3=s3
    )

    with pytest.raises(ByomError) as raised:
        regional.submit(
            BEDROCK_TARGET,
            CHAT,
            chat_lines("stand-in-chat", 1),
            name="batch_role",
            s3_prefix=_prefix("batch_role"),
        )

    assert "roleArn" in raised.value.message


def test_a_job_on_a_failing_model_fails_with_its_reason(bedrock_batches: BedrockBatches) -> None:
    target = Target(tenant_id="tnt_a", alias="broken", provider="bedrock", model_id="stand-in-chat-fail-500")
    job_id = bedrock_batches.submit(
        target, CHAT, chat_lines(target.model_id, 1), name="batch_fail", s3_prefix=_prefix("batch_fail")
    )

    job = wait_until_done(bedrock_batches, target, job_id)

    assert job.state == "failed" and job.message and "fails with 500" in job.message


def test_a_resubmitted_batch_gets_the_job_it_started(bedrock_batches: BedrockBatches) -> None:
    lines = chat_lines("stand-in-chat", 1)

    first = bedrock_batches.submit(
        BEDROCK_TARGET, CHAT, lines, name="batch_twice", s3_prefix=_prefix("batch_twice")
    )
    second = bedrock_batches.submit(
        BEDROCK_TARGET, CHAT, lines, name="batch_twice", s3_prefix=_prefix("batch_twice")
    )

    assert first == second


def test_the_stand_in_lists_its_jobs_by_status(bedrock_batches: BedrockBatches, control_plane: Any) -> None:
    job_id = bedrock_batches.submit(
        BEDROCK_TARGET,
        CHAT,
        chat_lines("stand-in-chat", 1),
        name="batch_listed",
        s3_prefix=_prefix("batch_listed"),
    )
    wait_until_done(bedrock_batches, BEDROCK_TARGET, job_id)

    listed = control_plane.list_model_invocation_jobs(statusEquals="Completed", nameContains="listed")

    assert [j["jobArn"] for j in listed["invocationJobSummaries"]] == [job_id]


def test_the_stand_in_writes_bedrocks_manifest(bedrock_batches: BedrockBatches, s3: Any) -> None:
    job_id = bedrock_batches.submit(
        BEDROCK_TARGET,
        CHAT,
        chat_lines("stand-in-chat", 2),
        name="batch_manifest",
        s3_prefix=_prefix("batch_manifest"),
    )
    wait_until_done(bedrock_batches, BEDROCK_TARGET, job_id)

    key = f"tenants/tnt_a/batches/batch_manifest/output/{job_id.rsplit('/', 1)[-1]}/manifest.json.out"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    assert manifest["totalRecordCount"] == manifest["successRecordCount"] == 2
    assert manifest["inputTokenCount"] > 0 and manifest["outputTokenCount"] > 0


# -- OpenAI's Batch API -------------------------------------------------------------------------


class NoKeys:
    def get(self, tenant_id: str, credential: str, *, refresh: bool = False) -> str:
        raise AssertionError("a keyless target reads no key")


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def openai_server(clock: list[float]) -> Iterator[BackgroundServer]:
    server = openai_stand_in(batches=OpenAIBatchesState(delay_seconds=2, clock=lambda: clock[0])).start()
    yield server
    server.stop()


@pytest.fixture
def openai_target(openai_server: BackgroundServer) -> Target:
    return Target(
        tenant_id="tnt_a",
        alias="gpt",
        provider="openai",
        model_id="stand-in-chat",
        credential="local",
        base_url=openai_server.url + "/v1",
    )


@pytest.fixture
def openai_batches() -> OpenAIBatches:
    return OpenAIBatches.from_env(keys=NoKeys(), allow_loopback_http=True)


def test_an_openai_batch_completes_after_its_delay_with_every_lines_answer(
    openai_batches: OpenAIBatches, openai_target: Target, clock: list[float]
) -> None:
    job_id = openai_batches.submit(
        openai_target, CHAT, chat_lines("ignored", 5), name="batch_oa", s3_prefix=""
    )
    running = openai_batches.status(openai_target, job_id)

    clock[0] += 2
    done = openai_batches.status(openai_target, job_id)
    outcomes = {o.custom_id: o for o in openai_batches.outcomes(openai_target, job_id)}

    assert running.state == "in_progress"
    assert (done.state, done.total, done.completed, done.failed) == ("completed", 5, 5, 0)
    assert set(outcomes) == {f"line-{i}" for i in range(5)}
    assert outcomes["line-0"].body["model"] == "stand-in-chat"
    assert outcomes["line-0"].usage is not None and outcomes["line-0"].usage.prompt_tokens > 0


def test_an_openai_embeddings_batch_answers_vectors_with_usage(
    openai_batches: OpenAIBatches, openai_target: Target, clock: list[float]
) -> None:
    lines = [BatchLine(f"e{i}", {"model": "x", "input": f"text {i}"}) for i in range(3)]
    job_id = openai_batches.submit(openai_target, EMBEDDINGS, lines, name="batch_emb", s3_prefix="")

    clock[0] += 2
    outcomes = {o.custom_id: o for o in openai_batches.outcomes(openai_target, job_id)}

    assert set(outcomes) == {"e0", "e1", "e2"}
    assert outcomes["e1"].body["data"][0]["embedding"]
    assert outcomes["e1"].usage is not None and outcomes["e1"].usage.prompt_tokens > 0


def test_an_openai_line_the_model_refuses_lands_in_the_error_file(
    openai_batches: OpenAIBatches, openai_target: Target, clock: list[float]
) -> None:
    bad = BatchLine("bad", {"model": "x", "messages": []})
    job_id = openai_batches.submit(
        openai_target, CHAT, [*chat_lines("x", 2), bad], name="batch_err", s3_prefix=""
    )

    clock[0] += 2
    job = openai_batches.status(openai_target, job_id)
    outcomes = {o.custom_id: o for o in openai_batches.outcomes(openai_target, job_id)}

    assert (job.state, job.completed, job.failed) == ("completed", 2, 1)
    assert outcomes["bad"].status_code == 400 and outcomes["bad"].usage is None
    assert outcomes["bad"].body["type"] == "invalid_request_error"


def test_a_cancelled_openai_batch_ends_cancelled(
    openai_batches: OpenAIBatches, openai_target: Target
) -> None:
    job_id = openai_batches.submit(openai_target, CHAT, chat_lines("x", 2), name="batch_cancel", s3_prefix="")

    openai_batches.cancel(openai_target, job_id)
    job = openai_batches.status(openai_target, job_id)

    assert job.state == "cancelled"
    assert list(openai_batches.outcomes(openai_target, job_id)) == []


def test_an_invalid_openai_input_fails_the_batch_saying_why(
    openai_batches: OpenAIBatches, openai_target: Target
) -> None:
    twice = [*chat_lines("x", 1), *chat_lines("x", 1)]
    job_id = openai_batches.submit(openai_target, CHAT, twice, name="batch_dup", s3_prefix="")

    job = openai_batches.status(openai_target, job_id)

    assert job.state == "failed" and job.message == "custom_id is repeated"


def test_an_unknown_openai_batch_is_a_provider_error(
    openai_batches: OpenAIBatches, openai_target: Target
) -> None:
    with pytest.raises(ProviderError, match="404"):
        openai_batches.status(openai_target, "batch_missing")
