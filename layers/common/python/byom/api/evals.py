"""Evals routes (SPEC §4.3, §10: OpenAI's Evals API) and the scorer's entry point, served by the
evals function: the request or the event in, one logic call, the output out."""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse

from byom.api.gateway import invoke_store
from byom.api.web import (
    JsonBodyRoute,
    RequestContext,
    build_app,
    context,
    ignore_trailing_slashes,
    list_page,
    ok,
    page_limit,
)
from byom.dal.aws import client, table
from byom.dal.evals import EvalTable, TestSetFiles
from byom.dal.fine_tuning import DataBucket, FileRepository
from byom.dal.repositories import ModelRepository
from byom.errors import GatewayMisconfigured
from byom.evals import CreateEval, CreateRun
from byom.logic import evals as logic
from byom.logic import invoke
from byom.logic.access import Principal
from byom.settings import eval_settings

MAX_BODY_BYTES = 256 * 1024
BATCHES_LOGIC = "byom.logic.batches"
BATCHES_STORE = "byom.api.batches"


class ContractBatches:
    """The batches API's path (batch contract §3) as the evals' BatchRunner: the one seam between
    evals and batches. Resolved on first use, so the evals function runs without it until it is
    deployed (a run then fails with a clear message instead of an import error)."""

    def _modules(self) -> tuple[Any, Any]:
        try:
            return importlib.import_module(BATCHES_LOGIC), importlib.import_module(BATCHES_STORE).store()
        except ImportError:
            raise GatewayMisconfigured(
                "Batches are not deployed with this gateway; eval runs need them"
            ) from None

    def submit(
        self, principal: Principal, *, endpoint: str, lines: list[dict[str, Any]], metadata: dict[str, str]
    ) -> str:
        batches, store = self._modules()
        batch_id: str = batches.submit_lines(
            store, principal, endpoint=endpoint, lines=lines, metadata=metadata
        )
        return batch_id

    def finished(self, principal: Principal, batch_id: str) -> list[logic.FinishedLine] | None:
        batches, store = self._modules()
        lines: list[logic.FinishedLine] | None = batches.finished_lines(store, principal, batch_id)
        return lines


@lru_cache(maxsize=1)
def store() -> logic.EvalStore:
    settings = eval_settings()
    bucket = DataBucket(client("s3"), settings.data_bucket, settings.kms_key_id)
    return logic.EvalStore(
        evals=EvalTable(table(settings.evals_table)),
        objects=bucket,
        test_sets=TestSetFiles(FileRepository(table(settings.files_table)), bucket),
        aliases=ModelRepository(table(settings.models_table)),
        batches=ContractBatches(),
        # Grader calls take the data plane's own invocation path (metered, budgeted, redacted, audited).
        chat=lambda call, request: invoke.chat(invoke_store(), call, request),
        max_items=settings.max_eval_items,
    )


Context = Annotated[RequestContext, Depends(context)]
After = Annotated[str | None, Query(max_length=128)]
Limit = Annotated[str | None, Query()]


router = APIRouter(route_class=JsonBodyRoute.limited(MAX_BODY_BYTES))


@router.post("/v1/evals")
def create_eval(ctx: Context, request: CreateEval) -> JSONResponse:
    return ok(logic.create_eval(store(), ctx.principal, request).public())


@router.get("/v1/evals")
def list_evals(ctx: Context, after: After = None, limit: Limit = None) -> JSONResponse:
    found, more = logic.list_evals(store(), ctx.principal, after=after, limit=page_limit(limit))
    return ok(list_page([e.public() for e in found], more))


@router.get("/v1/evals/{eval_id}")
def get_eval(ctx: Context, eval_id: str) -> JSONResponse:
    return ok(logic.get_eval(store(), ctx.principal, eval_id).public())


@router.delete("/v1/evals/{eval_id}")
def delete_eval(ctx: Context, eval_id: str) -> JSONResponse:
    record = logic.delete_eval(store(), ctx.principal, eval_id)
    return ok({"object": "eval.deleted", "deleted": True, "eval_id": record.id})


@router.post("/v1/evals/{eval_id}/runs")
def create_run(ctx: Context, request: CreateRun, eval_id: str) -> JSONResponse:
    return ok(logic.run_public(logic.create_run(store(), ctx.principal, eval_id, request)))


@router.get("/v1/evals/{eval_id}/runs")
def list_runs(ctx: Context, eval_id: str, after: After = None, limit: Limit = None) -> JSONResponse:
    found, more = logic.list_runs(store(), ctx.principal, eval_id, after=after, limit=page_limit(limit))
    return ok(list_page([logic.run_public(r) for r in found], more))


@router.get("/v1/evals/{eval_id}/runs/{run_id}")
def get_run(ctx: Context, eval_id: str, run_id: str) -> JSONResponse:
    return ok(logic.run_public(logic.get_run(store(), ctx.principal, eval_id, run_id)))


@router.get("/v1/evals/{eval_id}/runs/{run_id}/output_items")
def output_items(
    ctx: Context, eval_id: str, run_id: str, after: After = None, limit: Limit = None
) -> JSONResponse:
    found, more = logic.output_items(
        store(), ctx.principal, eval_id, run_id, after=after, limit=page_limit(limit)
    )
    return ok(list_page(found, more))


def build_evals_app() -> FastAPI:
    app = build_app("BYOM Gateway evals API")
    app.include_router(router)
    return ignore_trailing_slashes(app)


def score_finished_batch(event: dict[str, Any], request_id: str) -> dict[str, Any]:
    """The scorer: a `BatchFinished` event (batch contract §2) grades that alias of its run."""
    run = logic.on_batch_finished(store(), event, request_id)
    return {"run_id": run.id, "status": run.status} if run else {"ignored": True}
