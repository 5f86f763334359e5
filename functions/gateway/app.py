"""Gateway web app: the OpenAI-compatible data plane and /health (run.sh serves it with uvicorn)."""

from byom.api.gateway import build_gateway_app

app = build_gateway_app()
