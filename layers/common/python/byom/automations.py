"""Automations (SPEC §9): request bodies, the automation and run records, and the typed errors of a run.

An automation is a trigger (an EventBridge Scheduler schedule or an event pattern), a model alias and
a prompt template rendered from the event; each delivery of the trigger is a run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from byom.openai_types import ResponseFormat

RunStatus = Literal["queued", "running", "succeeded", "failed", "awaiting_approval", "rejected"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "rejected"})
MissingFields = Literal["mark", "fail"]
"""What a field the event lacks renders as: an explicit marker, or a failed run naming the field."""

# Bounds: a template is a prompt, not a document; an event pattern is EventBridge's own limit.
MAX_TEMPLATE_CHARS = 16_000
MAX_PATTERN_CHARS = 4_096
MAX_EVENT_BYTES = 256 * 1024
MAX_COMMENT_CHARS = 1_000

Name = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Alias = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# EventBridge's own rule for bus names (a name, not an ARN: only this account's buses).
BusName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._\-/]{1,256}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleTrigger(_Body):
    schedule: Annotated[str, StringConstraints(min_length=6, max_length=256, strip_whitespace=True)]
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class EventTrigger(_Body):
    event_pattern: dict[str, Any]
    event_bus: BusName | None = None


Trigger = ScheduleTrigger | EventTrigger


class CreateAutomation(_Body):
    name: Name
    model: Alias
    trigger: Trigger
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEMPLATE_CHARS)]
    response_format: ResponseFormat | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=100_000)
    approval: bool = False
    notify: bool = False
    enabled: bool = True
    missing_fields: MissingFields = "mark"


class UpdateAutomation(_Body):
    """PATCH: what may change in place. A new trigger is a new automation."""

    name: Name | None = None
    model: Alias | None = None
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEMPLATE_CHARS)] | None = None
    response_format: ResponseFormat | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=100_000)
    approval: bool | None = None
    notify: bool | None = None
    enabled: bool | None = None
    missing_fields: MissingFields | None = None


class RunNow(_Body):
    """POST .../run: fires the automation at once with this event (a schedule's tick when absent)."""

    event: dict[str, Any] | None = None


class Decision(_Body):
    approved: bool
    comment: Annotated[str, StringConstraints(max_length=MAX_COMMENT_CHARS)] = ""


@dataclass
class Automation:
    id: str
    tenant_id: str
    name: str
    model: str
    trigger: dict[str, Any]
    prompt: str
    created_at: int
    updated_at: int
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    approval: bool = False
    notify: bool = False
    enabled: bool = True
    missing_fields: str = "mark"

    @property
    def is_scheduled(self) -> bool:
        return "schedule" in self.trigger

    def public(self) -> dict[str, Any]:
        return asdict(self) | {"object": "automation"}


@dataclass
class RunError:
    message: str
    type: str
    code: str | None = None


@dataclass
class Run:
    id: str
    automation_id: str
    tenant_id: str
    status: str
    started_at: int
    request_id: str
    finished_at: int | None = None
    output: str | None = None
    error: dict[str, Any] | None = None
    cost_usd: float = 0.0
    attempts: int = 1
    trigger: dict[str, Any] = field(default_factory=dict)
    """Where the run came from: the event's source, detail-type and id."""
    task_token: str | None = None
    """The approval workflow's callback; never shown."""

    def public(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("task_token")
        body.pop("tenant_id")
        return body | {"object": "automation.run"}


@dataclass(frozen=True)
class Delivery:
    """One message of the automation queue: which automation, the event, and SQS's bookkeeping."""

    tenant_id: str
    automation_id: str
    event: dict[str, Any]
    message_id: str
    sent_at_ms: int
    receive_count: int


# -- typed errors --------------------------------------------------------------------------------


class TemplateFieldMissing(Exception):
    """The event has no value at a field path the template names, and the automation refuses to guess."""

    def __init__(self, path: str) -> None:
        super().__init__(f"The event has no field '{path}' that the prompt template names")
        self.path = path


class RetryLater(Exception):
    """The run failed in a way another delivery may fix (the provider failed): the message goes back."""


class DeliveryMalformed(Exception):
    """A queue message that is not an automation delivery; dropped, never retried."""
