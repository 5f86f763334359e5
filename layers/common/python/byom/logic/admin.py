"""Tenants, API keys, provider credentials and model aliases (SPEC §4.2)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from byom import clock
from byom.domain import (
    ApiKey,
    Budget,
    CreateKey,
    CreateModel,
    CreateTenant,
    Credential,
    ModelAlias,
    PutBudget,
    PutCredential,
    Tenant,
)
from byom.errors import Conflict, GatewayMisconfigured, InvalidRequest, NotFound
from byom.governance.guardrail import GuardrailScreen
from byom.governance.policy import BUILTIN_TYPES, Policy, PutPolicy, RateLimits
from byom.governance.rate_limits import Throttle, UsageKey, throttle_for
from byom.governance.redaction import validate_custom_pattern
from byom.logic import budgets
from byom.logic.access import ALL_ROLES, Principal, require_platform_admin, require_tenant_access
from byom.logic.money import highest_pricing
from byom.pricing import cache_points, catalog_price
from byom.security import generate_api_key, hash_api_key, validate_base_url

_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class UsagePlans(Protocol):
    """API Gateway usage plans (byom.governance.rate_limits): one per tenant, an API key per key."""

    def create_plan(self, tenant_id: str, throttle: Throttle | None) -> str: ...

    def set_throttle(self, plan_id: str, throttle: Throttle | None) -> None: ...

    def delete_plan(self, plan_id: str) -> None: ...

    def create_key(self, plan_id: str, name: str) -> UsageKey: ...

    def delete_key(self, usage_key_id: str) -> None: ...


class Tenants(Protocol):
    """byom.dal.repositories.TenantRepository."""

    def create(self, tenant: Tenant) -> None:
        """Raises Conflict when the tenant exists."""
        ...

    def get(self, tenant_id: str) -> Tenant | None: ...

    def list(self) -> list[Tenant]: ...

    def delete(self, tenant_id: str) -> None: ...

    def set_usage_plan(self, tenant_id: str, plan_id: str) -> str:
        """Record the tenant's usage plan unless one is recorded; the one recorded."""
        ...


class ApiKeys(Protocol):
    """byom.dal.repositories.ApiKeyRepository."""

    def create(self, key: ApiKey) -> None: ...

    def list(self, tenant_id: str) -> list[ApiKey]: ...

    def get(self, tenant_id: str, key_id: str) -> ApiKey | None: ...

    def revoke(self, key: ApiKey, at: int) -> ApiKey: ...

    def delete(self, key: ApiKey) -> None: ...


class Credentials(Protocol):
    """byom.dal.repositories.CredentialRepository: metadata only, the key is in `secrets`."""

    def put(self, credential: Credential) -> None: ...

    def get(self, tenant_id: str, name: str) -> Credential | None: ...

    def list(self, tenant_id: str) -> list[Credential]: ...

    def delete(self, tenant_id: str, name: str) -> None: ...


class Models(Protocol):
    """byom.dal.repositories.ModelRepository."""

    def create(self, model: ModelAlias) -> None:
        """Raises Conflict when the alias exists."""
        ...

    def list(self, tenant_id: str) -> list[ModelAlias]: ...

    def delete(self, tenant_id: str, alias: str) -> None: ...


class ProviderSecrets(Protocol):
    """byom.dal.secrets.SecretStore: the provider keys themselves."""

    def put(self, tenant_id: str, credential: str, value: str) -> tuple[str, bool]:
        """The secret's ARN, and whether it was created (not updated)."""
        ...

    def delete(self, tenant_id: str, credential: str) -> None: ...


class Policies(Protocol):
    """byom.dal.policies.PolicyRepository: each tenant's governance policy (the defaults when it
    has none stored)."""

    def get(self, tenant_id: str) -> Policy: ...

    def put(self, policy: Policy) -> None: ...

    def delete(self, tenant_id: str) -> None: ...


@dataclass
class AdminStore:
    """The collaborators admin logic needs; tests pass in-memory fakes."""

    tenants: Tenants
    keys: ApiKeys
    credentials: Credentials
    models: Models
    secrets: ProviderSecrets
    allow_loopback_http: bool = False
    usage: budgets.BudgetTable | None = None
    """The usage table (budgets); None where budgets are not kept (unit tests of other logic)."""
    alarms: budgets.SpendAlarms | None = None
    """Per-tenant spend alarms (byom.dal.alarms.SpendAlarms); None: no alarms."""
    policies: Policies | None = None
    """Governance policies; None where not kept (unit tests of other logic)."""
    guardrails: GuardrailScreen | None = None
    """Bedrock Guardrails, to check that a policy's guardrail exists."""
    tenant_usage: Callable[[str], budgets.UsageReader] | None = None
    """The usage table of one tenant, opened with credentials scoped to it (reports read it)."""
    usage_plans: UsagePlans | None = None
    """API Gateway usage plans; None where the API enforces none (handler tests without a stage)."""


def _tenant(
    store: AdminStore, principal: Principal, tenant_id: str, roles: Sequence[str] = ("admin",)
) -> Tenant:
    require_tenant_access(principal, tenant_id, roles)
    tenant = store.tenants.get(tenant_id)
    if tenant is None:
        raise NotFound(f"No tenant '{tenant_id}'")
    return tenant


# Tenants


def create_tenant(store: AdminStore, principal: Principal, body: CreateTenant) -> Tenant:
    require_platform_admin(principal)
    tenant = Tenant(
        id=clock.new_id("tnt"),
        name=body.name,
        monthly_budget_usd=body.monthly_budget_usd,
        created_at=clock.now(),
    )
    store.tenants.create(tenant)
    if body.monthly_budget_usd and store.usage is not None:
        # The budget of the tenant's creation is a hard one with the default warnings.
        budgets.put_budget(
            store.usage,
            store.alarms,
            store.keys,
            tenant.id,
            PutBudget(monthly_limit_usd=body.monthly_budget_usd),
        )
    return tenant


def list_tenants(store: AdminStore, principal: Principal) -> list[Tenant]:
    require_platform_admin(principal)
    return store.tenants.list()


def get_tenant(store: AdminStore, principal: Principal, tenant_id: str) -> Tenant:
    return _tenant(store, principal, tenant_id)


def delete_tenant(store: AdminStore, principal: Principal, tenant_id: str) -> None:
    """Children first, the tenant record last: a failure part-way leaves a tenant a retry can finish."""
    tenant = _tenant(store, principal, tenant_id, roles=())
    for model in store.models.list(tenant_id):
        store.models.delete(tenant_id, model.alias)
    for credential in store.credentials.list(tenant_id):
        store.secrets.delete(tenant_id, credential.name)
        store.credentials.delete(tenant_id, credential.name)
    for key in store.keys.list(tenant_id):
        _delete_usage_key(store, key)
        store.keys.delete(key)
    if store.usage is not None:
        store.usage.delete_budget(tenant_id)
    if store.alarms is not None:
        store.alarms.delete(tenant_id)
    if store.policies is not None:
        store.policies.delete(tenant_id)
    if store.usage_plans is not None and tenant.usage_plan_id:
        store.usage_plans.delete_plan(tenant.usage_plan_id)
    store.tenants.delete(tenant_id)


# API keys


def create_key(
    store: AdminStore, principal: Principal, tenant_id: str, body: CreateKey
) -> tuple[ApiKey, str]:
    """Return the stored key and the plaintext, which is shown once and never stored.

    The key's API Gateway API key is created first, in the tenant's usage plan, and deleted again
    if the key cannot be stored: a stored key always has one."""
    tenant = _tenant(store, principal, tenant_id)
    plaintext = generate_api_key()
    key = ApiKey(
        id=clock.new_id("key"),
        tenant_id=tenant_id,
        name=body.name,
        role=body.role,
        key_hash=hash_api_key(plaintext),
        last4=plaintext[-4:],
        created_at=clock.now(),
    )
    usage_key = None
    if store.usage_plans is not None:
        usage_key = store.usage_plans.create_key(_usage_plan(store, store.usage_plans, tenant), key.id)
        key = key.model_copy(update={"usage_key_id": usage_key.id, "usage_key": usage_key.value})
    try:
        store.keys.create(key)
    except Exception:
        _delete_usage_key(store, key)
        raise
    return key, plaintext


def list_keys(store: AdminStore, principal: Principal, tenant_id: str) -> list[ApiKey]:
    _tenant(store, principal, tenant_id)
    return store.keys.list(tenant_id)


def revoke_key(store: AdminStore, principal: Principal, tenant_id: str, key_id: str) -> ApiKey:
    _tenant(store, principal, tenant_id)
    key = store.keys.get(tenant_id, key_id)
    if key is None:
        raise NotFound(f"No API key '{key_id}'")
    revoked = store.keys.revoke(key, clock.now())
    # After the revocation, which is what refuses the key (401): this only tidies its usage plan.
    _delete_usage_key(store, key)
    return revoked


# Rate limits (SPEC §8)


def _usage_plan(store: AdminStore, plans: UsagePlans, tenant: Tenant) -> str:
    """The tenant's usage plan, created without a throttle of its own on first need. Of two plans
    created at once, the one recorded first is kept and the other deleted."""
    if tenant.usage_plan_id:
        return tenant.usage_plan_id
    created = plans.create_plan(tenant.id, None)
    try:
        kept: str = store.tenants.set_usage_plan(tenant.id, created)
    except Exception:
        plans.delete_plan(created)
        raise
    if kept != created:
        plans.delete_plan(created)
    return kept


def _delete_usage_key(store: AdminStore, key: ApiKey) -> None:
    if store.usage_plans is not None and key.usage_key_id:
        store.usage_plans.delete_key(key.usage_key_id)


def _apply_rate_limits(store: AdminStore, tenant: Tenant, limits: RateLimits) -> Throttle | None:
    throttle = throttle_for(limits.requests_per_minute)
    plans = store.usage_plans
    if plans is None or (throttle is None and not tenant.usage_plan_id):
        return throttle
    plans.set_throttle(_usage_plan(store, plans, tenant), throttle)
    return throttle


# Provider credentials


def _credential_name(name: str) -> str:
    if not _CREDENTIAL_NAME.match(name):
        raise InvalidRequest(
            "Credential names are 1-64 letters, digits, '-' or '_', starting with a letter or digit",
            param="name",
        )
    return name


def _check_credential_fields(body: PutCredential, allow_loopback_http: bool) -> str | None:
    if body.provider == "openai" and not body.api_key:
        raise InvalidRequest("provider 'openai' needs an api_key", param="api_key")
    if body.provider == "openai_compatible" and not body.base_url:
        raise InvalidRequest("provider 'openai_compatible' needs a base_url", param="base_url")
    if body.api_key is not None and (body.api_key != body.api_key.strip() or not body.api_key.isprintable()):
        raise InvalidRequest("api_key must be printable, without surrounding whitespace", param="api_key")
    if body.base_url is None:
        return None
    return validate_base_url(body.base_url, allow_loopback_http=allow_loopback_http)


def put_credential(
    store: AdminStore, principal: Principal, tenant_id: str, name: str, body: PutCredential
) -> Credential:
    """Write the key to Secrets Manager, then the metadata; undo a newly created secret if that fails."""
    _tenant(store, principal, tenant_id)
    _credential_name(name)
    base_url = _check_credential_fields(body, store.allow_loopback_http)
    previous = store.credentials.get(tenant_id, name)
    if previous is not None and previous.provider != body.provider:
        users = [m.alias for m in store.models.list(tenant_id) if m.credential == name]
        if users:
            raise Conflict(
                f"Credential '{name}' is used by {', '.join(users)}; its provider cannot change",
                param="provider",
            )

    secret_arn, created = (None, False)
    if body.api_key is not None:
        secret_arn, created = store.secrets.put(tenant_id, name, body.api_key)
    credential = Credential(
        tenant_id=tenant_id,
        name=name,
        provider=body.provider,
        base_url=base_url,
        key_last4=body.api_key[-4:] if body.api_key else None,
        secret_arn=secret_arn,
        responses=body.responses,
        updated_at=clock.now(),
    )
    try:
        store.credentials.put(credential)
    except Exception:
        if created:
            store.secrets.delete(tenant_id, name)
        raise
    if body.api_key is None and previous is not None and previous.secret_arn:
        store.secrets.delete(tenant_id, name)
    return credential


def list_credentials(store: AdminStore, principal: Principal, tenant_id: str) -> list[Credential]:
    _tenant(store, principal, tenant_id)
    return store.credentials.list(tenant_id)


def delete_credential(store: AdminStore, principal: Principal, tenant_id: str, name: str) -> None:
    _tenant(store, principal, tenant_id)
    if store.credentials.get(tenant_id, name) is None:
        raise NotFound(f"No credential '{name}'")
    users = [m.alias for m in store.models.list(tenant_id) if m.credential == name]
    if users:
        raise Conflict(f"Credential '{name}' is used by {', '.join(users)}; delete those aliases first")
    store.secrets.delete(tenant_id, name)
    store.credentials.delete(tenant_id, name)


# Model aliases


def find_cycle(fallbacks: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A fallback chain that leads back to itself, as the list of aliases on it, or None."""
    done: set[str] = set()

    def visit(alias: str, path: list[str]) -> list[str] | None:
        if alias in path:
            return [*path[path.index(alias) :], alias]
        if alias in done:
            return None
        for nxt in fallbacks.get(alias, ()):
            cycle = visit(nxt, [*path, alias])
            if cycle:
                return cycle
        done.add(alias)
        return None

    for alias in fallbacks:
        cycle = visit(alias, [])
        if cycle:
            return cycle
    return None


def create_model(store: AdminStore, principal: Principal, tenant_id: str, body: CreateModel) -> ModelAlias:
    _tenant(store, principal, tenant_id)
    if body.provider in ("openai", "openai_compatible") and body.credential is None:
        raise InvalidRequest(f"provider '{body.provider}' needs a credential", param="credential")
    if body.credential is not None:
        credential = store.credentials.get(tenant_id, body.credential)
        if credential is None:
            raise InvalidRequest(f"No credential '{body.credential}'", param="credential")
        if credential.provider != body.provider:
            wrong = f"Credential '{body.credential}' is for provider '{credential.provider}'"
            raise InvalidRequest(f"{wrong}, not '{body.provider}'", param="credential")
    if len(set(body.fallbacks)) != len(body.fallbacks):
        raise InvalidRequest("fallbacks must not repeat an alias", param="fallbacks")
    existing = {m.alias: m for m in store.models.list(tenant_id)}
    if body.alias in existing:
        raise Conflict(f"Model alias '{body.alias}' already exists", param="alias")
    missing = [a for a in body.fallbacks if a not in existing]
    if missing:
        raise InvalidRequest(f"Unknown fallback alias: {', '.join(missing)}", param="fallbacks")
    graph = {alias: model.fallbacks for alias, model in existing.items()} | {body.alias: body.fallbacks}
    cycle = find_cycle(graph)
    if cycle:
        raise InvalidRequest(f"fallbacks form a cycle: {' -> '.join(cycle)}", param="fallbacks")
    if body.prompt_caching and body.provider == "bedrock" and not cache_points(body.model_id):
        # Bedrock refuses a cache point the model does not take: better a 400 now than every call.
        raise InvalidRequest(
            f"Model '{body.model_id}' does not take Bedrock cache points (per the price catalog): "
            "leave 'prompt_caching' off",
            param="prompt_caching",
        )
    pricing = body.pricing or catalog_price(body.model_id)
    if pricing is None:
        raise InvalidRequest(
            f"No price is known for model '{body.model_id}': give 'pricing' "
            "(input_per_1k_usd, output_per_1k_usd) so its calls can be metered and budgeted",
            param="pricing",
        )
    # A fallback answers the same request, so a reservation must price the dearest model on the chain.
    chain = [pricing, *(existing[a].budget_pricing or existing[a].pricing for a in body.fallbacks)]

    model = ModelAlias(
        tenant_id=tenant_id,
        alias=body.alias,
        provider=body.provider,
        model_id=body.model_id,
        credential=body.credential,
        pricing=pricing,
        fallbacks=body.fallbacks,
        cache_ttl_seconds=body.cache_ttl_seconds,
        max_output_tokens=body.max_output_tokens,
        eval_threshold=body.eval_threshold,
        redaction_mode=body.redaction_mode,
        prompt_caching=body.prompt_caching,
        budget_pricing=highest_pricing(chain),
        created_at=clock.now(),
    )
    store.models.create(model)
    return model


def list_models(store: AdminStore, principal: Principal, tenant_id: str) -> list[ModelAlias]:
    _tenant(store, principal, tenant_id, roles=ALL_ROLES)
    return sorted(store.models.list(tenant_id), key=lambda m: m.alias)


def delete_model(store: AdminStore, principal: Principal, tenant_id: str, alias: str) -> None:
    _tenant(store, principal, tenant_id)
    models = store.models.list(tenant_id)
    if not any(m.alias == alias for m in models):
        raise NotFound(f"No model alias '{alias}'")
    users = [m.alias for m in models if alias in m.fallbacks]
    if users:
        raise Conflict(f"Alias '{alias}' is a fallback of {', '.join(users)}; remove it there first")
    store.models.delete(tenant_id, alias)


# Budgets and usage


def _budgets(store: AdminStore) -> budgets.BudgetTable:
    if store.usage is None:
        raise GatewayMisconfigured("Budgets are not configured")
    return store.usage


def put_budget(store: AdminStore, principal: Principal, tenant_id: str, body: PutBudget) -> Budget:
    _tenant(store, principal, tenant_id)
    return budgets.put_budget(_budgets(store), store.alarms, store.keys, tenant_id, body)


def get_budget(store: AdminStore, principal: Principal, tenant_id: str) -> Budget:
    _tenant(store, principal, tenant_id, roles=ALL_ROLES)
    return budgets.get_budget(_budgets(store), tenant_id)


def delete_budget(store: AdminStore, principal: Principal, tenant_id: str) -> None:
    _tenant(store, principal, tenant_id)
    budgets.delete_budget(_budgets(store), store.alarms, tenant_id)


def usage_report(
    store: AdminStore, principal: Principal, tenant_id: str, month: str | None, group_by: str | None
) -> dict[str, Any]:
    """Every role of the tenant reads its usage (SPEC §4.2), with the tenant's own credentials."""
    _tenant(store, principal, tenant_id, roles=ALL_ROLES)
    reader = store.tenant_usage(tenant_id) if store.tenant_usage is not None else None
    return budgets.report(_budgets(store), tenant_id, month, group_by, reader=reader)


# Governance policy


def _check_policy(store: AdminStore, body: PutPolicy) -> None:
    """Everything that can be wrong with a policy, found before anything is stored."""
    names: set[str] = set()
    for i, custom in enumerate(body.redaction.custom):
        param = f"redaction.custom.{i}"
        if custom.name in BUILTIN_TYPES or custom.name in names:
            raise InvalidRequest(f"{param}.name: '{custom.name}' is already a type", param=f"{param}.name")
        names.add(custom.name)
        try:
            validate_custom_pattern(custom.pattern)
        except ValueError as error:
            raise InvalidRequest(f"{param}.pattern: {error}", param=f"{param}.pattern") from None
    guardrail = body.redaction.guardrail
    if guardrail is not None and (
        store.guardrails is None or not store.guardrails.exists(guardrail.id, guardrail.version)
    ):
        raise InvalidRequest(
            f"redaction.guardrail: no guardrail '{guardrail.id}' version '{guardrail.version}' here",
            param="redaction.guardrail",
        )


def put_policy(store: AdminStore, principal: Principal, tenant_id: str, body: PutPolicy) -> Policy:
    tenant = _tenant(store, principal, tenant_id)
    _check_policy(store, body)
    policy = Policy.model_validate(body.model_dump() | {"tenant_id": tenant_id, "updated_at": clock.now()})
    # The usage plan first: if API Gateway refuses, nothing is stored and the old policy holds.
    _apply_rate_limits(store, tenant, body.rate_limits)
    _policies(store).put(policy)
    return policy


def get_policy(store: AdminStore, principal: Principal, tenant_id: str) -> Policy:
    _tenant(store, principal, tenant_id)
    return _policies(store).get(tenant_id)


def _policies(store: AdminStore) -> Policies:
    if store.policies is None:
        raise GatewayMisconfigured("Governance policies are not configured for this function")
    return store.policies
