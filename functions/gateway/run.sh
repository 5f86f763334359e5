#!/bin/sh
# The gateway function's handler. The Lambda Web Adapter's wrapper (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap)
# runs it instead of the Python runtime; the adapter then forwards every invocation to this server
# over loopback HTTP and streams its answer back (AWS_LWA_INVOKE_MODE=response_stream).
# The runtime's own bootstrap, which puts the layers (/opt/python) on the path, does not run.
export PYTHONPATH="/opt/python:${LAMBDA_TASK_ROOT}${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m uvicorn app:app --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" \
    --no-access-log --log-level warning --timeout-graceful-shutdown 2
