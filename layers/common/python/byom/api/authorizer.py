"""Wiring of the authorizer decision to its collaborators (DynamoDB, Secrets Manager)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities import parameters

from byom.dal.aws import table
from byom.dal.repositories import ApiKeyRepository
from byom.logic.authorizer import authorize
from byom.settings import authorizer_settings


@lru_cache(maxsize=1)
def _keys() -> ApiKeyRepository:
    return ApiKeyRepository(table(authorizer_settings().api_keys_table))


def _admin_key() -> str:
    settings = authorizer_settings()
    return str(
        parameters.get_secret(settings.admin_key_secret_arn, max_age=settings.admin_key_max_age_seconds)
    )


def _header(headers: dict[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def authorize_event(event: dict[str, Any]) -> dict[str, Any]:
    return authorize(
        _header(event.get("headers"), "authorization"),
        event.get("methodArn", ""),
        _keys(),
        _admin_key,
        authorizer_settings().platform_usage_key,
    )
