"""Who may do what. A tenant key never learns whether another tenant's resource exists."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from byom.errors import AuthenticationFailed, NotFound, PermissionDenied

PLATFORM_ADMIN = "platform_admin"
ALL_ROLES = ("admin", "developer", "viewer")


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    tenant_id: str | None = None

    @property
    def is_platform_admin(self) -> bool:
        return self.role == PLATFORM_ADMIN

    @classmethod
    def from_authorizer(cls, context: Mapping[str, Any] | None) -> Principal:
        """Rebuild the caller from the authorizer's context (API Gateway passes strings only)."""
        context = context or {}
        role, key_id = context.get("role"), context.get("key_id")
        if not role or not key_id:
            raise AuthenticationFailed("Missing or invalid API key")
        if role == PLATFORM_ADMIN:
            return cls(key_id=key_id, role=role)
        if role not in ALL_ROLES or not context.get("tenant_id"):
            raise AuthenticationFailed("Missing or invalid API key")
        return cls(key_id=key_id, role=role, tenant_id=context["tenant_id"])


def require_platform_admin(principal: Principal) -> None:
    if not principal.is_platform_admin:
        raise PermissionDenied("This route needs the platform admin key")


def require_tenant_access(principal: Principal, tenant_id: str, roles: Collection[str] = ("admin",)) -> None:
    """Scope first (another tenant is a 404, whatever the role), then role (403)."""
    if principal.is_platform_admin:
        return
    if principal.tenant_id != tenant_id:
        raise NotFound(f"No tenant '{tenant_id}'")
    if principal.role not in roles:
        raise PermissionDenied(
            f"Role '{principal.role}' may not do this; it needs one of: {', '.join(roles)}"
        )


def require_tenant_key(principal: Principal, roles: Collection[str] = ALL_ROLES) -> str:
    """Data-plane routes act for the caller's own tenant; the platform admin key has none."""
    if principal.tenant_id is None:
        raise PermissionDenied("The platform admin key cannot call tenant routes; use a tenant API key")
    if principal.role not in roles:
        raise PermissionDenied(
            f"Role '{principal.role}' may not do this; it needs one of: {', '.join(roles)}"
        )
    return principal.tenant_id
