"""Events the functions put on the platform bus reach the template's Lambda rules.

moto's EventBridge accepts PutEvents but delivers only to the targets it supports (SQS, logs, ...),
and the template's rules are not created in it (local_stack.events delivers them in-process). Here
every event a function puts on the default bus (`BatchFinished` from the batch tasks, ...) is also
handed to the local stack's bus, as EventBridge would match it against the template's rules.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from moto.events.models import EventsBackend

from local_stack.template import ACCOUNT_ID, REGION

log = logging.getLogger(__name__)

PLATFORM_BUS = "default"
Forward = Callable[[dict[str, Any]], int]

_forward: Forward | None = None
_lock = threading.Lock()


def forward_to(forward: Forward | None) -> None:
    """Where events go from now on (None: nowhere, moto's own targets only)."""
    global _forward
    with _lock:
        _forward = forward


def _on_platform_bus(entry: dict[str, Any]) -> bool:
    bus = str(entry.get("EventBusName") or PLATFORM_BUS)
    return bus.rsplit("/", 1)[-1] == PLATFORM_BUS


def _event(entry: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": ACCOUNT_ID,
        "time": entry.get("Time") or "",
        "region": REGION,
        "resources": list(entry.get("Resources") or []),
        "detail": json.loads(entry["Detail"]),
    }


def install() -> None:
    """Patch moto's EventBridge backend in this process (idempotent)."""
    original = EventsBackend.put_events
    if getattr(original, "forwards_to_local_rules", False):
        return

    def put_events(self: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries = original(self, events)
        forward = _forward
        if forward is None:
            return entries
        for entry, result in zip(events, entries, strict=False):
            if "EventId" not in result or not _on_platform_bus(entry):
                continue
            try:
                forward(_event(entry, result["EventId"]))
            except Exception:
                log.exception("delivering %s to the template's rules failed", entry.get("DetailType"))
        return entries

    put_events.forwards_to_local_rules = True  # type: ignore[attr-defined]
    EventsBackend.put_events = put_events  # type: ignore[method-assign]
