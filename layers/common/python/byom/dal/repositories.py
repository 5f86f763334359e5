"""DynamoDB repositories for tenants, API keys, credential metadata and model aliases."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from byom.dal.aws import LazyClient, error_code, from_item, to_item, typed_item, untyped_item
from byom.domain import ApiKey, Credential, ModelAlias, Tenant
from byom.errors import Conflict


def _pages(call: Any, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = call(**kwargs)
        items.extend(from_item(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _batch_get(client: Any, requests: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Items by table name, read with one BatchGetItem through a low-level client (keys typed
    here and items untyped here, cheaper than a resource's client: byom.dal.aws.typed).

    Keys DynamoDB leaves unprocessed (throttling) are read one by one, with the SDK's retries.
    """
    typed = {name: {"Keys": [typed_item(key) for key in asked["Keys"]]} for name, asked in requests.items()}
    answer = client.batch_get_item(RequestItems=typed)
    found = {name: [untyped_item(i) for i in items] for name, items in answer.get("Responses", {}).items()}
    for name, unprocessed in (answer.get("UnprocessedKeys") or {}).items():
        for key in unprocessed.get("Keys", []):
            item = client.get_item(TableName=name, Key=key).get("Item")
            if item:
                found.setdefault(name, []).append(untyped_item(item))
    return found


def _put_new(table: Any, item: dict[str, Any], key_attr: str, conflict: str) -> None:
    try:
        table.put_item(Item=to_item(item), ConditionExpression=f"attribute_not_exists({key_attr})")
    except ClientError as error:
        if error_code(error) == "ConditionalCheckFailedException":
            raise Conflict(conflict) from None
        raise


class TenantRepository:
    """Items keyed by `tenant_id`; the API calls it `id`."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def create(self, tenant: Tenant) -> None:
        item = tenant.model_dump(exclude={"id"}) | {"tenant_id": tenant.id}
        _put_new(self._table, item, "tenant_id", "tenant already exists")

    def get(self, tenant_id: str) -> Tenant | None:
        item = self._table.get_item(Key={"tenant_id": tenant_id}).get("Item")
        return self._tenant(from_item(item)) if item else None

    def list(self) -> list[Tenant]:
        tenants = [self._tenant(i) for i in _pages(self._table.scan)]
        return sorted(tenants, key=lambda t: (t.created_at, t.id))

    def delete(self, tenant_id: str) -> None:
        self._table.delete_item(Key={"tenant_id": tenant_id})

    def set_usage_plan(self, tenant_id: str, plan_id: str) -> str:
        """Record the tenant's usage plan unless one is recorded already; answer the one recorded."""
        try:
            self._table.update_item(
                Key={"tenant_id": tenant_id},
                UpdateExpression="SET usage_plan_id = :plan",
                ConditionExpression="attribute_exists(tenant_id) AND attribute_not_exists(usage_plan_id)",
                ExpressionAttributeValues={":plan": plan_id},
            )
            return plan_id
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
        tenant = self.get(tenant_id)
        if tenant is None or tenant.usage_plan_id is None:
            raise Conflict(f"tenant '{tenant_id}' was deleted meanwhile")
        return tenant.usage_plan_id

    @staticmethod
    def _tenant(item: dict[str, Any]) -> Tenant:
        return Tenant.model_validate(item | {"id": item["tenant_id"]})


class ApiKeyRepository:
    """Keyed by the key's SHA-256 so the authorizer finds a key in one GetItem."""

    def __init__(self, table: Any, by_tenant_index: str = "by_tenant") -> None:
        self._table = table
        self._index = by_tenant_index

    def create(self, key: ApiKey) -> None:
        item = key.model_dump(exclude={"id"}) | {"key_id": key.id}
        _put_new(self._table, item, "key_hash", "API key already exists")

    def get_by_hash(self, key_hash: str) -> ApiKey | None:
        item = self._table.get_item(Key={"key_hash": key_hash}).get("Item")
        return self._key(from_item(item)) if item else None

    def list(self, tenant_id: str) -> list[ApiKey]:
        items = _pages(
            self._table.query, IndexName=self._index, KeyConditionExpression=Key("tenant_id").eq(tenant_id)
        )
        return sorted((self._key(i) for i in items), key=lambda k: (k.created_at, k.id))

    def get(self, tenant_id: str, key_id: str) -> ApiKey | None:
        items = _pages(
            self._table.query,
            IndexName=self._index,
            KeyConditionExpression=Key("tenant_id").eq(tenant_id) & Key("key_id").eq(key_id),
        )
        return self._key(items[0]) if items else None

    def revoke(self, key: ApiKey, at: int) -> ApiKey:
        self._table.update_item(
            Key={"key_hash": key.key_hash},
            UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :at)",
            ExpressionAttributeValues={":at": at},
        )
        return key.model_copy(update={"revoked_at": key.revoked_at or at})

    def delete(self, key: ApiKey) -> None:
        self._table.delete_item(Key={"key_hash": key.key_hash})

    @staticmethod
    def _key(item: dict[str, Any]) -> ApiKey:
        return ApiKey.model_validate(item | {"id": item["key_id"]})


class CredentialRepository:
    def __init__(self, table: Any) -> None:
        self._table = table

    def put(self, credential: Credential) -> None:
        self._table.put_item(Item=to_item(credential.model_dump()))

    def get(self, tenant_id: str, name: str) -> Credential | None:
        item = self._table.get_item(Key={"tenant_id": tenant_id, "name": name}).get("Item")
        return Credential.model_validate(from_item(item)) if item else None

    def list(self, tenant_id: str) -> list[Credential]:
        items = _pages(self._table.query, KeyConditionExpression=Key("tenant_id").eq(tenant_id))
        return [Credential.model_validate(i) for i in items]

    def delete(self, tenant_id: str, name: str) -> None:
        self._table.delete_item(Key={"tenant_id": tenant_id, "name": name})


class ModelRepository:
    # Aliases whose credential is remembered, per container; past it the memory starts over.
    MAX_REMEMBERED = 4096

    def __init__(self, table: Any, credentials_table: Any = None, client: Any = None) -> None:
        """`client`: the low-level DynamoDB client of `get_for_call`'s read; by default the
        function's own, made on first use."""
        self._table = table
        self._credentials = credentials_table
        self._client = client if client is not None else LazyClient("dynamodb")
        self._credential_of: dict[tuple[str, str], str] = {}

    def create(self, model: ModelAlias) -> None:
        _put_new(self._table, model.model_dump(), "alias", f"model alias '{model.alias}' already exists")

    def get(self, tenant_id: str, alias: str) -> ModelAlias | None:
        item = self._table.get_item(Key={"tenant_id": tenant_id, "alias": alias}).get("Item")
        return ModelAlias.model_validate(from_item(item)) if item else None

    def get_for_call(
        self, tenant_id: str, alias: str, also: Mapping[str, list[dict[str, Any]]] | None = None
    ) -> tuple[ModelAlias | None, Credential | None, dict[str, list[dict[str, Any]]]]:
        """The alias and the credential it names, read together with `also` (more keys by table
        name, e.g. the budget and ledger): one BatchGetItem on a warm call. Answers those items too.

        Which credential an alias names is known only once the alias is read, so the credential it
        named when last read here is asked for in the same batch; should the alias name another one
        now (deleted and created again), that one is read next. Both are read afresh every time:
        only which credential to ask for is remembered. Needs the credentials table.
        """
        if self._credentials is None:
            raise TypeError("get_for_call needs the credentials table")
        remembered = self._credential_of.get((tenant_id, alias))
        requests = {name: {"Keys": list(keys)} for name, keys in (also or {}).items()}
        requests[self._table.name] = {"Keys": [{"tenant_id": tenant_id, "alias": alias}]}
        if remembered:
            requests[self._credentials.name] = {"Keys": [{"tenant_id": tenant_id, "name": remembered}]}
        found = _batch_get(self._client, requests)
        extras = {name: found.get(name, []) for name in also or {}}
        model_items = found.get(self._table.name, [])
        if not model_items:
            self._credential_of.pop((tenant_id, alias), None)
            return None, None, extras
        model = ModelAlias.model_validate(model_items[0])
        if not model.credential:
            self._credential_of.pop((tenant_id, alias), None)
            return model, None, extras
        if model.credential == remembered:
            items = found.get(self._credentials.name, [])
            return model, Credential.model_validate(items[0]) if items else None, extras
        if len(self._credential_of) >= self.MAX_REMEMBERED:
            self._credential_of.clear()
        self._credential_of[(tenant_id, alias)] = model.credential
        item = self._credentials.get_item(Key={"tenant_id": tenant_id, "name": model.credential}).get("Item")
        return model, Credential.model_validate(from_item(item)) if item else None, extras

    def list(self, tenant_id: str) -> list[ModelAlias]:
        items = _pages(self._table.query, KeyConditionExpression=Key("tenant_id").eq(tenant_id))
        return [ModelAlias.model_validate(i) for i in items]

    def delete(self, tenant_id: str, alias: str) -> None:
        self._table.delete_item(Key={"tenant_id": tenant_id, "alias": alias})
