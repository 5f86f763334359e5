"""The policies table: one governance policy per tenant (docs/contracts.md, Governance)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from byom.dal.aws import from_item, to_item
from byom.governance.policy import Policy, default_policy


class PolicyRepository:
    def __init__(self, table: Any) -> None:
        self._table = table

    @property
    def name(self) -> str:
        return str(self._table.name)

    @staticmethod
    def call_keys(tenant_id: str) -> list[dict[str, str]]:
        """What a call reads, in the same BatchGetItem as its alias."""
        return [{"tenant_id": tenant_id}]

    @staticmethod
    def policy_of(items: Iterable[dict[str, Any]], tenant_id: str) -> Policy:
        for item in items:
            if item.get("tenant_id") == tenant_id:
                return Policy.model_validate(from_item(item))
        return default_policy(tenant_id)

    def get(self, tenant_id: str) -> Policy:
        item = self._table.get_item(Key={"tenant_id": tenant_id}).get("Item")
        return Policy.model_validate(from_item(item)) if item else default_policy(tenant_id)

    def put(self, policy: Policy) -> None:
        self._table.put_item(Item=to_item(policy.model_dump()))

    def delete(self, tenant_id: str) -> None:
        self._table.delete_item(Key={"tenant_id": tenant_id})
