"""Provider batch jobs: the record conversions of Bedrock batch inference and OpenAI's Batch API,
and the state and count mapping of their jobs, without a network."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from byom.errors import GatewayMisconfigured, InvalidRequest, ProviderError
from byom.providers import Target, Usage
from byom.providers.batch import BatchLine, provider_batches
from byom.providers.bedrock_batch import (
    STATES,
    BedrockBatches,
    job_folder,
    job_name,
    jsonl,
    outcome,
    record,
    request_token,
)
from byom.providers.openai_batch import STATES as OPENAI_STATES
from byom.providers.openai_batch import input_line
from byom.providers.openai_batch import outcome as openai_outcome

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
TARGET = Target(tenant_id="tnt_a", alias="fast", provider="bedrock", model_id=MODEL_ID)
PREFIX = "s3://data/tenants/tnt_a/batches/batch_1/"
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123def456"
ROLE = "arn:aws:iam::123456789012:role/batch"
PNG = b"\x89PNG\r\n\x1a\n-not-really-a-picture"


def chat_line(custom_id: str, text: str = "Hi", **extra: Any) -> BatchLine:
    return BatchLine(custom_id, {"model": MODEL_ID, "messages": [{"role": "user", "content": text}], **extra})


def _bedrock_model() -> Any:
    return botocore.session.get_session().get_service_model("bedrock")


# -- Bedrock: lines -> records ------------------------------------------------------------------


def test_a_chat_line_becomes_a_record_named_by_its_custom_id_with_the_converse_request() -> None:
    line = BatchLine(
        "req-1",
        {
            "model": MODEL_ID,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "max_tokens": 50,
            "temperature": 0.2,
        },
    )

    converted = record(line, TARGET)

    assert converted == {
        "recordId": "req-1",
        "modelInput": {
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.2},
        },
    }


def test_a_record_leaves_the_model_id_to_the_job() -> None:
    assert "modelId" not in record(chat_line("a"), TARGET)["modelInput"]


def test_a_record_of_a_caching_alias_carries_the_chat_providers_cache_points() -> None:
    nova = "amazon.nova-micro-v1:0"  # the catalog says it takes cache points after the system prompt
    caching = Target(tenant_id="tnt_a", alias="fast", provider="bedrock", model_id=nova, prompt_caching=True)
    line = BatchLine(
        "a",
        {
            "model": MODEL_ID,
            "messages": [{"role": "system", "content": "Long rules"}, {"role": "user", "content": "Hi"}],
        },
    )

    model_input = record(line, caching)["modelInput"]

    assert {"cachePoint": {"type": "default"}} in model_input["system"]


def test_image_bytes_are_written_to_the_jsonl_as_base64() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    line = BatchLine(
        "img",
        {
            "model": MODEL_ID,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
        },
    )

    written = json.loads(jsonl([record(line, TARGET)]))

    block = written["modelInput"]["messages"][0]["content"][0]
    assert base64.b64decode(block["image"]["source"]["bytes"]) == PNG


def test_a_line_converse_cannot_take_is_refused_naming_the_reason() -> None:
    remote = BatchLine(
        "img",
        {
            "model": MODEL_ID,
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
            ],
        },
    )

    with pytest.raises(InvalidRequest, match="base64 data: URLs"):
        record(remote, TARGET)


def test_a_line_that_is_not_a_chat_request_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="not a chat request"):
        record(BatchLine("x", {"model": MODEL_ID}), TARGET)


@pytest.mark.parametrize(
    "name",
    ["batch_0123456789abcdef", "-lead", "tenants/tnt_a/batches/x", "ü" * 10, "b" * 100 + "_end", ""],
)
def test_job_names_fit_the_apis_pattern_and_length(name: str) -> None:
    shape = _bedrock_model().operation_model("CreateModelInvocationJob").input_shape.members["jobName"]

    made = job_name(name)

    assert 1 <= len(made) <= shape.metadata["max"]
    assert re.fullmatch(shape.metadata["pattern"], made)


def test_a_long_job_name_keeps_its_end() -> None:
    assert job_name("x" * 80 + "batch-42").endswith("batch-42")


def test_the_request_token_is_one_per_batch_and_fits_the_apis_pattern() -> None:
    shape = (
        _bedrock_model().operation_model("CreateModelInvocationJob").input_shape.members["clientRequestToken"]
    )

    token = request_token(PREFIX)

    assert token == request_token(PREFIX) != request_token(PREFIX.replace("batch_1", "batch_2"))
    assert re.fullmatch(shape.metadata["pattern"], token)


# -- Bedrock: output records -> outcomes --------------------------------------------------------


def test_an_output_record_becomes_a_chat_completion_with_converse_usage() -> None:
    output = {
        "recordId": "req-1",
        "modelInput": {},
        "modelOutput": {
            "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
            "stopReason": "max_tokens",
            "usage": {"inputTokens": 7, "outputTokens": 3, "cacheReadInputTokens": 2},
        },
    }

    line = outcome(output, TARGET, created=1700000000)

    assert line.custom_id == "req-1" and line.status_code == 200
    assert line.body["object"] == "chat.completion" and line.body["model"] == "fast"
    assert line.body["choices"][0]["message"]["content"] == "Hello"
    assert line.body["choices"][0]["finish_reason"] == "length"
    assert line.usage == Usage(prompt_tokens=9, completion_tokens=3, cached_tokens=2)


def test_an_error_record_becomes_a_failed_outcome_with_openais_error_object() -> None:
    output = {
        "recordId": "req-2",
        "modelInput": {},
        "error": {"errorCode": 400, "errorMessage": "bad request"},
    }

    line = outcome(output, TARGET, created=0)

    assert (line.custom_id, line.status_code, line.usage) == ("req-2", 400, None)
    assert line.body == {
        "message": "bad request",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_an_output_record_without_a_message_is_a_failed_outcome() -> None:
    line = outcome({"recordId": "r", "modelOutput": {"output": {}}}, TARGET, created=0)

    assert line.status_code == 502 and line.usage is None


def test_every_bedrock_job_status_has_a_state() -> None:
    assert set(STATES) == set(_bedrock_model().shape_for("ModelInvocationJobStatus").enum)


def test_the_job_folder_is_named_for_the_job_id() -> None:
    assert job_folder(PREFIX + "output/", JOB_ARN) == PREFIX + "output/abc123def456/"


# -- Bedrock: the job's calls, through a stubbed control plane -----------------------------------


class FakeS3:
    """The two S3 calls the batches make, over a dict."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        self.objects[(Bucket, Key)] = Body
        return {}

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        if (Bucket, Key) not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "none"}}, "GetObject")
        return {"Body": _Body(self.objects[(Bucket, Key)])}


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data


def _stubbed() -> tuple[BedrockBatches, Stubber, FakeS3]:
    client = boto3.client(
        "bedrock", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    s3 = FakeS3()
    return BedrockBatches(role_arn=ROLE, bedrock=client, s3=s3), Stubber(client), s3


def _job(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "jobArn": JOB_ARN,
        "jobName": "batch_1",
        "modelId": MODEL_ID,
        "roleArn": ROLE,
        "status": status,
        "submitTime": datetime(2026, 1, 1, tzinfo=UTC),
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": PREFIX + "input.jsonl"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": PREFIX + "output/"}},
        **extra,
    }


def test_submit_writes_the_records_and_starts_a_converse_job_under_the_batch_prefix() -> None:
    batches, stubber, s3 = _stubbed()
    stubber.add_response(
        "create_model_invocation_job",
        {"jobArn": JOB_ARN},
        {
            "jobName": "batch-1",
            "roleArn": ROLE,
            "clientRequestToken": request_token(PREFIX),
            "modelId": MODEL_ID,
            "modelInvocationType": "Converse",
            "inputDataConfig": {
                "s3InputDataConfig": {"s3Uri": PREFIX + "input.jsonl", "s3InputFormat": "JSONL"}
            },
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": PREFIX + "output/"}},
        },
    )

    with stubber:
        job_id = batches.submit(
            TARGET, "/v1/chat/completions", [chat_line("a"), chat_line("b")], name="batch_1", s3_prefix=PREFIX
        )

    assert job_id == JOB_ARN
    written = [
        json.loads(x) for x in s3.objects[("data", "tenants/tnt_a/batches/batch_1/input.jsonl")].splitlines()
    ]
    assert [r["recordId"] for r in written] == ["a", "b"]


def test_submit_sets_aside_a_line_bedrock_would_refuse_and_status_counts_it_failed() -> None:
    batches, stubber, _ = _stubbed()
    stubber.add_response("create_model_invocation_job", {"jobArn": JOB_ARN})
    stubber.add_response(
        "get_model_invocation_job",
        _job("Completed", totalRecordCount=1, successRecordCount=1, errorRecordCount=0),
    )
    remote = BatchLine(
        "img",
        {
            "model": MODEL_ID,
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
            ],
        },
    )

    with stubber:
        batches.submit(
            TARGET, "/v1/chat/completions", [chat_line("a"), remote], name="batch_1", s3_prefix=PREFIX
        )
        job = batches.status(TARGET, JOB_ARN)

    assert (job.state, job.total, job.completed, job.failed) == ("completed", 2, 1, 1)


def test_submit_refuses_an_embeddings_batch() -> None:
    batches, _, _ = _stubbed()

    with pytest.raises(InvalidRequest, match="chat/completions"):
        batches.submit(TARGET, "/v1/embeddings", [chat_line("a")], name="b", s3_prefix=PREFIX)


def test_status_reads_the_counts_from_the_manifest_when_the_job_has_none() -> None:
    batches, stubber, s3 = _stubbed()
    s3.objects[("data", "tenants/tnt_a/batches/batch_1/output/abc123def456/manifest.json.out")] = json.dumps(
        {"totalRecordCount": 5, "processedRecordCount": 5, "successRecordCount": 4, "errorRecordCount": 1}
    ).encode()
    stubber.add_response("get_model_invocation_job", _job("PartiallyCompleted"))

    with stubber:
        job = batches.status(TARGET, JOB_ARN)

    assert (job.state, job.total, job.completed, job.failed) == ("completed", 5, 4, 1)


def test_a_failed_jobs_status_says_why() -> None:
    batches, stubber, _ = _stubbed()
    stubber.add_response("get_model_invocation_job", _job("Failed", message="role cannot read the input"))

    with stubber:
        job = batches.status(TARGET, JOB_ARN)

    assert job.state == "failed" and job.message == "role cannot read the input"


def test_outcomes_read_the_jobs_output_records() -> None:
    batches, stubber, s3 = _stubbed()
    s3.objects[("data", "tenants/tnt_a/batches/batch_1/output/abc123def456/input.jsonl.out")] = jsonl(
        [
            {
                "recordId": "a",
                "modelOutput": {
                    "output": {"message": {"role": "assistant", "content": [{"text": "A"}]}},
                    "stopReason": "end_turn",
                    "usage": {"inputTokens": 1, "outputTokens": 1},
                },
            },
            {"recordId": "b", "error": {"errorCode": 400, "errorMessage": "blank"}},
        ]
    )
    stubber.add_response("get_model_invocation_job", _job("Completed"))

    with stubber:
        found = {o.custom_id: o.status_code for o in batches.outcomes(TARGET, JOB_ARN)}

    assert found == {"a": 200, "b": 400}


def test_a_bedrock_refusal_is_a_provider_error() -> None:
    batches, stubber, _ = _stubbed()
    stubber.add_client_error("stop_model_invocation_job", "ValidationException", "already completed", 400)

    with stubber, pytest.raises(ProviderError) as raised:
        batches.cancel(TARGET, JOB_ARN)

    assert "already completed" in raised.value.message


# -- OpenAI ------------------------------------------------------------------------------------


def test_an_openai_input_line_names_the_endpoint_and_the_target_model() -> None:
    line = BatchLine(
        "a", {"model": "gpt", "messages": [{"role": "user", "content": "Hi"}], "user": "u-1", "stream": False}
    )

    made = input_line(line, "/v1/chat/completions", "gpt-4o-mini")

    assert made == {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
    }


def test_an_openai_output_line_is_its_body_with_the_usage() -> None:
    body = {
        "object": "chat.completion",
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}},
    }

    line = openai_outcome({"custom_id": "a", "response": {"status_code": 200, "body": body}, "error": None})

    assert (line.status_code, line.body, line.usage) == (200, body, Usage(5, 2, cached_tokens=1))


def test_an_openai_error_line_keeps_openais_error_object() -> None:
    error = {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": None}

    line = openai_outcome(
        {"custom_id": "b", "response": {"status_code": 400, "body": {"error": error}}, "error": None}
    )

    assert (line.status_code, line.body, line.usage) == (400, error, None)


def test_an_openai_line_that_never_ran_is_a_failed_outcome_with_its_reason() -> None:
    line = openai_outcome(
        {"custom_id": "c", "response": None, "error": {"code": "batch_expired", "message": "expired"}}
    )

    assert (
        line.status_code == 500 and line.body["code"] == "batch_expired" and line.body["message"] == "expired"
    )


def test_a_cancelling_openai_batch_is_still_in_progress() -> None:
    assert OPENAI_STATES["cancelling"] == "in_progress" and OPENAI_STATES["cancelled"] == "cancelled"


# -- the registry --------------------------------------------------------------------------------


def test_providers_without_a_batch_service_get_none() -> None:
    assert provider_batches("openai_compatible", role_arn=ROLE) is None


def test_bedrock_batches_need_the_service_role() -> None:
    with pytest.raises(GatewayMisconfigured, match="BYOM_BATCH_ROLE_ARN"):
        provider_batches("bedrock", role_arn=None)


def test_openai_batches_take_the_key_reader_given() -> None:
    class Keys:
        def get(self, tenant_id: str, credential: str, *, refresh: bool = False) -> str:
            return "sk-test"

    found = provider_batches("openai", role_arn=None, keys=Keys(), allow_loopback_http=False)

    assert found is not None and type(found).__name__ == "OpenAIBatches"
