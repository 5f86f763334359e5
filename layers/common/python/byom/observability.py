"""The one Logger and Tracer every function shares (service name comes from POWERTOOLS_SERVICE_NAME).

Where tracing is off (POWERTOOLS_TRACE_DISABLED, or outside Lambda: Powertools' own rule) the
Tracer gets a provider that records nothing, so the X-Ray SDK is never imported: outside Lambda its
recorder builds a botocore client for sampling rules at import, 100-200 ms of every cold start of
the local stack and the tests. Where tracing is on, only botocore is patched for X-Ray: the one
library of these functions it can trace (the OpenAI SDK uses httpx2); patching everything would
import and patch requests, sqlite3 and the rest at every cold start for nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

TRACED_MODULES = ("botocore",)


# Set on a function whose handler is a web server behind the Lambda Web Adapter (decision 56).
WEB_ADAPTER_WRAPPER = "/opt/bootstrap"


def tracing_disabled() -> bool:
    """What Powertools' Tracer decides for itself: off when told so, and outside Lambda. Off too in
    a web app behind the Lambda Web Adapter: no runtime client sets an invocation's trace header in
    its process, so the X-Ray SDK would find no segment to record AWS calls under."""
    if resolve_truthy_env_var_choice(env=os.getenv(constants.TRACER_DISABLED_ENV, "false")):
        return True
    if os.getenv("AWS_LAMBDA_EXEC_WRAPPER") == WEB_ADAPTER_WRAPPER:
        return True
    in_lambda = bool(os.getenv(constants.LAMBDA_TASK_ROOT_ENV))
    emulated = bool(os.getenv(constants.SAM_LOCAL_ENV) or os.getenv(constants.CHALICE_LOCAL_ENV))
    return not in_lambda or emulated


class _Unrecorded(BaseSegment):
    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class NoTracing(BaseProvider):
    """A tracing provider for where tracing is off: the Tracer's decorators still work, unrecorded."""

    @contextlib.contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        yield _Unrecorded()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> AsyncGenerator[BaseSegment, None]:
        yield _Unrecorded()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


logger = Logger()
if tracing_disabled():
    tracer = Tracer(disabled=True, auto_patch=False, provider=NoTracing())
else:
    tracer = Tracer(patch_modules=TRACED_MODULES)
