"""Bedrock batch inference (CreateModelInvocationJob with `modelInvocationType="Converse"`).

Each chat line becomes one record `{"recordId": custom_id, "modelInput": <Converse request>}`,
built by the chat provider's own translation (byom.providers.bedrock.converse_params), and each
output record `{"recordId", "modelOutput": <Converse response>}` or `{"recordId", "error"}` goes
back through the chat provider's response translation. Files live under the batch's S3 prefix:

    <s3_prefix>input.jsonl                        the records, written here
    <s3_prefix>rejected.jsonl                     lines Bedrock would refuse, as error records
    <s3_prefix>output/<job id>/input.jsonl.out    Bedrock's answers, one record per line
    <s3_prefix>output/<job id>/manifest.json.out  Bedrock's counts

A line the translation refuses (a remote image URL, a content part Converse has no block for) is
written to `rejected.jsonl` in Bedrock's own error-record shape rather than failing the batch;
`status` and `outcomes` count and report it with the rest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from byom.errors import ByomError, InvalidRequest, ProviderError
from byom.openai_types import ChatRequest
from byom.providers import Target
from byom.providers.batch import (
    CHAT_ENDPOINT,
    BatchLine,
    JobState,
    LineOutcome,
    ProviderJob,
    error_object,
)
from byom.providers.bedrock import chat_result, converse_params, provider_error

T = TypeVar("T")

INPUT_FILE = "input.jsonl"
REJECTED_FILE = "rejected.jsonl"
OUTPUT_FOLDER = "output/"
MANIFEST_FILE = "manifest.json.out"

STATES: dict[str, JobState] = {
    "Submitted": "in_progress",
    "Validating": "in_progress",
    "Scheduled": "in_progress",
    "InProgress": "in_progress",
    "Completed": "completed",
    "PartiallyCompleted": "completed",
    "Failed": "failed",
    "Stopping": "cancelled",
    "Stopped": "cancelled",
    "Expired": "expired",
}

# CreateModelInvocationJob's jobName: up to 63 characters, starting with a letter or digit.
JOB_NAME_MAX = 63
_JOB_NAME_BAD = re.compile(r"[^a-zA-Z0-9+.-]")
DEFAULT_JOB_NAME = "byom-batch"
MAX_QUOTED_CHARS = 500

_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=30, retries={"total_max_attempts": 3, "mode": "standard"}
)


def _client(service: str) -> Any:
    """The control plane (AWS_ENDPOINT_URL_BEDROCK points it at the local stand-in) or S3. Made per
    BedrockBatches, not cached per process: a local stack started again has other endpoints."""
    return boto3.session.Session().client(service, config=_CLIENT_CONFIG)  # type: ignore[call-overload]


# The gateway's lines -> Bedrock's records


def job_name(name: str) -> str:
    """`name` as a valid jobName: other characters become '-', it starts with a letter or digit,
    and it keeps its end (a batch id is most distinctive there) when it is too long."""
    cleaned = _JOB_NAME_BAD.sub("-", name).lstrip("+.-")
    if len(cleaned) > JOB_NAME_MAX:
        cleaned = cleaned[-JOB_NAME_MAX:].lstrip("+.-")
    return cleaned or DEFAULT_JOB_NAME


def request_token(s3_prefix: str) -> str:
    """One batch, one job: a retried submit of the same batch gets the job the first one started."""
    return hashlib.sha256(s3_prefix.encode()).hexdigest()[:64]


def _json_value(value: Any) -> Any:
    """Converse's JSON form of a blob (image bytes) is base64, as on the wire."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON")


def record(line: BatchLine, target: Target) -> dict[str, Any]:
    """The batch inference record of one chat line; raises InvalidRequest when Bedrock cannot take it."""
    try:
        request = ChatRequest.model_validate(line.body)
    except ValidationError as error:
        problems = error.errors()
        where = ".".join(str(p) for p in problems[0]["loc"]) if problems else None
        reason = problems[0]["msg"] if problems else "invalid"
        raise InvalidRequest(f"The line's body is not a chat request: {reason}", param=where) from None
    model_input = converse_params(request, target)
    model_input.pop("modelId", None)  # the job names the model once, for every record
    return {"recordId": line.custom_id, "modelInput": model_input}


def rejected_record(custom_id: str, error: ByomError) -> dict[str, Any]:
    """A refused line in the shape of Bedrock's own error records."""
    return {"recordId": custom_id, "error": {"errorCode": 400, "errorMessage": error.message}}


def jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(
        json.dumps(r, default=_json_value, separators=(",", ":")).encode() + b"\n" for r in records
    )


# Bedrock's records -> the gateway's outcomes


def _error_message(error: Any) -> tuple[int, str]:
    if not isinstance(error, dict):
        return 500, "Bedrock reported an error for this record"
    try:
        code = int(error.get("errorCode") or 500)
    except (TypeError, ValueError):
        code = 500
    message = str(error.get("errorMessage") or "Bedrock reported an error for this record")
    return code, message[:MAX_QUOTED_CHARS]


def outcome(output_record: dict[str, Any], target: Target, *, created: int) -> LineOutcome:
    """One output record as the line's outcome: its chat.completion with Converse's usage, or its error."""
    custom_id = str(output_record.get("recordId") or "")
    if "modelOutput" in output_record and "error" not in output_record:
        try:
            result = chat_result(output_record["modelOutput"])
        except ProviderError as error:
            return LineOutcome(custom_id, 502, error_object(error.message), None)
        body = result.completion(
            completion_id=f"chatcmpl-{_short_id(custom_id, target)}",
            created=created,
            model=target.alias,
        )
        return LineOutcome(custom_id, 200, body, result.usage)
    status, message = _error_message(output_record.get("error"))
    kind = "invalid_request_error" if 400 <= status < 500 and status != 429 else "server_error"
    return LineOutcome(
        custom_id, status if 400 <= status < 600 else 500, error_object(message, type_=kind), None
    )


def _short_id(custom_id: str, target: Target) -> str:
    return hashlib.sha256(f"{target.tenant_id}/{target.alias}/{custom_id}".encode()).hexdigest()[:24]


def parse_records(data: bytes) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file; a line that is not one is skipped (Bedrock writes whole lines)."""
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def job_folder(output_uri: str, job_arn: str) -> str:
    """Where Bedrock writes a job's files: a folder named for the job id (the ARN's last part)."""
    return output_uri.rstrip("/") + "/" + job_arn.rsplit("/", 1)[-1] + "/"


class BedrockBatches:
    def __init__(self, *, role_arn: str, bedrock: Any = None, s3: Any = None) -> None:
        self._role_arn = role_arn
        self._bedrock_client = bedrock
        self._s3_client = s3

    def _bedrock(self) -> Any:
        if self._bedrock_client is None:
            self._bedrock_client = _client("bedrock")
        return self._bedrock_client

    def _s3(self) -> Any:
        if self._s3_client is None:
            self._s3_client = _client("s3")
        return self._s3_client

    @staticmethod
    def _call(call: Callable[[], T]) -> T:
        try:
            return call()
        except (ClientError, BotoCoreError) as error:
            raise provider_error(error) from None

    def _put(self, uri: str, body: bytes) -> None:
        bucket, key = _split(uri)
        # The data bucket's default encryption is the stack's KMS key; saying so makes it explicit.
        self._call(
            lambda: self._s3().put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/jsonl",
                ServerSideEncryption="aws:kms",
            )
        )

    def _get(self, uri: str) -> bytes | None:
        """The object's bytes; None when there is none (a file Bedrock did not write, no rejects)."""
        bucket, key = _split(uri)
        try:
            body: bytes = self._s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as error:
            if (error.response.get("Error") or {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise provider_error(error) from None
        except BotoCoreError as error:
            raise provider_error(error) from None
        return body

    def submit(
        self, target: Target, endpoint: str, lines: Sequence[BatchLine], *, name: str, s3_prefix: str
    ) -> str:
        if endpoint != CHAT_ENDPOINT:
            raise InvalidRequest(
                f"Bedrock batch inference runs {CHAT_ENDPOINT} lines only, not {endpoint}", param="endpoint"
            )
        records: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for line in lines:
            try:
                records.append(record(line, target))
            except InvalidRequest as error:
                rejected.append(rejected_record(line.custom_id, error))
        if not records:
            raise InvalidRequest("No line of this batch can run on Bedrock", param="input_file_id")
        prefix = s3_prefix if s3_prefix.endswith("/") else s3_prefix + "/"
        if rejected:
            self._put(prefix + REJECTED_FILE, jsonl(rejected))
        self._put(prefix + INPUT_FILE, jsonl(records))
        answer = self._call(
            lambda: self._bedrock().create_model_invocation_job(
                jobName=job_name(name),
                roleArn=self._role_arn,
                clientRequestToken=request_token(prefix),
                modelId=target.model_id,
                modelInvocationType="Converse",
                inputDataConfig={
                    "s3InputDataConfig": {"s3Uri": prefix + INPUT_FILE, "s3InputFormat": "JSONL"}
                },
                outputDataConfig={"s3OutputDataConfig": {"s3Uri": prefix + OUTPUT_FOLDER}},
            )
        )
        return str(answer["jobArn"])

    def _job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._call(
            lambda: self._bedrock().get_model_invocation_job(jobIdentifier=job_id)
        )
        return job

    @staticmethod
    def _prefix(job: dict[str, Any]) -> str:
        input_uri = str(
            ((job.get("inputDataConfig") or {}).get("s3InputDataConfig") or {}).get("s3Uri") or ""
        )
        return input_uri.rsplit("/", 1)[0] + "/"

    @staticmethod
    def _output_uri(job: dict[str, Any]) -> str:
        return str(((job.get("outputDataConfig") or {}).get("s3OutputDataConfig") or {}).get("s3Uri") or "")

    def _rejected(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        data = self._get(self._prefix(job) + REJECTED_FILE)
        return list(parse_records(data)) if data else []

    def status(self, target: Target, job_id: str) -> ProviderJob:
        job = self._job(job_id)
        state = STATES.get(str(job.get("status")), "in_progress")
        counts = {k: job.get(k) for k in ("totalRecordCount", "successRecordCount", "errorRecordCount")}
        if state != "in_progress" and counts["totalRecordCount"] is None:
            # Older answers carry no counts; the manifest has them once the job has ended.
            manifest = self._get(job_folder(self._output_uri(job), job_id) + MANIFEST_FILE)
            found = next(parse_records(manifest), {}) if manifest else {}
            counts = {k: found.get(k) for k in counts}
        rejected = len(self._rejected(job))
        total, succeeded, errored = (max(int(counts[k] or 0), 0) for k in counts)
        message = job.get("message") if state == "failed" else None
        return ProviderJob(
            state=state,
            total=total + rejected,
            completed=succeeded,
            failed=errored + rejected,
            message=str(message)[:MAX_QUOTED_CHARS] if message else None,
        )

    def outcomes(self, target: Target, job_id: str) -> Iterator[LineOutcome]:
        job = self._job(job_id)
        created = int(job["endTime"].timestamp()) if hasattr(job.get("endTime"), "timestamp") else 0
        for rejected in self._rejected(job):
            yield outcome(rejected, target, created=created)
        data = self._get(job_folder(self._output_uri(job), job_id) + INPUT_FILE + ".out")
        for output_record in parse_records(data or b""):
            yield outcome(output_record, target, created=created)

    def cancel(self, target: Target, job_id: str) -> None:
        self._call(lambda: self._bedrock().stop_model_invocation_job(jobIdentifier=job_id))
