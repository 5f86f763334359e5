"""`python -m local_stack` (what `make run` calls): serve the BYOM Gateway on 127.0.0.1 until stopped."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from local_stack.lambdas import FunctionLoadError
from local_stack.resources import ResourceCreationError
from local_stack.stack import LocalStack, StackError, StackSettings


def _say(message: str) -> None:
    print(message, flush=True)


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("BYOM_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # moto's embedded server would log every AWS call it serves, botocore every client it makes.
    for noisy in ("werkzeug", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    stack = LocalStack(StackSettings.from_env(), progress=_say)
    try:
        stack.start()
    except (StackError, ResourceCreationError, FunctionLoadError) as error:
        print(f"BYOM local stack failed to start: {error}", file=sys.stderr, flush=True)
        return 1
    try:
        _say("\n".join(stack.instructions()))
        stop.wait()
    finally:
        _say("Stopping the BYOM local stack ...")
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
