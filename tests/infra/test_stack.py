"""What the deployed stack must guarantee, read from the synthesized template."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.infra.stack_template import (
    actions_on,
    as_list,
    environment,
    function_id,
    kms_key_id,
    methods,
    props,
    resources,
    role_statements,
    stage,
    table_of,
)

RETENTION_DAYS = 30  # cdk.json byom:logRetentionDays
PREFIX = "byom/ByomGateway/tenants/"


# ------------------------------------------------------------------------------------ security


def test_kms_key_rotation_is_enabled(template: Template) -> None:
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_kms_key_lets_cloudwatch_logs_encrypt_only_this_accounts_log_groups(template: Template) -> None:
    (key,) = resources(template, "AWS::KMS::Key").values()
    statements = props(key)["KeyPolicy"]["Statement"]
    logs_statements = [
        s for s in statements if "logs." in json.dumps(s.get("Principal", {}).get("Service", ""))
    ]

    assert len(logs_statements) == 1
    assert "kms:EncryptionContext:aws:logs:arn" in logs_statements[0]["Condition"]["ArnLike"]


def test_admin_key_secret_is_a_generated_48_character_string_encrypted_with_the_key(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "GenerateSecretString": {"PasswordLength": 48, "ExcludePunctuation": True},
            "KmsKeyId": {"Fn::GetAtt": [kms_key_id(template), "Arn"]},
        },
    )


# ---------------------------------------------------------------------------------------- data

CONTRACT_TABLES = {
    "TENANTS_TABLE": ([("tenant_id", "HASH")], []),
    "API_KEYS_TABLE": ([("key_hash", "HASH")], [("by_tenant", [("tenant_id", "HASH"), ("key_id", "RANGE")])]),
    "CREDENTIALS_TABLE": ([("tenant_id", "HASH"), ("name", "RANGE")], []),
    "MODELS_TABLE": ([("tenant_id", "HASH"), ("alias", "RANGE")], []),
    "CACHE_TABLE": ([("cache_key", "HASH")], []),
    "USAGE_TABLE": ([("pk", "HASH"), ("sk", "RANGE")], []),
    "POLICIES_TABLE": ([("tenant_id", "HASH")], []),
    "AUDIT_TABLE": (
        [("tenant_id", "HASH"), ("sk", "RANGE")],
        [("by_subject", [("subject", "HASH"), ("sk", "RANGE")])],
    ),
    "RESPONSES_TABLE": ([("tenant_id", "HASH"), ("id", "RANGE")], []),
}


def test_tables_have_the_keys_and_indexes_of_the_contract(template: Template) -> None:
    for env_var, (key_schema, indexes) in CONTRACT_TABLES.items():
        table = props(table_of(template, env_var))
        assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == key_schema, env_var
        actual_indexes = [
            (gsi["IndexName"], [(k["AttributeName"], k["KeyType"]) for k in gsi["KeySchema"]])
            for gsi in table.get("GlobalSecondaryIndexes", [])
        ]
        assert actual_indexes == indexes, env_var
        # The audit's subject index holds keys only: erasure and export read the records by key.
        projection = "KEYS_ONLY" if env_var == "AUDIT_TABLE" else "ALL"
        assert all(
            gsi["Projection"]["ProjectionType"] == projection
            for gsi in table.get("GlobalSecondaryIndexes", [])
        )


def test_every_table_is_on_demand(template: Template) -> None:
    tables = resources(template, "AWS::DynamoDB::Table")
    # Six of the gateway, files, fine-tuning jobs, the idempotency records of job creation,
    # governance's policies and audit trail, stored Responses, the automations with their runs, and
    # the evals with theirs, and the batches.
    assert len(tables) == 15
    assert all(props(t)["BillingMode"] == "PAY_PER_REQUEST" for t in tables.values())


def test_every_table_has_point_in_time_recovery(template: Template) -> None:
    for table in resources(template, "AWS::DynamoDB::Table").values():
        assert props(table)["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_every_table_is_encrypted_with_the_customer_managed_key(template: Template) -> None:
    expected = {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Fn::GetAtt": [kms_key_id(template), "Arn"]},
    }
    for table in resources(template, "AWS::DynamoDB::Table").values():
        assert props(table)["SSESpecification"] == expected


def test_every_state_table_is_retained_when_the_stack_is_deleted(template: Template) -> None:
    for env_var in CONTRACT_TABLES.keys() - {"CACHE_TABLE"}:
        table = table_of(template, env_var)
        assert table["DeletionPolicy"] == "Retain", env_var
        assert table["UpdateReplacePolicy"] == "Retain", env_var
        assert props(table)["DeletionProtectionEnabled"] is True, env_var


def test_the_response_cache_is_deleted_with_the_stack(template: Template) -> None:
    table = table_of(template, "CACHE_TABLE")
    assert table["DeletionPolicy"] == "Delete"
    assert props(table).get("DeletionProtectionEnabled") in (None, False)


def test_response_cache_entries_expire_by_ttl_on_expires_at(template: Template) -> None:
    assert props(table_of(template, "CACHE_TABLE"))["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at",
        "Enabled": True,
    }


# The gateway's three, the fine-tuning API and the eleven tasks of its state machine (21), the evals
# API and scorer, the batches API and the seven tasks of its state machine, and the meter reconciler.
FUNCTION_COUNT = 32

# ---------------------------------------------------------------------------------------- logs


def test_every_log_group_has_the_configured_retention(template: Template) -> None:
    log_groups = resources(template, "AWS::Logs::LogGroup")
    # A log group per function (3 + the fine-tuning API + 13 tasks + the automation runner and its 3
    # approval tasks + the evals API and scorer + the batches API and its 7 tasks + the meter
    # reconciler), the API access log,
    # the three state machines.
    assert len(log_groups) == FUNCTION_COUNT + 4
    assert all(props(lg).get("RetentionInDays") == RETENTION_DAYS for lg in log_groups.values())


def test_every_log_group_is_encrypted_with_the_customer_managed_key(template: Template) -> None:
    key = {"Fn::GetAtt": [kms_key_id(template), "Arn"]}
    assert all(props(lg).get("KmsKeyId") == key for lg in resources(template, "AWS::Logs::LogGroup").values())


# ----------------------------------------------------------------------------------- functions


def test_every_function_runs_python_3_13_on_arm64(template: Template) -> None:
    functions = resources(template, "AWS::Lambda::Function")
    assert len(functions) == FUNCTION_COUNT
    for fn in functions.values():
        assert props(fn)["Runtime"] == "python3.13"
        assert props(fn)["Architectures"] == ["arm64"]


def test_every_function_has_active_tracing(template: Template) -> None:
    for fn in resources(template, "AWS::Lambda::Function").values():
        assert props(fn)["TracingConfig"] == {"Mode": "Active"}


def test_every_function_logs_json_to_its_own_log_group(template: Template) -> None:
    log_groups = resources(template, "AWS::Logs::LogGroup")
    used = []
    for fn in resources(template, "AWS::Lambda::Function").values():
        config = props(fn)["LoggingConfig"]
        assert config["LogFormat"] == "JSON"
        assert config["LogGroup"]["Ref"] in log_groups
        used.append(config["LogGroup"]["Ref"])
    assert len(set(used)) == FUNCTION_COUNT


def test_every_function_uses_the_common_and_dependency_layers(template: Template) -> None:
    layers = resources(template, "AWS::Lambda::LayerVersion")
    assert len(layers) == 2
    for fn in resources(template, "AWS::Lambda::Function").values():
        # The stack's own layers are referenced; the gateway's third, public one is an ARN
        # (tests/infra/test_streaming.py).
        own = [layer["Ref"] for layer in props(fn)["Layers"] if "Ref" in layer]
        assert sorted(own) == sorted(layers)


def test_every_function_but_the_gateway_has_a_python_handler(template: Template) -> None:
    gateway = function_id(template, "gateway")
    for logical_id, fn in resources(template, "AWS::Lambda::Function").items():
        if logical_id == gateway:
            continue  # run.sh under the Lambda Web Adapter (tests/infra/test_streaming.py)
        # Step Functions tasks share one folder, a module each (STYLE: one Lambda per task).
        assert props(fn)["Handler"] == "handler.handler" or props(fn)["Environment"]["Variables"][
            "POWERTOOLS_SERVICE_NAME"
        ].startswith(("byom-ft_", "byom-automation_", "byom-evals_", "byom-batch_"))


@pytest.mark.parametrize(
    ("name", "timeout", "memory"),
    # The gateway's timeout is the stream timeout, 300 s by default (tests/infra/test_streaming.py).
    [("authorizer", 5, 256), ("admin", 15, 512), ("gateway", 300, 1024)],
)
def test_function_timeout_and_memory(template: Template, name: str, timeout: int, memory: int) -> None:
    fn = props(resources(template, "AWS::Lambda::Function")[function_id(template, name)])
    assert (fn["Timeout"], fn["MemorySize"]) == (timeout, memory)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("authorizer", {"API_KEYS_TABLE", "ADMIN_KEY_SECRET_ARN", "PLATFORM_USAGE_KEY"}),
        (
            "admin",
            {
                "TENANTS_TABLE",
                "API_KEYS_TABLE",
                "CREDENTIALS_TABLE",
                "MODELS_TABLE",
                "USAGE_TABLE",
                "KMS_KEY_ID",
                "SECRET_PREFIX",
                "ALLOW_LOOPBACK_HTTP",
                "ALERTS_TOPIC_ARN",
                "SPEND_ALARM_PREFIX",
                "TENANT_DATA_ROLE_ARN",
                "REST_API_ID",
                "STAGE_NAME",
                "POLICIES_TABLE",
                "AUDIT_TABLE",
                "CACHE_TABLE",
                "DATA_BUCKET",
                # Automations (infra/constructs/automations.py).
                "AUTOMATIONS_TABLE",
                "AUTOMATION_QUEUE_URL",
                "AUTOMATION_QUEUE_ARN",
                "AUTOMATION_PREFIX",
                "SCHEDULER_ROLE_ARN",
                "APPROVAL_STATE_MACHINE_ARN",
                "EVENT_BUS_NAME",
                "RESPONSES_TABLE",
            },
        ),
        (
            "gateway",
            {
                "MODELS_TABLE",
                "CREDENTIALS_TABLE",
                "CACHE_TABLE",
                "USAGE_TABLE",
                "SECRET_PREFIX",
                "ALLOW_LOOPBACK_HTTP",
                "EVENT_BUS_NAME",
                "ALERTS_TOPIC_ARN",
                "TENANT_DATA_ROLE_ARN",
                "POLICIES_TABLE",
                "AUDIT_TABLE",
                "DATA_BUCKET",
                "KMS_KEY_ID",
                "RESPONSES_TABLE",
                # The meter backlog (infra/constructs/metering.py).
                "METER_QUEUE_URL",
                # `/v1/models/recommend?task=` (infra/constructs/evals.py).
                "EVALS_TABLE",
                # The Lambda Web Adapter's and the stream timeout (tests/infra/test_streaming.py).
                "AWS_LAMBDA_EXEC_WRAPPER",
                "AWS_LWA_INVOKE_MODE",
                "AWS_LWA_PORT",
                "AWS_LWA_READINESS_CHECK_PATH",
                "STREAM_TIMEOUT_SECONDS",
            },
        ),
    ],
)
def test_function_environment_follows_the_contract(template: Template, name: str, expected: set[str]) -> None:
    env = environment(template, name)
    assert {k for k in env if not k.startswith("POWERTOOLS_")} == expected
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_NAMESPACE"} <= set(env)


def test_secret_prefix_is_scoped_to_the_stack_and_loopback_http_is_off(template: Template) -> None:
    for name in ("admin", "gateway"):
        env = environment(template, name)
        assert env["SECRET_PREFIX"] == PREFIX
        assert env["ALLOW_LOOPBACK_HTTP"] == "false"


def test_events_and_responses_are_never_logged_or_traced(template: Template) -> None:
    for fn in resources(template, "AWS::Lambda::Function").values():
        variables = props(fn)["Environment"]["Variables"]
        assert variables["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
        assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"


# ----------------------------------------------------------------------------------------- IAM


def test_function_roles_use_no_aws_managed_policies(template: Template) -> None:
    for name in ("authorizer", "admin", "gateway"):
        fn = resources(template, "AWS::Lambda::Function")[function_id(template, name)]
        role = resources(template, "AWS::IAM::Role")[props(fn)["Role"]["Fn::GetAtt"][0]]
        assert "ManagedPolicyArns" not in props(role)


def test_each_function_has_its_own_role(template: Template) -> None:
    roles = {json.dumps(props(fn)["Role"]) for fn in resources(template, "AWS::Lambda::Function").values()}
    assert len(roles) == FUNCTION_COUNT


def test_function_roles_use_a_wildcard_resource_only_for_xray(template: Template) -> None:
    for name in ("authorizer", "admin", "gateway"):
        wildcard_actions = {
            action
            for statement in role_statements(template, name)
            if "*" in as_list(statement["Resource"])
            for action in as_list(statement["Action"])
        }
        assert wildcard_actions == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, name


def test_admin_secrets_manager_actions_are_restricted_to_the_tenant_prefix(template: Template) -> None:
    granted = actions_on(role_statements(template, "admin"), "secretsmanager:")

    assert {action for action, _ in granted} >= {
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:DeleteSecret",
    }
    for _, resource in granted:
        assert resource != "*"
        assert json.dumps(resource).endswith(f':secret:{PREFIX}*"]]}}')


def test_admin_cannot_read_secret_values(template: Template) -> None:
    granted = {action for action, _ in actions_on(role_statements(template, "admin"), "secretsmanager:")}
    assert "secretsmanager:GetSecretValue" not in granted


def test_gateway_reads_only_tenant_secrets(template: Template) -> None:
    granted = actions_on(role_statements(template, "gateway"), "secretsmanager:")
    assert [action for action, _ in granted] == ["secretsmanager:GetSecretValue"]
    assert json.dumps(granted[0][1]).endswith(f':secret:{PREFIX}*"]]}}')


def test_authorizer_cannot_write_tables(template: Template) -> None:
    granted = actions_on(role_statements(template, "authorizer"), "dynamodb:")
    assert [action for action, _ in granted] == ["dynamodb:GetItem"]


def test_authorizer_reads_only_the_api_keys_table(template: Template) -> None:
    api_keys = environment(template, "authorizer")["API_KEYS_TABLE"]["Ref"]
    granted = actions_on(role_statements(template, "authorizer"), "dynamodb:")
    assert granted == [("dynamodb:GetItem", {"Fn::GetAtt": [api_keys, "Arn"]})]


def test_gateway_writes_only_the_response_cache_the_usage_table_and_audit_records(template: Template) -> None:
    env = environment(template, "gateway")
    cache_arn = {"Fn::GetAtt": [env["CACHE_TABLE"]["Ref"], "Arn"]}
    usage_arn = {"Fn::GetAtt": [env["USAGE_TABLE"]["Ref"], "Arn"]}
    audit_arn = {"Fn::GetAtt": [env["AUDIT_TABLE"]["Ref"], "Arn"]}
    writes = {
        (action, json.dumps(resource))
        for action, resource in actions_on(role_statements(template, "gateway"), "dynamodb:")
        if action not in ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
    }
    # Puts only on the cache and the audit (records are never changed); on the usage table what
    # reserving and settling need, no scans or batches.
    assert writes == {
        ("dynamodb:PutItem", json.dumps(cache_arn)),
        ("dynamodb:PutItem", json.dumps(audit_arn)),
    } | {
        (action, json.dumps(usage_arn))
        for action in (
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem",
        )
    }


def test_gateway_reads_the_cache_by_key_only(template: Template) -> None:
    env = environment(template, "gateway")
    cache_arn = {"Fn::GetAtt": [env["CACHE_TABLE"]["Ref"], "Arn"]}
    on_cache = {
        action
        for action, resource in actions_on(role_statements(template, "gateway"), "dynamodb:")
        if cache_arn in as_list(resource)
    }
    assert on_cache == {"dynamodb:GetItem", "dynamodb:PutItem"}


def test_the_admin_function_reaches_no_response_cache_entry_with_its_own_role(template: Template) -> None:
    """A data subject's export and erasure read and delete the cache entries their calls wrote
    (SPEC §7) through the tenant data role only (tests/infra/test_governance.py)."""
    cache_arn = {"Fn::GetAtt": [environment(template, "gateway")["CACHE_TABLE"]["Ref"], "Arn"]}
    on_cache = {
        action
        for action, resource in actions_on(role_statements(template, "admin"), "dynamodb:")
        if cache_arn in as_list(resource)
    }
    assert on_cache == set()


KEY_SERVICES = {
    "authorizer": {"secretsmanager", "dynamodb"},
    "admin": {"secretsmanager", "dynamodb"},
    # The gateway also publishes to the encrypted alerts topic and keeps failed settles in the
    # encrypted meter backlog.
    "gateway": {"secretsmanager", "dynamodb", "sns", "sqs"},
}


def via_services(statement: dict[str, Any]) -> set[str]:
    """The services of a kms:ViaService condition: `{service}.{region}.amazonaws.com` joins."""
    return {
        value["Fn::Join"][1][0].rstrip(".")
        for value in as_list(statement["Condition"]["StringEquals"]["kms:ViaService"])
    }


@pytest.mark.parametrize(("name", "services"), sorted(KEY_SERVICES.items()))
def test_key_use_is_limited_to_the_services_that_encrypt_for_the_function(
    template: Template, name: str, services: set[str]
) -> None:
    key_statements = [
        statement
        for statement in role_statements(template, name)
        if any(action.startswith("kms:") for action in as_list(statement["Action"]))
        # The gateway generates data keys for logged content directly, bound to that purpose by
        # the encryption context (tests/infra/test_governance_data.py).
        and "kms:EncryptionContext:purpose" not in statement["Condition"]["StringEquals"]
    ]
    assert key_statements
    assert set().union(*(via_services(statement) for statement in key_statements)) == services


# ----------------------------------------------------------------------------------------- API

ROUTES = {
    ("GET", "/health"): "gateway",
    ("ANY", "/admin/{proxy+}"): "admin",
    ("ANY", "/v1/{proxy+}"): "gateway",
    ("POST", "/v1/chat/completions"): "gateway",
    ("POST", "/v1/responses"): "gateway",
    ("ANY", "/v1/responses/{proxy+}"): "gateway",
    ("ANY", "/v1/files"): "fine_tuning",
    ("ANY", "/v1/files/{proxy+}"): "fine_tuning",
    ("ANY", "/v1/fine_tuning/{proxy+}"): "fine_tuning",
    ("ANY", "/v1/evals"): "evals",
    ("ANY", "/v1/evals/{proxy+}"): "evals",
    ("ANY", "/v1/batches"): "batches",
    ("ANY", "/v1/batches/{proxy+}"): "batches",
    ("GET", "/openapi.json"): "gateway",
    ("GET", "/docs"): "gateway",
}


def test_routes_are_exactly_those_of_the_contract(template: Template) -> None:
    assert set(methods(template)) == set(ROUTES)


def test_routes_proxy_to_the_contract_functions(template: Template) -> None:
    for route, method in methods(template).items():
        integration = method["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        target = next(
            part["Fn::GetAtt"][0]
            for part in integration["Uri"]["Fn::Join"][1]
            if isinstance(part, dict) and "Fn::GetAtt" in part
        )
        assert target == function_id(template, ROUTES[route]), route


def test_every_method_but_health_uses_the_lambda_authorizer(template: Template) -> None:
    (authorizer_id,) = resources(template, "AWS::ApiGateway::Authorizer")
    for route, method in methods(template).items():
        if route == ("GET", "/health"):
            continue
        assert method["AuthorizationType"] == "CUSTOM", route
        assert method["AuthorizerId"] == {"Ref": authorizer_id}, route


def test_health_is_public(template: Template) -> None:
    health = methods(template)[("GET", "/health")]
    assert health["AuthorizationType"] == "NONE"
    assert "AuthorizerId" not in health


def test_authorizer_is_a_request_authorizer_on_the_authorization_header(template: Template) -> None:
    (authorizer,) = resources(template, "AWS::ApiGateway::Authorizer").values()
    assert props(authorizer)["Type"] == "REQUEST"
    assert props(authorizer)["IdentitySource"] == "method.request.header.Authorization"
    assert props(authorizer)["AuthorizerResultTtlInSeconds"] == 300
    assert function_id(template, "authorizer") in json.dumps(props(authorizer)["AuthorizerUri"])


def test_every_method_validates_body_and_parameters(template: Template) -> None:
    (validator_id, validator) = next(iter(resources(template, "AWS::ApiGateway::RequestValidator").items()))
    assert props(validator)["ValidateRequestBody"] is True
    assert props(validator)["ValidateRequestParameters"] is True
    for route, method in methods(template).items():
        assert method["RequestValidatorId"] == {"Ref": validator_id}, route


GATEWAY_RESPONSES = {
    "UNAUTHORIZED": ("401", "authentication_error", "invalid_api_key"),
    "ACCESS_DENIED": ("403", "permission_error", None),
    "INVALID_API_KEY": ("403", "permission_error", None),
    "MISSING_AUTHENTICATION_TOKEN": ("404", "not_found_error", None),
    "THROTTLED": ("429", "rate_limit_exceeded", "rate_limit_exceeded"),
    "REQUEST_TOO_LARGE": ("413", "invalid_request_error", "request_too_large"),
    "BAD_REQUEST_BODY": ("400", "invalid_request_error", None),
    "BAD_REQUEST_PARAMETERS": ("400", "invalid_request_error", None),
    "AUTHORIZER_FAILURE": ("500", "api_error", None),
    "AUTHORIZER_CONFIGURATION_ERROR": ("500", "api_error", None),
    "INTEGRATION_TIMEOUT": ("504", "api_error", "timeout"),
    "DEFAULT_4XX": (None, "invalid_request_error", None),
    "DEFAULT_5XX": (None, "api_error", None),
}


def gateway_responses(template: Template) -> dict[str, dict[str, Any]]:
    return {
        props(r)["ResponseType"]: props(r)
        for r in resources(template, "AWS::ApiGateway::GatewayResponse").values()
    }


def test_gateway_responses_cover_the_contract(template: Template) -> None:
    assert set(gateway_responses(template)) == set(GATEWAY_RESPONSES)


@pytest.mark.parametrize("response_type", sorted(GATEWAY_RESPONSES))
def test_gateway_response_is_an_openai_error_envelope(template: Template, response_type: str) -> None:
    status, error_type, code = GATEWAY_RESPONSES[response_type]
    response = gateway_responses(template)[response_type]
    # API Gateway substitutes messageString with an already-quoted JSON string.
    body = response["ResponseTemplates"]["application/json"].replace("$context.error.messageString", '"boom"')

    envelope = json.loads(body)["error"]
    assert response.get("StatusCode") == status
    assert {k: v for k, v in envelope.items() if k != "message"} == {
        "type": error_type,
        "param": None,
        "code": code,
    }
    assert isinstance(envelope["message"], str)


@pytest.mark.parametrize(
    ("response_type", "message"),
    [
        ("MISSING_AUTHENTICATION_TOKEN", "Unknown route"),
        ("UNAUTHORIZED", "Missing, unknown or revoked API key"),
    ],
)
def test_misleading_gateway_messages_are_replaced(
    template: Template, response_type: str, message: str
) -> None:
    body = gateway_responses(template)[response_type]["ResponseTemplates"]["application/json"]

    assert json.loads(body)["error"]["message"].startswith(message)


def test_gateway_responses_carry_the_request_id_and_error_source(template: Template) -> None:
    # THROTTLED's retry-after: tests/infra/test_rate_limits.py.
    for response_type, response in gateway_responses(template).items():
        headers = dict(response["ResponseParameters"])
        headers.pop("gatewayresponse.header.retry-after", None)
        assert headers == {
            "gatewayresponse.header.x-request-id": "context.requestId",
            "gatewayresponse.header.x-byom-error-source": "'gateway'",
        }, response_type


def test_stage_is_prod_with_xray_tracing(template: Template) -> None:
    assert stage(template)["StageName"] == "prod"
    assert stage(template)["TracingEnabled"] is True


def test_stage_access_log_is_json_to_the_encrypted_log_group(template: Template) -> None:
    access_log = stage(template)["AccessLogSetting"]
    fields = json.loads(access_log["Format"])
    log_group_id = access_log["DestinationArn"]["Fn::GetAtt"][0]

    assert props(resources(template, "AWS::Logs::LogGroup")[log_group_id])["KmsKeyId"]
    assert {
        "requestId",
        "ip",
        "method",
        "path",
        "status",
        "latencyMs",
        "authorizerError",
        "integrationError",
    } <= set(fields)


def test_stage_access_log_never_records_bodies_or_credentials(template: Template) -> None:
    log_format = stage(template)["AccessLogSetting"]["Format"]
    assert not re.search(
        r"\$input|requestOverride|authorization|apiKey|clientCert", log_format, re.IGNORECASE
    )


def test_stage_execution_logging_is_errors_only_without_data_trace(template: Template) -> None:
    (settings,) = stage(template)["MethodSettings"]
    assert (settings["HttpMethod"], settings["ResourcePath"]) == ("*", "/*")
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False


def test_stage_throttling_comes_from_context(template: Template) -> None:
    (settings,) = stage(template)["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (100, 200)


def test_outputs_are_the_api_url_and_the_admin_key_secret_arn(template: Template) -> None:
    outputs = template.to_json()["Outputs"]
    assert set(outputs) == {"ApiUrl", "AdminKeySecretArn"}
    (secret_id,) = resources(template, "AWS::SecretsManager::Secret")
    assert outputs["AdminKeySecretArn"]["Value"] == {"Ref": secret_id}


def test_multipart_uploads_reach_lambda_base64_encoded(template: Template) -> None:
    (api,) = resources(template, "AWS::ApiGateway::RestApi").values()
    assert props(api)["BinaryMediaTypes"] == ["multipart/form-data"]
