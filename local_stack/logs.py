"""Each in-process function's log records carry its own service name, as they do in Lambda.

In Lambda every function is a process of its own, and Powertools' Logger reads
POWERTOOLS_SERVICE_NAME once, when the shared layer's `byom.observability` is imported. Locally
every function runs in one process, which imports that module once: the first function loaded (the
authorizer) named the one Logger every other function logs with. Re-importing the layer per
function would load it twenty times over; instead the stack runs each invocation (a thread of its
own) and each web app (its own thread and event loop) under `running_as(service)`, and a log-record
factory stamps that service on every record created there. Powertools' formatter lets a record's
own attributes override its default keys, so `service` is the function's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

SERVICE_ATTRIBUTE = "service"

# Threads start with an empty context, and asyncio tasks and anyio's worker threads copy the
# context they were started from: one value per invocation thread or web app.
_service: ContextVar[str | None] = ContextVar("byom_local_function_service", default=None)


@contextlib.contextmanager
def running_as(service: str | None) -> Iterator[None]:
    token = _service.set(service)
    try:
        yield
    finally:
        _service.reset(token)


class ServiceStamp:
    """Installs (and on uninstall removes) the record factory that names the running function."""

    def __init__(self) -> None:
        self._previous: Callable[..., logging.LogRecord] | None = None

    def install(self) -> ServiceStamp:
        if self._previous is None:
            previous = logging.getLogRecordFactory()
            self._previous = previous

            def stamped(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                service = _service.get()
                if service is not None:
                    setattr(record, SERVICE_ATTRIBUTE, service)
                return record

            logging.setLogRecordFactory(stamped)
        return self

    def uninstall(self) -> None:
        if self._previous is not None:
            logging.setLogRecordFactory(self._previous)
            self._previous = None
