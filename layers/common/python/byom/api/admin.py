"""Admin API routes (SPEC §4.2): one Router per resource, each route one logic call."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.api_gateway import Router

from byom.api import admin_audit
from byom.api.governance import governance
from byom.api.http import build_resolver, json_body, listing, ok, principal, query
from byom.dal.alarms import SpendAlarms
from byom.dal.audit import AuditTable
from byom.dal.aws import client, table
from byom.dal.guardrails import BedrockGuardrails
from byom.dal.policies import PolicyRepository
from byom.dal.repositories import ApiKeyRepository, CredentialRepository, ModelRepository, TenantRepository
from byom.dal.secrets import SecretStore
from byom.dal.tenant_scope import scoped_table
from byom.dal.usage import UsageTable
from byom.dal.usage_plans import UsagePlanRepository
from byom.domain import CreateKey, CreateModel, CreateTenant, PutBudget, PutCredential
from byom.governance.policy import PutPolicy
from byom.logic import admin
from byom.observability import logger
from byom.settings import admin_settings


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


def serve_audited(app: APIGatewayRestResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Serve an admin request, then record it in the audit trail (byom.api.admin_audit)."""
    return admin_audit.serve_audited(app, event, context, audit_log(), store().policies)


def _deleted(id_: str, object_: str):  # type: ignore[no-untyped-def]
    return ok({"id": id_, "object": object_, "deleted": True})


tenants = Router()


@tenants.post("/admin/tenants")
def create_tenant():  # type: ignore[no-untyped-def]
    tenant = admin.create_tenant(store(), principal(tenants), json_body(tenants, CreateTenant))
    return ok(tenant.model_dump() | {"object": "tenant"}, 201)


@tenants.get("/admin/tenants")
def list_tenants():  # type: ignore[no-untyped-def]
    return ok(
        listing(
            [t.model_dump() | {"object": "tenant"} for t in admin.list_tenants(store(), principal(tenants))]
        )
    )


@tenants.get("/admin/tenants/<tenant_id>")
def get_tenant(tenant_id: str):  # type: ignore[no-untyped-def]
    return ok(admin.get_tenant(store(), principal(tenants), tenant_id).model_dump() | {"object": "tenant"})


@tenants.delete("/admin/tenants/<tenant_id>")
def delete_tenant(tenant_id: str):  # type: ignore[no-untyped-def]
    admin.delete_tenant(store(), principal(tenants), tenant_id)
    return _deleted(tenant_id, "tenant")


keys = Router()


@keys.post("/admin/tenants/<tenant_id>/keys")
def create_key(tenant_id: str):  # type: ignore[no-untyped-def]
    key, plaintext = admin.create_key(store(), principal(keys), tenant_id, json_body(keys, CreateKey))
    return ok(key.public() | {"key": plaintext}, 201)


@keys.get("/admin/tenants/<tenant_id>/keys")
def list_keys(tenant_id: str):  # type: ignore[no-untyped-def]
    return ok(listing([k.public() for k in admin.list_keys(store(), principal(keys), tenant_id)]))


@keys.delete("/admin/tenants/<tenant_id>/keys/<key_id>")
def revoke_key(tenant_id: str, key_id: str):  # type: ignore[no-untyped-def]
    return ok(admin.revoke_key(store(), principal(keys), tenant_id, key_id).public())


credentials = Router()


@credentials.put("/admin/tenants/<tenant_id>/credentials/<name>")
def put_credential(tenant_id: str, name: str):  # type: ignore[no-untyped-def]
    body = json_body(credentials, PutCredential)
    credential = admin.put_credential(store(), principal(credentials), tenant_id, name, body)
    logger.info(
        "credential stored", extra={"credential": name, "tenant_id": tenant_id, "provider": body.provider}
    )
    return ok(credential.public())


@credentials.get("/admin/tenants/<tenant_id>/credentials")
def list_credentials(tenant_id: str):  # type: ignore[no-untyped-def]
    items = admin.list_credentials(store(), principal(credentials), tenant_id)
    return ok(listing([c.public() for c in items]))


@credentials.delete("/admin/tenants/<tenant_id>/credentials/<name>")
def delete_credential(tenant_id: str, name: str):  # type: ignore[no-untyped-def]
    admin.delete_credential(store(), principal(credentials), tenant_id, name)
    return _deleted(name, "credential")


models = Router()


@models.post("/admin/tenants/<tenant_id>/models")
def create_model(tenant_id: str):  # type: ignore[no-untyped-def]
    model = admin.create_model(store(), principal(models), tenant_id, json_body(models, CreateModel))
    return ok(model.public(), 201)


@models.get("/admin/tenants/<tenant_id>/models")
def list_models(tenant_id: str):  # type: ignore[no-untyped-def]
    return ok(listing([m.public() for m in admin.list_models(store(), principal(models), tenant_id)]))


@models.delete("/admin/tenants/<tenant_id>/models/<alias>")
def delete_model(tenant_id: str, alias: str):  # type: ignore[no-untyped-def]
    admin.delete_model(store(), principal(models), tenant_id, alias)
    return _deleted(alias, "model_alias")


budgets = Router()


@budgets.put("/admin/tenants/<tenant_id>/budget")
def put_budget(tenant_id: str):  # type: ignore[no-untyped-def]
    budget = admin.put_budget(store(), principal(budgets), tenant_id, json_body(budgets, PutBudget))
    return ok(budget.public())


@budgets.get("/admin/tenants/<tenant_id>/budget")
def get_budget(tenant_id: str):  # type: ignore[no-untyped-def]
    return ok(admin.get_budget(store(), principal(budgets), tenant_id).public())


@budgets.delete("/admin/tenants/<tenant_id>/budget")
def delete_budget(tenant_id: str):  # type: ignore[no-untyped-def]
    admin.delete_budget(store(), principal(budgets), tenant_id)
    return _deleted(tenant_id, "budget")


@budgets.get("/admin/tenants/<tenant_id>/usage")
def get_usage(tenant_id: str):  # type: ignore[no-untyped-def]
    month, group_by = query(budgets, "month"), query(budgets, "group_by")
    return ok(admin.usage_report(store(), principal(budgets), tenant_id, month, group_by))


policies = Router()


@policies.put("/admin/tenants/<tenant_id>/policy")
def put_policy(tenant_id: str):  # type: ignore[no-untyped-def]
    policy = admin.put_policy(store(), principal(policies), tenant_id, json_body(policies, PutPolicy))
    return ok(policy.public())


@policies.get("/admin/tenants/<tenant_id>/policy")
def get_policy(tenant_id: str):  # type: ignore[no-untyped-def]
    return ok(admin.get_policy(store(), principal(policies), tenant_id).public())


def build_admin_app() -> APIGatewayRestResolver:
    app = build_resolver()
    for router in (tenants, keys, credentials, models, budgets, policies, governance):
        app.include_router(router)
    return app
