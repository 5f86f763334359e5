"""Time and identifiers, kept apart so logic can be tested with fixed values."""

from __future__ import annotations

import secrets
import time


def now() -> int:
    """Unix seconds, the timestamp format of OpenAI's API."""
    return int(time.time())


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
