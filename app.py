#!/usr/bin/env python3
"""CDK entry point: the BYOM Gateway stack, checked by cdk-nag. Synthesizes offline, no AWS calls."""

from infra import nag
from infra.application import create_app


def main() -> None:
    try:
        app, _ = create_app()
    except FileNotFoundError as error:  # bundling on without `make layers`
        raise SystemExit(f"error: {error}") from None
    assembly = app.synth()
    nag.fail_on_open_findings(assembly.directory)


if __name__ == "__main__":
    main()
