"""The OpenAI-compatible stand-in model server alone, in its own process, for the HTTP benchmarks.

python -m bench.upstream [--token-delay-ms 0]

prints "UPSTREAM http://127.0.0.1:PORT" and serves until stdin closes.

A stream sends one token per chunk, --token-delay-ms apart (local_stack.models.servers); a model
id with `long-N` in it answers N tokens (local_stack.models.logic).
"""

from __future__ import annotations

import argparse
import sys

from bench.common import use_layer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--token-delay-ms", type=int, default=0, help="pause between streamed tokens")
    args = parser.parse_args()
    use_layer()
    from local_stack.models.servers import openai_stand_in

    server = openai_stand_in(token_delay_ms=args.token_delay_ms).start()
    print(f"UPSTREAM {server.url}", flush=True)
    try:
        sys.stdin.read()  # the parent closes our stdin (or dies) when the benchmark is over
    finally:
        server.stop()


if __name__ == "__main__":
    main()
