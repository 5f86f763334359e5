"""The API Gateway REQUEST authorizer's decision, independent of the Lambda event plumbing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from byom.domain import ApiKey
from byom.logic.access import PLATFORM_ADMIN
from byom.security import API_KEY_PREFIX, bearer_token, hash_api_key, same_secret

PLATFORM_ADMIN_ID = "platform-admin"


class Unauthorized(Exception):
    """API Gateway answers 401 only when the authorizer fails with exactly this message."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


class KeyLookup(Protocol):
    def get_by_hash(self, key_hash: str) -> ApiKey | None: ...


def api_wildcard_arn(method_arn: str) -> str:
    """arn:...:api-id/stage/METHOD/path → arn:...:api-id/stage/*.

    The decision is cached per key, so it must allow every route the key may reach;
    role checks happen in the functions.
    """
    prefix, _, resource = method_arn.partition(":execute-api:")
    region_account_api = resource.split("/", 2)
    if len(region_account_api) < 2:
        return method_arn
    return f"{prefix}:execute-api:{region_account_api[0]}/{region_account_api[1]}/*"


def policy(
    principal_id: str, method_arn: str, context: dict[str, str], usage_key: str | None = None
) -> dict[str, Any]:
    """The answer API Gateway expects; `usage_key` is the API key value of the caller's usage plan
    (the API's key source is AUTHORIZER), without which a method requiring an API key answers 403."""
    decision: dict[str, Any] = {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": api_wildcard_arn(method_arn)}
            ],
        },
        "context": context,
    }
    if usage_key:
        decision["usageIdentifierKey"] = usage_key
    return decision


def authorize(
    authorization: str | None,
    method_arn: str,
    keys: KeyLookup,
    admin_key: Callable[[], str],
    platform_usage_key: str | None = None,
) -> dict:
    """`platform_usage_key`: the API key value of the stack's platform usage plan (no secret: API
    Gateway takes usage keys from this authorizer only), returned for the platform admin."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized()
    if token.startswith(API_KEY_PREFIX):
        key = keys.get_by_hash(hash_api_key(token))
        if key is not None:
            if key.revoked_at is not None:
                raise Unauthorized()
            context = {"principal": "tenant", "tenant_id": key.tenant_id, "key_id": key.id, "role": key.role}
            # Read with the key itself: naming its usage plan costs no request of its own.
            return policy(key.id, method_arn, context, key.usage_key)
        # Not a tenant's: the operator may have chosen an admin key that looks like one.
    if same_secret(token, admin_key()):
        context = {
            "principal": PLATFORM_ADMIN,
            "tenant_id": "",
            "key_id": PLATFORM_ADMIN_ID,
            "role": PLATFORM_ADMIN,
        }
        return policy(PLATFORM_ADMIN_ID, method_arn, context, platform_usage_key)
    raise Unauthorized()
