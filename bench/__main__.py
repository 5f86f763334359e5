"""All three benchmarks, one after the other: `python -m bench` (what `make bench` runs).

    .venv/bin/python -m bench [--quick]

--quick runs fewer calls and interpreters (a smoke test, not figures to quote).
"""

from __future__ import annotations

import argparse

from bench import cold_start, in_process, through_stack
from bench.common import say


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls: a smoke test")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    args = parser.parse_args()
    runs, calls = (3, 100) if args.quick else (15, 1000)
    cold_start.main(["--runs", str(runs)])
    say()
    in_process.main(["--calls", str(calls)])
    say()
    through_stack.main(["--calls", str(calls), *(["--no-litellm"] if args.no_litellm else [])])


if __name__ == "__main__":
    main()
