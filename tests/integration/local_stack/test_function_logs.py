"""A web-adapter function's app, served in the stack's process, logs under its own service name."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from local_stack.logs import ServiceStamp
from local_stack.web_adapter import WebApp
from tests.integration.local_stack.conftest import http

STREAM = io.StringIO()
# Created once per process, as the shared layer's logger is, by whichever function came first.
SHARED_LOGGER = Logger(service="byom-first-loaded-web", logger_handler=logging.StreamHandler(STREAM))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/log":
        SHARED_LOGGER.info("served")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def web_app() -> Iterator[WebApp]:
    stamp = ServiceStamp().install()
    served = WebApp("Gateway", app, service="byom-gateway").start()
    yield served
    served.stop()
    stamp.uninstall()


def test_a_web_apps_requests_log_with_its_functions_service(web_app: WebApp) -> None:
    http("GET", f"http://127.0.0.1:{web_app.port}/log")

    services = [json.loads(line)["service"] for line in STREAM.getvalue().splitlines()]
    assert services == ["byom-gateway"]
