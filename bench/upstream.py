"""The OpenAI-compatible stand-in model server alone, in its own process, for the HTTP benchmark.

python -m bench.upstream   # prints "UPSTREAM http://127.0.0.1:PORT", serves until stdin closes
"""

from __future__ import annotations

import sys

from bench.common import use_layer


def main() -> None:
    use_layer()
    from local_stack.models.servers import openai_stand_in

    server = openai_stand_in().start()
    print(f"UPSTREAM {server.url}", flush=True)
    try:
        sys.stdin.read()  # the parent closes our stdin (or dies) when the benchmark is over
    finally:
        server.stop()


if __name__ == "__main__":
    main()
