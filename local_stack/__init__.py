"""The BYOM Gateway local stack: the deployed handlers served on 127.0.0.1 (SPEC §6).

`python -m local_stack` (what `make run` runs) synthesizes the CDK app, creates the template's
resources in an embedded AWS emulation (moto), loads the template's Lambda functions in-process
and serves the template's REST API, next to deterministic stand-in model endpoints.

Environment: BYOM_PORT (default 8787), BYOM_ADMIN_KEY (generated when unset), BYOM_TEMPLATE (an
already synthesized template; its directory is the cloud assembly holding the assets),
BYOM_LOG_LEVEL (default INFO), BYOM_AUTHORIZER_CACHE (default true: authorizer answers are cached
for the template's TTL, as API Gateway does, and flushed after every successful admin write, so a
revoked key is still refused at once; false runs the authorizer on every call).

In-process, e.g. from a test (one stack per process):

    from local_stack.stack import LocalStack, StackSettings

    with LocalStack(StackSettings(port=0, admin_key="k", template=path)) as stack:
        stack.url, stack.openai_url, stack.bedrock_url, stack.moto_url
"""
