"""Automations (SPEC §9): the admin operations, the safe prompt template, trigger validation, the run
a queue message becomes, and the approval workflow's tasks. No AWS here: collaborators are Protocols.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from byom import clock
from byom.automations import (
    MAX_EVENT_BYTES,
    MAX_PATTERN_CHARS,
    Automation,
    CreateAutomation,
    Decision,
    Delivery,
    DeliveryMalformed,
    EventTrigger,
    RetryLater,
    Run,
    RunNow,
    TemplateFieldMissing,
    UpdateAutomation,
)
from byom.errors import BudgetExceeded, ByomError, Conflict, InvalidRequest, NotFound, ProviderError
from byom.logic import money
from byom.logic.access import Principal, require_tenant_access
from byom.logic.invoke import Answer, Call
from byom.observability import logger
from byom.openai_types import ChatRequest

MANAGERS = ("admin",)
# Runs listed per page, newest first.
MAX_RUNS_LISTED = 100
MAX_AUTOMATIONS_PER_TENANT = 100
# What a run keeps of the answer, and what an AutomationResult event carries (EventBridge takes 256 KB).
MAX_OUTPUT_CHARS = 64_000
RESULT_DETAIL_TYPE = "AutomationResult"
RESULT_SOURCE = "byom"
# A schedule's tick, and a manual run without an event, look like this to the template.
SCHEDULED_SOURCE = "aws.scheduler"
SCHEDULED_DETAIL_TYPE = "Scheduled Event"
MANUAL_SOURCE = "byom.automations"
MANUAL_DETAIL_TYPE = "Manual Run"


# -- the prompt template -----------------------------------------------------------------------------

# `{{ detail.severity }}`, `{{ resources.0 }}`: field paths only. Anything else between braces is
# refused when the automation is saved, so nothing a tenant writes is ever evaluated.
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PATH = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
MAX_FIELDS = 100
MAX_PATH_CHARS = 256
# One value in a prompt: enough for a finding's description, bounded for a whole nested object.
MAX_VALUE_CHARS = 8_000
MAX_PROMPT_CHARS = 64_000


def template_fields(template: str) -> list[str]:
    """The field paths a template names; InvalidRequest when it holds anything but field paths."""
    fields = []
    for match in _PLACEHOLDER.finditer(template):
        path = match.group(1).strip()
        if len(path) > MAX_PATH_CHARS or not _PATH.match(path):
            raise InvalidRequest(
                f"'{{{{{path[:60]}}}}}' is not a field path: the template takes paths such as "
                "{{detail.severity}}, nothing else",
                param="prompt",
            )
        fields.append(path)
    rest = _PLACEHOLDER.sub("", template)
    if "{{" in rest or "}}" in rest:
        raise InvalidRequest("The template has an unclosed '{{' or a stray '}}'", param="prompt")
    if len(fields) > MAX_FIELDS:
        raise InvalidRequest(f"The template names more than {MAX_FIELDS} fields", param="prompt")
    return fields


_ABSENT = object()


def lookup(event: Any, path: str) -> Any:
    """The value at a dotted path of plain JSON data (keys, or list indexes); _ABSENT when there is none.
    Only mapping keys and list positions: no attribute of any Python object is ever read."""
    value = event
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _ABSENT
    return value


def _as_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"


def missing_marker(path: str) -> str:
    return f"<missing: {path}>"


def render(template: str, event: Mapping[str, Any], missing_fields: str = "mark") -> str:
    """The prompt for one event. A missing field renders as `<missing: path>`, or raises
    TemplateFieldMissing when the automation says `missing_fields: fail`."""
    template_fields(template)

    def value_of(match: re.Match[str]) -> str:
        path = match.group(1).strip()
        value = lookup(event, path)
        if value is _ABSENT or value is None:
            if missing_fields == "fail":
                raise TemplateFieldMissing(path)
            return missing_marker(path)
        return _as_text(value)

    prompt = _PLACEHOLDER.sub(value_of, template)
    return prompt if len(prompt) <= MAX_PROMPT_CHARS else prompt[:MAX_PROMPT_CHARS]


# -- triggers ----------------------------------------------------------------------------------------

_RATE = re.compile(r"^rate\((\d{1,6}) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\(([^()]+)\)$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/\-#L W]+$")
# The comparison operators EventBridge patterns accept (content filtering).
_MATCHERS = frozenset(
    {"prefix", "suffix", "anything-but", "numeric", "exists", "cidr", "equals-ignore-case", "wildcard"}
)
MAX_PATTERN_DEPTH = 10


def validate_schedule(expression: str, timezone: str | None) -> None:
    """What EventBridge Scheduler accepts of `rate(...)` and six-field `cron(...)`, and a real time zone."""
    rate = _RATE.match(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1 or (value == 1) != (not unit.endswith("s")):
            raise InvalidRequest(
                "A rate is 'rate(1 minute)' or 'rate(N minutes)' (also hours, days), N at least 1",
                param="trigger.schedule",
            )
    else:
        cron = _CRON.match(expression)
        fields = cron.group(1).split() if cron else []
        if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
            raise InvalidRequest(
                "A schedule is 'rate(...)' or 'cron(minutes hours day-of-month month day-of-week year)'",
                param="trigger.schedule",
            )
        if fields[2] != "?" and fields[4] != "?":
            raise InvalidRequest(
                "A cron expression needs '?' in day-of-month or day-of-week", param="trigger.schedule"
            )
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidRequest(f"'{timezone}' is not a time zone", param="trigger.timezone") from None


def validate_event_pattern(pattern: Mapping[str, Any]) -> None:
    """EventBridge's rules for a pattern, checked before it is sent: an object of fields whose leaves
    are non-empty arrays of values or of comparison objects. EventBridge judges the rest (a 400 too)."""
    if not pattern:
        raise InvalidRequest("An event pattern needs at least one field", param="trigger.event_pattern")
    if len(json.dumps(pattern)) > MAX_PATTERN_CHARS:
        raise InvalidRequest(
            f"An event pattern may be at most {MAX_PATTERN_CHARS} characters", param="trigger.event_pattern"
        )
    _check_pattern(pattern, "", 0)


def _check_pattern(node: Mapping[str, Any], where: str, depth: int) -> None:
    if depth > MAX_PATTERN_DEPTH:
        raise InvalidRequest("The event pattern is nested too deeply", param="trigger.event_pattern")
    for key, value in node.items():
        path = f"{where}.{key}" if where else key
        if isinstance(value, Mapping):
            if not value:
                raise InvalidRequest(f"'{path}' is an empty object", param="trigger.event_pattern")
            if key in ("$or",):
                raise InvalidRequest(f"'{path}' must be an array", param="trigger.event_pattern")
            _check_pattern(value, path, depth + 1)
        elif isinstance(value, list):
            if not value:
                raise InvalidRequest(f"'{path}' is an empty array", param="trigger.event_pattern")
            for item in value:
                _check_leaf(item, path, key, depth)
        else:
            raise InvalidRequest(
                f"'{path}' must be an array of values or an object of fields, as EventBridge requires",
                param="trigger.event_pattern",
            )


def _check_leaf(item: Any, path: str, key: str, depth: int) -> None:
    if key == "$or":
        if not isinstance(item, Mapping) or not item:
            raise InvalidRequest(f"'{path}' holds patterns (objects)", param="trigger.event_pattern")
        _check_pattern(item, path, depth + 1)
    elif isinstance(item, Mapping):
        if len(item) != 1 or not set(item) <= _MATCHERS:
            raise InvalidRequest(
                f"'{path}' has a comparison EventBridge does not know: {sorted(item)}; it knows "
                + ", ".join(sorted(_MATCHERS)),
                param="trigger.event_pattern",
            )
    elif isinstance(item, list):
        raise InvalidRequest(f"'{path}' holds a nested array", param="trigger.event_pattern")


# -- collaborators -----------------------------------------------------------------------------------


class AutomationRepository(Protocol):
    def put(self, automation: Automation) -> None: ...
    def get(self, tenant_id: str, automation_id: str) -> Automation | None: ...
    def list(self, tenant_id: str) -> list[Automation]: ...
    def delete(self, tenant_id: str, automation_id: str) -> None: ...
    def put_run(self, run: Run) -> None: ...
    def get_run(self, tenant_id: str, automation_id: str, run_id: str) -> Run | None: ...
    def list_runs(self, tenant_id: str, automation_id: str, limit: int) -> builtins.list[Run]: ...


class Triggers(Protocol):
    """The EventBridge rule or Scheduler schedule of each automation (named under the stack's prefix)."""

    def create(self, automation: Automation) -> None: ...
    def set_enabled(self, automation: Automation) -> None: ...
    def delete(self, automation: Automation) -> None: ...


class RunQueue(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


class ApprovalWorkflow(Protocol):
    def start(self, name: str, payload: dict[str, Any]) -> str: ...
    def succeed(self, token: str, output: dict[str, Any]) -> bool: ...


class ResultPublisher(Protocol):
    def publish(self, detail: dict[str, Any]) -> None: ...
    def notify(self, subject: str, message: str) -> None: ...


class AliasLookup(Protocol):
    def get(self, tenant_id: str, alias: str) -> Any: ...


ChatCall = Callable[[Call, ChatRequest], Answer]
"""The gateway's own invocation path: byom.logic.invoke.chat with the gateway's collaborators."""


@dataclass
class AutomationStore:
    automations: AutomationRepository
    triggers: Triggers
    queue: RunQueue
    models: AliasLookup
    workflow: ApprovalWorkflow | None = None
    now: Callable[[], int] = clock.now


# -- admin operations (SPEC §4.2) ----------------------------------------------------------------------


def _trigger_of(body: CreateAutomation) -> dict[str, Any]:
    trigger = body.trigger
    if isinstance(trigger, EventTrigger):
        validate_event_pattern(trigger.event_pattern)
        return {"event_pattern": trigger.event_pattern, "event_bus": trigger.event_bus or "default"}
    validate_schedule(trigger.schedule, trigger.timezone)
    return {"schedule": trigger.schedule, "timezone": trigger.timezone or "UTC"}


def _require_alias(store: AutomationStore, tenant_id: str, alias: str) -> None:
    if store.models.get(tenant_id, alias) is None:
        raise InvalidRequest(
            f"The tenant has no model alias '{alias}'", param="model", code="model_not_found"
        )


def create(store: AutomationStore, caller: Principal, tenant_id: str, body: CreateAutomation) -> Automation:
    require_tenant_access(caller, tenant_id, MANAGERS)
    template_fields(body.prompt)
    trigger = _trigger_of(body)
    _require_alias(store, tenant_id, body.model)
    if len(store.automations.list(tenant_id)) >= MAX_AUTOMATIONS_PER_TENANT:
        raise InvalidRequest(f"A tenant may have at most {MAX_AUTOMATIONS_PER_TENANT} automations")
    now = store.now()
    automation = Automation(
        id=clock.new_id("aut"),
        tenant_id=tenant_id,
        name=body.name,
        model=body.model,
        trigger=trigger,
        prompt=body.prompt,
        created_at=now,
        updated_at=now,
        response_format=body.response_format.model_dump(exclude_none=True) if body.response_format else None,
        max_tokens=body.max_tokens,
        approval=body.approval,
        notify=body.notify,
        enabled=body.enabled,
        missing_fields=body.missing_fields,
    )
    # The trigger first: a pattern EventBridge refuses leaves no record behind.
    store.triggers.create(automation)
    try:
        store.automations.put(automation)
    except Exception:
        store.triggers.delete(automation)
        raise
    return automation


def _existing(store: AutomationStore, caller: Principal, tenant_id: str, automation_id: str) -> Automation:
    require_tenant_access(caller, tenant_id, MANAGERS)
    automation = store.automations.get(tenant_id, automation_id)
    if automation is None:
        raise NotFound(f"No automation '{automation_id}'")
    return automation


def get(store: AutomationStore, caller: Principal, tenant_id: str, automation_id: str) -> Automation:
    return _existing(store, caller, tenant_id, automation_id)


def list_automations(store: AutomationStore, caller: Principal, tenant_id: str) -> list[Automation]:
    require_tenant_access(caller, tenant_id, MANAGERS)
    return sorted(store.automations.list(tenant_id), key=lambda a: (a.created_at, a.id), reverse=True)


def update(
    store: AutomationStore, caller: Principal, tenant_id: str, automation_id: str, body: UpdateAutomation
) -> Automation:
    automation = _existing(store, caller, tenant_id, automation_id)
    changes = body.model_dump(exclude_unset=True)
    if "prompt" in changes and body.prompt is not None:
        template_fields(body.prompt)
    if body.model is not None:
        _require_alias(store, tenant_id, body.model)
    if "response_format" in changes:
        changes["response_format"] = (
            body.response_format.model_dump(exclude_none=True) if body.response_format else None
        )
    changes = {k: v for k, v in changes.items() if v is not None or k in ("response_format", "max_tokens")}
    updated = replace(automation, **changes, updated_at=store.now())
    if updated.enabled != automation.enabled:
        store.triggers.set_enabled(updated)
    store.automations.put(updated)
    return updated


def delete(store: AutomationStore, caller: Principal, tenant_id: str, automation_id: str) -> None:
    automation = _existing(store, caller, tenant_id, automation_id)
    store.triggers.delete(automation)
    store.automations.delete(tenant_id, automation_id)


def list_runs(
    store: AutomationStore, caller: Principal, tenant_id: str, automation_id: str, limit: int = 20
) -> list[Run]:
    _existing(store, caller, tenant_id, automation_id)
    return store.automations.list_runs(tenant_id, automation_id, max(1, min(limit, MAX_RUNS_LISTED)))


def delivery_message(automation: Automation, event: Mapping[str, Any]) -> dict[str, Any]:
    """The queue message of one trigger: the same shape the rule's input transformer and the
    schedule's input produce (byom.dal.automations), so every path runs the same runner code."""
    return {"automation": {"tenant_id": automation.tenant_id, "automation_id": automation.id}, "event": event}


def scheduled_event(time: str) -> dict[str, Any]:
    return {"source": SCHEDULED_SOURCE, "detail-type": SCHEDULED_DETAIL_TYPE, "time": time, "detail": {}}


def run_now(
    store: AutomationStore, caller: Principal, tenant_id: str, automation_id: str, body: RunNow
) -> dict[str, Any]:
    """Fires the automation once, through its queue: a schedule on demand, or a test event."""
    automation = _existing(store, caller, tenant_id, automation_id)
    if not automation.enabled:
        raise Conflict(f"The automation '{automation_id}' is disabled; enable it to run it")
    if len(json.dumps(body.event or {})) > MAX_EVENT_BYTES:
        raise InvalidRequest(f"The event may be at most {MAX_EVENT_BYTES} bytes", param="event")
    now = datetime.fromtimestamp(store.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if body.event is not None:
        event = {"source": MANUAL_SOURCE, "detail-type": MANUAL_DETAIL_TYPE, "time": now} | body.event
    else:
        event = scheduled_event(now)
    store.queue.send(delivery_message(automation, event))
    return {"automation_id": automation.id, "object": "automation.trigger", "queued": True}


def decide(
    store: AutomationStore,
    caller: Principal,
    tenant_id: str,
    automation_id: str,
    run_id: str,
    decision: Decision,
) -> Run:
    """A tenant admin's approval or rejection of a run that waits for one."""
    _existing(store, caller, tenant_id, automation_id)
    run = store.automations.get_run(tenant_id, automation_id, run_id)
    if run is None:
        raise NotFound(f"No run '{run_id}'")
    if run.status != "awaiting_approval" or not run.task_token or store.workflow is None:
        raise Conflict(f"The run '{run_id}' is {run.status}, not awaiting approval")
    answered = store.workflow.succeed(
        run.task_token,
        {"approved": decision.approved, "comment": decision.comment, "decided_by": caller.key_id},
    )
    if not answered:
        raise Conflict(f"The run '{run_id}' no longer waits for a decision")
    return run


# -- the runner ----------------------------------------------------------------------------------------


@dataclass
class RunnerStore:
    automations: AutomationRepository
    chat: ChatCall
    publisher: ResultPublisher
    workflow: ApprovalWorkflow | None = None
    max_receive_count: int = 3
    approval_timeout_seconds: int = 86_400
    now: Callable[[], int] = clock.now


def parse_delivery(body: str, message_id: str, attributes: Mapping[str, Any]) -> Delivery:
    """A queue message as the rule's input transformer, the schedule's input or `run_now` wrote it."""
    try:
        message = json.loads(body)
        automation = message["automation"]
        event = message.get("event") or {}
        tenant_id, automation_id = str(automation["tenant_id"]), str(automation["automation_id"])
    except (ValueError, KeyError, TypeError):
        raise DeliveryMalformed(f"message {message_id} is not an automation delivery") from None
    if not isinstance(event, dict):
        raise DeliveryMalformed(f"message {message_id} carries no event object")
    return Delivery(
        tenant_id=tenant_id,
        automation_id=automation_id,
        event=event,
        message_id=message_id,
        sent_at_ms=int(attributes.get("SentTimestamp") or 0),
        receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
    )


def run_id_of(delivery: Delivery) -> str:
    """The same id for every delivery of one message (retries update one run), ordered by when it was sent."""
    digest = hashlib.sha256(delivery.message_id.encode()).hexdigest()[:10]
    return f"run_{delivery.sent_at_ms:013d}{digest}"


def _trigger_summary(event: Mapping[str, Any]) -> dict[str, Any]:
    return {k: str(event[k])[:256] for k in ("source", "detail-type", "id") if event.get(k) is not None}


def _failed(store: RunnerStore, run: Run, error: ByomError | TemplateFieldMissing) -> None:
    if isinstance(error, TemplateFieldMissing):
        details: dict[str, str | None] = {
            "message": str(error),
            "type": "invalid_request_error",
            "code": "template_field_missing",
        }
    else:
        details = {"message": error.message, "type": error.type, "code": error.code}
    store.automations.put_run(replace(run, status="failed", finished_at=store.now(), error=details))


def handle(store: RunnerStore, delivery: Delivery) -> Run | None:
    """One delivery: render, call the model through the gateway's path, publish (or wait for approval).

    Raises RetryLater when the provider failed and SQS may try again; on the last receive the run
    is recorded as failed first, and the message then goes to the dead-letter queue."""
    automation = store.automations.get(delivery.tenant_id, delivery.automation_id)
    if automation is None or not automation.enabled:
        # Deleted or disabled since the event was sent: it receives nothing.
        logger.info("automation delivery dropped", extra={"automation_id": delivery.automation_id})
        return None
    run_id = run_id_of(delivery)
    run = store.automations.get_run(automation.tenant_id, automation.id, run_id)
    if run is not None and run.status in ("succeeded", "failed", "rejected", "awaiting_approval"):
        return run  # a duplicate delivery of a run that already ended (or waits): nothing to redo
    run = Run(
        id=run_id,
        automation_id=automation.id,
        tenant_id=automation.tenant_id,
        status="running",
        started_at=run.started_at if run else store.now(),
        request_id=f"{run_id}-{delivery.receive_count}",
        attempts=delivery.receive_count,
        trigger=_trigger_summary(delivery.event),
    )
    store.automations.put_run(run)
    try:
        prompt = render(automation.prompt, delivery.event, automation.missing_fields)
    except TemplateFieldMissing as error:
        _failed(store, run, error)
        return None
    request = ChatRequest.model_validate(
        {
            "model": automation.model,
            "messages": [{"role": "user", "content": prompt}],
            **({"response_format": automation.response_format} if automation.response_format else {}),
            **({"max_tokens": automation.max_tokens} if automation.max_tokens else {}),
        }
    )
    # Metered, budgeted, redacted and audited under the automation's own key id.
    principal = Principal(key_id=automation.id, role="developer", tenant_id=automation.tenant_id)
    try:
        answer = store.chat(Call(principal, run.request_id), request)
    except ProviderError as error:
        if error.status < 500 and not error.retryable and error.status != 429:
            _failed(store, run, error)
            return None
        if delivery.receive_count >= store.max_receive_count:
            _failed(store, run, error)
        raise RetryLater(error.message) from None
    except (BudgetExceeded, ByomError) as error:
        # A refusal (budget, policy, a deleted alias) is the run's answer: retrying would only refuse again.
        _failed(store, run, error)
        return None
    except Exception:
        # Not the caller's doing: another delivery may succeed; the last one leaves a failed run, not a
        # run forever `running`. The message says nothing of the internals.
        if delivery.receive_count >= store.max_receive_count:
            _failed(store, run, ByomError("The run failed in the gateway; see its logs by request id"))
        raise
    output = _content(answer)
    run = replace(
        run,
        output=output[:MAX_OUTPUT_CHARS],
        cost_usd=money.to_usd(answer.cost_micros or 0),
    )
    if automation.approval and store.workflow is not None:
        store.automations.put_run(run)
        store.workflow.start(
            run.id,
            {
                "tenant_id": run.tenant_id,
                "automation_id": run.automation_id,
                "run_id": run.id,
                "approval_timeout_seconds": store.approval_timeout_seconds,
            },
        )
        return run
    return publish(store.automations, store.publisher, automation, run, store.now)


def _content(answer: Answer) -> str:
    choices = answer.body.get("choices") or [{}]
    return str((choices[0].get("message") or {}).get("content") or "")


def result_detail(automation: Automation, run: Run) -> dict[str, Any]:
    """The `AutomationResult` event's detail (docs/contracts.md)."""
    detail: dict[str, Any] = {
        "tenant_id": automation.tenant_id,
        "automation_id": automation.id,
        "automation_name": automation.name,
        "run_id": run.id,
        "model": automation.model,
        "request_id": run.request_id,
        "output": run.output,
        "cost_usd": run.cost_usd,
        "trigger": run.trigger,
    }
    if automation.response_format and automation.response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        try:
            detail["output_json"] = json.loads(run.output or "")
        except ValueError:
            detail["output_json"] = None
    return detail


def publish(
    automations: AutomationRepository,
    publisher: ResultPublisher,
    automation: Automation,
    run: Run,
    now: Callable[[], int],
) -> Run:
    publisher.publish(result_detail(automation, run))
    if automation.notify:
        publisher.notify(f"BYOM automation {automation.name}"[:100], run.output or "")
    done = replace(run, status="succeeded", finished_at=now(), task_token=None)
    automations.put_run(done)
    return done


# -- the approval workflow's tasks ---------------------------------------------------------------------


@dataclass
class ApprovalStore:
    automations: AutomationRepository
    publisher: ResultPublisher
    now: Callable[[], int] = clock.now


def _run(store: ApprovalStore, event: Mapping[str, Any]) -> tuple[Automation | None, Run]:
    tenant_id, automation_id, run_id = (
        str(event["tenant_id"]),
        str(event["automation_id"]),
        str(event["run_id"]),
    )
    run = store.automations.get_run(tenant_id, automation_id, run_id)
    if run is None:
        raise NotFound(f"No run '{run_id}'")
    return store.automations.get(tenant_id, automation_id), run


def await_approval(store: ApprovalStore, event: Mapping[str, Any], task_token: str) -> dict[str, Any]:
    """Parks the execution: the run shows `awaiting_approval` until an admin decides (or it expires)."""
    _, run = _run(store, event)
    store.automations.put_run(replace(run, status="awaiting_approval", task_token=task_token))
    return {"run_id": run.id}


def publish_approved(store: ApprovalStore, event: Mapping[str, Any]) -> dict[str, Any]:
    automation, run = _run(store, event)
    if automation is None:  # deleted while it waited: nothing to publish for
        return reject(store, {**event, "reason": "The automation was deleted"})
    done = publish(store.automations, store.publisher, automation, run, store.now)
    return {"run_id": done.id, "status": done.status}


def reject(store: ApprovalStore, event: Mapping[str, Any]) -> dict[str, Any]:
    """Rejected by an admin, or not decided in time: recorded, never published."""
    _, run = _run(store, event)
    decision = event.get("decision") or {}
    reason = str(event.get("reason") or decision.get("comment") or "Rejected by a tenant admin")
    store.automations.put_run(
        replace(
            run,
            status="rejected",
            finished_at=store.now(),
            task_token=None,
            error={"message": reason[:1000], "type": "rejected", "code": "rejected"},
        )
    )
    return {"run_id": run.id, "status": "rejected"}
