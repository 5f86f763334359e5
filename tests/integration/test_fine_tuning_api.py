"""The fine-tuning function in-process with real API Gateway events (multipart bodies base64-encoded,
as binary media types reach Lambda) against moto's DynamoDB, S3 and Step Functions."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from byom.dal.fine_tuning import BY_TENANT_INDEX

from tests.conftest import LambdaContext, api_event
from tests.integration.conftest import load_handler, tenant_context

BOUNDARY = "byomtestboundary"


def multipart(fields: dict[str, tuple[str | None, bytes]]) -> bytes:
    body = b""
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def _by_tenant_table(name: str, key: str, sort_key: str | None = None) -> None:
    schema = [{"AttributeName": key, "KeyType": "HASH"}]
    attributes = {key, "tenant_id", "created_key"}
    if sort_key:
        schema.append({"AttributeName": sort_key, "KeyType": "RANGE"})
        attributes.add(sort_key)
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=schema,
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": BY_TENANT_INDEX,
                "KeySchema": [
                    {"AttributeName": "tenant_id", "KeyType": "HASH"},
                    {"AttributeName": "created_key", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


@pytest.fixture
def fine_tuning(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from byom import settings
    from byom.api import fine_tuning as api

    _by_tenant_table("byom-files", "file_id")
    _by_tenant_table("byom-jobs", "job_id", "sk")
    boto3.client("s3").create_bucket(Bucket="byom-data")
    machine = boto3.client("stepfunctions").create_state_machine(
        name="byom-test-fine-tuning",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    env = {
        "FILES_TABLE": "byom-files",
        "JOBS_TABLE": "byom-jobs",
        "DATA_BUCKET": "byom-data",
        "STATE_MACHINE_ARN": machine,
        "MAX_FILE_BYTES": "1000",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for cached in (settings.fine_tuning_settings, api.store, api._persistence):
        cached.cache_clear()
    yield load_handler("fine_tuning")
    for cached in (settings.fine_tuning_settings, api.store, api._persistence):
        cached.cache_clear()


def upload_event(body: bytes, role: str = "developer", tenant: str = "tnt_a") -> dict[str, Any]:
    event = api_event("POST", "/v1/files", authorizer=tenant_context(tenant, role))
    event["headers"]["content-type"] = f"multipart/form-data; boundary={BOUNDARY}"
    event["multiValueHeaders"]["content-type"] = [event["headers"]["content-type"]]
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    return event


def call(handler: Any, event: dict[str, Any]) -> tuple[int, Any]:
    response = handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_an_upload_is_stored_encrypted_under_the_tenants_prefix(fine_tuning: Any) -> None:
    status, body = call(
        fine_tuning, upload_event(multipart({"purpose": (None, b"fine-tune"), "file": ("t.jsonl", b"{}\n")}))
    )

    assert status == 200, body
    assert body["object"] == "file" and body["bytes"] == 3 and body["filename"] == "t.jsonl"
    stored = boto3.client("s3").get_object(Bucket="byom-data", Key=f"tenants/tnt_a/files/{body['id']}.jsonl")
    assert stored["Body"].read() == b"{}\n"
    assert stored["ServerSideEncryption"] == "aws:kms"


def test_a_file_over_the_limit_is_a_413(fine_tuning: Any) -> None:
    body = multipart({"purpose": (None, b"fine-tune"), "file": ("t.jsonl", b"x" * 1001)})
    status, answer = call(fine_tuning, upload_event(body))
    assert status == 413 and answer["error"]["code"] == "request_too_large"


def test_another_tenants_file_is_not_found(fine_tuning: Any) -> None:
    _, uploaded = call(
        fine_tuning, upload_event(multipart({"purpose": (None, b"fine-tune"), "file": ("t.jsonl", b"{}\n")}))
    )
    event = api_event("GET", f"/v1/files/{uploaded['id']}", authorizer=tenant_context("tnt_b", "admin"))
    status, answer = call(fine_tuning, event)
    assert status == 404 and answer["error"]["type"] == "not_found_error"


def test_a_job_on_an_unknown_file_is_a_400_and_starts_nothing(fine_tuning: Any, admin_api: Any) -> None:
    tenant = admin_api("POST", "/admin/tenants", {"name": "acme"})[1]["id"]
    admin_api(
        "POST",
        f"/admin/tenants/{tenant}/models",
        {"alias": "fast", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
    )
    event = api_event(
        "POST",
        "/v1/fine_tuning/jobs",
        body={"model": "fast", "training_file": "file-x"},
        authorizer=tenant_context(tenant, "admin"),
    )
    status, answer = call(fine_tuning, event)
    assert status == 400 and answer["error"]["param"] == "training_file"
    assert (
        boto3.client("stepfunctions").list_executions(stateMachineArn=fine_tuning_machine())["executions"]
        == []
    )


def fine_tuning_machine() -> str:
    return boto3.client("stepfunctions").list_state_machines()["stateMachines"][0]["stateMachineArn"]


@pytest.fixture
def idempotent(fine_tuning: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fine-tuning function with its idempotency table (partition key `id`, as the stack's)."""
    from byom import settings
    from byom.api import fine_tuning as api

    boto3.client("dynamodb").create_table(
        TableName="byom-idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "byom-idempotency")
    for cached in (settings.fine_tuning_settings, api.store, api._persistence):
        cached.cache_clear()
    return fine_tuning


def test_a_creation_retried_with_its_idempotency_key_gets_the_first_job(
    idempotent: Any, admin_api: Any
) -> None:
    tenant = admin_api("POST", "/admin/tenants", {"name": "acme"})[1]["id"]
    admin_api(
        "POST",
        f"/admin/tenants/{tenant}/models",
        {"alias": "fast", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
    )
    _, uploaded = call(
        idempotent,
        upload_event(
            multipart({"purpose": (None, b"fine-tune"), "file": ("t.jsonl", b"{}\n")}), tenant=tenant
        ),
    )

    def create(key: str) -> tuple[int, Any]:
        event = api_event(
            "POST",
            "/v1/fine_tuning/jobs",
            body={"model": "fast", "training_file": uploaded["id"]},
            authorizer=tenant_context(tenant, "developer"),
        )
        event["headers"]["Idempotency-Key"] = key
        event["multiValueHeaders"]["Idempotency-Key"] = [key]
        return call(idempotent, event)

    (first, job), (again, retried), (other, another) = create("k-1"), create("k-1"), create("k-2")

    assert (first, again, other) == (200, 200, 200)
    assert retried["id"] == job["id"]
    assert another["id"] != job["id"]
    # Each record expires with its invocation, were it interrupted: the Lambda context reached it.
    records = boto3.client("dynamodb").scan(TableName="byom-idempotency")["Items"]
    assert len(records) == 2
    assert all("in_progress_expiration" in r for r in records)


def uploaded(handler: Any, data: bytes = b"{}\n", tenant: str = "tnt_a") -> str:
    status, body = call(
        handler,
        upload_event(multipart({"purpose": (None, b"fine-tune"), "file": ("t.jsonl", data)}), tenant=tenant),
    )
    assert status == 200, body
    file_id: str = body["id"]
    return file_id


def file_event(method: str, path: str, role: str = "developer", tenant: str = "tnt_a") -> dict[str, Any]:
    return api_event(method, path, authorizer=tenant_context(tenant, role))


def test_a_files_content_is_answered_as_uploaded_as_jsonl_text(fine_tuning: Any) -> None:
    data = '{"messages": [{"role": "user", "content": "héllo"}]}\n'.encode()
    file_id = uploaded(fine_tuning, data)

    response = fine_tuning(file_event("GET", f"/v1/files/{file_id}/content"), LambdaContext())

    # Text, not base64: API Gateway would hand a base64 body to the SDK as it is.
    assert response["isBase64Encoded"] is False
    assert response["multiValueHeaders"]["content-type"] == ["application/jsonl"]
    assert response["body"].encode() == data


def test_a_file_that_is_not_utf8_is_refused_at_upload(fine_tuning: Any) -> None:
    body = multipart({"purpose": (None, b"fine-tune"), "file": ("t.jsonl", b"\xff\xfe{}\n")})

    status, answer = call(fine_tuning, upload_event(body))

    assert status == 400 and answer["error"]["param"] == "file"


@pytest.mark.parametrize("method", ["GET content", "DELETE"])
def test_another_tenants_file_is_not_found_and_left_alone(fine_tuning: Any, method: str) -> None:
    file_id = uploaded(fine_tuning)
    verb, _, suffix = method.partition(" ")
    path = f"/v1/files/{file_id}" + (f"/{suffix}" if suffix else "")

    status, answer = call(fine_tuning, file_event(verb, path, role="admin", tenant="tnt_b"))

    assert status == 404 and answer["error"]["type"] == "not_found_error"
    assert call(fine_tuning, file_event("GET", f"/v1/files/{file_id}/content"))[0] == 200


@pytest.mark.parametrize(
    ("verb", "path"), [("GET", "/v1/files/file-x/content"), ("DELETE", "/v1/files/file-x")]
)
def test_an_unknown_file_is_not_found(fine_tuning: Any, verb: str, path: str) -> None:
    status, answer = call(fine_tuning, file_event(verb, path))

    assert status == 404 and answer["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("verb", ["GET", "DELETE"])
def test_a_viewer_may_not_read_or_delete_a_file(fine_tuning: Any, verb: str) -> None:
    file_id = uploaded(fine_tuning)
    path = f"/v1/files/{file_id}" + ("/content" if verb == "GET" else "")

    status, answer = call(fine_tuning, file_event(verb, path, role="viewer"))

    assert status == 403 and answer["error"]["type"] == "permission_error"


def test_a_deleted_file_leaves_no_version_and_no_record(fine_tuning: Any) -> None:
    s3 = boto3.client("s3")
    s3.put_bucket_versioning(Bucket="byom-data", VersioningConfiguration={"Status": "Enabled"})
    file_id = uploaded(fine_tuning)
    key = f"tenants/tnt_a/files/{file_id}.jsonl"
    s3.put_object(Bucket="byom-data", Key=key, Body=b"{}\n{}\n")  # a second version

    status, answer = call(fine_tuning, file_event("DELETE", f"/v1/files/{file_id}"))

    assert (status, answer) == (200, {"id": file_id, "object": "file", "deleted": True})
    left = s3.list_object_versions(Bucket="byom-data", Prefix=key)
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    assert call(fine_tuning, file_event("GET", f"/v1/files/{file_id}"))[0] == 404
    assert (
        boto3.client("dynamodb").get_item(TableName="byom-files", Key={"file_id": {"S": file_id}}).get("Item")
        is None
    )
