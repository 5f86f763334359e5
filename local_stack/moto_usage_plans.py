"""moto's API Gateway usage plans, read by the local API Gateway, and one fix to moto.

The fix: moto stores a usage plan's `rateLimit` patched through UpdateUsagePlan as an integer
(`int("0.2")` fails), while API Gateway takes any number: a plan of 12 requests per minute is
0.2 per second (byom.governance.rate_limits). Here the rate is kept as the number it was given.
"""

from __future__ import annotations

from typing import Any

from moto.apigateway.models import UsagePlan, apigateway_backends

from local_stack.apigateway import PlanLimits
from local_stack.template import ACCOUNT_ID, REGION

_RATE = "/throttle/rateLimit"


def install() -> None:
    original = UsagePlan.apply_patch_operations
    if getattr(original, "keeps_fractional_rates", False):
        return

    def apply_patch_operations(self: UsagePlan, patch_operations: list[dict[str, Any]]) -> None:
        rates = [
            op for op in patch_operations if op.get("op") in ("add", "replace") and op.get("path") == _RATE
        ]
        original(self, [op for op in patch_operations if op not in rates])
        for op in rates:
            self.throttle["rateLimit"] = float(op["value"])

    apply_patch_operations.keeps_fractional_rates = True  # type: ignore[attr-defined]
    UsagePlan.apply_patch_operations = apply_patch_operations  # type: ignore[method-assign]


class MotoUsagePlans:
    """The local stack's usage plans, read from moto's backend in this process (no HTTP round trip:
    the local API Gateway asks on a key's first call and after its cache expires)."""

    def plan_of(self, usage_key: str, api_id: str, stage: str) -> PlanLimits | None:
        backend = apigateway_backends[ACCOUNT_ID][REGION]
        # Copies: moto's server threads may add keys or plans meanwhile.
        key = next((k for k in list(backend.keys.values()) if k.value == usage_key), None)
        if key is None or not key.enabled:
            return None
        for plan in list(backend.get_usage_plans(api_key_id=key.id)):
            if not any(s.get("apiId") == api_id and s.get("stage") == stage for s in list(plan.api_stages)):
                continue
            throttle = dict(plan.throttle)
            if throttle.get("rateLimit") is None or throttle.get("burstLimit") is None:
                return PlanLimits(plan.id, None)
            return PlanLimits(plan.id, (float(throttle["rateLimit"]), int(throttle["burstLimit"])))
        return None
