"""One OpenAPI 3.1 document for the whole API (SPEC §4): the admin, data-plane, fine-tuning and
batches apps' own documents, generated from their routes and models, merged; served by the gateway app at
`GET /openapi.json`, with Swagger UI at `GET /docs`."""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

TITLE = "BYOM Gateway"
VERSION = "0.1.0"
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
# Routes a caller reaches with no key (the API Gateway template agrees). The documentation routes are
# behind the authorizer in the cloud (SPEC §4.3), so the document says they want a key.
PUBLIC_PATHS = frozenset({"/health"})

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_ERROR_RESPONSE = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
# FastAPI's own validation schemas: its 422 answer is never sent, bad input is OpenAI's 400.
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


def _operation(operation: dict[str, Any], public: bool) -> dict[str, Any]:
    operation = copy.deepcopy(operation)
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    responses["400"] = {"description": "Invalid request (OpenAI's error envelope)", **_ERROR_RESPONSE}
    responses["default"] = {"description": "Any other error (OpenAI's error envelope)", **_ERROR_RESPONSE}
    if public:
        operation["security"] = []
    return operation


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The apps' documents as one: their paths (no two apps serve one path) and schemas, with the
    error envelope every route answers failures with, and the Bearer key every route but the
    public ones wants."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for document in documents:
        for path, operations in document.get("paths", {}).items():
            if path in paths:
                raise ValueError(f"two apps document {path}")
            public = path in PUBLIC_PATHS
            paths[path] = {method: _operation(op, public) for method, op in operations.items()}
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            if name not in _FASTAPI_ONLY:
                schemas.setdefault(name, schema)
    schemas["Error"] = _ERROR
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "OpenAI-compatible LLM gateway: data plane, admin API and fine-tuning.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A BYOM API key"}
            },
        },
        "security": [{"bearer": []}],
    }


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """Built on the first request, then kept: the gateway's cold start does not import the admin and
    fine-tuning apps."""
    from byom.api.admin import build_admin_app
    from byom.api.batches import build_batches_app
    from byom.api.evals import build_evals_app
    from byom.api.fine_tuning import build_fine_tuning_app
    from byom.api.gateway import build_gateway_app

    apps = (build_gateway_app, build_admin_app, build_fine_tuning_app, build_evals_app, build_batches_app)
    return merge([build().openapi() for build in apps])


docs = APIRouter()


@docs.get(OPENAPI_PATH)
def get_openapi_document() -> JSONResponse:
    return JSONResponse(document())


@docs.get(DOCS_PATH)
def get_docs() -> HTMLResponse:
    # Swagger UI's script and styles come from its CDN: the page is documentation, not the API.
    # Relative: behind API Gateway the page is at /<stage>/docs, the document at /<stage>/openapi.json.
    return get_swagger_ui_html(openapi_url=OPENAPI_PATH.lstrip("/"), title=f"{TITLE} API")
