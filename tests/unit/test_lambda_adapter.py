"""byom.api.lambda_adapter: a proxy event served by an ASGI app in process, and answered as a proxy
response; invocations side by side on threads share nothing."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import logging
import threading
from pathlib import Path
from typing import Annotated, Any

import pytest
from byom.api import admin as admin_api
from byom.api.lambda_adapter import lambda_context, lambda_handler
from byom.api.web import RequestContext, build_app, context, ignore_trailing_slashes, ok, raw_body
from byom.domain import CreateTenant
from byom.logic import admin
from byom.logic.access import Principal
from byom.observability import logger
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.conftest import LambdaContext, api_event
from tests.unit.fakes import FakeCredentials, FakeKeys, FakeModels, FakeSecrets, FakeTenants

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_ADMIN = {
    "principal": "platform_admin",
    "tenant_id": "",
    "key_id": "platform-admin",
    "role": "platform_admin",
}
# How long a test waits for a step it expects before failing; never what it asserts.
PATIENCE = 10


def _echo_app() -> FastAPI:
    router = APIRouter()

    @router.api_route("/echo/{segment}", methods=["GET", "POST"])
    def echo(
        request: Request,
        segment: str,
        ctx: Annotated[RequestContext, Depends(context)],
        body: Annotated[bytes, Depends(raw_body)],
        invocation: Annotated[Any, Depends(lambda_context)],
    ) -> JSONResponse:
        return ok(
            {
                "method": request.method,
                "segment": segment,
                "query": request.query_params.multi_items(),
                "accept": request.headers.getlist("accept"),
                "body": base64.b64encode(body).decode(),
                "request_id": ctx.request_id,
                "role": ctx.authorizer.get("role"),
                "function": getattr(invocation, "function_name", None),
            }
        )

    @router.get("/binary")
    def binary() -> Response:
        return Response(bytes(range(256)), media_type="application/octet-stream")

    @router.get("/cookies")
    def cookies() -> JSONResponse:
        answer = ok({})
        answer.set_cookie("a", "1")
        answer.set_cookie("b", "2")
        return answer

    @router.get("/boom")
    def boom() -> JSONResponse:
        raise RuntimeError("a message that may carry request data")

    app = build_app("test")
    app.include_router(router)
    return app


def _serve(event: dict[str, Any], app: FastAPI | None = None) -> dict[str, Any]:
    return lambda_handler(app or _echo_app())(event, LambdaContext(function_name="echo-fn"))


def _body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def test_the_event_becomes_one_request_with_its_method_path_query_headers_and_caller() -> None:
    event = api_event("POST", "/echo/seg", body="hi", authorizer={"role": "admin"})
    event["multiValueQueryStringParameters"] = {"a": ["1", "2"], "b": [""]}
    event["queryStringParameters"] = {"a": "2", "b": ""}
    event["multiValueHeaders"]["Accept"] = ["text/plain", "application/json"]

    answer = _body(_serve(event))

    assert answer == {
        "method": "POST",
        "segment": "seg",
        "query": [["a", "1"], ["a", "2"], ["b", ""]],
        "accept": ["text/plain", "application/json"],
        "body": base64.b64encode(b"hi").decode(),
        "request_id": event["requestContext"]["requestId"],
        "role": "admin",
        "function": "echo-fn",
    }


def test_a_base64_body_reaches_the_app_byte_for_byte() -> None:
    event = api_event("POST", "/echo/seg")
    event["body"] = base64.b64encode(bytes(range(256))).decode()
    event["isBase64Encoded"] = True

    answer = _body(_serve(event))

    assert base64.b64decode(answer["body"]) == bytes(range(256))


def test_the_events_request_context_replaces_one_a_client_sent() -> None:
    event = api_event("GET", "/echo/seg", authorizer={"role": "viewer"})
    forged = json.dumps({"requestId": "forged", "authorizer": {"role": "platform_admin"}})
    event["headers"]["X-Amzn-Request-Context"] = forged
    event["multiValueHeaders"]["X-Amzn-Request-Context"] = [forged]

    answer = _body(_serve(event))

    assert (answer["role"], answer["request_id"]) == ("viewer", event["requestContext"]["requestId"])


def test_an_encoded_path_segment_reaches_the_route_as_the_client_encoded_it() -> None:
    answer = _body(_serve(api_event("GET", "/echo/a%2Fb%40c")))

    assert answer["segment"] == "a%2Fb%40c"


def test_a_json_answer_is_a_text_body_with_its_headers_and_the_request_id() -> None:
    event = api_event("GET", "/echo/seg")

    response = _serve(event)

    assert response["isBase64Encoded"] is False
    assert isinstance(response["body"], str)
    assert response["multiValueHeaders"]["content-type"] == ["application/json"]
    assert response["multiValueHeaders"]["x-request-id"] == [event["requestContext"]["requestId"]]
    # API Gateway frames the answer itself.
    assert "content-length" not in response["multiValueHeaders"]


def test_a_binary_answer_is_base64_encoded() -> None:
    response = _serve(api_event("GET", "/binary"))

    assert response["isBase64Encoded"] is True
    assert base64.b64decode(response["body"]) == bytes(range(256))


def test_a_repeated_answer_header_keeps_each_value() -> None:
    response = _serve(api_event("GET", "/cookies"))

    assert [c.split(";")[0] for c in response["multiValueHeaders"]["set-cookie"]] == ["a=1", "b=2"]


def test_an_unexpected_error_is_a_500_envelope_with_the_request_id_and_no_message() -> None:
    event = api_event("GET", "/boom")

    response = _serve(event)

    request_id = event["requestContext"]["requestId"]
    assert response["statusCode"] == 500
    assert _body(response)["error"] == {
        "message": f"Internal error (request {request_id})",
        "type": "api_error",
        "param": None,
        "code": None,
    }
    assert response["multiValueHeaders"]["x-request-id"] == [request_id]
    assert "request data" not in response["body"]


def test_a_trailing_slash_is_served_by_the_route_and_an_unknown_path_named_as_sent() -> None:
    app = ignore_trailing_slashes(_echo_app())

    served = _serve(api_event("GET", "/echo/seg//"), app)
    other_method = _serve(api_event("PUT", "/echo/seg/"), app)

    assert (served["statusCode"], _body(served)["segment"]) == (200, "seg")
    assert other_method["statusCode"] == 404
    assert _body(other_method)["error"]["message"] == "Unknown route: PUT /echo/seg/"


# Invocations side by side, as the local stack serves them: one process, one thread each.


class HeldTenants(FakeTenants):
    """Lists tenants once `release` is set: a request held inside its route."""

    def __init__(self, inside: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self.inside, self.release = inside, release

    def list(self):  # type: ignore[no-untyped-def]
        self.inside.set()
        self.release.wait(PATIENCE)
        return super().list()


def _admin_handler() -> Any:
    spec = importlib.util.spec_from_file_location(
        "byom_function_admin_unit", ROOT / "functions/admin/handler.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def test_two_admin_requests_are_served_at_once_on_two_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    inside, b_answered = threading.Event(), threading.Event()
    tenants = HeldTenants(inside, b_answered)
    store = admin.AdminStore(
        tenants=tenants,
        keys=FakeKeys(),
        credentials=FakeCredentials(),
        models=FakeModels(),
        secrets=FakeSecrets(),
    )
    platform = Principal(key_id="platform-admin", role="platform_admin")
    tenant = admin.create_tenant(store, platform, CreateTenant(name="acme"))
    monkeypatch.setattr(admin_api, "store", lambda: store)
    monkeypatch.setattr(admin_api, "audit_log", lambda: None)
    handler = _admin_handler()
    order: list[str] = []
    answers: dict[str, int] = {}

    def call(name: str, path: str) -> None:
        response = handler(api_event("GET", path, authorizer=PLATFORM_ADMIN), LambdaContext())
        answers[name] = response["statusCode"]
        order.append(name)

    a = threading.Thread(target=call, args=("A", "/admin/tenants"))
    b = threading.Thread(target=call, args=("B", f"/admin/tenants/{tenant.id}"))
    # Given A held inside its route,
    a.start()
    assert inside.wait(PATIENCE)
    # when B is served meanwhile, and only then A released,
    b.start()
    b.join(PATIENCE)
    b_answered.set()
    a.join(PATIENCE)
    b.join(PATIENCE)

    # then B was answered while A was still inside its route.
    assert order == ["B", "A"]
    assert answers == {"A": 200, "B": 200}


def test_each_invocation_logs_with_its_own_correlation_id_while_others_run() -> None:
    both_inside = threading.Barrier(2, timeout=PATIENCE)
    router = APIRouter()

    @router.get("/log")
    def log_line() -> JSONResponse:
        both_inside.wait()  # both invocations' decorators have set the process-wide id
        logger.info("inside")
        return ok({})

    app = build_app("test")
    app.include_router(router)
    serve = lambda_handler(app)

    @logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return serve(event, context)

    lines = io.StringIO()
    capture = logging.StreamHandler(lines)
    capture.setFormatter(logger.registered_formatter)
    logger.addHandler(capture)
    events = [api_event("GET", "/log"), api_event("GET", "/log")]
    try:
        threads = [threading.Thread(target=handler, args=(e, LambdaContext())) for e in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PATIENCE)
    finally:
        logger.removeHandler(capture)

    logged = [json.loads(line) for line in lines.getvalue().splitlines() if '"inside"' in line]
    assert sorted(line["correlation_id"] for line in logged) == sorted(
        e["requestContext"]["requestId"] for e in events
    )
