"""Admin routes over a tenant's governance data (SPEC §4.2): audit records, data-subject export and
erasure. Each is one call of byom.governance.tenant_data."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import unquote

from aws_lambda_powertools.event_handler.api_gateway import Router

from byom.api.http import ok, principal, query, request_id
from byom.dal.audit import AuditTable
from byom.dal.aws import table
from byom.dal.cache import ResponseCacheTable
from byom.dal.content import ContentStore
from byom.dal.policies import PolicyRepository
from byom.dal.repositories import TenantRepository
from byom.dal.tenant_scope import scoped_client, scoped_table
from byom.governance import tenant_data
from byom.governance.tenant_data import GovernanceStore, TenantData
from byom.settings import admin_settings


def _open_tenant(tenant_id: str) -> TenantData:
    settings = admin_settings()
    return TenantData(
        records=AuditTable(scoped_table(tenant_id, settings.audit_table)),
        content=ContentStore(
            scoped_client(tenant_id, "s3"),
            scoped_client(tenant_id, "kms"),
            settings.data_bucket,
            settings.kms_key_id,
        ),
        cache=ResponseCacheTable(scoped_table(tenant_id, settings.cache_table)),
    )


@lru_cache(maxsize=1)
def store() -> GovernanceStore:
    settings = admin_settings()
    return GovernanceStore(
        tenants=TenantRepository(table(settings.tenants_table)),
        policies=PolicyRepository(table(settings.policies_table)),
        open_tenant=_open_tenant,
    )


governance = Router()


@governance.get("/admin/tenants/<tenant_id>/audit")
def list_audit(tenant_id: str):  # type: ignore[no-untyped-def]
    params = governance.current_event.query_string_parameters or {}
    return ok(tenant_data.list_audit(store(), principal(governance), tenant_id, params))


# API Gateway passes path segments as the client encoded them: an email's `@` arrives as `%40`.


@governance.get("/admin/tenants/<tenant_id>/subjects/<user>")
def export_subject(tenant_id: str, user: str):  # type: ignore[no-untyped-def]
    body = tenant_data.export_subject(
        store(), principal(governance), tenant_id, unquote(user), query(governance, "next_token")
    )
    return ok(body)


@governance.delete("/admin/tenants/<tenant_id>/subjects/<user>")
def erase_subject(tenant_id: str, user: str):  # type: ignore[no-untyped-def]
    erasure = tenant_data.erase_subject(
        store(), principal(governance), tenant_id, unquote(user), request_id(governance)
    )
    return ok(erasure.public(), erasure.http_status)
