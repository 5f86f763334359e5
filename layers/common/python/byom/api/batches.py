"""Batch routes (SPEC §4.3, §10: OpenAI's Batch API) served by the batches function."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse

from byom.api.batch_tasks import build_store
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
from byom.batches import CreateBatch
from byom.logic import batches as logic
from byom.settings import batch_settings

MAX_BODY_BYTES = 64 * 1024


@lru_cache(maxsize=1)
def store() -> logic.BatchStore:
    return build_store(batch_settings())


Context = Annotated[RequestContext, Depends(context)]


router = APIRouter(route_class=JsonBodyRoute.limited(MAX_BODY_BYTES))


@router.post("/v1/batches")
def create_batch(ctx: Context, request: CreateBatch) -> JSONResponse:
    return ok(logic.create_batch(store(), ctx.principal, request).public())


@router.get("/v1/batches")
def list_batches(
    ctx: Context, after: Annotated[str | None, Query()] = None, limit: Annotated[str | None, Query()] = None
) -> JSONResponse:
    found, more = logic.list_batches(store(), ctx.principal, after=after, limit=page_limit(limit))
    return ok(list_page([b.public() for b in found], more))


@router.get("/v1/batches/{batch_id}")
def get_batch(ctx: Context, batch_id: str) -> JSONResponse:
    return ok(logic.get_batch(store(), ctx.principal, batch_id).public())


@router.post("/v1/batches/{batch_id}/cancel")
def cancel_batch(ctx: Context, batch_id: str) -> JSONResponse:
    return ok(logic.cancel_batch(store(), ctx.principal, batch_id).public())


def build_batches_app() -> FastAPI:
    app = build_app("BYOM Gateway batches API")
    app.include_router(router)
    return ignore_trailing_slashes(app)
