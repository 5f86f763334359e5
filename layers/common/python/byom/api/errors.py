"""The OpenAI error envelope and how a validation error is put into it, for every HTTP function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def envelope(
    message: str, type_: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# Errors saying a value has the wrong type for one member of a union: the least useful to report
# when another member got further.
_TYPE_MISMATCH = frozenset(
    {
        "string_type",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "literal_error",
        "int_type",
        "int_parsing",
        "float_type",
        "float_parsing",
        "bool_type",
        "bool_parsing",
        "none_required",
        "is_instance_of",
    }
)
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _union_member(part: object) -> bool:
    """Pydantic names the union member it tried ("str", "list[ContentPart]", "NamedToolChoice")
    in an error's location; fields and indexes are never spelled like that."""
    return isinstance(part, str) and (not part.isidentifier() or part[:1].isupper() or part in _TYPE_NAMES)


def _most_specific(errors: list[Any]) -> Any:
    """Of the errors one union produced, the one that got furthest: a list with a bad item says more
    than "Input should be a valid string"."""
    first = errors[0]
    at = next((i for i, part in enumerate(first["loc"]) if _union_member(part)), None)
    if at is None:
        return first
    same_union = [e for e in errors if tuple(e["loc"][:at]) == tuple(first["loc"][:at])]

    def rank(e: Any) -> tuple[bool, int]:
        return not (len(e["loc"]) == at + 1 and e["type"] in _TYPE_MISMATCH), len(e["loc"])

    return max(same_union, key=rank)


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """Say what is wrong and where, never echoing the input: it may be a provider key. `errors`:
    pydantic's, without their input."""
    first = _most_specific(list(errors))
    param = ".".join(str(p) for p in first["loc"] if not _union_member(p)) or None
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "Unknown field"
    return (f"{param}: {message}" if param else message), param
