#!/usr/bin/env python3
"""CDK entry point: the BYOM Gateway stack, checked by cdk-nag. Synthesizes offline, no AWS calls."""

from infra.application import create_app

if __name__ == "__main__":
    app, _ = create_app()
    app.synth()
