"""Data-plane routes (SPEC §4.1, §4.3) served by the gateway function."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query
from fastapi.responses import JSONResponse, Response

from byom import clock
from byom.api import openapi
from byom.api.web import EventStream, JsonBodyRoute, RequestContext, build_app, context, ok
from byom.dal.audit import AuditTable
from byom.dal.aws import LazyClient, client, table
from byom.dal.cache import ResponseCacheTable, cache_table
from byom.dal.calls import CallTables
from byom.dal.content import ContentStore
from byom.dal.evals import EvalTable
from byom.dal.guardrails import BedrockGuardrails
from byom.dal.ledger import UsageTable
from byom.dal.meter_backlog import SqsBacklog
from byom.dal.notify import Notifier
from byom.dal.policies import PolicyRepository
from byom.dal.repositories import ModelRepository
from byom.dal.responses import ResponseStore, tenant_scoped
from byom.dal.secrets import ProviderKeys
from byom.dal.tenant_scope import scoped_table
from byom.domain import ModelAlias
from byom.errors import GatewayMisconfigured, InvalidRequest, NotFound
from byom.logic import budgets, evals, invoke, recommend
from byom.logic import stored_responses as stored
from byom.logic.access import require_tenant_key
from byom.logic.call_meter import Foresight
from byom.logic.money import month_of
from byom.logic.resilience import RetryPolicy
from byom.metrics import CallMetrics
from byom.openai_types import ChatRequest, EmbeddingRequest, ResponsesRequest
from byom.providers import build_registry
from byom.settings import gateway_settings

# A stream ends this long before its integration timeout: time to settle it and say why.
STREAM_MARGIN_SECONDS = 5.0
# Lambda's synchronous payload limit; API Gateway would take more, the function could not.
MAX_INVOKE_BODY_BYTES = 6 * 1024 * 1024

router = APIRouter(route_class=JsonBodyRoute.limited(MAX_INVOKE_BODY_BYTES))
Context = Annotated[RequestContext, Depends(context)]


@router.get("/health")
def get_health() -> JSONResponse:
    return ok({"status": "ok"})


@lru_cache(maxsize=1)
def model_repository() -> ModelRepository:
    settings = gateway_settings()
    # With the credentials table it reads an alias and its credential in one request.
    return ModelRepository(table(settings.models_table), table(settings.credentials_table))


def listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": items}


def model_object(model: ModelAlias) -> dict[str, Any]:
    return {"id": model.alias, "object": "model", "created": model.created_at, "owned_by": model.provider}


@router.get("/v1/models")
def list_models(ctx: Context) -> JSONResponse:
    tenant_id = require_tenant_key(ctx.principal)
    aliases = sorted(model_repository().list(tenant_id), key=lambda m: m.alias)
    return ok(listing([model_object(m) for m in aliases]))


@lru_cache(maxsize=1)
def usage_table() -> UsageTable:
    return UsageTable(table(gateway_settings().usage_table))


def tenant_usage(tenant_id: str) -> UsageTable:
    """The usage table as the tenant's own credentials see it (byom.dal.tenant_scope): reports."""
    return UsageTable(scoped_table(tenant_id, gateway_settings().usage_table))


@lru_cache(maxsize=1)
def invoke_store() -> invoke.InvokeStore:
    settings = gateway_settings()
    keys = ProviderKeys(settings.secret_prefix, settings.provider_key_max_age_seconds)
    policies = PolicyRepository(table(settings.policies_table)) if settings.policies_table else None
    return invoke.InvokeStore(
        calls=CallTables(model_repository(), usage_table(), policies),
        providers=build_registry(
            keys,
            timeout_seconds=settings.provider_timeout_seconds,
            allow_loopback_http=settings.allow_loopback_http,
        ),
        cache=ResponseCacheTable(cache_table(settings.cache_table)) if settings.cache_table else None,
        usage=usage_table(),
        notifier=Notifier(
            client("events"),
            client("sns"),
            event_bus=settings.event_bus_name,
            topic_arn=settings.alerts_topic_arn,
        ),
        metrics=CallMetrics(),
        guardrails=BedrockGuardrails(),
        audit=AuditTable(table(settings.audit_table)) if settings.audit_table else None,
        content=ContentStore(LazyClient("s3"), LazyClient("kms"), settings.data_bucket, settings.kms_key_id)
        if settings.data_bucket and settings.kms_key_id
        else None,
        responses=stored_responses(),
        backlog=SqsBacklog(LazyClient("sqs"), settings.meter_queue_url) if settings.meter_queue_url else None,
        foresight=Foresight(),
        policy=RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base_seconds=settings.retry_base_seconds,
            cap_seconds=settings.retry_cap_seconds,
            deadline_seconds=settings.invoke_deadline_seconds,
            attempt_timeout_seconds=settings.provider_timeout_seconds,
            stream_seconds=settings.stream_timeout_seconds - STREAM_MARGIN_SECONDS,
        ),
    )


@lru_cache(maxsize=1)
def stored_responses() -> ResponseStore | None:
    """Stored Responses, each tenant's on its scoped session; None when the stack keeps none."""
    settings = gateway_settings()
    if not (settings.responses_table and settings.data_bucket and settings.kms_key_id):
        return None
    return tenant_scoped(settings.responses_table, settings.data_bucket, settings.kms_key_id)


def _response_store() -> ResponseStore:
    store = stored_responses()
    if store is None:
        raise GatewayMisconfigured("Stored responses are not configured")
    return store


DRY_RUN_HEADER = "x-byom-dry-run"


SUBJECT_HEADER = "x-byom-user"


def _call(ctx: RequestContext, subject: str | None, *, dry_run: bool = False) -> invoke.Call:
    return invoke.Call(ctx.principal, ctx.request_id, dry_run=dry_run, subject=subject)


@router.post("/v1/chat/completions")
def chat_completions(
    ctx: Context,
    request: ChatRequest,
    dry_run: Annotated[str | None, Header(alias=DRY_RUN_HEADER)] = None,
    subject: Annotated[str | None, Header(alias=SUBJECT_HEADER)] = None,
) -> Response:
    if (dry_run or "").strip().lower() == "true":
        return _answer(invoke.chat(invoke_store(), _call(ctx, subject, dry_run=True), request))
    if request.stream:
        # Everything that can refuse the call has run: what follows is sent as it is produced.
        streamed = invoke.chat_stream(invoke_store(), _call(ctx, subject), request)
        return EventStream(streamed.events, headers=streamed.headers)
    return _answer(invoke.chat(invoke_store(), _call(ctx, subject), request))


@router.post("/v1/responses")
def create_response(
    ctx: Context,
    request: ResponsesRequest,
    dry_run: Annotated[str | None, Header(alias=DRY_RUN_HEADER)] = None,
    subject: Annotated[str | None, Header(alias=SUBJECT_HEADER)] = None,
) -> Response:
    if (dry_run or "").strip().lower() == "true":
        return _answer(invoke.respond(invoke_store(), _call(ctx, subject, dry_run=True), request))
    if request.stream:
        streamed = invoke.respond_stream(invoke_store(), _call(ctx, subject), request)
        return EventStream(streamed.events, headers=streamed.headers)
    return _answer(invoke.respond(invoke_store(), _call(ctx, subject), request))


@router.get("/v1/responses/{response_id}")
def retrieve_response(ctx: Context, response_id: str) -> JSONResponse:
    tenant_id = require_tenant_key(ctx.principal, invoke.INVOKE_ROLES)
    return ok(stored.retrieve(_response_store(), tenant_id, response_id))


@router.delete("/v1/responses/{response_id}")
def delete_response(ctx: Context, response_id: str) -> JSONResponse:
    tenant_id = require_tenant_key(ctx.principal, invoke.INVOKE_ROLES)
    return ok(stored.delete(_response_store(), tenant_id, response_id))


@router.get("/v1/responses/{response_id}/input_items")
def list_input_items(
    ctx: Context,
    response_id: str,
    after: Annotated[str | None, Query()] = None,
    limit: Annotated[str | None, Query()] = None,
    order: Annotated[str, Query()] = "desc",
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> JSONResponse:
    tenant_id = require_tenant_key(ctx.principal, invoke.INVOKE_ROLES)
    page = stored.input_items(
        _response_store(),
        tenant_id,
        response_id,
        after=after,
        limit=_limit(limit),
        order=order,  # type: ignore[arg-type]  # checked by the logic, which names the param
        include=include or (),
    )
    return ok(page)


def _limit(value: str | None) -> int:
    if value is None:
        return stored.DEFAULT_LIMIT
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(
            f"limit: must be an integer from 1 to {stored.MAX_LIMIT}", param="limit"
        ) from None


@router.post("/v1/embeddings")
def embeddings(
    ctx: Context,
    request: EmbeddingRequest,
    subject: Annotated[str | None, Header(alias=SUBJECT_HEADER)] = None,
) -> JSONResponse:
    return _answer(invoke.embed(invoke_store(), _call(ctx, subject), request))


def _answer(answer: invoke.Answer) -> JSONResponse:
    return ok(answer.body, headers=answer.headers)


@router.get("/v1/usage")
def get_usage(
    ctx: Context,
    month: Annotated[str | None, Query()] = None,
    group_by: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    tenant_id = require_tenant_key(ctx.principal)
    return ok(budgets.report(usage_table(), tenant_id, month, group_by, reader=tenant_usage(tenant_id)))


@router.get("/v1/models/recommend")
def recommend_models(
    ctx: Context,
    max_cost_per_1k_usd: Annotated[str | None, Query()] = None,
    need: Annotated[str | None, Query()] = None,
    task: Annotated[str | None, Query(max_length=128)] = None,
) -> JSONResponse:
    tenant_id = require_tenant_key(ctx.principal)
    month_items = tenant_usage(tenant_id).month_items(tenant_id, month_of(clock.now()))
    evals_table = gateway_settings().evals_table
    # The latest completed run of the eval `task` names (SPEC §10); none: the ranking without evidence.
    evidence = (
        evals.evidence(EvalTable(table(evals_table)), tenant_id, task) if task and evals_table else None
    )
    ranked = recommend.recommend(
        model_repository().list(tenant_id), month_items, max_cost_per_1k_usd, need, evidence
    )
    return ok(listing(ranked))


# After /v1/models/recommend, which it would otherwise take for an alias.
@router.get("/v1/models/{alias}")
def retrieve_model(ctx: Context, alias: str) -> JSONResponse:
    """`client.models.retrieve`: one of the caller's aliases; any other name is a 404."""
    tenant_id = require_tenant_key(ctx.principal)
    model = model_repository().get(tenant_id, alias)
    if model is None:
        # Absent or another tenant's: SPEC §4's 404 `not_found_error`, with OpenAI's code.
        raise NotFound(
            f"The model '{alias}' does not exist or you do not have access to it", code="model_not_found"
        )
    return ok(model_object(model))


def build_gateway_app() -> FastAPI:
    app = build_app("BYOM Gateway data plane")
    app.include_router(router)
    app.include_router(openapi.docs)
    return app
