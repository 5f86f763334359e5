"""The response cache table: one item per cached answer, keyed by `cache_key`, expiring at `expires_at`."""

from __future__ import annotations

from functools import cache
from typing import Any

from botocore.config import Config

from byom.dal.aws import configured_table, from_item

# The cache sits on the answer's path and is only worth its round trip when it is quick: one attempt
# with short timeouts, then the call goes on without it.
_CONFIG = Config(connect_timeout=1, read_timeout=1, retries={"mode": "standard", "total_max_attempts": 1})


@cache
def cache_table(name: str) -> Any:
    return configured_table(name, _CONFIG)


class ResponseCacheTable:
    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, cache_key: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key={"cache_key": cache_key}).get("Item")
        return from_item(item) if item else None

    def put(self, item: dict[str, Any]) -> None:
        # No Decimal conversion needed: the answer is one JSON string, the rest strings and ints.
        self._table.put_item(Item=item)

    def delete(self, cache_key: str) -> bool:
        """Remove an entry (a data subject's erasure); False if there was none."""
        return "Attributes" in self._table.delete_item(Key={"cache_key": cache_key}, ReturnValues="ALL_OLD")
