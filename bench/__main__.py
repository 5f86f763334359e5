"""All seven benchmarks, one after the other: `python -m bench` (what `make bench` runs).

    .venv/bin/python -m bench [--quick]

--quick runs fewer calls and interpreters (a smoke test, not figures to quote).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bench.common import REPO_ROOT, say


def _run(module: str, *args: str) -> None:
    """Each benchmark in its own interpreter: they set up AWS emulations and import the handlers."""
    subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls: a smoke test")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    args = parser.parse_args()
    runs, calls = (3, 100) if args.quick else (15, 1000)
    _run("bench.redaction", "--runs", "200" if args.quick else "2000")
    say()
    _run("bench.cold_start", "--runs", str(runs))
    say()
    _run("bench.in_process", "--calls", str(calls))
    say()
    _run("bench.cost", "--calls", "10" if args.quick else "100")
    say()
    _run("bench.through_stack", "--calls", str(calls), *(["--no-litellm"] if args.no_litellm else []))
    say()
    streams = ["--streams", "5", "--concurrent-rounds", "1"] if args.quick else []
    _run("bench.streaming", *streams, *(["--no-litellm"] if args.no_litellm else []))
    say()
    _run("bench.contention", *(["--quick"] if args.quick else []))


if __name__ == "__main__":
    main()
