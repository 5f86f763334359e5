"""The built-in detector's cost per prompt: `Redactor(BuiltinDetector()).mask`, every built-in type on.

    .venv/bin/python -m bench.redaction [--runs 2000]

Prompts of 1 KB, 8 KB and 64 KB: prose with a sprinkling of every type (an email, a phone, a card,
an SSN, an IBAN, IPv4 and IPv6 addresses, AWS keys, a private key block, a JWT, provider API keys)
and the same prose with none, plus numbers that must not fire (dates, order ids, versions). Each
run masks one prompt with a fresh Redactor, as a request does; the prompts are built once, the
regexes compiled at import. The 64 KB prompt runs a tenth as many times.
"""

from __future__ import annotations

import argparse
import gc
import time

from bench.common import Summary, machine, say, table, use_layer

PROSE = (
    "The quarterly review covered the migration of the billing service, the on-call rotation and "
    "the plan for the next release (version 2.14.3, build 20240115). Order ORD-2024-000123 shipped "
    "on 2024-01-15 at 12:30:45; invoice INV-88231 is due 15/01/2024. The team agreed to keep the "
    "retry budget at 3 attempts and to revisit the cache TTL of 300 seconds next sprint. "
)

SPRINKLES = (
    "Contact jane.doe@example.com or call +1 (415) 555-0132. ",
    "The customer paid with 4111 1111 1111 1111 and gave SSN 123-45-6789. ",
    "Refund to IBAN DE89 3704 0044 0532 0130 00, please. ",
    "The host 10.20.30.40 and 2001:db8:85a3::8a2e:370:7334 were unreachable. ",
    "Config: aws_access_key_id=AKIAIOSFODNN7EXAMPLE "
    "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY. ",
    "Token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U and key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4. ",
    "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAq7BFUpkGp3+LQmlQ\n"
    "-----END PRIVATE KEY-----\n",
)

SIZES = (("1 KB", 1024), ("8 KB", 8 * 1024), ("64 KB", 64 * 1024))


def prompt(size: int, with_pii: bool) -> str:
    """Prose of `size` characters; with PII, one sprinkle after every paragraph, round robin."""
    parts: list[str] = []
    length = 0
    i = 0
    while length < size:
        parts.append(PROSE)
        length += len(PROSE)
        if with_pii:
            parts.append(SPRINKLES[i % len(SPRINKLES)])
            length += len(parts[-1])
            i += 1
    return "".join(parts)[:size]


def measure(text: str, runs: int) -> tuple[Summary, int]:
    from byom.governance.redaction import BuiltinDetector, Redactor

    detector = BuiltinDetector()
    found = len(detector.find(text))
    for _ in range(min(runs, 50)):  # warm-up
        Redactor(detector).mask(text)
    samples: list[float] = []
    gc.disable()
    try:
        for _ in range(runs):
            started = time.perf_counter_ns()
            Redactor(detector).mask(text)
            samples.append((time.perf_counter_ns() - started) / 1e6)
    finally:
        gc.enable()
    return Summary.of(samples), found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2000, help="masks per prompt (a tenth for 64 KB)")
    args = parser.parse_args()
    use_layer()
    rows = []
    for label, size in SIZES:
        runs = max(10, args.runs // 10) if size > 16 * 1024 else args.runs
        for with_pii in (True, False):
            summary, found = measure(prompt(size, with_pii), runs)
            rows.append(
                (
                    label,
                    "every type" if with_pii else "none",
                    found,
                    runs,
                    f"{summary.median:.3f}",
                    f"{summary.p99:.3f}",
                    f"{summary.mean:.3f}",
                )
            )
    say(
        table(
            f"Redactor(BuiltinDetector()).mask, every built-in type on ({machine()})",
            ["prompt", "PII", "findings", "runs", "median ms", "p99 ms", "mean ms"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
