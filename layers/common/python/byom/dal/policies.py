"""The policies table: one governance policy per tenant (docs/contracts.md, Governance)."""

from __future__ import annotations

from typing import Any

from byom.dal.aws import from_item
from byom.governance.policy import Policy, default_policy


class PolicyRepository:
    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, tenant_id: str) -> Policy:
        item = self._table.get_item(Key={"tenant_id": tenant_id}).get("Item")
        return Policy.model_validate(from_item(item)) if item else default_policy(tenant_id)
