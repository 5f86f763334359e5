"""`python -m local_stack` (what `make run` calls): serve the BYOM Gateway on 127.0.0.1 until stopped.

`--demo` (what `make demo` calls) also seeds a ready tenant (local_stack.demo) once it serves.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
from pathlib import Path

from local_stack import demo
from local_stack.lambdas import FunctionLoadError
from local_stack.resources import ResourceCreationError
from local_stack.stack import LocalStack, StackError, StackSettings


def _say(message: str) -> None:
    print(message, flush=True)


class StopRequests:
    """SIGINT / SIGTERM, however many and however fast, wake `wait` once.

    The handler touches no lock: Python runs it in the main thread between two bytecodes, so a
    handler calling `threading.Event.set()` while that thread already holds the event's lock (a
    second signal arriving as `wait` returns) would wait for itself forever. The interpreter itself
    writes each signal's number to a non-blocking self-pipe (`signal.set_wakeup_fd`); `wait` reads it.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)  # a full pipe drops wake-ups instead of blocking

    def install(self) -> StopRequests:
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for sig in self.SIGNALS:
            signal.signal(sig, _ignore)  # only the wake-up matters; no KeyboardInterrupt mid-stop
        return self

    def wait(self) -> None:
        select.select([self._read_fd], [], [])

    def ignore_from_now_on(self) -> None:
        """Stopped: a late signal must not kill the interpreter while it exits (status -2 for 0)."""
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def _ignore(_signum: int, _frame: object) -> None:
    pass


def _seed_demo(stack: LocalStack) -> bool:
    env_file = Path(os.environ.get("BYOM_DEMO_ENV_FILE") or demo.ENV_FILE)
    try:
        tenant = demo.seed(stack.url, stack.admin_key, stack.openai_url)
        demo.write_env_file(tenant, env_file)
    except (demo.DemoSeedError, OSError) as error:
        print(f"BYOM demo seeding failed: {error}", file=sys.stderr, flush=True)
        return False
    _say("\n".join(demo.instructions(tenant, env_file)))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description="The BYOM Gateway, locally.")
    parser.add_argument("--demo", action="store_true", help="seed a demo tenant and print its keys")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("BYOM_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # moto's embedded server would log every AWS call it serves, botocore every client it makes.
    for noisy in ("werkzeug", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    stop = StopRequests().install()

    ports = (demo.DEFAULT_OPENAI_STANDIN_PORT, demo.DEFAULT_BEDROCK_STANDIN_PORT) if args.demo else (0, 0)
    try:
        stack = LocalStack(StackSettings.from_env(stand_in_ports=ports), progress=_say)
        stack.start()
    except (StackError, ResourceCreationError, FunctionLoadError) as error:
        print(f"BYOM local stack failed to start: {error}", file=sys.stderr, flush=True)
        return 1
    try:
        _say("\n".join(stack.instructions()))
        if args.demo and not _seed_demo(stack):
            return 1
        stop.wait()
    finally:
        _say("Stopping the BYOM local stack ...")
        stack.stop()
        stop.ignore_from_now_on()
    return 0


if __name__ == "__main__":
    sys.exit(main())
