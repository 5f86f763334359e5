"""Admin routes over a tenant's governance data (SPEC §4.2): audit records, data-subject export and
erasure. Each is one call of byom.governance.tenant_data."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from byom.api.web import RequestContext, context, ok
from byom.dal.audit import AuditTable
from byom.dal.aws import table
from byom.dal.cache import ResponseCacheTable
from byom.dal.content import ContentStore
from byom.dal.policies import PolicyRepository
from byom.dal.repositories import TenantRepository
from byom.dal.responses import ResponseStore, tenant_scoped
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
        responses=stored_responses(),
    )


@lru_cache(maxsize=1)
def stored_responses() -> ResponseStore:
    """One for the function: it opens each tenant's partition on that tenant's scoped session."""
    settings = admin_settings()
    return tenant_scoped(settings.responses_table, settings.data_bucket, settings.kms_key_id)


@lru_cache(maxsize=1)
def store() -> GovernanceStore:
    settings = admin_settings()
    return GovernanceStore(
        tenants=TenantRepository(table(settings.tenants_table)),
        policies=PolicyRepository(table(settings.policies_table)),
        open_tenant=_open_tenant,
    )


Context = Annotated[RequestContext, Depends(context)]

governance = APIRouter()


@governance.get("/admin/tenants/{tenant_id}/audit")
def list_audit(ctx: Context, request: Request, tenant_id: str) -> JSONResponse:
    params = dict(request.query_params)  # the last value of each, as API Gateway's single-value map
    return ok(tenant_data.list_audit(store(), ctx.principal, tenant_id, params))


# API Gateway passes path segments as the client encoded them: an email's `@` arrives as `%40`
# (byom.api.lambda_adapter hands the app the path undecoded).


@governance.get("/admin/tenants/{tenant_id}/subjects/{user}")
def export_subject(
    ctx: Context, tenant_id: str, user: str, next_token: Annotated[str | None, Query()] = None
) -> JSONResponse:
    body = tenant_data.export_subject(store(), ctx.principal, tenant_id, unquote(user), next_token)
    return ok(body)


@governance.delete("/admin/tenants/{tenant_id}/subjects/{user}")
def erase_subject(ctx: Context, tenant_id: str, user: str) -> JSONResponse:
    erasure = tenant_data.erase_subject(store(), ctx.principal, tenant_id, unquote(user), ctx.request_id)
    return ok(erasure.public(), erasure.http_status)
