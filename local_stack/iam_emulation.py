"""An emulation of IAM for the roles code assumes with STS (the tenant data role), in the moto server.

moto hands out credentials for any AssumeRole and evaluates neither session tags, policy
variables nor `dynamodb:LeadingKeys` (moto/iam/access_control.py), so a tenant-scoped session
would reach every tenant's data locally. This WSGI middleware, in front of the moto server app:

- on `sts:AssumeRole` of a role of the template that an AWS principal may assume, judges the
  role's trust policy (from the synthesized template) against the request's session tags, refuses
  as STS would (AccessDenied), and otherwise remembers the access key id moto handed out with its
  tags;
- on every request signed with such an access key id, builds the request context (local_stack.
  iam_policy: the action, the resource ARN, `dynamodb:LeadingKeys`, `s3:prefix`, the KMS
  encryption context, `aws:PrincipalTag/*`) and evaluates the role's policies from the template;
  a refusal answers `AccessDeniedException` (DynamoDB, KMS) or S3's `AccessDenied`, as AWS would.

Limits: every local function signs with the same dummy credentials, so a trust policy's Principal
is not checked (its conditions are); session expiry, session policies, resource policies (the key
and bucket policies), SCPs and permission boundaries are not emulated; requests with the stack's
own credentials are not evaluated at all (IAM is otherwise not enforced locally).
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from local_stack.iam_policy import (
    ContextValue,
    Decision,
    Request,
    TableKeys,
    dynamodb_requests,
    evaluate,
    evaluate_all,
    kms_requests,
    s3_requests,
)
from local_stack.template import ACCOUNT_ID, Resolver, Template

log = logging.getLogger(__name__)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/")
_ACCESS_KEY_ID = re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>")


@dataclass(frozen=True)
class EmulatedRole:
    arn: str
    trust: dict[str, Any]
    policies: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.arn.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class _Session:
    role: EmulatedRole
    tags: dict[str, str]
    arn: str

    def context(self) -> dict[str, ContextValue]:
        context: dict[str, ContextValue] = {f"aws:PrincipalTag/{k}": v for k, v in self.tags.items()}
        context["aws:PrincipalArn"] = self.role.arn
        return context


def _is_assumable_by_code(trust: dict[str, Any]) -> bool:
    for statement in trust.get("Statement", []):
        principal = statement.get("Principal")
        if isinstance(principal, dict) and "AWS" in principal:
            return True
    return False


def roles_of(template: Template, resolver: Resolver) -> dict[str, EmulatedRole]:
    """The template's roles that an AWS principal (code holding credentials) assumes, by ARN, with
    their inline policies and the AWS::IAM::Policy resources attached to them."""
    attached: dict[str, list[dict[str, Any]]] = {}
    for _, resource in template.of_type("AWS::IAM::Policy"):
        props = resource.get("Properties", {})
        for role in props.get("Roles", []):
            if isinstance(role, dict) and "Ref" in role:
                attached.setdefault(role["Ref"], []).append(props["PolicyDocument"])
    roles: dict[str, EmulatedRole] = {}
    for logical_id, resource in template.of_type("AWS::IAM::Role"):
        props = resource.get("Properties", {})
        trust = resolver.resolve(props.get("AssumeRolePolicyDocument", {}))
        if not _is_assumable_by_code(trust):
            continue
        if props.get("ManagedPolicyArns"):
            log.warning("IAM emulation: managed policies of %s are not evaluated (denied)", logical_id)
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])] + attached.get(logical_id, [])
        arn = resolver.get_att(logical_id, "Arn")
        roles[arn] = EmulatedRole(arn=arn, trust=trust, policies=[resolver.resolve(d) for d in documents])
    return roles


def tables_of(template: Template, resolver: Resolver) -> dict[str, TableKeys]:
    tables: dict[str, TableKeys] = {}
    for logical_id, resource in template.of_type("AWS::DynamoDB::Table"):
        props = resource.get("Properties", {})

        def hash_key(schema: list[dict[str, str]]) -> str:
            return next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")

        indexes = props.get("GlobalSecondaryIndexes", []) + props.get("LocalSecondaryIndexes", [])
        name = resolver.ref(logical_id)
        tables[name] = TableKeys(
            arn=resolver.get_att(logical_id, "Arn"),
            partition_key=hash_key(props["KeySchema"]),
            index_partition_keys={i["IndexName"]: hash_key(i["KeySchema"]) for i in indexes},
        )
    return tables


def keys_of(template: Template, resolver: Resolver) -> dict[str, str]:
    """KMS key id, ARN and alias -> the key's ARN."""
    arns: dict[str, str] = {}
    for logical_id, _ in template.of_type("AWS::KMS::Key"):
        arn = resolver.get_att(logical_id, "Arn")
        arns[resolver.ref(logical_id)] = arns[arn] = arn
    for _, resource in template.of_type("AWS::KMS::Alias"):
        props = resolver.resolve(resource.get("Properties", {}))
        target = arns.get(props.get("TargetKeyId", ""))
        if target:
            arns[props["AliasName"]] = target
    return arns


@dataclass
class IamEmulation:
    """Shared by the moto server thread (the middleware) and the stack (which configures it)."""

    roles: dict[str, EmulatedRole] = field(default_factory=dict)
    tables: dict[str, TableKeys] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def configure(self, template: Template, resolver: Resolver) -> None:
        """After the resources exist: their ARNs are moto's."""
        self.roles = roles_of(template, resolver)
        self.tables = tables_of(template, resolver)
        self.keys = keys_of(template, resolver)

    def wrap(self, app: WsgiApp) -> WsgiApp:
        def middleware(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
            return self._handle(app, environ, start_response)

        return middleware

    # -- the middleware ---------------------------------------------------------------------------

    def _handle(self, app: WsgiApp, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        access_key, service = _credential(environ)
        with self._lock:
            session = self._sessions.get(access_key) if access_key else None
        if session is None and service != "sts":
            return app(environ, start_response)
        body = _read_body(environ)
        if session is not None:
            requests = self._requests(service, environ, body, session)
            decision = evaluate_all(session.role.policies, requests)
            if decision is not Decision.ALLOW:
                denied = next(r for r in requests if evaluate(session.role.policies, r) is not Decision.ALLOW)
                log.info("IAM emulation refused %s on %s to %s", denied.action, denied.resource, session.arn)
                return _access_denied(service, session.arn, denied, start_response)
        if service == "sts":
            return self._assume_role(app, environ, body, session, start_response)
        return app(environ, start_response)

    def _requests(self, service: str, environ: Environ, body: bytes, session: _Session) -> list[Request]:
        base = session.context()
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target.rsplit(".", 1)[-1]
        if service == "dynamodb":
            return dynamodb_requests(operation, _json(body), self.tables, base)
        if service == "kms":
            return kms_requests(operation, _json(body), self.keys.get, base)
        if service == "s3":
            return s3_requests(
                environ["REQUEST_METHOD"],
                environ.get("PATH_INFO", ""),
                environ.get("QUERY_STRING", ""),
                body,
                base,
                host=environ.get("HTTP_HOST", ""),
            )
        action = operation or _form(body).get("Action", "")
        return [Request(action=f"{service}:{action}", resource="*", context=base)]

    def _assume_role(
        self,
        app: WsgiApp,
        environ: Environ,
        body: bytes,
        caller: _Session | None,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        form = _form(body)
        role = self.roles.get(form.get("RoleArn", ""))
        if form.get("Action") != "AssumeRole" or role is None:
            return app(environ, start_response)
        tags = _tags(form)
        context: dict[str, ContextValue] = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
        context["aws:TagKeys"] = sorted(tags)
        actions = ["sts:AssumeRole", *(["sts:TagSession"] if tags else [])]
        # The Principal is not checked: locally every function signs with the same credentials.
        trust_requests = [Request(action=a, resource=role.arn, context=context) for a in actions]
        if evaluate_all([role.trust], trust_requests) is not Decision.ALLOW:
            who = caller.arn if caller else f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/local-function"
            log.info("IAM emulation refused AssumeRole of %s with tags %s", role.arn, tags)
            return _access_denied("sts", who, trust_requests[0], start_response)

        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = status
            return start_response(status, headers, exc_info)

        answer = b"".join(app(environ, capture))
        match = _ACCESS_KEY_ID.search(answer)
        if str(captured.get("status", "")).startswith("200") and match:
            session_name = form.get("RoleSessionName", "")
            arn = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role.name}/{session_name}"
            with self._lock:
                self._sessions[match.group(1).decode()] = _Session(role=role, tags=tags, arn=arn)
        return [answer]


# -- helpers -------------------------------------------------------------------------------------------


def _credential(environ: Environ) -> tuple[str | None, str]:
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    match = _CREDENTIAL.search(authorization)
    if not match:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        credential = (query.get("X-Amz-Credential") or [""])[0].split("/")
        if len(credential) == 5:
            return credential[0], credential[3]
        return None, ""
    return match.group(1), match.group(2)


def _read_body(environ: Environ) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if not length:
        return b""  # no body, or a chunked one moto reads itself: left as it is
    body: bytes = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
    return body


def _json(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}


def _tags(form: dict[str, str]) -> dict[str, str]:
    tags = {}
    index = 1
    while f"Tags.member.{index}.Key" in form:
        tags[form[f"Tags.member.{index}.Key"]] = form.get(f"Tags.member.{index}.Value", "")
        index += 1
    return tags


def _access_denied(service: str, who: str, request: Request, start_response: StartResponse) -> list[bytes]:
    message = (
        f"User: {who} is not authorized to perform: {request.action} on resource: {request.resource} "
        f"because no identity-based policy allows the {request.action} action (local IAM emulation)"
    )
    request_id = str(uuid.uuid4())
    if service in ("dynamodb", "kms"):
        kind = (
            "com.amazon.coral.service#AccessDeniedException"
            if service == "dynamodb"
            else "AccessDeniedException"
        )
        content_type = "application/x-amz-json-1.0" if service == "dynamodb" else "application/x-amz-json-1.1"
        body = json.dumps({"__type": kind, "message": message}).encode()
        status = "400 Bad Request"
    elif service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        content_type, status = "application/xml", "403 Forbidden"
    else:
        body = (
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
            f"<Message>{_xml_escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        content_type, status = "text/xml", "403 Forbidden"
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", request_id),
        ],
    )
    return [body]


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
