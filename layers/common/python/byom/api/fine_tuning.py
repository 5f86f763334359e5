"""Files and fine-tuning job routes (SPEC §4.3) served by the fine-tuning function."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from typing import Any, cast

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from byom.api import admin_audit, multipart
from byom.api.fine_tuning_tasks import shared_collaborators
from byom.api.http import build_resolver, header, json_body, ok, principal, query
from byom.dal.audit import AuditTable
from byom.dal.aws import session, table
from byom.dal.policies import PolicyRepository
from byom.errors import InvalidRequest, PayloadTooLarge
from byom.fine_tuning import Approve, CreateJob
from byom.logic import fine_tuning as logic
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


def serve_audited(app: APIGatewayRestResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    log, policies = _audit()
    return admin_audit.serve_audited(app, event, context, log, policies, actions=AUDITED_ACTIONS)


def _limit(router: Router) -> int:
    raw = query(router, "limit")
    if raw is None:
        return 20
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest("limit must be a whole number", param="limit") from None
    if not 1 <= value <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")
    return value


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "has_more": has_more,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
    }


files = Router()


def _raw_body(router: Router, limit: int) -> bytes:
    event = cast(APIGatewayProxyEvent, router.current_event)
    raw = event.body or ""
    data = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8")
    if len(data) > limit + ENVELOPE_BYTES:
        raise PayloadTooLarge(f"The upload is {len(data)} bytes; files may be at most {limit} bytes")
    return data


@files.post("/v1/files")
def upload_file():  # type: ignore[no-untyped-def]
    caller = principal(files)
    require_tenant_key(caller, logic.WRITERS)
    limit = store().max_file_bytes
    parts = multipart.parse(header(files, "content-type"), _raw_body(files, limit))
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
def list_files():  # type: ignore[no-untyped-def]
    records, more = logic.list_files(
        store(), principal(files), after=query(files, "after"), limit=_limit(files)
    )
    return ok(_page([r.public() for r in records], more))


@files.get("/v1/files/<file_id>")
def get_file(file_id: str):  # type: ignore[no-untyped-def]
    return ok(logic.get_file(store(), principal(files), file_id).public())


jobs = Router()


@lru_cache(maxsize=1)
def _idempotency_config() -> IdempotencyConfig:
    return IdempotencyConfig(
        event_key_jmespath="key",
        expires_after_seconds=fine_tuning_settings().idempotency_seconds,
        raise_on_no_idempotency_key=True,
    )


@lru_cache(maxsize=1)
def _idempotent_create() -> Any:
    """Job creation once per tenant and request (Powertools idempotency on the idempotency table)."""
    settings = fine_tuning_settings()
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table or "", boto3_client=session().client("dynamodb")
    )
    config = _idempotency_config()

    @idempotent_function(data_keyword_argument="request", config=config, persistence_store=persistence)
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
def create_job():  # type: ignore[no-untyped-def]
    caller = principal(jobs)
    tenant_id = require_tenant_key(caller, logic.WRITERS)
    body = json_body(jobs, CreateJob, MAX_JOB_BODY_BYTES)
    request_body = body.model_dump(mode="json", exclude_unset=True)
    request = {
        "key": idempotency_key(tenant_id, header(jobs, IDEMPOTENCY_HEADER), request_body),
        "principal": {"key_id": caller.key_id, "role": caller.role, "tenant_id": caller.tenant_id},
        "body": request_body,
    }
    if fine_tuning_settings().idempotency_table:
        # The remaining time bounds how long an interrupted creation blocks its retries.
        _idempotency_config().register_lambda_context(jobs.lambda_context)
        return ok(_idempotent_create()(request=request))
    return ok(logic.create_job(store(), caller, body).public())


@jobs.get("/v1/fine_tuning/jobs")
def list_jobs():  # type: ignore[no-untyped-def]
    found, more = logic.list_jobs(store(), principal(jobs), after=query(jobs, "after"), limit=_limit(jobs))
    return ok(_page([j.public() for j in found], more))


@jobs.get("/v1/fine_tuning/jobs/<job_id>")
def get_job(job_id: str):  # type: ignore[no-untyped-def]
    return ok(logic.get_job(store(), principal(jobs), job_id).public())


@jobs.post("/v1/fine_tuning/jobs/<job_id>/cancel")
def cancel_job(job_id: str):  # type: ignore[no-untyped-def]
    return ok(logic.cancel_job(store(), principal(jobs), job_id).public())


@jobs.get("/v1/fine_tuning/jobs/<job_id>/events")
def list_events(job_id: str):  # type: ignore[no-untyped-def]
    events, more = logic.list_events(
        store(), principal(jobs), job_id, after=query(jobs, "after"), limit=_limit(jobs)
    )
    return ok(_page([e.public() for e in events], more))


@jobs.post("/v1/fine_tuning/jobs/<job_id>/approve")
def approve_job(job_id: str):  # type: ignore[no-untyped-def]
    body = json_body(jobs, Approve)
    return ok(logic.approve_job(store(), principal(jobs), job_id, body).public())


def build_fine_tuning_app() -> APIGatewayRestResolver:
    app = build_resolver()
    for router in (files, jobs):
        app.include_router(router)
    return app
