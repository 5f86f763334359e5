"""Step Functions locally: moto's ASL interpreter runs the template's state machines, and its Lambda
tasks run the real handlers in this process.

moto's interpreter invokes `arn:aws:states:::lambda:invoke` tasks through moto's Lambda, which
would need Docker and functions moto knows; the local stack runs functions itself
(local_stack.lambdas). So while a stack runs, the interpreter's one Lambda call is pointed at
the stack's functions, and answers as the Lambda service does: the handler's output as the
payload, or `FunctionError` with `errorType` (the exception's class name) and `errorMessage`,
which Retry and Catch match on as in the cloud.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

from local_stack.lambdas import FunctionError, InvocationTimeout, LambdaFunction

log = logging.getLogger(__name__)

CONFIG = {"stepfunctions": {"execute_state_machine": True}}


def error_payload(error: BaseException) -> dict[str, Any]:
    """What the Python Lambda runtime reports for an unhandled exception."""
    if isinstance(error, InvocationTimeout):
        return {"errorType": "Sandbox.Timedout", "errorMessage": str(error)}
    cause = error.__cause__ if isinstance(error, FunctionError) and error.__cause__ else error
    return {
        "errorType": type(cause).__name__,
        "errorMessage": str(cause),
        "requestId": str(uuid.uuid4()),
        "stackTrace": [],
    }


class LambdaRouter:
    """Finds the stack's function a Lambda task names (name, ARN or partial ARN) and invokes it."""

    def __init__(self, functions: Callable[[], dict[str, LambdaFunction]]) -> None:
        self._functions = functions

    def find(self, name: str) -> LambdaFunction | None:
        for function in self._functions().values():
            if name in (function.function_name, function.arn, function.logical_id):
                return function
            if name.startswith(function.arn + ":"):  # a qualified ARN (version or alias)
                return function
        return None

    def invoke(self, parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
        name = str(parameters.get("FunctionName", ""))
        function = self.find(name)
        if function is None:
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": {
                    "errorType": "ResourceNotFoundException",
                    "errorMessage": f"Function not found: {name}",
                },
            }
        raw = parameters.get("Payload") or b"{}"
        payload = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        try:
            result = function.invoke(payload)
        except (FunctionError, InvocationTimeout) as error:
            log.info("%s failed: %s", function.logical_id, error)
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": error_payload(error)}
        return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": result}


@contextmanager
def lambda_tasks_in_process(router: LambdaRouter) -> Iterator[None]:
    original = lambda_eval_utils._invoke_lambda_function
    lambda_eval_utils._invoke_lambda_function = router.invoke
    try:
        yield
    finally:
        lambda_eval_utils._invoke_lambda_function = original
