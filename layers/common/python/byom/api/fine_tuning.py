"""Files and fine-tuning job routes (SPEC §4.3) served by the fine-tuning function."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from fastapi import APIRouter, Depends, FastAPI, Header, Query
from fastapi.responses import JSONResponse, Response

from byom.api import multipart
from byom.api.admin_audit import RecordAdminActions
from byom.api.fine_tuning_tasks import shared_collaborators
from byom.api.lambda_adapter import lambda_context
from byom.api.web import (
    JsonBodyRoute,
    RequestContext,
    build_app,
    context,
    ignore_trailing_slashes,
    list_page,
    ok,
    page_limit,
    raw_body,
)
from byom.dal.audit import AuditTable
from byom.dal.aws import client, session, table
from byom.dal.batches import BatchData
from byom.dal.fine_tuning import FileRepository
from byom.dal.policies import PolicyRepository
from byom.errors import InvalidRequest, PayloadTooLarge
from byom.fine_tuning import Approve, CreateJob
from byom.logic import fine_tuning_jobs as logic
from byom.logic import uploads
from byom.logic.access import Principal, require_tenant_key
from byom.settings import fine_tuning_settings

IDEMPOTENCY_HEADER = "idempotency-key"
# Room for the multipart envelope around the file.
ENVELOPE_BYTES = 64 * 1024
MAX_JOB_BODY_BYTES = 64 * 1024


@lru_cache(maxsize=1)
def store() -> logic.FineTuningStore:
    settings = fine_tuning_settings()
    return logic.FineTuningStore(
        **shared_collaborators(settings),
        max_file_bytes=settings.max_file_bytes,
        default_threshold=settings.default_eval_threshold,
        timings={
            "training_poll_seconds": settings.training_poll_seconds,
            "deployment_poll_seconds": settings.deployment_poll_seconds,
            "approval_timeout_seconds": settings.approval_timeout_seconds,
            "openai_poll_seconds": settings.openai_poll_seconds,
        },
    )


# The routes of this API that are admin actions in the audit trail (SPEC §7: approvals).
AUDITED_ACTIONS = ("/approve", "/cancel")


@lru_cache(maxsize=1)
def _audit() -> tuple[AuditTable | None, PolicyRepository | None]:
    settings = fine_tuning_settings()
    if not settings.audit_table:
        return None, None
    policies = PolicyRepository(table(settings.policies_table)) if settings.policies_table else None
    return AuditTable(table(settings.audit_table)), policies


Context = Annotated[RequestContext, Depends(context)]
RawBody = Annotated[bytes, Depends(raw_body)]
Invocation = Annotated[Any, Depends(lambda_context)]
After = Annotated[str | None, Query()]
Limit = Annotated[str | None, Query()]


files = APIRouter()


def _upload_body(data: bytes, limit: int) -> bytes:
    if len(data) > limit + ENVELOPE_BYTES:
        raise PayloadTooLarge(f"The upload is {len(data)} bytes; files may be at most {limit} bytes")
    return data


# A multipart form, parsed by byom.api.multipart (the framework's form parser needs python-multipart).
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "contentMediaType": "application/octet-stream"},
                        "purpose": {"type": "string"},
                    },
                }
            }
        },
    }
}


@files.post("/v1/files", openapi_extra=UPLOAD_BODY)
def upload_file(
    ctx: Context, body: RawBody, content_type: Annotated[str | None, Header()] = None
) -> JSONResponse:
    caller = ctx.principal
    require_tenant_key(caller, logic.WRITERS)
    limit = store().max_file_bytes
    parts = multipart.parse(content_type, _upload_body(body, limit))
    if "file" not in parts:
        raise InvalidRequest("The form has no 'file' field", param="file")
    if "purpose" not in parts:
        raise InvalidRequest("The form has no 'purpose' field", param="purpose")
    upload = parts["file"]
    if len(upload.data) > limit:
        raise PayloadTooLarge(f"The file is {len(upload.data)} bytes; files may be at most {limit} bytes")
    record = logic.upload_file(
        store(),
        caller,
        filename=upload.filename or "upload.jsonl",
        purpose=parts["purpose"].data.decode("utf-8", "replace").strip(),
        data=upload.data,
    )
    return ok(record.public())


@files.get("/v1/files")
def list_files(ctx: Context, after: After = None, limit: Limit = None) -> JSONResponse:
    records, more = logic.list_files(store(), ctx.principal, after=after, limit=page_limit(limit))
    return ok(list_page([r.public() for r in records], more))


@files.get("/v1/files/{file_id}")
def get_file(ctx: Context, file_id: str) -> JSONResponse:
    return ok(logic.get_file(store(), ctx.principal, file_id).public())


# UTF-8 text (byom.logic.fine_tuning_jobs.upload_file): the Lambda adapter answers it as text, which
# API Gateway passes through whatever the client's Accept (the SDK sends application/binary).
JSONL = "application/jsonl"


@files.get("/v1/files/{file_id}/content")
def file_content(ctx: Context, file_id: str) -> Response:
    return Response(logic.file_content(store(), ctx.principal, file_id), media_type=JSONL)


@files.delete("/v1/files/{file_id}")
def delete_file(ctx: Context, file_id: str) -> JSONResponse:
    record = logic.delete_file(store(), ctx.principal, file_id)
    return ok({"id": record.id, "object": "file", "deleted": True})


# JSON bodies, unlike the multipart upload above.
uploads_router = APIRouter(route_class=JsonBodyRoute.limited(MAX_JOB_BODY_BYTES))


@lru_cache(maxsize=1)
def upload_store() -> uploads.UploadStore:
    settings = fine_tuning_settings()
    return uploads.UploadStore(
        bucket=BatchData(client("s3"), settings.data_bucket, settings.kms_key_id),
        files=FileRepository(table(settings.files_table)),
        max_bytes=settings.max_upload_bytes,
        url_seconds=settings.upload_url_seconds,
    )


@uploads_router.post("/v1/files/uploads")
def create_upload(ctx: Context, request: uploads.CreateUpload) -> JSONResponse:
    """Files over the inline limit: a presigned S3 PUT URL (docs/batches.md)."""
    return ok(uploads.create_upload(upload_store(), ctx.principal, request))


@uploads_router.post("/v1/files/uploads/{file_id}/complete")
def complete_upload(ctx: Context, file_id: str) -> JSONResponse:
    return ok(uploads.complete_upload(upload_store(), ctx.principal, file_id).public())


jobs = APIRouter(route_class=JsonBodyRoute.limited(MAX_JOB_BODY_BYTES))


@lru_cache(maxsize=1)
def _persistence() -> DynamoDBPersistenceLayer:
    settings = fine_tuning_settings()
    return DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table or "", boto3_client=session().client("dynamodb")
    )


def _idempotent_create(invocation: Any) -> Callable[..., dict[str, Any]]:
    """Job creation once per tenant and request (Powertools idempotency on the idempotency table).
    A config per call: it holds the invocation's Lambda context, whose remaining time bounds how
    long an interrupted creation blocks its retries, and invocations are served side by side."""
    config = IdempotencyConfig(
        event_key_jmespath="key",
        expires_after_seconds=fine_tuning_settings().idempotency_seconds,
        raise_on_no_idempotency_key=True,
        lambda_context=invocation,
    )

    # Its qualified name (`_idempotent_create.<locals>.create`) is in every idempotency record's
    # key: renaming either function forgets the records in flight.
    @idempotent_function(data_keyword_argument="request", config=config, persistence_store=_persistence())
    def create(request: dict[str, Any]) -> dict[str, Any]:
        caller = Principal(**request["principal"])
        return logic.create_job(store(), caller, CreateJob.model_validate(request["body"])).public()

    return create


def idempotency_key(tenant_id: str, header_value: str | None, body: dict[str, Any]) -> str:
    """The caller's Idempotency-Key when sent, else the request itself: an SDK retry of the same
    body within the window gets the job the first try created, not a second one."""
    what = header_value.strip() if header_value else json.dumps(body, sort_keys=True, separators=(",", ":"))
    return f"{tenant_id}:" + hashlib.sha256(what.encode()).hexdigest()


@jobs.post("/v1/fine_tuning/jobs")
def create_job(
    ctx: Context,
    job: CreateJob,
    invocation: Invocation,
    key: Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)] = None,
) -> JSONResponse:
    caller = ctx.principal
    tenant_id = require_tenant_key(caller, logic.WRITERS)
    request_body = job.model_dump(mode="json", exclude_unset=True)
    request = {
        "key": idempotency_key(tenant_id, key, request_body),
        "principal": {"key_id": caller.key_id, "role": caller.role, "tenant_id": caller.tenant_id},
        "body": request_body,
    }
    if fine_tuning_settings().idempotency_table:
        return ok(_idempotent_create(invocation)(request=request))
    return ok(logic.create_job(store(), caller, job).public())


@jobs.get("/v1/fine_tuning/jobs")
def list_jobs(ctx: Context, after: After = None, limit: Limit = None) -> JSONResponse:
    found, more = logic.list_jobs(store(), ctx.principal, after=after, limit=page_limit(limit))
    return ok(list_page([j.public() for j in found], more))


@jobs.get("/v1/fine_tuning/jobs/{job_id}")
def get_job(ctx: Context, job_id: str) -> JSONResponse:
    return ok(logic.get_job(store(), ctx.principal, job_id).public())


@jobs.post("/v1/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(ctx: Context, job_id: str) -> JSONResponse:
    return ok(logic.cancel_job(store(), ctx.principal, job_id).public())


@jobs.get("/v1/fine_tuning/jobs/{job_id}/events")
def list_events(ctx: Context, job_id: str, after: After = None, limit: Limit = None) -> JSONResponse:
    events, more = logic.list_events(store(), ctx.principal, job_id, after=after, limit=page_limit(limit))
    return ok(list_page([e.public() for e in events], more))


@jobs.post("/v1/fine_tuning/jobs/{job_id}/approve")
def approve_job(ctx: Context, request: Approve, job_id: str) -> JSONResponse:
    return ok(logic.approve_job(store(), ctx.principal, job_id, request).public())


def build_fine_tuning_app() -> FastAPI:
    app = build_app("BYOM Gateway fine-tuning API")
    for router in (files, uploads_router, jobs):
        app.include_router(router)
    app.add_middleware(RecordAdminActions, trail=_audit, actions=AUDITED_ACTIONS)
    return ignore_trailing_slashes(app)
