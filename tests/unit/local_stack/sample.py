"""A small hand-written CDK-style template (and the handler files it points at) for the local stack's tests.

It has what the BYOM template has, in miniature: a KMS key, a secret, a table, a code layer, a
REQUEST authorizer, proxy resources, gateway responses and a stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STACK = "Sample"


def _uri(function_id: str) -> dict[str, Any]:
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":apigateway:",
                {"Ref": "AWS::Region"},
                ":lambda:path/2015-03-31/functions/",
                {"Fn::GetAtt": [function_id, "Arn"]},
                "/invocations",
            ],
        ]
    }


def _method(
    resource: str | None,
    http_method: str,
    function_id: str | None,
    *,
    auth: bool,
    timeout_ms: int | None = None,
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "HttpMethod": http_method,
        "RestApiId": {"Ref": "Api"},
        "ResourceId": {"Ref": resource} if resource else {"Fn::GetAtt": ["Api", "RootResourceId"]},
        "AuthorizationType": "CUSTOM" if auth else "NONE",
        "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": _uri(function_id)}
        if function_id
        else {
            "Type": "MOCK",
            "IntegrationResponses": [
                {
                    "StatusCode": "204",
                    "ResponseParameters": {"method.response.header.Access-Control-Allow-Origin": "'*'"},
                }
            ],
        },
    }
    if auth:
        props["AuthorizerId"] = {"Ref": "Authorizer"}
    if timeout_ms:
        props["Integration"]["TimeoutInMillis"] = timeout_ms
    return {"Type": "AWS::ApiGateway::Method", "Properties": props}


def _resource(parent: str | None, part: str) -> dict[str, Any]:
    parent_id = {"Ref": parent} if parent else {"Fn::GetAtt": ["Api", "RootResourceId"]}
    return {
        "Type": "AWS::ApiGateway::Resource",
        "Properties": {"ParentId": parent_id, "PathPart": part, "RestApiId": {"Ref": "Api"}},
    }


def _error_template(error_type: str, code: str | None) -> str:
    code_json = json.dumps(code)
    return (
        '{"error":{"message":$context.error.messageString,"type":"'
        + error_type
        + '","param":null,"code":'
        + code_json
        + "}}"
    )


def _gateway_response(response_type: str, status: str | None, error_type: str, code: str | None = None):
    props: dict[str, Any] = {
        "ResponseType": response_type,
        "RestApiId": {"Ref": "Api"},
        "ResponseTemplates": {"application/json": _error_template(error_type, code)},
        "ResponseParameters": {
            "gatewayresponse.header.x-request-id": "context.requestId",
            "gatewayresponse.header.x-byom-error-source": "'gateway'",
        },
    }
    if status:
        props["StatusCode"] = status
    return {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": props}


def _function(asset: str, service: str, variables: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Code": {
                "S3Bucket": {"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"},
                "S3Key": f"{asset}.zip",
            },
            "Handler": "handler.handler",
            "Runtime": "python3.14",
            "Timeout": 10,
            "MemorySize": 256,
            "Layers": [{"Ref": "CodeLayer"}],
            "Role": {"Fn::GetAtt": ["SomeRole", "Arn"]},
            "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": service, **variables}},
        },
        "Metadata": {"aws:asset:path": f"asset.{asset}", "aws:asset:property": "Code"},
    }


def sample_template() -> dict[str, Any]:
    shared_env = {
        "ITEMS_TABLE": {"Ref": "Items"},
        "KMS_KEY_ID": {"Fn::GetAtt": ["Key", "Arn"]},
        "SECRET_PREFIX": {"Fn::Join": ["", ["byom/", {"Ref": "AWS::StackName"}, "/tenants/"]]},
        "ALLOW_LOOPBACK_HTTP": "false",
    }
    return {
        "Parameters": {
            "BootstrapVersion": {
                "Type": "AWS::SSM::Parameter::Value<String>",
                "Default": "/cdk-bootstrap/hnb659fds/version",
            }
        },
        "Resources": {
            "Key": {
                "Type": "AWS::KMS::Key",
                "Properties": {"Description": "sample", "EnableKeyRotation": True},
            },
            "AdminSecret": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {
                    "GenerateSecretString": {"ExcludePunctuation": True, "PasswordLength": 48},
                    "KmsKeyId": {"Fn::GetAtt": ["Key", "Arn"]},
                },
            },
            "Items": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "AttributeDefinitions": [
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "owner", "AttributeType": "S"},
                    ],
                    "GlobalSecondaryIndexes": [
                        {
                            "IndexName": "by_owner",
                            "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
                            "Projection": {"ProjectionType": "ALL"},
                        }
                    ],
                    "BillingMode": "PAY_PER_REQUEST",
                    "SSESpecification": {
                        "SSEEnabled": True,
                        "SSEType": "KMS",
                        "KMSMasterKeyId": {"Fn::GetAtt": ["Key", "Arn"]},
                    },
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                },
            },
            "SomeRole": {"Type": "AWS::IAM::Role", "Properties": {}},
            "CodeLayer": {
                "Type": "AWS::Lambda::LayerVersion",
                "Properties": {"Content": {"S3Bucket": "b", "S3Key": "layer.zip"}},
                "Metadata": {"aws:asset:path": "asset.layer", "aws:asset:property": "Content"},
            },
            "AuthFn": _function(
                "auth",
                "sample-auth",
                {"ITEMS_TABLE": {"Ref": "Items"}, "ADMIN_KEY_SECRET_ARN": {"Ref": "AdminSecret"}},
            ),
            "EchoFn": _function("echo", "sample-echo", shared_env),
            "Api": {
                "Type": "AWS::ApiGateway::RestApi",
                "Properties": {"Name": "Api", "BinaryMediaTypes": ["multipart/form-data"]},
            },
            "Health": _resource(None, "health"),
            "HealthGet": _method("Health", "GET", "EchoFn", auth=False),
            "V1": _resource(None, "v1"),
            "V1Proxy": _resource("V1", "{proxy+}"),
            "V1ProxyAny": _method("V1Proxy", "ANY", "EchoFn", auth=True),
            "V1ProxyOptions": _method("V1Proxy", "OPTIONS", None, auth=False),
            "V1Items": _resource("V1", "items"),
            "V1Item": _resource("V1Items", "{item_id}"),
            "V1ItemGet": _method("V1Item", "GET", "EchoFn", auth=True, timeout_ms=300),
            "Authorizer": {
                "Type": "AWS::ApiGateway::Authorizer",
                "Properties": {
                    "Type": "REQUEST",
                    "IdentitySource": "method.request.header.Authorization",
                    "AuthorizerResultTtlInSeconds": 300,
                    "RestApiId": {"Ref": "Api"},
                    "AuthorizerUri": _uri("AuthFn"),
                },
            },
            "Unauthorized": _gateway_response(
                "UNAUTHORIZED", "401", "authentication_error", "invalid_api_key"
            ),
            "AccessDenied": _gateway_response("ACCESS_DENIED", "403", "permission_error"),
            "Missing": _gateway_response("MISSING_AUTHENTICATION_TOKEN", "404", "not_found_error"),
            "TooLarge": _gateway_response(
                "REQUEST_TOO_LARGE", "413", "invalid_request_error", "request_too_large"
            ),
            "AuthFailure": _gateway_response("AUTHORIZER_FAILURE", "500", "api_error"),
            "Default4xx": _gateway_response("DEFAULT_4XX", None, "invalid_request_error"),
            "Default5xx": _gateway_response("DEFAULT_5XX", None, "api_error"),
            "Deployment": {
                "Type": "AWS::ApiGateway::Deployment",
                "Properties": {"RestApiId": {"Ref": "Api"}},
            },
            "Stage": {
                "Type": "AWS::ApiGateway::Stage",
                "Properties": {
                    "RestApiId": {"Ref": "Api"},
                    "StageName": "prod",
                    "DeploymentId": {"Ref": "Deployment"},
                    "MethodSettings": [
                        {
                            "HttpMethod": "*",
                            "ResourcePath": "/*",
                            "ThrottlingRateLimit": 100,
                            "ThrottlingBurstLimit": 200,
                        }
                    ],
                },
            },
        },
    }


AUTHORIZER_SOURCE = """
import os

import boto3
from sample_lib import GREETING  # from the code layer

CALLS = []


def handler(event, context):
    CALLS.append(event)
    token = event["headers"].get("Authorization", "").removeprefix("Bearer ")
    arn = event["methodArn"]
    api_arn, stage = arn.split("/")[0], arn.split("/")[1]
    if token == "broken":
        raise ValueError("authorizer bug")
    if token == "bad-shape":
        return {"principalId": "x"}
    if token == "deny":
        effect = "Deny"
    elif token.startswith("allow"):
        item = boto3.client("dynamodb").get_item(
            TableName=os.environ["ITEMS_TABLE"], Key={"pk": {"S": "revoked:" + token}}
        )
        if "Item" in item:
            raise Exception("Unauthorized")
        effect = "Allow"
    else:
        raise Exception("Unauthorized")
    return {
        "principalId": "key-" + token,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": f"{api_arn}/{stage}/*"}
            ],
        },
        "context": {"tenant_id": "t-1", "role": "admin", "greeting": GREETING, "admin": True, "level": 3},
    }
"""

ECHO_SOURCE = """
import base64
import json
import os
import time

import boto3


def handler(event, context):
    path = event["path"]
    if path == "/v1/boom":
        raise RuntimeError("handler bug")
    if path.startswith("/v1/items/slow"):
        time.sleep(1)
    if path == "/v1/malformed":
        return {"statusCode": 200, "body": "{}", "unexpected": True}
    if path == "/v1/binary-out":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(8))).decode(), "isBase64Encoded": True}
    if path.startswith("/v1/revoke/"):
        token = path.removeprefix("/v1/revoke/")
        boto3.client("dynamodb").put_item(
            TableName=os.environ["ITEMS_TABLE"], Item={"pk": {"S": "revoked:" + token}}
        )
    body = {
        "event": event,
        "context": {
            "function_name": context.function_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "memory": context.memory_limit_in_mb,
        },
        "env": {name: os.environ.get(name) for name in (
            "ITEMS_TABLE", "KMS_KEY_ID", "SECRET_PREFIX", "ALLOW_LOOPBACK_HTTP", "POWERTOOLS_SERVICE_NAME",
            "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "POWERTOOLS_TRACE_DISABLED",
        )},
        "table": boto3.client("dynamodb").describe_table(
            TableName=os.environ["ITEMS_TABLE"]
        )["Table"]["TableName"],
    }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-request-id": event["requestContext"]["requestId"]},
        "multiValueHeaders": {"x-multi": ["a", "b"]},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
"""


def write_sample_assembly(outdir: Path) -> Path:
    """Writes the template and its assets as a cloud assembly; answers the template's path."""
    (outdir / "asset.layer" / "python" / "sample_lib").mkdir(parents=True)
    (outdir / "asset.layer" / "python" / "sample_lib" / "__init__.py").write_text(
        'GREETING = "hello from the layer"\n'
    )
    for asset, source in (("auth", AUTHORIZER_SOURCE), ("echo", ECHO_SOURCE)):
        (outdir / f"asset.{asset}").mkdir()
        (outdir / f"asset.{asset}" / "handler.py").write_text(source)
    path = outdir / f"{STACK}.template.json"
    path.write_text(json.dumps(sample_template(), indent=1))
    return path
