"""Real streaming in the cloud (SPEC §4.4): the gateway function under the Lambda Web Adapter in
response-stream mode, every API integration of it STREAM, and POST /v1/chat/completions with the
stream timeout as its integration timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from infra.application import create_app
from infra.config import STREAM_TIMEOUT_CONTEXT, WEB_ADAPTER_LAYER_CONTEXT, Settings
from tests.infra.stack_template import environment, function_id, methods, props, resources

CHAT = ("POST", "/v1/chat/completions")
V1_PROXY = ("ANY", "/v1/{proxy+}")
HEALTH = ("GET", "/health")
DEFAULT_STREAM_TIMEOUT = 300
DEFAULT_ADAPTER_LAYER = {
    "Fn::Join": [
        "",
        [
            "arn:",
            {"Ref": "AWS::Partition"},
            ":lambda:",
            {"Ref": "AWS::Region"},
            ":753240598075:layer:LambdaAdapterLayerArm64:27",
        ],
    ]
}
PINNED_LAYER = "arn:aws:lambda:eu-west-1:123456789012:layer:LambdaAdapterLayerArm64:27"
CUSTOM_TIMEOUT = 600
BASE_CONTEXT = {
    "byom:logRetentionDays": 30,
    "byom:authorizerCacheSeconds": 300,
    "byom:throttleRateLimit": 100,
    "byom:throttleBurstLimit": 200,
}


@pytest.fixture(scope="module")
def overridden_outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("streaming")


@pytest.fixture(scope="module")
def overridden(overridden_outdir: Path) -> Template:
    # A string, as `cdk -c byom:streamTimeoutSeconds=600` passes it.
    context = {STREAM_TIMEOUT_CONTEXT: str(CUSTOM_TIMEOUT), WEB_ADAPTER_LAYER_CONTEXT: PINNED_LAYER}
    _, stack = create_app(bundling=False, outdir=str(overridden_outdir), context=context, with_nag=False)
    return Template.from_stack(stack)


def test_the_staged_gateway_code_keeps_run_sh_executable(
    overridden: Template, overridden_outdir: Path
) -> None:
    """The adapter's wrapper execs the handler file: without its executable bit the function
    cannot start. Staging keeps file modes, and the asset zip is made from the staged copy."""
    staged = [path for path in overridden_outdir.glob("asset.*/run.sh") if (path.parent / "app.py").is_file()]
    assert staged, "the gateway's code is not staged with run.sh"
    assert all(path.stat().st_mode & 0o111 == 0o111 for path in staged)


def target(method: dict[str, Any]) -> str:
    """Logical id of the function a method's integration invokes."""
    parts = method["Integration"]["Uri"]["Fn::Join"][1]
    (function,) = [part["Fn::GetAtt"][0] for part in parts if isinstance(part, dict) and "Fn::GetAtt" in part]
    return function


def uri_path(method: dict[str, Any]) -> str:
    """The literal parts of the integration URI (the function ARN left out)."""
    parts = method["Integration"]["Uri"]["Fn::Join"][1]
    return "".join(part for part in parts if isinstance(part, str))


def gateway(template: Template) -> dict[str, Any]:
    return props(resources(template, "AWS::Lambda::Function")[function_id(template, "gateway")])


# ------------------------------------------------------------------------ the chat route


def test_chat_completions_has_its_own_post_method(template: Template) -> None:
    assert target(methods(template)[CHAT]) == function_id(template, "gateway")


def test_chat_completions_streams(template: Template) -> None:
    assert methods(template)[CHAT]["Integration"]["ResponseTransferMode"] == "STREAM"


def test_chat_completions_invokes_with_response_stream(template: Template) -> None:
    path = uri_path(methods(template)[CHAT])

    assert ":lambda:path/2021-11-15/functions/" in path
    assert path.endswith("/response-streaming-invocations")


def test_chat_completions_integration_timeout_is_the_stream_timeout(template: Template) -> None:
    assert methods(template)[CHAT]["Integration"]["TimeoutInMillis"] == DEFAULT_STREAM_TIMEOUT * 1000


def test_chat_completions_is_protected_like_the_v1_proxy(template: Template) -> None:
    chat, proxy = methods(template)[CHAT], methods(template)[V1_PROXY]
    for key in ("AuthorizationType", "AuthorizerId", "ApiKeyRequired", "RequestValidatorId"):
        assert chat[key] == proxy[key], key
    assert chat["ApiKeyRequired"] is True


def test_chat_completions_names_the_tenant_under_tenant_isolation(isolated: Template) -> None:
    chat, proxy = methods(isolated)[CHAT], methods(isolated)[V1_PROXY]

    assert chat["Integration"]["RequestParameters"] == proxy["Integration"]["RequestParameters"]
    assert chat["Integration"]["RequestParameters"] == {
        "integration.request.header.X-Amz-Tenant-Id": "context.authorizer.tenant_id"
    }


# ---------------------------------------------------------------- every integration


def test_every_integration_of_the_gateway_function_streams(template: Template) -> None:
    gateway_id = function_id(template, "gateway")
    routes = {route: m for route, m in methods(template).items() if target(m) == gateway_id}

    assert set(routes) == {
        HEALTH,
        V1_PROXY,
        CHAT,
        ("POST", "/v1/responses"),
        ("ANY", "/v1/responses/{proxy+}"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
    }
    for route, method in routes.items():
        assert method["Integration"]["ResponseTransferMode"] == "STREAM", route
        assert uri_path(method).endswith("/response-streaming-invocations"), route


def test_gateway_routes_other_than_chat_keep_the_29_second_timeout(template: Template) -> None:
    for route in (HEALTH, V1_PROXY):
        # No TimeoutInMillis is API Gateway's default, 29 000 ms.
        assert methods(template)[route]["Integration"].get("TimeoutInMillis", 29_000) == 29_000, route


@pytest.mark.parametrize("name", ["admin", "fine_tuning"])
def test_admin_and_fine_tuning_integrations_stay_buffered(template: Template, name: str) -> None:
    routes = {r: m for r, m in methods(template).items() if target(m) == function_id(template, name)}

    assert routes
    for route, method in routes.items():
        assert method["Integration"].get("ResponseTransferMode", "BUFFERED") == "BUFFERED", route
        assert uri_path(method).endswith("/invocations"), route
        assert "response-streaming" not in uri_path(method), route


def test_no_caching_or_compression_that_streamed_routes_cannot_have(template: Template) -> None:
    # API Gateway supports neither endpoint caching nor content encoding on STREAM routes.
    (api,) = resources(template, "AWS::ApiGateway::RestApi").values()
    (stage,) = resources(template, "AWS::ApiGateway::Stage").values()

    assert "MinimumCompressionSize" not in props(api)
    assert not props(stage).get("CacheClusterEnabled", False)
    assert not any(setting.get("CachingEnabled") for setting in props(stage).get("MethodSettings", []))


# -------------------------------------------------------------- the gateway function


def test_gateway_handler_is_the_start_script(template: Template) -> None:
    assert gateway(template)["Handler"] == "run.sh"


def test_gateway_runs_the_web_adapter_in_response_stream_mode(template: Template) -> None:
    env = environment(template, "gateway")

    assert {k: env[k] for k in env if k.startswith("AWS_L")} == {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_PORT": "8080",
        "AWS_LWA_READINESS_CHECK_PATH": "/health",
    }


def test_gateway_tells_the_app_the_stream_timeout(template: Template) -> None:
    assert environment(template, "gateway")["STREAM_TIMEOUT_SECONDS"] == str(DEFAULT_STREAM_TIMEOUT)


def test_gateway_timeout_is_the_stream_timeout(template: Template) -> None:
    assert gateway(template)["Timeout"] == DEFAULT_STREAM_TIMEOUT


def test_gateway_adds_the_public_adapter_layer_after_its_own(template: Template) -> None:
    layers = gateway(template)["Layers"]

    assert len(layers) == 3
    assert all("Ref" in layer for layer in layers[:2])
    assert layers[2] == DEFAULT_ADAPTER_LAYER


def test_only_the_gateway_has_the_adapter_layer(template: Template) -> None:
    gateway_id = function_id(template, "gateway")
    for logical_id, fn in resources(template, "AWS::Lambda::Function").items():
        if logical_id != gateway_id:
            assert DEFAULT_ADAPTER_LAYER not in props(fn)["Layers"], logical_id
            assert "AWS_LAMBDA_EXEC_WRAPPER" not in props(fn)["Environment"]["Variables"], logical_id


# ------------------------------------------------------------------------- context


def test_adapter_layer_from_context_replaces_the_default(overridden: Template) -> None:
    assert gateway(overridden)["Layers"][2] == PINNED_LAYER


def test_stream_timeout_from_context_sets_function_route_and_app(overridden: Template) -> None:
    assert gateway(overridden)["Timeout"] == CUSTOM_TIMEOUT
    assert methods(overridden)[CHAT]["Integration"]["TimeoutInMillis"] == CUSTOM_TIMEOUT * 1000
    assert environment(overridden, "gateway")["STREAM_TIMEOUT_SECONDS"] == str(CUSTOM_TIMEOUT)


def settings(**context: object) -> Settings:
    return Settings.from_context(App(context={**BASE_CONTEXT, **context}))


@pytest.mark.parametrize("value", [30, 900, "45"])
def test_stream_timeout_within_bounds_is_accepted(value: object) -> None:
    assert settings(**{STREAM_TIMEOUT_CONTEXT: value}).stream_timeout_seconds == int(str(value))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (29, "out of range"),
        (901, "out of range"),
        (0, "out of range"),
        (-5, "is not a whole number"),
        (300.5, "is not a whole number"),
        ("five minutes", "is not a whole number"),
        (True, "is not a whole number"),
    ],
)
def test_stream_timeout_outside_30_to_900_seconds_is_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"byom:streamTimeoutSeconds.*{message}"):
        settings(**{STREAM_TIMEOUT_CONTEXT: value})


@pytest.mark.parametrize(
    "value",
    [
        "LambdaAdapterLayerArm64:27",
        "arn:aws:lambda:eu-west-1:123456789012:layer:LambdaAdapterLayerArm64",  # no version
        "arn:aws:lambda:eu-west-1:123456789012:function:my-function",
        "arn:aws:lambda:eu-west-1:1234:layer:LambdaAdapterLayerArm64:27",  # not an account id
        "arn:aws:s3:::bucket/layer.zip",
        "",
    ],
)
def test_adapter_layer_that_is_not_a_layer_version_arn_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"byom:webAdapterLayerArn.*is not a Lambda layer version ARN"):
        settings(**{WEB_ADAPTER_LAYER_CONTEXT: value})


def test_adapter_layer_in_another_partition_is_accepted() -> None:
    arn = "arn:aws-cn:lambda:cn-north-1:041581134020:layer:LambdaAdapterLayerX86:27"
    assert settings(**{WEB_ADAPTER_LAYER_CONTEXT: arn}).web_adapter_layer_arn == arn


def test_invalid_stream_timeout_fails_the_synth(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"byom:streamTimeoutSeconds=1200 is out of range"):
        create_app(bundling=False, outdir=str(tmp_path), context={STREAM_TIMEOUT_CONTEXT: 1200})
