"""Gateway web app: the OpenAI-compatible data plane and /health (run.sh serves it with uvicorn)."""

import os

from byom.api.gateway import build_gateway_app

# The provider SDK is imported by the first call that needs it: during INIT it would cost every new
# environment as much as it saves its first call (docs/performance.md). Not where INIT is paid once
# for many environments (a SnapStart snapshot, provisioned concurrency): there it is free later.
if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") in {"snap-start", "provisioned-concurrency"}:
    import openai  # noqa: F401

app = build_gateway_app()
