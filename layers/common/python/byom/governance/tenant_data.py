"""The admin routes over a tenant's governance data (SPEC §4.2): its audit records, and a data
subject's export and erasure. Access is checked first, then the tenant's data is opened through
credentials scoped to that tenant (byom.dal.tenant_scope), so no read can reach another's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from byom.domain import Tenant
from byom.errors import NotFound
from byom.governance import audit_query, subjects
from byom.governance.audit_query import AuditQuery, AuditSearch
from byom.governance.policy import Policy
from byom.governance.subjects import (
    Erasure,
    SubjectCache,
    SubjectContent,
    SubjectRecords,
    SubjectResponses,
)
from byom.logic.access import Principal, require_tenant_access


class Tenants(Protocol):
    def get(self, tenant_id: str) -> Tenant | None: ...


class Policies(Protocol):
    def get(self, tenant_id: str) -> Policy: ...


class AuditRecords(AuditSearch, SubjectRecords, Protocol):
    """byom.dal.audit.AuditTable."""


@dataclass(frozen=True)
class TenantData:
    """One tenant's records, stored content, cache entries and stored responses."""

    records: AuditRecords
    content: SubjectContent
    cache: SubjectCache
    responses: SubjectResponses


@dataclass(frozen=True)
class GovernanceStore:
    tenants: Tenants
    policies: Policies
    open_tenant: Callable[[str], TenantData]
    """The tenant's data through credentials that reach that tenant's only."""


def _tenant_data(store: GovernanceStore, principal: Principal, tenant_id: str) -> TenantData:
    """The tenant's `admin` keys and the platform admin; another tenant, or none, is a 404."""
    require_tenant_access(principal, tenant_id, ("admin",))
    if store.tenants.get(tenant_id) is None:
        raise NotFound(f"No tenant '{tenant_id}'")
    return store.open_tenant(tenant_id)


def list_audit(
    store: GovernanceStore, principal: Principal, tenant_id: str, params: Mapping[str, str]
) -> dict[str, Any]:
    """The query string is read after the access check: another tenant's key learns nothing from
    a validation error."""
    data = _tenant_data(store, principal, tenant_id)
    query = AuditQuery.model_validate(dict(params))
    return audit_query.search(tenant_id, query, records=data.records, content=data.content)


def export_subject(
    store: GovernanceStore, principal: Principal, tenant_id: str, user: str, page_token: str | None
) -> dict[str, Any]:
    data = _tenant_data(store, principal, tenant_id)
    return subjects.export(
        tenant_id,
        user,
        page_token,
        records=data.records,
        content=data.content,
        cache=data.cache,
        responses=data.responses,
    )


def erase_subject(
    store: GovernanceStore, principal: Principal, tenant_id: str, user: str, request_id: str
) -> Erasure:
    data = _tenant_data(store, principal, tenant_id)
    return subjects.erase(
        tenant_id,
        user,
        actor_key_id=principal.key_id,
        request_id=request_id,
        retention_days=store.policies.get(tenant_id).retention_days,
        records=data.records,
        content=data.content,
        cache=data.cache,
        responses=data.responses,
    )
