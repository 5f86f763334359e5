"""Automation routes of the admin API (SPEC §4.2, §9): each route one call of byom.logic.automations."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from byom.api.web import JsonBodyRoute, RequestContext, context, ok
from byom.automations import CreateAutomation, Decision, RunNow, UpdateAutomation
from byom.dal.automations import AutomationTable, AutomationTriggers, SqsRunQueue
from byom.dal.aws import client, table
from byom.dal.fine_tuning import Workflow
from byom.dal.repositories import ModelRepository
from byom.errors import GatewayMisconfigured, InvalidRequest
from byom.logic import automations as logic
from byom.settings import admin_settings, automation_settings

MAX_BODY_BYTES = 320 * 1024  # a test event may be up to EventBridge's 256 KB

Context = Annotated[RequestContext, Depends(context)]


@lru_cache(maxsize=1)
def store() -> logic.AutomationStore:
    settings = automation_settings()
    if not settings.automation_queue_url or not settings.automation_queue_arn:
        raise GatewayMisconfigured("Automations are not configured in this deployment")
    return logic.AutomationStore(
        automations=AutomationTable(table(settings.automations_table)),
        triggers=AutomationTriggers(
            client("events"),
            client("scheduler"),
            prefix=settings.automation_prefix,
            queue_arn=settings.automation_queue_arn,
            scheduler_role_arn=settings.scheduler_role_arn,
        ),
        queue=SqsRunQueue(client("sqs"), settings.automation_queue_url),
        models=ModelRepository(table(admin_settings().models_table)),
        workflow=Workflow(client("stepfunctions"), settings.approval_state_machine_arn)
        if settings.approval_state_machine_arn
        else None,
    )


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isdigit() or not 1 <= int(raw) <= logic.MAX_RUNS_LISTED:
        raise InvalidRequest(f"limit must be a whole number from 1 to {logic.MAX_RUNS_LISTED}", param="limit")
    return int(raw)


automations = APIRouter(route_class=JsonBodyRoute.limited(MAX_BODY_BYTES))
BASE = "/admin/tenants/{tenant_id}/automations"


@automations.post(BASE)
def create_automation(ctx: Context, request: CreateAutomation, tenant_id: str) -> JSONResponse:
    return ok(logic.create(store(), ctx.principal, tenant_id, request).public(), 201)


@automations.get(BASE)
def list_automations(ctx: Context, tenant_id: str) -> JSONResponse:
    items = logic.list_automations(store(), ctx.principal, tenant_id)
    return ok({"object": "list", "data": [a.public() for a in items]})


@automations.get(BASE + "/{automation_id}")
def get_automation(ctx: Context, tenant_id: str, automation_id: str) -> JSONResponse:
    return ok(logic.get(store(), ctx.principal, tenant_id, automation_id).public())


@automations.patch(BASE + "/{automation_id}")
def update_automation(
    ctx: Context, request: UpdateAutomation, tenant_id: str, automation_id: str
) -> JSONResponse:
    return ok(logic.update(store(), ctx.principal, tenant_id, automation_id, request).public())


@automations.delete(BASE + "/{automation_id}")
def delete_automation(ctx: Context, tenant_id: str, automation_id: str) -> JSONResponse:
    logic.delete(store(), ctx.principal, tenant_id, automation_id)
    return ok({"id": automation_id, "object": "automation", "deleted": True})


@automations.post(BASE + "/{automation_id}/run")
def run_automation(
    ctx: Context, tenant_id: str, automation_id: str, request: RunNow | None = None
) -> JSONResponse:
    # No body: a schedule's tick.
    return ok(logic.run_now(store(), ctx.principal, tenant_id, automation_id, request or RunNow()), 202)


@automations.get(BASE + "/{automation_id}/runs")
def list_runs(
    ctx: Context, tenant_id: str, automation_id: str, limit: Annotated[str | None, Query()] = None
) -> JSONResponse:
    runs = logic.list_runs(store(), ctx.principal, tenant_id, automation_id, _limit(limit))
    return ok({"object": "list", "data": [r.public() for r in runs]})


@automations.post(BASE + "/{automation_id}/runs/{run_id}/approve")
def decide_run(
    ctx: Context, decision: Decision, tenant_id: str, automation_id: str, run_id: str
) -> JSONResponse:
    run = logic.decide(store(), ctx.principal, tenant_id, automation_id, run_id, decision)
    return ok(run.public() | {"decision": "approved" if decision.approved else "rejected"})
