"""Functions sharing the process (and so one Powertools Logger) log under their own service names."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_lambda_powertools import Logger

from local_stack.lambdas import LambdaFunction
from local_stack.logs import ServiceStamp

# What every function imports from the shared layer: created once, by the first function loaded.
STREAM = io.StringIO()
SHARED_LOGGER = Logger(service="byom-first-loaded", logger_handler=logging.StreamHandler(STREAM))


def _log_hello(_event: object, _context: object) -> None:
    SHARED_LOGGER.info("hello")


@pytest.fixture
def stamp() -> Iterator[ServiceStamp]:
    stamp = ServiceStamp().install()
    yield stamp
    stamp.uninstall()


def _function(logical_id: str, service: str, tmp_path: Path) -> LambdaFunction:
    function = LambdaFunction(
        logical_id, logical_id, "handler.handler", tmp_path, [], {"POWERTOOLS_SERVICE_NAME": service}
    )
    function.entry = _log_hello
    return function


def _services_logged() -> list[str]:
    return [json.loads(line)["service"] for line in STREAM.getvalue().splitlines()]


def test_each_invocation_logs_with_its_own_functions_service(stamp: ServiceStamp, tmp_path: Path) -> None:
    STREAM.truncate(0)
    STREAM.seek(0)

    _function("Gateway", "byom-gateway", tmp_path).invoke({})
    _function("Admin", "byom-admin", tmp_path).invoke({})

    assert _services_logged() == ["byom-gateway", "byom-admin"]


def test_outside_any_function_the_logger_keeps_its_own_service(stamp: ServiceStamp) -> None:
    STREAM.truncate(0)
    STREAM.seek(0)

    SHARED_LOGGER.info("not in a function")

    assert _services_logged() == ["byom-first-loaded"]
