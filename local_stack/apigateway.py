"""API Gateway (REST API) emulation: routes from the template, events as API Gateway builds them,
Lambda authorizers, Lambda proxy integrations, usage plans and the template's gateway responses.

Everything but LocalApiGateway.handle's calls into functions is pure; handle itself takes the
request as data and answers the response as data, so it is tested without sockets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

from local_stack.lambdas import FunctionError, InvocationTimeout
from local_stack.template import ACCOUNT_ID, REGION, Resolver, Template, get_att_targets

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit

# Response type -> (API Gateway's default status, the message API Gateway gives).
GATEWAY_DEFAULTS: dict[str, tuple[int, str]] = {
    "ACCESS_DENIED": (403, "User is not authorized to access this resource"),
    "API_CONFIGURATION_ERROR": (500, "Internal server error"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "Authorizer configuration error"),
    "AUTHORIZER_FAILURE": (500, "Authorizer error"),
    "BAD_REQUEST_BODY": (400, "Invalid request body"),
    "BAD_REQUEST_PARAMETERS": (400, "Invalid request parameters"),
    "DEFAULT_4XX": (400, "Bad request"),
    "DEFAULT_5XX": (502, "Internal server error"),
    "EXPIRED_TOKEN": (403, "The security token included in the request is expired"),
    "INTEGRATION_FAILURE": (504, "Internal server error"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out"),
    "INVALID_API_KEY": (403, "Forbidden"),
    "INVALID_SIGNATURE": (403, "Invalid signature"),
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token"),
    "QUOTA_EXCEEDED": (429, "Limit Exceeded"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "RESOURCE_NOT_FOUND": (404, "Not Found"),
    "THROTTLED": (429, "Too Many Requests"),
    "UNAUTHORIZED": (401, "Unauthorized"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type"),
    "WAF_FILTERED": (403, "Forbidden"),
}

_ERROR_TYPES = {
    "ACCESS_DENIED": "AccessDeniedException",
    "AUTHORIZER_CONFIGURATION_ERROR": "AuthorizerConfigurationException",
    "AUTHORIZER_FAILURE": "AuthorizerFailureException",
    "INVALID_API_KEY": "ForbiddenException",
    "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationTokenException",
    "REQUEST_TOO_LARGE": "RequestTooLargeException",
    "THROTTLED": "TooManyRequestsException",
    "UNAUTHORIZED": "UnauthorizedException",
}

_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|.*\+json|x-www-form-urlencoded|xml|.*\+xml|javascript|x-ndjson|jsonl?))$"
)
_CONTEXT_VARIABLE = re.compile(
    r"\$\{context\.([A-Za-z0-9_.]+)\}|\$context\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)"
)
_PROXY_RESULT_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}


# -- data ---------------------------------------------------------------------------------------


@dataclass
class HttpRequest:
    method: str
    path: str  # as sent, percent-encoding kept, no query string
    query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    too_large: bool = False

    def header(self, name: str) -> str | None:
        found = None
        for key, value in self.headers:
            if key.lower() == name.lower():
                found = value
        return found


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    stream: Iterator[bytes] | None = None
    """A streamed integration's body, sent chunk by chunk as it arrives (then `body` is empty).
    Closing it (a client that went away) ends the function's side too."""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass(frozen=True)
class Authorizer:
    logical_id: str
    function_id: str
    type: str  # REQUEST or TOKEN
    identity_sources: tuple[str, ...]
    result_ttl_seconds: int = 300  # API Gateway's default when the template sets none


@dataclass(frozen=True)
class MockResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str


@dataclass(frozen=True)
class Method:
    http_method: str  # GET, POST, ..., ANY
    resource_path: str  # as in the template: /admin/{proxy+}
    integration_type: str
    function_id: str | None = None
    authorization_type: str = "NONE"
    authorizer: Authorizer | None = None
    mock: MockResponse | None = None
    timeout_seconds: float = 29.0  # the integration's TimeoutInMillis
    api_key_required: bool = False
    streams: bool = False  # ResponseTransferMode STREAM: InvokeWithResponseStream, body as it comes


# Served without a key locally (SPEC §4 documentation routes).
LOCAL_PUBLIC_PATHS = frozenset({"/openapi.json", "/docs"})


@dataclass(frozen=True)
class GatewayResponseSpec:
    response_type: str
    status_code: int | None
    templates: dict[str, str]
    parameters: dict[str, str]


@dataclass
class RestApi:
    api_id: str
    stage: str
    resource_paths: list[str]
    methods: list[Method]
    gateway_responses: dict[str, GatewayResponseSpec]
    binary_media_types: list[str] = field(default_factory=list)
    throttle: tuple[float, int] | None = None  # the stage's (rate per second, burst)

    def match(self, http_method: str, path: str) -> tuple[Method, dict[str, str]] | None:
        """The method of the most specific resource matching path, as API Gateway picks it."""
        best: tuple[tuple[int, ...], str, dict[str, str]] | None = None
        for resource_path in self.resource_paths:
            matched = match_resource(resource_path, path)
            if matched is not None and (best is None or matched[0] < best[0]):
                best = (matched[0], resource_path, matched[1])
        if best is None:
            return None
        _, resource_path, params = best
        candidates = [m for m in self.methods if m.resource_path == resource_path]
        for wanted in (http_method.upper(), "ANY"):
            for method in candidates:
                if method.http_method == wanted:
                    return method, params
        return None


def match_resource(resource_path: str, path: str) -> tuple[tuple[int, ...], dict[str, str]] | None:
    """(specificity rank, path parameters) when path matches; lower ranks are more specific."""
    parts = [p for p in resource_path.strip("/").split("/") if p]
    trimmed = path[:-1] if len(path) > 1 and path.endswith("/") else path
    segments = trimmed.strip("/").split("/") if trimmed.strip("/") else []
    params: dict[str, str] = {}
    rank: list[int] = []
    for index, part in enumerate(parts):
        if part.startswith("{") and part.endswith("+}"):
            rest = segments[index:]
            if not rest or index != len(parts) - 1:
                return None
            params[part[1:-2]] = "/".join(rest) + ("/" if path.endswith("/") and len(path) > 1 else "")
            rank.append(2)
            return tuple(rank), params
        if index >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            if segments[index] == "":
                return None
            params[part[1:-1]] = segments[index]
            rank.append(1)
        elif part == segments[index]:
            rank.append(0)
        else:
            return None
    if len(segments) != len(parts):
        return None
    return tuple(rank), params


# -- reading the template -------------------------------------------------------------------------


def api_id_of(logical_id: str) -> str:
    """The id the emulation gives the REST API of that logical id (its Ref, locally)."""
    digest = hashlib.sha256(logical_id.encode()).hexdigest()
    return "".join(c for c in digest if c.isalnum())[:10]


def _ref_target(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("Ref"), str):
        return value["Ref"]
    return None


def _mock_response(integration: dict[str, Any], resolver: Resolver) -> MockResponse:
    responses = integration.get("IntegrationResponses") or [{"StatusCode": "200"}]
    first = resolver.resolve(responses[0])
    headers = []
    for key, value in (first.get("ResponseParameters") or {}).items():
        if key.startswith("method.response.header.") and isinstance(value, str):
            headers.append((key.removeprefix("method.response.header."), value.strip("'")))
    body = (first.get("ResponseTemplates") or {}).get("application/json", "")
    return MockResponse(status=int(first.get("StatusCode", 200)), headers=tuple(headers), body=body)


def build_rest_api(template: Template, resolver: Resolver) -> RestApi:
    """The REST API declared by the template (the first one, if there are several)."""
    apis = [logical_id for logical_id, _ in template.of_type("AWS::ApiGateway::RestApi")]
    if not apis:
        raise ValueError("the template declares no AWS::ApiGateway::RestApi")
    if len(apis) > 1:
        log.warning("several REST APIs in the template; serving %s", apis[0])
    api_logical_id = apis[0]
    api_props = resolver.resolve(template.properties(api_logical_id))

    def belongs(props: dict[str, Any]) -> bool:
        return _ref_target(props.get("RestApiId")) == api_logical_id

    parents: dict[str, tuple[str | None, str]] = {}
    for logical_id, resource in template.of_type("AWS::ApiGateway::Resource"):
        props = resource.get("Properties", {})
        if belongs(props):
            parents[logical_id] = (_ref_target(props.get("ParentId")), str(props.get("PathPart", "")))

    def full_path(resource_id: str | None) -> str:
        parts: list[str] = []
        while resource_id is not None and resource_id in parents:
            resource_id, part = parents[resource_id]
            parts.append(part)
        return "/" + "/".join(reversed(parts))

    authorizers: dict[str, Authorizer] = {}
    for logical_id, resource in template.of_type("AWS::ApiGateway::Authorizer"):
        props = resource.get("Properties", {})
        if not belongs(props):
            continue
        targets = get_att_targets(props.get("AuthorizerUri"))
        sources = tuple(s.strip() for s in str(props.get("IdentitySource") or "").split(",") if s.strip())
        if not targets:
            log.warning("authorizer %s does not name a function of the template", logical_id)
            continue
        ttl = int(props.get("AuthorizerResultTtlInSeconds", 300))
        authorizers[logical_id] = Authorizer(logical_id, targets[0], props.get("Type", "TOKEN"), sources, ttl)

    methods: list[Method] = []
    for _, resource in template.of_type("AWS::ApiGateway::Method"):
        props = resource.get("Properties", {})
        if not belongs(props):
            continue
        resource_ref = _ref_target(props.get("ResourceId"))
        path = full_path(resource_ref) if resource_ref in parents else "/"
        integration = props.get("Integration", {})
        integration_type = integration.get("Type", "MOCK")
        targets = [t for t in get_att_targets(integration.get("Uri")) if t in template.resources]
        functions = [t for t in targets if template.resources[t].get("Type") == "AWS::Lambda::Function"]
        authorizer_id = _ref_target(props.get("AuthorizerId"))
        # SPEC §4: the documentation routes are open in the local stack; the cloud keeps them behind
        # the authorizer (or leaves them out, byom:apiDocs).
        public = path in LOCAL_PUBLIC_PATHS
        methods.append(
            Method(
                http_method=str(props.get("HttpMethod", "ANY")).upper(),
                resource_path=path,
                integration_type=integration_type,
                function_id=functions[0] if functions else None,
                authorization_type="NONE" if public else str(props.get("AuthorizationType", "NONE")).upper(),
                authorizer=authorizers.get(authorizer_id) if authorizer_id and not public else None,
                mock=_mock_response(integration, resolver) if integration_type == "MOCK" else None,
                timeout_seconds=int(integration.get("TimeoutInMillis", 29000)) / 1000,
                api_key_required=props.get("ApiKeyRequired") is True and not public,
                streams=str(integration.get("ResponseTransferMode", "BUFFERED")).upper() == "STREAM",
            )
        )
        if integration_type == "AWS_PROXY" and not functions:
            log.warning("method %s %s integrates no function of the template", props.get("HttpMethod"), path)

    responses: dict[str, GatewayResponseSpec] = {}
    for _, resource in template.of_type("AWS::ApiGateway::GatewayResponse"):
        if not belongs(resource.get("Properties", {})):
            continue
        props = resolver.resolve(resource.get("Properties", {}))
        spec = GatewayResponseSpec(
            response_type=props["ResponseType"],
            status_code=int(props["StatusCode"]) if props.get("StatusCode") else None,
            templates=dict(props.get("ResponseTemplates") or {}),
            parameters=dict(props.get("ResponseParameters") or {}),
        )
        responses[spec.response_type] = spec

    stage, throttle = "prod", None
    for _, resource in template.of_type("AWS::ApiGateway::Stage"):
        props = resource.get("Properties", {})
        if belongs(props) and props.get("StageName"):
            stage, throttle = props["StageName"], _stage_throttle(resolver.resolve(props))
            break
    else:
        for _, resource in template.of_type("AWS::ApiGateway::Deployment"):
            props = resource.get("Properties", {})
            if belongs(props) and props.get("StageName"):
                stage = props["StageName"]

    resource_paths = sorted({"/", *(full_path(r) for r in parents)})
    return RestApi(
        api_id=api_id_of(api_logical_id),
        stage=stage,
        resource_paths=resource_paths,
        methods=methods,
        gateway_responses=responses,
        binary_media_types=list(api_props.get("BinaryMediaTypes") or []),
        throttle=throttle,
    )


def _stage_throttle(stage_props: dict[str, Any]) -> tuple[float, int] | None:
    """The stage-wide throttling (MethodSettings for every resource and method), if any."""
    for setting in stage_props.get("MethodSettings") or []:
        if setting.get("ResourcePath") == "/*" and setting.get("HttpMethod") == "*":
            rate, burst = setting.get("ThrottlingRateLimit"), setting.get("ThrottlingBurstLimit")
            if rate is not None and burst is not None:
                return float(rate), int(burst)
    return None


class TokenBucket:
    """API Gateway's throttling: `burst` requests at once, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.updated = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


# -- usage plans ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanLimits:
    """The usage plan an API key is in on the served stage, and its throttle (rate/s, burst)."""

    plan_id: str
    throttle: tuple[float, int] | None


class UsagePlanLookup(Protocol):
    def plan_of(self, usage_key: str, api_id: str, stage: str) -> PlanLimits | None:
        """The plan of the enabled API key with that value on the stage; None: no such key or plan."""
        ...


# How long a key's plan is remembered. API Gateway also takes a moment to apply plan changes; writes
# through the admin API flush it at once (LocalApiGateway.flush_authorizer_cache).
PLAN_CACHE_SECONDS = 5.0


class UsagePlanThrottles:
    """API Gateway's per-key throttling: a token bucket per API key, with its plan's throttle.

    A key's bucket survives cache flushes and is replaced only when its plan's throttle changes,
    so a flush never hands a throttled key a full burst."""

    def __init__(
        self, lookup: UsagePlanLookup, api_id: str, stage: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lookup, self._api_id, self._stage, self._clock = lookup, api_id, stage, clock
        self._plans: dict[str, tuple[float, PlanLimits | None]] = {}
        self._buckets: dict[str, tuple[tuple[float, int], TokenBucket]] = {}
        self._lock = threading.Lock()

    def admit(self, usage_key: str | None) -> str | None:
        """None when the request may go on, else the gateway response type that refuses it."""
        if not usage_key:
            return "INVALID_API_KEY"
        plan = self._plan(usage_key)
        if plan is None:
            return "INVALID_API_KEY"
        if plan.throttle is None:
            return None
        return None if self._bucket(usage_key, plan.throttle).take() else "THROTTLED"

    def flush(self) -> None:
        with self._lock:
            self._plans.clear()

    def _plan(self, usage_key: str) -> PlanLimits | None:
        now = self._clock()
        with self._lock:
            cached = self._plans.get(usage_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        plan = self._lookup.plan_of(usage_key, self._api_id, self._stage)
        with self._lock:
            self._plans[usage_key] = (now + PLAN_CACHE_SECONDS, plan)
        return plan

    def _bucket(self, usage_key: str, throttle: tuple[float, int]) -> TokenBucket:
        with self._lock:
            current = self._buckets.get(usage_key)
            if current is None or current[0] != throttle:
                current = (throttle, TokenBucket(*throttle, clock=self._clock))
                self._buckets[usage_key] = current
            return current[1]


# -- events -------------------------------------------------------------------------------------


def _media_type_matches(content_type: str, pattern: str) -> bool:
    regex = re.escape(pattern.strip().lower()).replace(r"\*", ".*")
    return re.fullmatch(regex, content_type) is not None


def encode_body(
    body: bytes, content_type: str | None, binary_media_types: list[str]
) -> tuple[str | None, bool]:
    """(body, isBase64Encoded): text stays text, binary payloads are base64-encoded."""
    if not body:
        return None, False
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    binary = any(_media_type_matches(media_type, p) for p in binary_media_types) or (
        bool(media_type) and not _TEXT_TYPES.match(media_type)
    )
    if not binary:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _header_maps(request: HttpRequest) -> tuple[dict[str, str], dict[str, list[str]]]:
    headers: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in request.headers:
        existing = next((k for k in multi if k.lower() == key.lower()), key)
        multi.setdefault(existing, []).append(value)
        headers[existing] = value
    extra = {
        "X-Forwarded-For": request.source_ip,
        "X-Forwarded-Proto": "http",
        "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
    }
    for key, value in extra.items():
        if not any(k.lower() == key.lower() for k in headers):
            headers[key] = value
            multi[key] = [value]
    return headers, multi


def _query_maps(query: str) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value
        multi.setdefault(key, []).append(value)
    return single, multi


def method_arn(api: RestApi, http_method: str, path: str) -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{api.api_id}/{api.stage}/{http_method.upper()}{path}"


def _request_context(
    api: RestApi, method: Method, request: HttpRequest, request_id: str, now: datetime
) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT_ID,
        "apiId": api.api_id,
        "stage": api.stage,
        "requestId": request_id,
        "extendedRequestId": request_id,
        "resourceId": api_id_of(method.resource_path)[:6],
        "resourcePath": method.resource_path,
        "httpMethod": request.method.upper(),
        "path": f"/{api.stage}{request.path}",
        "protocol": "HTTP/1.1",
        "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "requestTimeEpoch": int(now.timestamp() * 1000),
        "domainName": request.header("host") or "127.0.0.1",
        "domainPrefix": (request.header("host") or "127.0.0.1").split(".")[0],
        "identity": {
            "sourceIp": request.source_ip,
            "userAgent": request.header("user-agent"),
            "accessKey": None,
            "accountId": None,
            "caller": None,
            "cognitoAuthenticationProvider": None,
            "cognitoAuthenticationType": None,
            "cognitoIdentityId": None,
            "cognitoIdentityPoolId": None,
            "principalOrgId": None,
            "user": None,
            "userArn": None,
        },
    }


def build_authorizer_event(
    api: RestApi,
    method: Method,
    request: HttpRequest,
    path_parameters: dict[str, str],
    request_id: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The event API Gateway sends a Lambda authorizer."""
    arn = method_arn(api, request.method, request.path)
    authorizer = method.authorizer
    if authorizer is not None and authorizer.type == "TOKEN":
        header = authorizer.identity_sources[0].removeprefix("method.request.header.")
        return {"type": "TOKEN", "authorizationToken": request.header(header) or "", "methodArn": arn}
    headers, multi_headers = _header_maps(request)
    query, multi_query = _query_maps(request.query)
    return {
        "type": "REQUEST",
        "methodArn": arn,
        "resource": method.resource_path,
        "path": request.path,
        "httpMethod": request.method.upper(),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query or {},
        "multiValueQueryStringParameters": multi_query or {},
        "pathParameters": path_parameters,
        "stageVariables": {},
        "requestContext": _request_context(api, method, request, request_id, now or datetime.now(UTC)),
    }


def build_proxy_event(
    api: RestApi,
    method: Method,
    request: HttpRequest,
    path_parameters: dict[str, str],
    request_id: str,
    authorizer_context: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The REST API Lambda proxy integration event (payload format 1.0)."""
    headers, multi_headers = _header_maps(request)
    query, multi_query = _query_maps(request.query)
    body, is_base64 = encode_body(request.body, request.header("content-type"), api.binary_media_types)
    context = _request_context(api, method, request, request_id, now or datetime.now(UTC))
    if authorizer_context is not None:
        context["authorizer"] = authorizer_context
    return {
        "resource": method.resource_path,
        "path": request.path,
        "httpMethod": request.method.upper(),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": is_base64,
    }


# -- authorizer results ---------------------------------------------------------------------------


class AuthorizerConfigurationError(Exception):
    """The authorizer answered something API Gateway cannot use."""


def _arn_pattern_matches(pattern: str, arn: str) -> bool:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, arn) is not None


def _action_matches(action: str) -> bool:
    return action in ("*", "execute-api:*", "execute-api:Invoke")


def evaluate_policy(policy: dict[str, Any], arn: str) -> str:
    """'allow', 'deny' (an explicit Deny matches) or 'implicit_deny' for a method ARN."""
    statements = policy.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    allowed = False
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if not any(_action_matches(a) for a in actions):
            continue
        if not any(_arn_pattern_matches(r, arn) for r in resources):
            continue
        effect = str(statement.get("Effect", "")).lower()
        if effect == "deny":
            return "deny"
        if effect == "allow":
            allowed = True
    return "allow" if allowed else "implicit_deny"


def _context_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def authorizer_context(result: Any, latency_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(policy document, requestContext.authorizer) from an authorizer's answer.

    API Gateway hands context values to the integration as strings and rejects objects and arrays.
    """
    if not isinstance(result, dict) or "principalId" not in result or "policyDocument" not in result:
        raise AuthorizerConfigurationError("the authorizer must answer principalId and policyDocument")
    policy = result["policyDocument"]
    if not isinstance(policy, dict):
        raise AuthorizerConfigurationError("policyDocument must be an object")
    context: dict[str, Any] = {}
    for key, value in (result.get("context") or {}).items():
        if isinstance(value, dict | list):
            raise AuthorizerConfigurationError(f"context value {key!r} must be a string, number or boolean")
        if value is not None:
            context[key] = _context_value(value)
    context["principalId"] = str(result["principalId"])
    context["integrationLatency"] = latency_ms
    return policy, context


# -- responses ------------------------------------------------------------------------------------


def render_gateway_response(
    api: RestApi,
    response_type: str,
    request_id: str,
    message: str | None = None,
    request: HttpRequest | None = None,
) -> HttpResponse:
    """A gateway response the way the template customises it (falling back like API Gateway does)."""
    default_status, default_message = GATEWAY_DEFAULTS.get(response_type, (500, "Internal server error"))
    message = default_message if message is None else message
    family = "DEFAULT_4XX" if default_status < 500 else "DEFAULT_5XX"
    spec = api.gateway_responses.get(response_type)
    fallback = api.gateway_responses.get(family)
    status = default_status
    if spec is not None and spec.status_code is not None:
        status = spec.status_code
    elif spec is None and fallback is not None and fallback.status_code is not None:
        status = fallback.status_code
    chosen = spec or fallback

    variables = {
        "requestId": request_id,
        "extendedRequestId": request_id,
        "error.message": message,
        "error.messageString": json.dumps(message),
        "error.responseType": response_type,
        "stage": api.stage,
        "apiId": api.api_id,
        "httpMethod": request.method.upper() if request else "",
        "path": f"/{api.stage}{request.path}" if request else "",
        "resourcePath": "",
    }

    def substitute(text: str) -> str:
        return _CONTEXT_VARIABLE.sub(lambda m: str(variables.get(m.group(1) or m.group(2), "")), text)

    template = None
    if chosen is not None:
        template = chosen.templates.get("application/json")
        if template is None and chosen.templates:
            template = next(iter(chosen.templates.values()))
    body = substitute(template) if template is not None else json.dumps({"message": message})
    headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
    if response_type in _ERROR_TYPES:
        headers.append(("x-amzn-ErrorType", _ERROR_TYPES[response_type]))
    for key, value in (chosen.parameters if chosen else {}).items():
        if not key.startswith("gatewayresponse.header."):
            continue
        name = key.removeprefix("gatewayresponse.header.")
        headers = [(k, v) for k, v in headers if k.lower() != name.lower()]
        headers.append((name, _parameter_value(value, variables, request)))
    return HttpResponse(status=status, headers=headers, body=body.encode("utf-8"))


def _parameter_value(expression: str, variables: dict[str, str], request: HttpRequest | None) -> str:
    if len(expression) >= 2 and expression.startswith("'") and expression.endswith("'"):
        return expression[1:-1]
    if expression.startswith("context."):
        return str(variables.get(expression.removeprefix("context."), ""))
    if expression.startswith("method.request.header.") and request is not None:
        return request.header(expression.removeprefix("method.request.header.")) or ""
    return ""


class MalformedProxyResponse(Exception):
    """The function answered something that is not a Lambda proxy response."""


def proxy_response(result: Any) -> HttpResponse:
    """The HTTP response API Gateway makes of a Lambda proxy integration's answer."""
    if not isinstance(result, dict):
        raise MalformedProxyResponse(f"expected an object, got {type(result).__name__}")
    unknown = set(result) - _PROXY_RESULT_KEYS
    if unknown:
        raise MalformedProxyResponse(f"unexpected keys {sorted(unknown)}")
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedProxyResponse(f"statusCode must be an integer HTTP status, got {status!r}")
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise MalformedProxyResponse("headers and multiValueHeaders must be objects")
    headers: list[tuple[str, str]] = []
    for key, values in multi.items():
        if not isinstance(values, list):
            raise MalformedProxyResponse(f"multiValueHeaders[{key!r}] must be a list")
        headers.extend((key, _context_value(v)) for v in values)
    multi_names = {k.lower() for k in multi}
    headers.extend((k, _context_value(v)) for k, v in single.items() if k.lower() not in multi_names)
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise MalformedProxyResponse("body must be a string")
    payload = (body or "").encode("utf-8")
    if result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(body or "", validate=True)
        except ValueError as error:
            raise MalformedProxyResponse(f"body is not valid base64: {error}") from error
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return HttpResponse(status=status, headers=headers, body=payload)


# -- the gateway ----------------------------------------------------------------------------------


# (function logical id, event, the caller's timeout in seconds or None) -> the function's answer
Invoke = Callable[[str, dict[str, Any], float | None], Any]


class WebFunctions(Protocol):
    """Functions that are web servers behind the Lambda Web Adapter (local_stack.web_adapter)."""

    def serves(self, function_id: str) -> bool: ...

    def streams(self, function_id: str) -> bool: ...

    def forward(self, function_id: str, event: dict[str, Any], timeout: float) -> Any: ...


CacheKey = tuple[str, tuple[str, ...]]


class LocalApiGateway:
    """Serves one REST API: match, authorize, integrate, answer.

    `cache_authorizer_results` keeps an authorizer's policy, context and usage identifier key for
    the template's TTL, per identity source values, as API Gateway does. `usage_plans` finds the
    plan of the API key the authorizer names, for methods that require one.
    `flush_cache_after_writes_under` names a path prefix (the admin API) whose successful writes
    flush that cache (and the usage plans remembered), as an operator would flush
    the stage's authorizer cache: a revoked key is then refused at once, while every other call
    skips the authorizer round trip as it does in the cloud.
    """

    def __init__(
        self,
        api: RestApi,
        invoke: Invoke,
        *,
        cache_authorizer_results: bool = False,
        flush_cache_after_writes_under: str | None = None,
        usage_plans: UsagePlanLookup | None = None,
        web_functions: WebFunctions | None = None,
    ) -> None:
        self.api = api
        self.invoke = invoke
        self._web = web_functions
        self._warned: set[str] = set()
        self._bucket = TokenBucket(*api.throttle) if api.throttle else None
        self._cache_authorizer_results = cache_authorizer_results
        self._flush_prefix = flush_cache_after_writes_under
        # (authorizer, identity source values) -> (expires at, policy, context, usage identifier key)
        self._authorizer_results: dict[
            CacheKey, tuple[float, dict[str, Any], dict[str, Any], str | None]
        ] = {}
        self._authorizer_results_lock = threading.Lock()
        # Methods with ApiKeyRequired are throttled by the plan of the key the authorizer names;
        # without a lookup (tests of other parts) API keys are not checked.
        self._usage_plans = UsagePlanThrottles(usage_plans, api.api_id, api.stage) if usage_plans else None

    def handle(self, request: HttpRequest) -> HttpResponse:
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        response = self._handle(request, request_id)
        if response.header("x-request-id") is None:
            response.headers.append(("x-request-id", request_id))
        response.headers.append(("x-amzn-RequestId", request_id))
        log.info(
            "%s %s -> %s (%d ms) %s",
            request.method,
            request.path,
            response.status,
            (time.monotonic() - started) * 1000,
            request_id,
        )
        return response

    def _gateway(self, response_type: str, request_id: str, request: HttpRequest, message: str | None = None):
        return render_gateway_response(self.api, response_type, request_id, message, request)

    def _handle(self, request: HttpRequest, request_id: str) -> HttpResponse:
        if self._bucket is not None and not self._bucket.take():
            return self._gateway("THROTTLED", request_id, request)
        if request.too_large or len(request.body) > MAX_BODY_BYTES:
            return self._gateway("REQUEST_TOO_LARGE", request_id, request)
        matched = self.api.match(request.method, request.path)
        if matched is None:
            return self._gateway("MISSING_AUTHENTICATION_TOKEN", request_id, request)
        method, path_parameters = matched

        authorizer_ctx, usage_key = None, None
        if method.authorization_type == "CUSTOM" and method.authorizer is not None:
            outcome = self._authorize(method, request, path_parameters, request_id)
            if isinstance(outcome, HttpResponse):
                return outcome
            authorizer_ctx, usage_key = outcome
        if method.api_key_required and self._usage_plans is not None:
            refused = self._usage_plans.admit(usage_key)
            if refused is not None:
                return self._gateway(refused, request_id, request)

        if method.integration_type == "MOCK" and method.mock is not None:
            return HttpResponse(method.mock.status, list(method.mock.headers), method.mock.body.encode())
        if method.integration_type != "AWS_PROXY" or method.function_id is None:
            log.error(
                "%s %s: integration %s is not emulated",
                method.http_method,
                method.resource_path,
                method.integration_type,
            )
            return self._gateway("API_CONFIGURATION_ERROR", request_id, request)

        event = build_proxy_event(self.api, method, request, path_parameters, request_id, authorizer_ctx)
        if self._web is not None and self._web.serves(method.function_id):
            response = self._forward(method, event, request_id, request)
        else:
            response = self._invoke(method, event, request_id, request)
        if self._is_successful_admin_write(request, response):
            self.flush_authorizer_cache()
        if response.header("x-request-id") is None and method.function_id not in self._warned:
            self._warned.add(method.function_id)
            log.warning("%s answered without x-request-id; API Gateway would not add one", method.function_id)
        return response

    def _invoke(
        self, method: Method, event: dict[str, Any], request_id: str, request: HttpRequest
    ) -> HttpResponse:
        assert method.function_id is not None
        try:
            result = self.invoke(method.function_id, event, method.timeout_seconds)
            return proxy_response(result)
        except InvocationTimeout as error:
            log.error("%s", error)
            if error.caller_gave_up:
                return self._gateway("INTEGRATION_TIMEOUT", request_id, request)
            return self._gateway("DEFAULT_5XX", request_id, request, "Internal server error")
        except FunctionError as error:
            log.error("%s failed: %s", method.function_id, error, exc_info=error.__cause__)
            return self._gateway("DEFAULT_5XX", request_id, request, "Internal server error")
        except MalformedProxyResponse as error:
            log.error("%s: malformed Lambda proxy response: %s", method.function_id, error)
            return self._gateway("DEFAULT_5XX", request_id, request, "Internal server error")
        except Exception:
            log.exception("%s cannot be invoked locally", method.function_id)
            return self._gateway("API_CONFIGURATION_ERROR", request_id, request)

    def _forward(
        self, method: Method, event: dict[str, Any], request_id: str, request: HttpRequest
    ) -> HttpResponse:
        """A web-adapter function: the app's answer, streamed when the integration streams."""
        assert self._web is not None and method.function_id is not None
        if self._web.streams(method.function_id) != method.streams:
            # In the cloud API Gateway could not read the answer: a streaming function invoked for
            # a buffered integration answers the stream's framing, and the other way round.
            log.error(
                "%s %s: integration is %s but %s %s",
                method.http_method,
                method.resource_path,
                "STREAM" if method.streams else "BUFFERED",
                method.function_id,
                "streams its responses" if self._web.streams(method.function_id) else "does not stream",
            )
            return self._gateway("API_CONFIGURATION_ERROR", request_id, request)
        try:
            answer = self._web.forward(method.function_id, event, method.timeout_seconds)
        except TimeoutError:
            return self._gateway("INTEGRATION_TIMEOUT", request_id, request)
        except OSError as error:
            log.error("%s: the web app did not answer: %s", method.function_id, error)
            return self._gateway("DEFAULT_5XX", request_id, request, "Internal server error")
        if not method.streams:
            body = b"".join(answer.chunks)
            return HttpResponse(answer.status, answer.headers, body)
        return HttpResponse(answer.status, answer.headers, b"", stream=answer.chunks)

    def _authorize(
        self, method: Method, request: HttpRequest, path_parameters: dict[str, str], request_id: str
    ) -> HttpResponse | tuple[dict[str, Any], str | None]:
        """The refusal, or the authorizer's context and the usage identifier key it named."""
        authorizer = method.authorizer
        assert authorizer is not None
        identity: list[str] = []
        for source in authorizer.identity_sources:
            if source.startswith("method.request.header."):
                value = request.header(source.removeprefix("method.request.header."))
            elif source.startswith("method.request.querystring."):
                value = dict(parse_qsl(request.query)).get(source.removeprefix("method.request.querystring."))
            else:
                continue
            if not value:
                return self._gateway("UNAUTHORIZED", request_id, request)
            identity.append(value)
        event = build_authorizer_event(self.api, method, request, path_parameters, request_id)
        cache_key = (authorizer.logical_id, tuple(identity))
        cached = self._cached_authorizer_result(cache_key)
        if cached is not None:
            policy, context, usage_key = cached
            return self._decide(policy, context, usage_key, event["methodArn"], request_id, request)
        started = time.monotonic()
        try:
            result = self.invoke(authorizer.function_id, event, None)
        except FunctionError as error:
            if str(error.__cause__) == "Unauthorized":
                return self._gateway("UNAUTHORIZED", request_id, request)
            log.error("authorizer %s failed: %s", authorizer.function_id, error, exc_info=error.__cause__)
            return self._gateway("AUTHORIZER_FAILURE", request_id, request)
        except Exception:
            log.exception("authorizer %s cannot be invoked locally", authorizer.function_id)
            return self._gateway("AUTHORIZER_CONFIGURATION_ERROR", request_id, request)
        try:
            policy, context = authorizer_context(result, int((time.monotonic() - started) * 1000))
        except AuthorizerConfigurationError as error:
            log.error("authorizer %s: %s", authorizer.function_id, error)
            return self._gateway("AUTHORIZER_CONFIGURATION_ERROR", request_id, request)
        usage_key = result.get("usageIdentifierKey")
        usage_key = usage_key if isinstance(usage_key, str) else None
        if self._cache_authorizer_results and authorizer.result_ttl_seconds > 0:
            expires = time.monotonic() + authorizer.result_ttl_seconds
            entry = (expires, policy, context | {"integrationLatency": 0}, usage_key)
            with self._authorizer_results_lock:
                self._authorizer_results[cache_key] = entry
        return self._decide(policy, context, usage_key, event["methodArn"], request_id, request)

    def _is_successful_admin_write(self, request: HttpRequest, response: HttpResponse) -> bool:
        return (
            self._flush_prefix is not None
            and request.method not in ("GET", "HEAD", "OPTIONS")
            and request.path.startswith(self._flush_prefix)
            and 200 <= response.status < 300
        )

    def flush_authorizer_cache(self) -> None:
        """And the usage plans remembered: an admin write may have changed a key's plan."""
        with self._authorizer_results_lock:
            self._authorizer_results.clear()
        if self._usage_plans is not None:
            self._usage_plans.flush()

    def _cached_authorizer_result(
        self, key: CacheKey
    ) -> tuple[dict[str, Any], dict[str, Any], str | None] | None:
        if not self._cache_authorizer_results:
            return None
        with self._authorizer_results_lock:
            entry = self._authorizer_results.get(key)
            if entry is None or entry[0] <= time.monotonic():
                self._authorizer_results.pop(key, None)
                return None
        return entry[1], dict(entry[2]), entry[3]

    def _decide(
        self,
        policy: dict[str, Any],
        context: dict[str, Any],
        usage_key: str | None,
        method_arn: str,
        request_id: str,
        request: HttpRequest,
    ) -> HttpResponse | tuple[dict[str, Any], str | None]:
        """The (possibly cached) policy applied to this request's method, as API Gateway does."""
        decision = evaluate_policy(policy, method_arn)
        if decision == "deny":
            message = "User is not authorized to access this resource with an explicit deny"
            return self._gateway("ACCESS_DENIED", request_id, request, message)
        if decision == "implicit_deny":
            return self._gateway("ACCESS_DENIED", request_id, request)
        return context, usage_key
