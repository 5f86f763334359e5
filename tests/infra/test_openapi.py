"""The generated OpenAPI document and the API Gateway template describe the same API: every route
the template serves is documented, and every documented operation is reachable through it."""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk.assertions import Template
from byom.api.openapi import document

from infra.application import create_app
from infra.config import API_DOCS_CONTEXT
from tests.infra.stack_template import methods

_PARAMETER = re.compile(r"\{[^}]+\}")


def _documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, operations in document()["paths"].items() for method in operations
    }


def _reaches(route: tuple[str, str], operation: tuple[str, str]) -> bool:
    """Whether the template's (method, resource path) serves the document's (method, path):
    ANY serves every method, `{proxy+}` every subpath, `{name}` one segment."""
    method, resource = route
    if method not in ("ANY", operation[0]):
        return False
    pattern = re.escape(resource).replace(re.escape("{proxy+}"), ".+")
    pattern = _PARAMETER.sub("[^/]+", pattern.replace(r"\{", "{").replace(r"\}", "}"))
    return re.fullmatch(pattern, _PARAMETER.sub("x", operation[1])) is not None


def _most_specific(routes: set[tuple[str, str]], operation: tuple[str, str]) -> tuple[str, str] | None:
    """The route API Gateway picks: an exact resource before a greedy `{proxy+}` one."""
    matching = [route for route in routes if _reaches(route, operation)]
    return min(matching, key=lambda r: ("{proxy+}" in r[1], r[0] == "ANY", -len(r[1])), default=None)


def test_every_documented_operation_is_reachable_through_the_template(template: Template) -> None:
    routes = set(methods(template))
    unreachable = {operation for operation in _documented() if _most_specific(routes, operation) is None}
    assert unreachable == set()


def test_every_route_of_the_template_is_documented(template: Template) -> None:
    routes = set(methods(template))
    documented = _documented()
    picked = {_most_specific(routes, operation) for operation in documented}
    assert routes - picked == set()


def test_a_greedy_route_is_not_taken_for_a_path_it_does_not_cover() -> None:
    assert not _reaches(("ANY", "/v1/files/{proxy+}"), ("GET", "/v1/files"))
    assert _reaches(("ANY", "/v1/files/{proxy+}"), ("GET", "/v1/files/{file_id}/content"))
    assert not _reaches(("GET", "/health"), ("POST", "/health"))


def test_api_docs_off_leaves_the_documentation_routes_out(tmp_path: Path) -> None:
    _, stack = create_app(
        bundling=False, outdir=str(tmp_path), context={API_DOCS_CONTEXT: False}, with_nag=False
    )
    routes = set(methods(Template.from_stack(stack)))
    assert ("GET", "/openapi.json") not in routes
    assert ("GET", "/docs") not in routes
    assert ("GET", "/health") in routes
