"""Data-plane routes (SPEC §4.1, §4.3) served by the gateway function."""

from __future__ import annotations

from functools import lru_cache

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from byom import clock
from byom.api.http import build_resolver, header, json_body, listing, ok, principal, query, request_id
from byom.dal.audit import AuditTable
from byom.dal.aws import LazyClient, client, table
from byom.dal.cache import ResponseCacheTable, cache_table
from byom.dal.content import ContentStore
from byom.dal.guardrails import BedrockGuardrails
from byom.dal.notify import Notifier
from byom.dal.policies import PolicyRepository
from byom.dal.repositories import CredentialRepository, ModelRepository
from byom.dal.secrets import ProviderKeys
from byom.dal.tenant_scope import scoped_table
from byom.dal.usage import UsageTable
from byom.logic import invoke, recommend
from byom.logic import usage as usage_logic
from byom.logic.access import require_tenant_key
from byom.logic.metering import month_of
from byom.logic.resilience import RetryPolicy
from byom.metrics import CallMetrics
from byom.openai_types import ChatRequest, EmbeddingRequest
from byom.providers import build_registry
from byom.settings import gateway_settings

# Lambda's synchronous payload limit; API Gateway would take more, the function could not.
MAX_INVOKE_BODY_BYTES = 6 * 1024 * 1024

health = Router()


@health.get("/health")
def get_health():  # type: ignore[no-untyped-def]
    return ok({"status": "ok"})


@lru_cache(maxsize=1)
def model_repository() -> ModelRepository:
    settings = gateway_settings()
    # With the credentials table it reads an alias and its credential in one request.
    return ModelRepository(table(settings.models_table), table(settings.credentials_table))


models = Router()


@models.get("/v1/models")
def list_models():  # type: ignore[no-untyped-def]
    tenant_id = require_tenant_key(principal(models))
    aliases = sorted(model_repository().list(tenant_id), key=lambda m: m.alias)
    return ok(
        listing(
            [
                {"id": m.alias, "object": "model", "created": m.created_at, "owned_by": m.provider}
                for m in aliases
            ]
        )
    )


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
    return invoke.InvokeStore(
        models=model_repository(),
        credentials=CredentialRepository(table(settings.credentials_table)),
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
        policies=PolicyRepository(table(settings.policies_table)) if settings.policies_table else None,
        guardrails=BedrockGuardrails(),
        audit=AuditTable(table(settings.audit_table)) if settings.audit_table else None,
        content=ContentStore(LazyClient("s3"), LazyClient("kms"), settings.data_bucket, settings.kms_key_id)
        if settings.data_bucket and settings.kms_key_id
        else None,
        policy=RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base_seconds=settings.retry_base_seconds,
            cap_seconds=settings.retry_cap_seconds,
            deadline_seconds=settings.invoke_deadline_seconds,
            attempt_timeout_seconds=settings.provider_timeout_seconds,
        ),
    )


invocations = Router()


DRY_RUN_HEADER = "x-byom-dry-run"


SUBJECT_HEADER = "x-byom-user"


def _call(router: Router, *, dry_run: bool = False) -> invoke.Call:
    return invoke.Call(
        principal(router), request_id(router), dry_run=dry_run, subject=header(router, SUBJECT_HEADER)
    )


@invocations.post("/v1/chat/completions")
def chat_completions():  # type: ignore[no-untyped-def]
    request = json_body(invocations, ChatRequest, MAX_INVOKE_BODY_BYTES)
    dry_run = (header(invocations, DRY_RUN_HEADER) or "").strip().lower() == "true"
    if dry_run:
        return _answer(invoke.chat(invoke_store(), _call(invocations, dry_run=True), request))
    if request.stream:
        streamed = invoke.chat_stream(invoke_store(), _call(invocations), request)
        # Buffered: API Gateway's REST proxy integration sends the body once the function returns.
        body = "".join(streamed.events)
        return Response(
            status_code=200,
            content_type="text/event-stream; charset=utf-8",
            body=body,
            headers=streamed.headers | {"cache-control": "no-cache"},
        )
    return _answer(invoke.chat(invoke_store(), _call(invocations), request))


@invocations.post("/v1/embeddings")
def embeddings():  # type: ignore[no-untyped-def]
    request = json_body(invocations, EmbeddingRequest, MAX_INVOKE_BODY_BYTES)
    return _answer(invoke.embed(invoke_store(), _call(invocations), request))


def _answer(answer: invoke.Answer) -> Response:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=answer.body,
        headers=answer.headers,
    )


usage = Router()


@usage.get("/v1/usage")
def get_usage():  # type: ignore[no-untyped-def]
    tenant_id = require_tenant_key(principal(usage))
    month, group_by = query(usage, "month"), query(usage, "group_by")
    return ok(usage_logic.report(usage_table(), tenant_id, month, group_by, reader=tenant_usage(tenant_id)))


@models.get("/v1/models/recommend")
def recommend_models():  # type: ignore[no-untyped-def]
    tenant_id = require_tenant_key(principal(models))
    month_items = tenant_usage(tenant_id).month_items(tenant_id, month_of(clock.now()))
    ranked = recommend.recommend(
        model_repository().list(tenant_id),
        month_items,
        query(models, "max_cost_per_1k_usd"),
        query(models, "need"),
    )
    return ok(listing(ranked))


def build_gateway_app() -> APIGatewayRestResolver:
    app = build_resolver()
    for router in (health, models, invocations, usage):
        app.include_router(router)
    return app
