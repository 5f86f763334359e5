"""Admin actions in the audit trail (SPEC §7): who did what to which resource, when, with what outcome.

One record per write of the admin API (and per fine-tuning approval or cancellation), made from
the request's route and the answer's status after the route has run, so no route can forget it.
Never a body, a key, a secret or a data subject's id: the route template, the target's id and the
status. Erasures write their own record (byom.governance.subjects), with counts and no subject.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from byom.api.web import REQUEST_CONTEXT_HEADER, RequestContext
from byom.governance.audit import PLATFORM_ADMIN_ACTOR, AuditRecord, expires_at
from byom.governance.policy import DEFAULT_RETENTION_DAYS, Policy
from byom.governance.trail import AuditLog
from byom.logic.access import PLATFORM_ADMIN
from byom.observability import logger

# The placeholder of the path segment after each collection: the route template's own names.
_PLACEHOLDERS = {
    "tenants": "tenant_id",
    "keys": "key_id",
    "credentials": "name",
    "models": "alias",
    "subjects": "user",
    "automations": "automation_id",
    "jobs": "job_id",
    "files": "file_id",
}
# Reads that are audited too: they disclose personal data or stored content.
_AUDITED_READS = ("subjects",)
# Placeholders whose value is never written to a record.
_PERSONAL = ("user",)
PLATFORM_TENANT = "platform"


def route_template(path: str) -> tuple[str, dict[str, str]]:
    """`/admin/tenants/tnt_1/keys/key_2` -> (`/admin/tenants/{tenant_id}/keys/{key_id}`, values)."""
    parts = [p for p in path.split("/") if p]
    template: list[str] = []
    values: dict[str, str] = {}
    for i, part in enumerate(parts):
        name = _PLACEHOLDERS.get(parts[i - 1]) if i > 0 else None
        if name is not None and part not in _PLACEHOLDERS:
            template.append("{" + name + "}")
            values[name] = part
        else:
            template.append(part)
    return "/" + "/".join(template), values


def _audited(method: str, template: str, query: dict[str, Any]) -> bool:
    if method in ("HEAD", "OPTIONS"):
        return False
    if method != "GET":
        # Erasure records itself, with its counts.
        return not (method == "DELETE" and template.endswith("/subjects/{user}"))
    return template.endswith("/subjects/{user}") or (
        template.endswith("/audit") and str(query.get("include_content", "")).lower() == "true"
    )


def _created_id(response: dict[str, Any]) -> str | None:
    try:
        body = json.loads(response.get("body") or "{}")
    except (TypeError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    value = body.get("id") or body.get("alias") or body.get("name")
    return value if isinstance(value, str) else None


def admin_record(
    event: dict[str, Any], response: dict[str, Any], retention_days: Callable[[str], int]
) -> AuditRecord | None:
    """The record of this admin request, or None when it is not an audited action."""
    method = str(event.get("httpMethod") or "").upper()
    template, values = route_template(str(event.get("path") or ""))
    if not _audited(method, template, event.get("queryStringParameters") or {}):
        return None
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    role, key_id = context.get("role"), context.get("key_id")
    status = int(response.get("statusCode") or 0)
    created = _created_id(response) if method == "POST" and 200 <= status < 300 else None
    tenant_id = values.get("tenant_id") or context.get("tenant_id") or None
    if tenant_id is None and template == "/admin/tenants":
        tenant_id = created
    tenant_id = tenant_id or PLATFORM_TENANT
    named = [v for k, v in values.items() if k not in (*_PERSONAL, "tenant_id")]
    target = named[-1] if named else (created if created != tenant_id else None)
    now_ms = int(time.time() * 1000)
    request_id = str((event.get("requestContext") or {}).get("requestId") or "")
    return AuditRecord(
        tenant_id=tenant_id,
        kind="admin",
        request_id=request_id,
        created_at_ms=now_ms,
        expires_at=expires_at(now_ms, retention_days(tenant_id)),
        key_id=PLATFORM_ADMIN_ACTOR if role == PLATFORM_ADMIN else key_id,
        action=f"{method} {template}",
        target=target,
        status=str(status),
        http_status=status,
    )


def record_admin_action(
    log: AuditLog | None,
    event: dict[str, Any],
    response: dict[str, Any],
    retention_days: Callable[[str], int] = lambda _tenant: DEFAULT_RETENTION_DAYS,
    *,
    actions: tuple[str, ...] | None = None,
) -> None:
    """Write the action's record; a failure to write is logged, and the answer stands.
    `actions`: the route-template endings that count as admin actions, where not every write does
    (the fine-tuning API: approvals and cancellations)."""
    if log is None:
        return
    try:
        record = admin_record(event, response, retention_days)
        if record is not None and (actions is None or str(record.action).endswith(actions)):
            log.write(record)
    except Exception as error:
        logger.error("admin audit record not written", extra={"error_type": type(error).__name__})


class Policies(Protocol):
    """byom.dal.policies.PolicyRepository: where each tenant's retention is read."""

    def get(self, tenant_id: str) -> Policy: ...


class RecordAdminActions:
    """ASGI middleware: each request, once answered, recorded when it is an admin action (with
    `actions`, only those), kept for its tenant's retention (the default one without policies).

    `trail` gives the audit log and the policies (either None: not kept); it is called per request,
    so no setting is read when the app is built.
    """

    def __init__(
        self,
        app: ASGIApp,
        trail: Callable[[], tuple[AuditLog | None, Policies | None]],
        actions: tuple[str, ...] | None = None,
    ) -> None:
        self.app = app
        self.trail = trail
        self.actions = actions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None
        # Only a creation's answer is read (the created id); nothing else is kept.
        created = scope["method"] == "POST"
        chunks: list[bytes] = []

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and created:
                chunks.append(bytes(message.get("body") or b""))
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            # An unexpected error is raised on after its answer: that answer is recorded too.
            if status is not None:
                response = {"statusCode": status, "body": b"".join(chunks).decode("utf-8", "replace")}
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._record, _proxy_request(scope), response)

    def _record(self, event: dict[str, Any], response: dict[str, Any]) -> None:
        try:
            log, policies = self.trail()
        except Exception as error:
            logger.error("admin audit record not written", extra={"error_type": type(error).__name__})
            return

        def retention_days(tenant_id: str) -> int:
            return policies.get(tenant_id).retention_days if policies is not None else DEFAULT_RETENTION_DAYS

        record_admin_action(log, event, response, retention_days, actions=self.actions)


def _proxy_request(scope: Scope) -> dict[str, Any]:
    """The parts of the request `admin_record` reads, as API Gateway's proxy event names them."""
    header = next((v for k, v in scope["headers"] if k == REQUEST_CONTEXT_HEADER.encode()), None)
    context = RequestContext.parse(header.decode("latin-1") if header else None)
    raw_path = scope.get("raw_path")
    query = scope.get("query_string", b"").decode("latin-1")
    return {
        "httpMethod": scope["method"],
        # As the client encoded it: a record names what was asked for.
        "path": raw_path.decode("utf-8", "replace") if raw_path else scope["path"],
        # One value per name, the last, as in the event's single-value map.
        "queryStringParameters": dict(parse_qsl(query, keep_blank_values=True)),
        "requestContext": {"requestId": context.request_id, "authorizer": context.authorizer},
    }
