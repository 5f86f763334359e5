"""Entry points of the batch state machine's tasks and the collaborators every batch function shares:
the event Step Functions sends in, one logic call, the output it continues with. Typed errors
propagate: Lambda reports their class name as `errorType`, which Retry and Catch match on."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from byom.api.gateway import invoke_store
from byom.batches import CHAT, EMBEDDINGS, Batch
from byom.dal.audit import AuditTable
from byom.dal.aws import client, table
from byom.dal.batches import BatchData, BatchEvents, BatchRepository
from byom.dal.fine_tuning import FileRepository, Workflow
from byom.dal.ledger import UsageTable
from byom.dal.policies import PolicyRepository
from byom.dal.repositories import ModelRepository
from byom.errors import ByomError
from byom.governance.trail import Trail
from byom.logic import batches as logic
from byom.logic import invoke
from byom.logic.access import Principal
from byom.openai_types import ChatRequest, EmbeddingRequest, ResponsesRequest
from byom.providers import Target
from byom.providers.batch import LineOutcome, ProviderBatches, provider_batches
from byom.settings import BatchSettings, batch_settings

AUDIT_ROUTE = "batches"


def _envelope(error: ByomError) -> dict[str, Any]:
    return {"error": invoke.envelope_of(error)}


class InvokedLines:
    """A line through the data plane's own invocation path (screening, fallbacks, audit under the
    route `batches`) with its metering off: the batch meters each line at batch prices."""

    def __init__(self, store: invoke.InvokeStore) -> None:
        self._store = replace(store, usage=None, cache=None, responses=None)

    def __call__(
        self, principal: Principal, request_id: str, endpoint: str, body: dict[str, Any]
    ) -> logic.LineAnswer:
        call = invoke.Call(principal=principal, request_id=request_id)
        try:
            if endpoint == CHAT:
                answer = invoke.chat(self._store, call, ChatRequest.model_validate(body), route=AUDIT_ROUTE)
            elif endpoint == EMBEDDINGS:
                answer = invoke.embed(
                    self._store, call, EmbeddingRequest.model_validate(body), route=AUDIT_ROUTE
                )
            else:
                answer = invoke.respond(
                    self._store,
                    call,
                    ResponsesRequest.model_validate({**body, "store": False}),
                    route=AUDIT_ROUTE,
                )
        except ValidationError:
            return logic.LineAnswer(
                400,
                {
                    "error": {
                        "message": "The request body is invalid",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        except ByomError as error:
            return logic.LineAnswer(error.status, _envelope(error))
        return logic.LineAnswer(200, answer.body, answer.usage, answer.target.alias, answer.target.pricing)


class LineAudit:
    """The audit record of a line a provider's batch service ran (route `batches`)."""

    def __init__(self, audit: AuditTable | None) -> None:
        self._audit = audit

    def line(self, batch: Batch, request_id: str, outcome: LineOutcome, cost_micros: int) -> None:
        if self._audit is None:
            return
        trail = Trail(
            tenant_id=batch.tenant_id,
            key_id=batch.key_id,
            request_id=request_id,
            route=AUDIT_ROUTE,
            model=batch.model,
            log=self._audit,
            provider=batch.provider,
        )
        if outcome.status_code != 200:
            trail.status, trail.http_status, trail.error_source = (
                "provider_error",
                outcome.status_code,
                "provider",
            )
        if outcome.usage is not None:
            trail.input_tokens = outcome.usage.prompt_tokens
            trail.output_tokens = outcome.usage.completion_tokens
        trail.cost_micros = cost_micros
        trail.write()


def _target(tenant_id: str, alias: str) -> Target:
    return invoke.resolve_target(invoke_store(), tenant_id, alias)


def build_store(settings: BatchSettings, *, run_lines: bool = False) -> logic.BatchStore:
    def providers(provider: str) -> ProviderBatches | None:
        return provider_batches(provider, role_arn=settings.byom_batch_role_arn or None)

    return logic.BatchStore(
        batches=BatchRepository(table(settings.batches_table)),
        files=FileRepository(table(settings.files_table)),
        bucket=BatchData(client("s3"), settings.data_bucket, settings.kms_key_id),
        models=ModelRepository(table(settings.models_table)),
        usage=UsageTable(table(settings.usage_table)) if settings.usage_table else None,
        workflow=Workflow(client("stepfunctions"), settings.batch_state_machine_arn or ""),
        providers=providers,
        targets=_target,
        run_line=InvokedLines(invoke_store()) if run_lines else None,
        events=BatchEvents(client("events"), settings.event_bus_name),
        policies=PolicyRepository(table(settings.policies_table)) if settings.policies_table else None,
        audit=LineAudit(AuditTable(table(settings.audit_table)) if settings.audit_table else None),
        poll_seconds=settings.batch_poll_seconds,
        bedrock_min_records=settings.bedrock_batch_min_records,
    )


@lru_cache(maxsize=1)
def store() -> logic.BatchStore:
    return build_store(batch_settings(), run_lines=True)


def run_chunk(event: dict[str, Any]) -> dict[str, Any]:
    return logic.run_chunk(store(), event["batch_id"], int(event["chunk"]))


def submit(event: dict[str, Any]) -> dict[str, Any]:
    return logic.submit(store(), event["batch_id"])


def await_job(event: dict[str, Any]) -> dict[str, Any]:
    return logic.await_job(store(), event["batch_id"], event["task_token"])


def check_job(event: dict[str, Any]) -> dict[str, Any]:
    return logic.check_job(store(), event["batch_id"])


def job_state_changed(event: dict[str, Any]) -> dict[str, Any]:
    """EventBridge's event for Bedrock's `Batch Inference Job State Change`."""
    return {"woken": logic.job_state_changed(store(), event.get("detail") or {})}


def finalize(event: dict[str, Any]) -> dict[str, Any]:
    return logic.finalize(store(), event["batch_id"])


def record_failure(event: dict[str, Any]) -> dict[str, Any]:
    return logic.record_failure(store(), event["batch_id"], event.get("error") or {})
