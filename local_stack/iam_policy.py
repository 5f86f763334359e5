"""A small IAM policy evaluator, and the request context of the DynamoDB, S3 and KMS calls it judges.

An emulation of IAM for the local stack and for tests, not IAM: moto evaluates neither policy
variables, principal tags nor `dynamodb:LeadingKeys`, so the tenant data role's policy is judged
here. Pure functions on plain data (policy documents as the template holds them, once resolved).

What it does: Allow/Deny with an explicit deny winning over any allow; Action/NotAction (case-
insensitive) and Resource/NotResource globbing with `*` and `?` over the whole string; Principal
(`"*"` or `{"AWS": [...]}`) for trust policies; policy variables `${key}` from the request context
(and `${*}`, `${?}`, `${$}`), where an unresolvable variable makes its statement not apply; the
condition operators below, with the `IfExists` suffix and the `ForAllValues:` / `ForAnyValue:` set
prefixes. What it does not: permission boundaries, SCPs, session policies, resource policies,
`NotPrincipal`, numeric and date operators (an unknown operator raises rather than allow).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from xml.etree import ElementTree

ContextValue = str | Sequence[str]


class Decision(Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit_deny"
    IMPLICIT_DENY = "implicit_deny"


class UnsupportedPolicy(Exception):
    """The policy uses an element or operator this evaluator does not implement."""


@dataclass(frozen=True)
class Request:
    """One authorization question: may `principal` do `action` on `resource`, in `context`?"""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    principal: str | None = None


# -- matching ---------------------------------------------------------------------------------------


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}


class _Unresolved(Exception):
    pass


def substitute(text: str, context: Mapping[str, ContextValue], *, glob_escapes: bool = False) -> str:
    """Replaces `${key}` with the context's value. In patterns, `${*}` and `${?}` stand for the
    literal characters, and a substituted value's own `*` and `?` match only themselves."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _ESCAPES:
            return f"\0{name}" if glob_escapes and name != "$" else _ESCAPES[name]
        value = _lookup(context, name)
        if value is None or not isinstance(value, str):
            raise _Unresolved(name)
        return "".join(f"\0{c}" if glob_escapes and c in "*?" else c for c in value)

    return _VARIABLE.sub(one, text)


def _literal_glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    # "\0*" marks a literal star (from ${*} or a substituted value).
    parts = re.split(r"(\0[*?]|[*?])", pattern)
    regex = "".join(
        re.escape(p[1]) if p.startswith("\0") else ".*" if p == "*" else "." if p == "?" else re.escape(p)
        for p in parts
    )
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _lookup(context: Mapping[str, ContextValue], name: str) -> ContextValue | None:
    # Condition keys are case-insensitive; tag keys after the slash are not, in general, but the
    # policies here spell them as the requests do.
    if name in context:
        return context[name]
    lowered = name.lower()
    for key, value in context.items():
        if key.lower() == lowered:
            return value
    return None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _matches_any(patterns: Any, value: str, context: Mapping[str, ContextValue], *, action: bool) -> bool:
    for pattern in _as_list(patterns):
        try:
            resolved = pattern if action else substitute(pattern, context, glob_escapes=True)
        except _Unresolved:
            continue
        if _literal_glob(resolved, value, ignore_case=action):
            return True
    return False


# -- conditions -----------------------------------------------------------------------------------


def _string_equals(expected: str, actual: str) -> bool:
    return expected == actual


def _string_equals_ignore_case(expected: str, actual: str) -> bool:
    return expected.lower() == actual.lower()


def _string_like(expected: str, actual: str) -> bool:
    return _literal_glob(expected, actual)


def _bool(expected: str, actual: str) -> bool:
    return str(expected).lower() == str(actual).lower()


# name -> (compare(expected, actual), negated, substitutes with glob escapes)
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool, bool]] = {
    "StringEquals": (_string_equals, False, False),
    "StringNotEquals": (_string_equals, True, False),
    "StringEqualsIgnoreCase": (_string_equals_ignore_case, False, False),
    "StringNotEqualsIgnoreCase": (_string_equals_ignore_case, True, False),
    "StringLike": (_string_like, False, True),
    "StringNotLike": (_string_like, True, True),
    "ArnEquals": (_string_equals, False, False),
    "ArnNotEquals": (_string_equals, True, False),
    "ArnLike": (_string_like, False, True),
    "ArnNotLike": (_string_like, True, True),
    "Bool": (_bool, False, False),
}


def _condition_values(values: Any, context: Mapping[str, ContextValue], *, glob: bool) -> list[str]:
    resolved = []
    for value in _as_list(values):
        try:
            resolved.append(substitute(str(value), context, glob_escapes=glob))
        except _Unresolved:
            continue  # a value naming an absent key matches nothing
    return resolved


def _condition(operator: str, key: str, values: Any, context: Mapping[str, ContextValue]) -> bool:
    set_operator, _, base = operator.rpartition(":")
    if base == "Null":
        present = _lookup(context, key) not in (None, [], ())
        return all(str(v).lower() == ("false" if present else "true") for v in _as_list(values))
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in _OPERATORS or set_operator not in ("", "ForAllValues", "ForAnyValue"):
        raise UnsupportedPolicy(f"condition operator {operator}")
    compare, negated, glob = _OPERATORS[base]
    expected = _condition_values(values, context, glob=glob)
    actual = _lookup(context, key)
    actual_values = [] if actual is None else [str(v) for v in _as_list(actual)]

    def matches(one: str) -> bool:
        hit = any(compare(e, one) for e in expected)
        return not hit if negated else hit

    if set_operator == "ForAllValues":
        return all(matches(v) for v in actual_values)  # true for a missing or empty key, as in IAM
    if set_operator == "ForAnyValue":
        return any(matches(v) for v in actual_values)
    if not actual_values:
        return if_exists or negated
    return any(matches(v) for v in actual_values)


def _conditions_hold(
    conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, ContextValue]
) -> bool:
    return all(
        _condition(operator, key, values, context)
        for operator, by_key in conditions.items()
        for key, values in by_key.items()
    )


# -- statements -----------------------------------------------------------------------------------


def _principal_matches(statement: Mapping[str, Any], principal: str | None) -> bool:
    if "NotPrincipal" in statement:
        raise UnsupportedPolicy("NotPrincipal")
    if "Principal" not in statement or principal is None:
        # Identity policies name no principal; a trust policy judged without one checks the rest.
        return True
    named = statement["Principal"]
    if named == "*":
        return True
    aws_principals = _as_list(named.get("AWS", [])) if isinstance(named, dict) else []
    return any(p == "*" or p == principal for p in aws_principals)


def statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    context = request.context
    if "Action" in statement:
        if not _matches_any(statement["Action"], request.action, context, action=True):
            return False
    elif "NotAction" in statement and _matches_any(
        statement["NotAction"], request.action, context, action=True
    ):
        return False
    if "Resource" in statement:
        if not _matches_any(statement["Resource"], request.resource, context, action=False):
            return False
    elif "NotResource" in statement and _matches_any(
        statement["NotResource"], request.resource, context, action=False
    ):
        return False
    if not _principal_matches(statement, request.principal):
        return False
    return _conditions_hold(statement.get("Condition", {}), context)


def evaluate(policies: Iterable[Mapping[str, Any]], request: Request) -> Decision:
    """IAM's order: an applicable Deny wins, else an applicable Allow, else the implicit deny."""
    allowed = False
    for policy in policies:
        for statement in _as_list(policy.get("Statement", [])):
            if not statement_applies(statement, request):
                continue
            if statement.get("Effect") == "Deny":
                return Decision.EXPLICIT_DENY
            allowed = allowed or statement.get("Effect") == "Allow"
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def evaluate_all(policies: Sequence[Mapping[str, Any]], requests: Iterable[Request]) -> Decision:
    """A call that needs several authorizations (a batch over tables, a multi-object delete) is
    allowed only when each one is."""
    for request in requests:
        decision = evaluate(policies, request)
        if decision is not Decision.ALLOW:
            return decision
    return Decision.ALLOW


# -- request context: DynamoDB --------------------------------------------------------------------


@dataclass(frozen=True)
class TableKeys:
    """What the extractor needs of a table: its ARN and the partition key of it and its indexes."""

    arn: str
    partition_key: str
    index_partition_keys: Mapping[str, str] = field(default_factory=dict)


def _scalar(attribute_value: Mapping[str, Any]) -> str:
    (kind, value), *_ = attribute_value.items()
    return str(value) if kind in ("S", "N", "B") else json.dumps(value)


def _query_leading_keys(body: Mapping[str, Any], partition_key: str) -> list[str]:
    names = body.get("ExpressionAttributeNames", {})
    values = body.get("ExpressionAttributeValues", {})
    expression = body.get("KeyConditionExpression")
    if expression:
        # `#pk = :v` or `:v = #pk` (the partition key only takes equality).
        for left, right in re.findall(r"([#:]?[\w.]+)\s*=\s*([#:]?[\w.]+)", expression):
            name, placeholder = (left, right) if right.startswith(":") else (right, left)
            if names.get(name, name) == partition_key and placeholder in values:
                return [_scalar(values[placeholder])]
        return []
    condition = body.get("KeyConditions", {}).get(partition_key)
    return [_scalar(v) for v in condition.get("AttributeValueList", [])] if condition else []


def dynamodb_requests(
    operation: str, body: Mapping[str, Any], tables: Mapping[str, TableKeys], base: Mapping[str, ContextValue]
) -> list[Request]:
    """The authorizations a DynamoDB JSON call needs, one per table (or index) it touches, with
    `dynamodb:LeadingKeys` = the partition key values it names. Unknown tables get an ARN that no
    policy of the stack names."""
    action = f"dynamodb:{operation}"

    def table(name: str) -> TableKeys:
        return tables.get(name) or TableKeys(arn=f"arn:aws:dynamodb:::table/{name}", partition_key="")

    def request(resource: str, leading: list[str]) -> Request:
        context = dict(base)
        if leading:
            context["dynamodb:LeadingKeys"] = sorted(set(leading))
        return Request(action=action, resource=resource, context=context)

    if operation in ("TransactWriteItems", "TransactGetItems"):
        # IAM authorizes a transaction item by item, each as its own action (Put -> PutItem, ...).
        actions = {
            "Put": "PutItem",
            "Update": "UpdateItem",
            "Delete": "DeleteItem",
            "ConditionCheck": "ConditionCheckItem",
            "Get": "GetItem",
        }
        requests = []
        for entry in body.get("TransactItems", []):
            for kind, inner in entry.items():
                requests.extend(dynamodb_requests(actions[kind], inner, tables, base))
        return requests

    if operation in ("BatchGetItem", "BatchWriteItem"):
        requests = []
        for name, spec in body.get("RequestItems", {}).items():
            keys = table(name)
            if operation == "BatchGetItem":
                items = spec.get("Keys", [])
            else:
                items = [
                    (entry.get("PutRequest") or {}).get("Item")
                    or (entry.get("DeleteRequest") or {}).get("Key")
                    for entry in spec
                ]
            leading = [
                _scalar(item[keys.partition_key]) for item in items if item and keys.partition_key in item
            ]
            requests.append(request(keys.arn, leading))
        return requests

    keys = table(body.get("TableName", ""))
    index = body.get("IndexName")
    resource = f"{keys.arn}/index/{index}" if index else keys.arn
    partition_key = keys.index_partition_keys.get(index, "") if index else keys.partition_key
    if operation in ("GetItem", "DeleteItem", "UpdateItem", "ConditionCheckItem"):
        item = body.get("Key", {})
    elif operation == "PutItem":
        item = body.get("Item", {})
    else:
        item = {}
    if operation == "Query":
        leading = _query_leading_keys(body, partition_key)
    else:
        leading = [_scalar(item[partition_key])] if partition_key in item else []
    return [request(resource, leading)]


# -- request context: S3 ----------------------------------------------------------------------------


def _s3_delete_keys(body: bytes) -> list[str]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Key"]


def s3_requests(
    method: str, path: str, query: str, body: bytes, base: Mapping[str, ContextValue], host: str = ""
) -> list[Request]:
    """The authorizations an S3 REST call needs (path-style or virtual-hosted): the object ARN for
    object calls, the bucket ARN with `s3:prefix` for listings, one per key for a multi-object delete."""
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    bucket, _, key = urllib.parse.unquote(path.lstrip("/")).partition("/")
    if ".s3." in host and not host.startswith("s3."):
        bucket, key = host.split(".s3.", 1)[0], urllib.parse.unquote(path.lstrip("/"))
    bucket_arn = f"arn:aws:s3:::{bucket}"
    context = dict(base)

    if not key:
        if method == "POST" and "delete" in params:
            return [
                Request(action="s3:DeleteObject", resource=f"{bucket_arn}/{k}", context=context)
                for k in _s3_delete_keys(body)
            ]
        if method == "GET" and not (
            set(params)
            - {
                "list-type",
                "prefix",
                "delimiter",
                "continuation-token",
                "max-keys",
                "start-after",
                "marker",
                "encoding-type",
                "fetch-owner",
                "versions",
                "key-marker",
                "version-id-marker",
            }
        ):
            if "prefix" in params:
                context["s3:prefix"] = params["prefix"][0]
            action = "s3:ListBucketVersions" if "versions" in params else "s3:ListBucket"
            return [Request(action=action, resource=bucket_arn, context=context)]
        sub = next(iter(params), "") or "Bucket"
        return [
            Request(action=f"s3:{method.title()}Bucket{sub.title()}", resource=bucket_arn, context=context)
        ]

    object_arn = f"{bucket_arn}/{key}"
    versioned = "versionId" in params
    if method in ("GET", "HEAD"):
        action = "s3:GetObjectVersion" if versioned else "s3:GetObject"
    elif method == "DELETE":
        action = "s3:DeleteObjectVersion" if versioned else "s3:DeleteObject"
    elif method in ("PUT", "POST"):
        action = "s3:PutObject"
    else:
        action = f"s3:{method.title()}Object"
    return [Request(action=action, resource=object_arn, context=context)]


# -- request context: KMS ---------------------------------------------------------------------------


def moto_ciphertext_key_id(blob_b64: str) -> str | None:
    """moto's ciphertext blobs start with the 36-character id of the key that made them."""
    try:
        return base64.b64decode(blob_b64)[:36].decode()
    except (ValueError, UnicodeDecodeError):
        return None


def kms_requests(
    operation: str,
    body: Mapping[str, Any],
    key_arn: Callable[[str], str | None],
    base: Mapping[str, ContextValue],
) -> list[Request]:
    """A KMS JSON call: the key's ARN and `kms:EncryptionContext:<name>` per context entry. Called
    directly, so no `kms:ViaService`."""
    key_id = body.get("KeyId") or (moto_ciphertext_key_id(body.get("CiphertextBlob", "")) or "")
    context = dict(base)
    for name, value in (body.get("EncryptionContext") or {}).items():
        context[f"kms:EncryptionContext:{name}"] = str(value)
    resource = key_arn(key_id) or f"arn:aws:kms:::key/{key_id or 'unknown'}"
    return [Request(action=f"kms:{operation}", resource=resource, context=context)]
