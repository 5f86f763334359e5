"""Admin API routes (SPEC §4.2): one router per resource, each route one logic call."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse

from byom.api.admin_audit import RecordAdminActions
from byom.api.automations import automations
from byom.api.governance import governance
from byom.api.web import (
    JsonBodyRoute,
    RequestContext,
    build_app,
    context,
    ignore_trailing_slashes,
    ok,
)
from byom.dal.alarms import SpendAlarms
from byom.dal.audit import AuditTable
from byom.dal.aws import client, table
from byom.dal.guardrails import BedrockGuardrails
from byom.dal.ledger import UsageTable
from byom.dal.policies import PolicyRepository
from byom.dal.repositories import ApiKeyRepository, CredentialRepository, ModelRepository, TenantRepository
from byom.dal.secrets import SecretStore
from byom.dal.tenant_scope import scoped_table
from byom.dal.usage_plans import UsagePlanRepository
from byom.domain import CreateKey, CreateModel, CreateTenant, PutBudget, PutCredential
from byom.governance.policy import PutPolicy
from byom.governance.trail import AuditLog
from byom.logic import admin
from byom.observability import logger
from byom.settings import admin_settings

MAX_ADMIN_BODY_BYTES = 64 * 1024

Context = Annotated[RequestContext, Depends(context)]
# Every admin body is small: a tenant, a key, a credential, an alias, a budget, a policy.
AdminRoute = JsonBodyRoute.limited(MAX_ADMIN_BODY_BYTES)


@lru_cache(maxsize=1)
def store() -> admin.AdminStore:
    settings = admin_settings()
    return admin.AdminStore(
        tenants=TenantRepository(table(settings.tenants_table)),
        keys=ApiKeyRepository(table(settings.api_keys_table)),
        credentials=CredentialRepository(table(settings.credentials_table)),
        models=ModelRepository(table(settings.models_table)),
        secrets=SecretStore(client("secretsmanager"), settings.secret_prefix, settings.kms_key_id),
        allow_loopback_http=settings.allow_loopback_http,
        usage=UsageTable(table(settings.usage_table)),
        alarms=SpendAlarms(
            client("cloudwatch"), prefix=settings.spend_alarm_prefix, topic_arn=settings.alerts_topic_arn
        ),
        policies=PolicyRepository(table(settings.policies_table)),
        guardrails=BedrockGuardrails(),
        tenant_usage=lambda tenant_id: UsageTable(scoped_table(tenant_id, settings.usage_table)),
        usage_plans=UsagePlanRepository(
            client("apigateway"), rest_api_id=settings.rest_api_id, stage=settings.stage_name
        )
        if settings.rest_api_id
        else None,
    )


@lru_cache(maxsize=1)
def audit_log() -> AuditTable:
    return AuditTable(table(admin_settings().audit_table))


def _trail() -> tuple[AuditLog, admin.Policies | None]:
    """Where admin actions are recorded (byom.api.admin_audit), and each tenant's retention read."""
    return audit_log(), store().policies


def listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": items}


def _deleted(id_: str, object_: str) -> JSONResponse:
    return ok({"id": id_, "object": object_, "deleted": True})


tenants = APIRouter(route_class=AdminRoute)


@tenants.post("/admin/tenants")
def create_tenant(ctx: Context, request: CreateTenant) -> JSONResponse:
    tenant = admin.create_tenant(store(), ctx.principal, request)
    return ok(tenant.model_dump() | {"object": "tenant"}, 201)


@tenants.get("/admin/tenants")
def list_tenants(ctx: Context) -> JSONResponse:
    return ok(
        listing([t.model_dump() | {"object": "tenant"} for t in admin.list_tenants(store(), ctx.principal)])
    )


@tenants.get("/admin/tenants/{tenant_id}")
def get_tenant(ctx: Context, tenant_id: str) -> JSONResponse:
    return ok(admin.get_tenant(store(), ctx.principal, tenant_id).model_dump() | {"object": "tenant"})


@tenants.delete("/admin/tenants/{tenant_id}")
def delete_tenant(ctx: Context, tenant_id: str) -> JSONResponse:
    admin.delete_tenant(store(), ctx.principal, tenant_id)
    return _deleted(tenant_id, "tenant")


keys = APIRouter(route_class=AdminRoute)


@keys.post("/admin/tenants/{tenant_id}/keys")
def create_key(ctx: Context, request: CreateKey, tenant_id: str) -> JSONResponse:
    key, plaintext = admin.create_key(store(), ctx.principal, tenant_id, request)
    return ok(key.public() | {"key": plaintext}, 201)


@keys.get("/admin/tenants/{tenant_id}/keys")
def list_keys(ctx: Context, tenant_id: str) -> JSONResponse:
    return ok(listing([k.public() for k in admin.list_keys(store(), ctx.principal, tenant_id)]))


@keys.delete("/admin/tenants/{tenant_id}/keys/{key_id}")
def revoke_key(ctx: Context, tenant_id: str, key_id: str) -> JSONResponse:
    return ok(admin.revoke_key(store(), ctx.principal, tenant_id, key_id).public())


credentials = APIRouter(route_class=AdminRoute)


@credentials.put("/admin/tenants/{tenant_id}/credentials/{name}")
def put_credential(ctx: Context, request: PutCredential, tenant_id: str, name: str) -> JSONResponse:
    credential = admin.put_credential(store(), ctx.principal, tenant_id, name, request)
    logger.info(
        "credential stored", extra={"credential": name, "tenant_id": tenant_id, "provider": request.provider}
    )
    return ok(credential.public())


@credentials.get("/admin/tenants/{tenant_id}/credentials")
def list_credentials(ctx: Context, tenant_id: str) -> JSONResponse:
    items = admin.list_credentials(store(), ctx.principal, tenant_id)
    return ok(listing([c.public() for c in items]))


@credentials.delete("/admin/tenants/{tenant_id}/credentials/{name}")
def delete_credential(ctx: Context, tenant_id: str, name: str) -> JSONResponse:
    admin.delete_credential(store(), ctx.principal, tenant_id, name)
    return _deleted(name, "credential")


models = APIRouter(route_class=AdminRoute)


@models.post("/admin/tenants/{tenant_id}/models")
def create_model(ctx: Context, request: CreateModel, tenant_id: str) -> JSONResponse:
    model = admin.create_model(store(), ctx.principal, tenant_id, request)
    return ok(model.public(), 201)


@models.get("/admin/tenants/{tenant_id}/models")
def list_models(ctx: Context, tenant_id: str) -> JSONResponse:
    return ok(listing([m.public() for m in admin.list_models(store(), ctx.principal, tenant_id)]))


@models.delete("/admin/tenants/{tenant_id}/models/{alias}")
def delete_model(ctx: Context, tenant_id: str, alias: str) -> JSONResponse:
    admin.delete_model(store(), ctx.principal, tenant_id, alias)
    return _deleted(alias, "model_alias")


budgets = APIRouter(route_class=AdminRoute)


@budgets.put("/admin/tenants/{tenant_id}/budget")
def put_budget(ctx: Context, request: PutBudget, tenant_id: str) -> JSONResponse:
    budget = admin.put_budget(store(), ctx.principal, tenant_id, request)
    return ok(budget.public())


@budgets.get("/admin/tenants/{tenant_id}/budget")
def get_budget(ctx: Context, tenant_id: str) -> JSONResponse:
    return ok(admin.get_budget(store(), ctx.principal, tenant_id).public())


@budgets.delete("/admin/tenants/{tenant_id}/budget")
def delete_budget(ctx: Context, tenant_id: str) -> JSONResponse:
    admin.delete_budget(store(), ctx.principal, tenant_id)
    return _deleted(tenant_id, "budget")


@budgets.get("/admin/tenants/{tenant_id}/usage")
def get_usage(
    ctx: Context,
    tenant_id: str,
    month: Annotated[str | None, Query()] = None,
    group_by: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    return ok(admin.usage_report(store(), ctx.principal, tenant_id, month, group_by))


policies = APIRouter(route_class=AdminRoute)


@policies.put("/admin/tenants/{tenant_id}/policy")
def put_policy(ctx: Context, request: PutPolicy, tenant_id: str) -> JSONResponse:
    policy = admin.put_policy(store(), ctx.principal, tenant_id, request)
    return ok(policy.public())


@policies.get("/admin/tenants/{tenant_id}/policy")
def get_policy(ctx: Context, tenant_id: str) -> JSONResponse:
    return ok(admin.get_policy(store(), ctx.principal, tenant_id).public())


def build_admin_app() -> FastAPI:
    app = build_app("BYOM Gateway admin API")
    for router in (tenants, keys, credentials, models, budgets, policies, governance, automations):
        app.include_router(router)
    app.add_middleware(RecordAdminActions, trail=_trail)
    return ignore_trailing_slashes(app)
