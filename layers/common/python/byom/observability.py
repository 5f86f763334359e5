"""The one Logger and Tracer every function shares (service name comes from POWERTOOLS_SERVICE_NAME).

Where tracing is off (POWERTOOLS_TRACE_DISABLED, or outside Lambda: Powertools' own rule) the
Tracer gets a provider that records nothing, so the X-Ray SDK is never imported: outside Lambda its
recorder builds a botocore client for sampling rules at import, 100-200 ms of every cold start of
the local stack and the tests. Where tracing is on, only botocore is patched for X-Ray: the one
library of these functions it can trace (the OpenAI SDK uses httpx2); patching everything would
import and patch requests, sqlite3 and the rest at every cold start for nothing.

Even botocore is patched late: importing the SDK's botocore patch costs ~90 ms, and an AWS call of
an invocation X-Ray sampled out records nothing anyway. So INIT installs a one-check shim on
botocore's API call instead, and the first AWS call of a sampled invocation (Lambda's trace header,
`_X_AMZN_TRACE_ID`, says `Sampled=1`) patches botocore and is itself traced: an environment whose
invocations are all sampled out never pays for the patch.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
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


# Where Lambda puts the invocation's trace header (the runtime sets it before every invocation).
TRACE_HEADER_ENV = "_X_AMZN_TRACE_ID"


def sampled(trace_header: str | None) -> bool:
    """`Root=...;Parent=...;Sampled=1`: X-Ray records this invocation."""
    return any(part.strip() == "Sampled=1" for part in (trace_header or "").split(";"))


def patch_when_sampled(
    owner: type, method: str, patch: Callable[[], None], trace_header: Callable[[], str | None]
) -> None:
    """Replaces `owner.method` with a shim that calls `patch` on the first call made while
    `trace_header()` is sampled, then goes through the method as `patch` left it (which wraps the
    shim), so that first call is traced too. Until then each call costs one string check. Two
    threads may both patch: the X-Ray SDK ignores a second patch of a module."""
    original = getattr(owner, method)
    patched = False

    @functools.wraps(original)
    def shim(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal patched
        if not patched and sampled(trace_header()):
            patched = True
            patch()
            return getattr(self, method)(*args, **kwargs)
        return original(self, *args, **kwargs)

    setattr(owner, method, shim)


def _trace_botocore_when_sampled(tracer: Tracer) -> None:
    # botocore is imported by boto3 at INIT anyway; the X-Ray SDK's patch of it is what costs.
    from botocore.client import BaseClient

    patch_when_sampled(
        BaseClient,
        "_make_api_call",
        lambda: tracer.patch(TRACED_MODULES),
        lambda: os.environ.get(TRACE_HEADER_ENV),
    )


logger = Logger()
if tracing_disabled():
    tracer = Tracer(disabled=True, auto_patch=False, provider=NoTracing())
else:
    tracer = Tracer(auto_patch=False)
    _trace_botocore_when_sampled(tracer)
