"""EventBridge rules of the template whose targets are Lambda functions, delivered in-process.

moto's EventBridge keeps events and rules but does not invoke Lambda targets; the local stack's
own emulations (the Bedrock control plane) hand their events here, and every rule of the template
whose pattern matches invokes its functions with the event, as EventBridge does (asynchronously).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto.events.models import EventPattern

from local_stack.template import Resolver, Template

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalRule:
    logical_id: str
    pattern: EventPattern
    target_arns: tuple[str, ...]


def lambda_rules(template: Template, resolver: Resolver) -> list[LocalRule]:
    rules = []
    for logical_id, resource in template.of_type("AWS::Events::Rule"):
        props = resolver.resolve(resource.get("Properties", {}))
        if props.get("State", "ENABLED") != "ENABLED" or not props.get("EventPattern"):
            continue
        arns = tuple(t["Arn"] for t in props.get("Targets", []) if ":lambda:" in str(t.get("Arn", "")))
        if arns:
            rules.append(LocalRule(logical_id, EventPattern.load(json.dumps(props["EventPattern"])), arns))
    return rules


class LocalEventBus:
    def __init__(self, rules: list[LocalRule], invoke: Callable[[str, dict[str, Any]], Any]) -> None:
        self.rules = rules
        self._invoke = invoke
        self.delivered: list[tuple[str, str]] = []

    def put(self, event: dict[str, Any]) -> int:
        """Delivers the event to every matching rule's functions, each in its own thread; answers how many."""
        count = 0
        for rule in self.rules:
            if not rule.pattern.matches_event(event):  # type: ignore[arg-type]
                continue
            for arn in rule.target_arns:
                count += 1
                self.delivered.append((rule.logical_id, arn))
                threading.Thread(target=self._deliver, args=(arn, event), daemon=True).start()
        return count

    def _deliver(self, arn: str, event: dict[str, Any]) -> None:
        try:
            self._invoke(arn, event)
        except Exception as error:
            log.warning("delivering %s to %s failed: %s", event.get("detail-type"), arn, error)
