"""In-memory stand-ins for the repositories and the secret store, for logic tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from byom.domain import ApiKey, CallRead, Credential, ModelAlias, Tenant
from byom.errors import Conflict
from byom.governance.policy import Policy, default_policy
from byom.governance.rate_limits import Throttle, UsageKey
from byom.money import BudgetState


class FakeTenants:
    def __init__(self) -> None:
        self.items: dict[str, Tenant] = {}

    def create(self, tenant: Tenant) -> None:
        if tenant.id in self.items:
            raise Conflict("tenant already exists")
        self.items[tenant.id] = tenant

    def get(self, tenant_id: str) -> Tenant | None:
        return self.items.get(tenant_id)

    def list(self) -> list[Tenant]:
        return list(self.items.values())

    def delete(self, tenant_id: str) -> None:
        self.items.pop(tenant_id, None)

    def set_usage_plan(self, tenant_id: str, plan_id: str) -> str:
        tenant = self.items.get(tenant_id)
        if tenant is None:
            raise Conflict(f"tenant '{tenant_id}' was deleted meanwhile")
        if tenant.usage_plan_id is None:
            self.items[tenant_id] = tenant.model_copy(update={"usage_plan_id": plan_id})
            return plan_id
        return tenant.usage_plan_id


class FakeKeys:
    def __init__(self) -> None:
        self.items: dict[str, ApiKey] = {}

    def create(self, key: ApiKey) -> None:
        self.items[key.key_hash] = key

    def get_by_hash(self, key_hash: str) -> ApiKey | None:
        return self.items.get(key_hash)

    def list(self, tenant_id: str) -> list[ApiKey]:
        return [k for k in self.items.values() if k.tenant_id == tenant_id]

    def get(self, tenant_id: str, key_id: str) -> ApiKey | None:
        return next((k for k in self.list(tenant_id) if k.id == key_id), None)

    def revoke(self, key: ApiKey, at: int) -> ApiKey:
        revoked = key.model_copy(update={"revoked_at": key.revoked_at or at})
        self.items[key.key_hash] = revoked
        return revoked

    def delete(self, key: ApiKey) -> None:
        self.items.pop(key.key_hash, None)


class FakeCredentials:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Credential] = {}
        self.fail_next_put = False

    def put(self, credential: Credential) -> None:
        if self.fail_next_put:
            self.fail_next_put = False
            raise RuntimeError("simulated DynamoDB outage")
        self.items[(credential.tenant_id, credential.name)] = credential

    def get(self, tenant_id: str, name: str) -> Credential | None:
        return self.items.get((tenant_id, name))

    def list(self, tenant_id: str) -> list[Credential]:
        return [c for (t, _), c in self.items.items() if t == tenant_id]

    def delete(self, tenant_id: str, name: str) -> None:
        self.items.pop((tenant_id, name), None)


class FakeModels:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], ModelAlias] = {}

    def create(self, model: ModelAlias) -> None:
        if (model.tenant_id, model.alias) in self.items:
            raise Conflict("exists")
        self.items[(model.tenant_id, model.alias)] = model

    def get(self, tenant_id: str, alias: str) -> ModelAlias | None:
        return self.items.get((tenant_id, alias))

    def list(self, tenant_id: str) -> list[ModelAlias]:
        return [m for (t, _), m in self.items.items() if t == tenant_id]

    def delete(self, tenant_id: str, alias: str) -> None:
        self.items.pop((tenant_id, alias), None)


class FakeCalls:
    """The first read of a call (logic.invoke.CallReader) over the in-memory repositories.

    `policies` answers `get(tenant_id) -> Policy`; `state(tenant_id, month)` the budget state of a
    metered read (none given: calls are not metered); `minute_tokens` is what every metered read
    reports."""

    def __init__(
        self,
        models: FakeModels | None = None,
        credentials: FakeCredentials | None = None,
        *,
        policies: Any = None,
        state: Callable[[str, str], BudgetState] | None = None,
    ) -> None:
        self.models = models or FakeModels()
        self.credentials = credentials or FakeCredentials()
        self.policies = policies
        self.state = state
        self.minute_tokens = 0

    def read(
        self, tenant_id: str, alias: str, *, month: str | None = None, minute: str | None = None
    ) -> CallRead:
        model = self.models.get(tenant_id, alias)
        credential = self.credentials.get(tenant_id, model.credential) if model and model.credential else None
        if month is None or minute is None:
            return CallRead(model, credential, None, default_policy(tenant_id))
        policy = self.policies.get(tenant_id) if self.policies is not None else default_policy(tenant_id)
        state = self.state(tenant_id, month) if self.state is not None else None
        return CallRead(model, credential, state, policy, self.minute_tokens)


class FakeSecrets:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}

    def put(self, tenant_id: str, name: str, value: str) -> tuple[str, bool]:
        created = (tenant_id, name) not in self.values
        self.values[(tenant_id, name)] = value
        return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:byom/{tenant_id}/{name}", created

    def delete(self, tenant_id: str, name: str) -> None:
        self.values.pop((tenant_id, name), None)


class FakeClock:
    """Monotonic time that moves only when slept or advanced; the random source picks `fraction` of
    each range, so waits are known in advance."""

    def __init__(self, fraction: float = 1.0) -> None:
        self.now = 1000.0
        self.fraction = fraction
        self.sleeps: list[float] = []
        self.ranges: list[tuple[float, float]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def uniform(self, low: float, high: float) -> float:
        self.ranges.append((low, high))
        return low + (high - low) * self.fraction

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeResponseCache:
    """The response cache table in memory; it can be told to fail its reads or writes."""

    def __init__(self) -> None:
        self.items: dict[str, dict] = {}
        self.reads: list[str] = []
        self.fail_reads = False
        self.fail_writes = False

    def get(self, cache_key: str) -> dict | None:
        self.reads.append(cache_key)
        if self.fail_reads:
            raise RuntimeError("simulated DynamoDB outage")
        return self.items.get(cache_key)

    def put(self, item: dict) -> None:
        if self.fail_writes:
            raise RuntimeError("simulated DynamoDB outage")
        self.items[item["cache_key"]] = dict(item)


class FakeUsagePlans:
    """API Gateway usage plans in memory (byom.logic.admin.UsagePlans); API keys can be made to
    fail being added to their plan."""

    def __init__(self) -> None:
        self.plans: dict[str, Throttle | None] = {}
        self.plan_of_tenant: dict[str, str] = {}
        self.keys: dict[str, str] = {}  # usage key id -> plan id
        self.values: dict[str, str] = {}  # usage key id -> value
        self.fail_next_key = False

    def create_plan(self, tenant_id: str, throttle: Throttle | None) -> str:
        plan_id = f"plan{len(self.plans) + 1}"
        self.plans[plan_id] = throttle
        self.plan_of_tenant[tenant_id] = plan_id
        return plan_id

    def set_throttle(self, plan_id: str, throttle: Throttle | None) -> None:
        if plan_id not in self.plans:
            raise KeyError(plan_id)
        self.plans[plan_id] = throttle

    def delete_plan(self, plan_id: str) -> None:
        self.plans.pop(plan_id, None)

    def create_key(self, plan_id: str, name: str) -> UsageKey:
        if self.fail_next_key:
            self.fail_next_key = False
            raise RuntimeError("simulated API Gateway outage")
        if plan_id not in self.plans:
            raise KeyError(plan_id)
        key = UsageKey(id=f"uk{len(self.values) + 1}", value=f"usage-value-{name}-0123456789")
        self.keys[key.id] = plan_id
        self.values[key.id] = key.value
        return key

    def delete_key(self, usage_key_id: str) -> None:
        self.keys.pop(usage_key_id, None)


class FakePolicies:
    """byom.logic.admin.Policies in memory: a tenant with no stored policy has the defaults."""

    def __init__(self) -> None:
        self.items: dict[str, Policy] = {}

    def get(self, tenant_id: str) -> Policy:
        return self.items.get(tenant_id) or Policy(tenant_id=tenant_id)

    def put(self, policy: Policy) -> None:
        self.items[policy.tenant_id] = policy

    def delete(self, tenant_id: str) -> None:
        self.items.pop(tenant_id, None)
