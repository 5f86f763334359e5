"""OpenAI's published schemas (tests/data/openai_openapi, vendored from openai/openai-openapi with
its licence) as validators: what the gateway answers must be what OpenAI's spec says."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).parent / "data" / "openai_openapi" / "responses_schemas.json"
URI = "urn:openai-openapi"


@cache
def _registry() -> Registry:
    document = json.loads(SPEC.read_text())
    return Registry().with_resource(URI, Resource.from_contents(document, default_specification=DRAFT202012))


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{URI}#/components/schemas/{name}"}, registry=_registry())


def errors(name: str, instance: Any) -> list[str]:
    """What is wrong with `instance` as OpenAI's schema `name`, one line per error (none: valid)."""
    found = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in found]


def assert_valid(name: str, instance: Any) -> None:
    problems = errors(name, instance)
    assert not problems, f"not a valid {name}:\n" + "\n".join(problems)
