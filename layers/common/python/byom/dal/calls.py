"""The first read of a call (SPEC §4.3): its alias, credential, budget, policy and minute counter."""

from __future__ import annotations

from typing import Any

from byom.dal.ledger import UsageTable
from byom.dal.policies import PolicyRepository
from byom.dal.repositories import ModelRepository
from byom.domain import CallRead
from byom.governance.policy import default_policy


class CallTables:
    """The alias, its credential, and (for a metered call) the usage and policy items: one
    BatchGetItem on a warm call (ModelRepository.get_for_call). It answers a domain value
    (byom.domain.CallRead) that its caller's Protocol names (logic.invoke.CallReader): neither
    layer imports the other."""

    def __init__(
        self,
        models: ModelRepository,
        usage: UsageTable | None = None,
        policies: PolicyRepository | None = None,
    ) -> None:
        self._models = models
        self._usage = usage
        self._policies = policies

    def read(
        self, tenant_id: str, alias: str, *, month: str | None = None, minute: str | None = None
    ) -> CallRead:
        if month is None or minute is None:
            model, credential, _ = self._models.get_for_call(tenant_id, alias)
            return CallRead(model, credential, None, default_policy(tenant_id))
        usage, policies = self._usage, self._policies
        also: dict[str, list[dict[str, Any]]] = {}
        if usage is not None:
            also[usage.name] = usage.call_keys(tenant_id, month, minute)
        if policies is not None:
            also[policies.name] = policies.call_keys(tenant_id)
        model, credential, extras = self._models.get_for_call(tenant_id, alias, also)
        if policies is not None:
            policy = policies.policy_of(extras.get(policies.name, []), tenant_id)
        else:
            policy = default_policy(tenant_id)
        if usage is None:
            return CallRead(model, credential, None, policy)
        items = extras.get(usage.name, [])
        return CallRead(
            model,
            credential,
            usage.budget_state(items, tenant_id),
            policy,
            usage.minute_tokens(items, tenant_id, month, minute),
        )
