"""Data-plane routes (SPEC §4.1, §4.3) served by the gateway function."""

from __future__ import annotations

from functools import lru_cache

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.api_gateway import Router

from byom.api.http import build_resolver, listing, ok, principal
from byom.dal.aws import table
from byom.dal.repositories import ModelRepository
from byom.logic.access import require_tenant_key
from byom.settings import gateway_settings

health = Router()


@health.get("/health")
def get_health():  # type: ignore[no-untyped-def]
    return ok({"status": "ok"})


@lru_cache(maxsize=1)
def model_repository() -> ModelRepository:
    return ModelRepository(table(gateway_settings().models_table))


models = Router()


@models.get("/v1/models")
def list_models():  # type: ignore[no-untyped-def]
    tenant_id = require_tenant_key(principal(models))
    aliases = sorted(model_repository().list(tenant_id), key=lambda m: m.alias)
    return ok(
        listing(
            [
                {"id": m.alias, "object": "model", "created": m.created_at, "owned_by": m.provider}
                for m in aliases
            ]
        )
    )


def build_gateway_app() -> APIGatewayRestResolver:
    app = build_resolver()
    for router in (health, models):
        app.include_router(router)
    return app
