"""Batch routes (SPEC §4.3, §10: OpenAI's Batch API) served by the batches function."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse

from byom.api.batch_tasks import build_store
from byom.api.web import (
    RequestContext,
    build_app,
    context,
    ignore_trailing_slashes,
    json_body,
    ok,
    parse_json,
    raw_body,
)
from byom.batches import CreateBatch
from byom.errors import InvalidRequest
from byom.logic import batches as logic
from byom.settings import batch_settings

MAX_BODY_BYTES = 64 * 1024


@lru_cache(maxsize=1)
def store() -> logic.BatchStore:
    return build_store(batch_settings())


Context = Annotated[RequestContext, Depends(context)]
RawBody = Annotated[bytes, Depends(raw_body)]


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest("limit must be a whole number", param="limit") from None
    if not 1 <= value <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")
    return value


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "has_more": has_more,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
    }


router = APIRouter()


@router.post("/v1/batches", openapi_extra=json_body(CreateBatch, MAX_BODY_BYTES))
def create_batch(ctx: Context, body: RawBody) -> JSONResponse:
    request = parse_json(body, CreateBatch, MAX_BODY_BYTES)
    return ok(logic.create_batch(store(), ctx.principal, request).public())


@router.get("/v1/batches")
def list_batches(
    ctx: Context, after: Annotated[str | None, Query()] = None, limit: Annotated[str | None, Query()] = None
) -> JSONResponse:
    found, more = logic.list_batches(store(), ctx.principal, after=after, limit=_limit(limit))
    return ok(_page([b.public() for b in found], more))


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
