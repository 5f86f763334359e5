"""The three Lambda functions, their shared defaults and a least-privilege role each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.config import (
    ASSET_EXCLUDES,
    DEFAULT_STREAM_TIMEOUT_SECONDS,
    FUNCTIONS_DIR,
    Settings,
)
from infra.constructs.data import API_KEYS_BY_TENANT_INDEX, Data
from infra.constructs.observability import METRICS_NAMESPACE, alarm_arn, spend_alarm_prefix

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
HANDLER = "handler.handler"
# The gateway is a web app run by the Lambda Web Adapter (SPEC §4.4): the managed Python runtime
# cannot write a response stream itself. The layer's /opt/bootstrap wraps the runtime, starts the
# handler script (functions/gateway/run.sh, which serves the app on the port) and relays each
# invocation to it over HTTP, streaming the answer back (InvokeWithResponseStream).
WEB_ADAPTER_HANDLER = "run.sh"
WEB_ADAPTER_PORT = 8080
WEB_ADAPTER_READINESS_PATH = "/health"
# With byom:snapStart, API Gateway invokes this alias of the latest published version: SnapStart
# restores published versions only, never $LATEST.
SNAP_START_ALIAS = "live"
# Budget events go to the account's default bus (docs/contracts.md: EVENT_BUS_NAME).
EVENT_BUS_NAME = "default"

TABLE_READ_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"]
TABLE_WRITE_ACTIONS = [
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
]
# The usage table: budgets and ledgers read in one BatchGetItem, holds reserved with conditional
# UpdateItems, settlement in a TransactWriteItems, which needs the action of each item it holds.
USAGE_TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
]
SECRET_WRITE_ACTIONS = [
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecret",
    "secretsmanager:DeleteSecret",
    "secretsmanager:DescribeSecret",
    "secretsmanager:TagResource",
]
BEDROCK_INVOKE_ACTIONS = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
# Redaction with a tenant's guardrail (SPEC §8): the gateway applies it, the admin API checks it exists.
GUARDRAIL_APPLY_ACTIONS = ["bedrock:ApplyGuardrail"]
GUARDRAIL_READ_ACTIONS = ["bedrock:GetGuardrail"]


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    description: str
    timeout_seconds: int
    memory_mb: int
    code: str | None = None
    """The folder under functions/ when several functions share one (Step Functions tasks)."""
    handler: str = HANDLER

    @property
    def code_dir(self) -> Path:
        return FUNCTIONS_DIR / (self.code or self.name)

    @property
    def construct_id(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))


AUTHORIZER = FunctionSpec("authorizer", "BYOM Gateway REQUEST authorizer (API keys)", 5, 256)
ADMIN = FunctionSpec("admin", "BYOM Gateway admin API (/admin/*)", 15, 512)
# Its timeout is the stream timeout (byom:streamTimeoutSeconds), set in `_build_gateway`.
GATEWAY = FunctionSpec(
    "gateway",
    "BYOM Gateway data plane (/health, /v1/*), under the Lambda Web Adapter",
    DEFAULT_STREAM_TIMEOUT_SECONDS,
    1024,
    handler=WEB_ADAPTER_HANDLER,
)


def key_via_services(
    key: kms.IKey, actions: list[str], services: list[str], sid: str = "UseKeyThroughAwsServices"
) -> iam.PolicyStatement:
    """Use of the stack's key only through these services, encrypting on the function's behalf."""
    return iam.PolicyStatement(
        sid=sid,
        actions=actions,
        resources=[key.key_arn],
        conditions={
            "StringEquals": {"kms:ViaService": [f"{s}.{Aws.REGION}.amazonaws.com" for s in services]}
        },
    )


def secret_prefix(scope: Construct) -> str:
    return f"byom/{Stack.of(scope).stack_name}/tenants/"


class Functions(Construct):
    """Every Lambda default lives in `_build_function`; each function gets its own role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        key: kms.IKey,
        admin_key_secret: secretsmanager.ISecret,
        data: Data,
        alerts_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._key = key
        self._alerts_topic = alerts_topic
        self.secret_prefix = secret_prefix(self)
        self.spend_alarm_prefix = spend_alarm_prefix(self)
        self.layers = self._build_layers()
        self.authorizer = self._build_authorizer(data, admin_key_secret)
        self.admin = self._build_admin(data)
        self.gateway = self._build_gateway(data)
        # What API Gateway invokes: the functions themselves ($LATEST), or with SnapStart their alias.
        self.authorizer_target = self._invoked(self.authorizer)
        self.gateway_target = self._invoked(self.gateway)

    # ----------------------------------------------------------------------------------- defaults

    def _build_layers(self) -> list[lambda_.ILayerVersion]:
        common = lambda_.LayerVersion(
            self,
            "CommonLayer",
            description="BYOM Gateway shared runtime package (byom)",
            code=lambda_.Code.from_asset(
                str(self._settings.common_layer_dir), exclude=self._settings.layer_asset_excludes
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )
        deps = lambda_.LayerVersion(
            self,
            "DepsLayer",
            description="BYOM Gateway third-party dependencies (built by `make layers`)",
            code=lambda_.Code.from_asset(
                str(self._settings.deps_layer_dir), exclude=self._settings.layer_asset_excludes
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )
        return [common, deps]

    def _build_function(
        self, spec: FunctionSpec, environment: dict[str, str], *, snap_start: bool = False
    ) -> lambda_.Function:
        return self.build_function(spec, environment, snap_start=snap_start)

    def _invoked(self, fn: lambda_.Function) -> lambda_.IFunction:
        """`fn`, or with byom:snapStart an alias of its current version (a new version is published
        whenever its code or configuration changes, and Lambda snapshots it then)."""
        if not self._settings.snap_start:
            return fn
        return lambda_.Alias(
            self, f"{fn.node.id}Live", alias_name=SNAP_START_ALIAS, version=fn.current_version
        )

    def build_function(
        self,
        spec: FunctionSpec,
        environment: dict[str, str],
        scope: Construct | None = None,
        *,
        tenancy_config: lambda_.TenancyConfig | None = None,
        extra_layers: Sequence[lambda_.ILayerVersion] = (),
        snap_start: bool = False,
    ) -> lambda_.Function:
        """A function with every default of the stack, created in `scope` (this construct by default)."""
        scope = scope or self
        construct_id = spec.construct_id
        # An explicit log group: retention and encryption are ours, not Lambda's defaults.
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=self._settings.log_retention,
            encryption_key=self._key,
        )
        # No AWS managed policy: every permission, logging included, is granted below or by the caller.
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the BYOM Gateway {spec.name} function",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        return lambda_.Function(
            scope,
            construct_id,
            description=spec.description,
            code=lambda_.Code.from_asset(str(spec.code_dir), exclude=ASSET_EXCLUDES),
            handler=spec.handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            timeout=Duration.seconds(spec.timeout_seconds),
            memory_size=spec.memory_mb,
            # Tracing ACTIVE makes CDK add xray:PutTraceSegments/PutTelemetryRecords to the role.
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group,
            role=role,
            layers=[*self.layers, *extra_layers],
            environment={**self._powertools_environment(spec), **environment},
            # The stack's key, not Lambda's AWS managed one, so revoking the key stops the functions too.
            environment_encryption=self._key,
            tenancy_config=tenancy_config,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
        )

    @staticmethod
    def _powertools_environment(spec: FunctionSpec) -> dict[str, str]:
        return {
            "POWERTOOLS_SERVICE_NAME": f"byom-{spec.name}",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            # Events and responses carry API keys and provider keys: keep them out of logs and traces.
            "POWERTOOLS_LOGGER_LOG_EVENT": "false",
            "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        }

    # ---------------------------------------------------------------------------- the functions

    def _build_authorizer(self, data: Data, admin_key_secret: secretsmanager.ISecret) -> lambda_.Function:
        fn = self._build_function(
            AUTHORIZER,
            {
                **data.environment(data.api_keys),
                "ADMIN_KEY_SECRET_ARN": admin_key_secret.secret_arn,
            },
            # On the path of every cold request (docs/performance.md).
            snap_start=self._settings.snap_start,
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="LookUpKeyHash",
                actions=["dynamodb:GetItem"],
                resources=[data.api_keys.table_arn],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadAdminKey",
                actions=["secretsmanager:GetSecretValue"],
                resources=[admin_key_secret.secret_arn],
            )
        )
        fn.add_to_role_policy(self._key_statement(["kms:Decrypt"]))
        return fn

    def _build_admin(self, data: Data) -> lambda_.Function:
        fn = self._build_function(
            ADMIN,
            {
                **data.environment(
                    *data.tables, data.usage, data.audit, data.policies, data.cache, data.responses
                ),
                "DATA_BUCKET": data.data_bucket.bucket_name,
                "KMS_KEY_ID": self._key.key_arn,
                "SECRET_PREFIX": self.secret_prefix,
                "ALLOW_LOOPBACK_HTTP": "false",
                "ALERTS_TOPIC_ARN": self._alerts_topic.topic_arn,
                "SPEND_ALARM_PREFIX": self.spend_alarm_prefix,
            },
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadWriteTables",
                actions=TABLE_READ_ACTIONS + TABLE_WRITE_ACTIONS,
                resources=[table.table_arn for table in data.tables],
            )
        )
        fn.add_to_role_policy(self._usage_statement(data))
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="ManagePolicies",
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
                resources=[data.policies.table_arn],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="RecordAdminActions", actions=["dynamodb:PutItem"], resources=[data.audit.table_arn]
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="ListKeysOfTenant",
                actions=["dynamodb:Query"],
                resources=[f"{data.api_keys.table_arn}/index/{API_KEYS_BY_TENANT_INDEX}"],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteTenantCredentials",
                actions=SECRET_WRITE_ACTIONS,
                resources=[self._tenant_secrets_arn()],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="ManageTenantSpendAlarms",
                # PutMetricAlarm and DeleteAlarms only: the stack's own alarms are outside the prefix.
                actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"],
                resources=[alarm_arn(self, f"{self.spend_alarm_prefix}*")],
            )
        )
        fn.add_to_role_policy(self._key_statement(["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]))
        self._grant_guardrails(fn, GUARDRAIL_READ_ACTIONS)
        return fn

    def _web_adapter_environment(self) -> dict[str, str]:
        """What the adapter reads (AWS_LWA_*, the exec wrapper) and what the app reads of it."""
        return {
            "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
            # The adapter then writes the streaming proxy format, which only InvokeWithResponseStream
            # relays: every API integration of the function is STREAM (infra/constructs/api.py).
            "AWS_LWA_INVOKE_MODE": "response_stream",
            "AWS_LWA_PORT": str(WEB_ADAPTER_PORT),
            # Invocations wait until the app answers here after a cold start.
            "AWS_LWA_READINESS_CHECK_PATH": WEB_ADAPTER_READINESS_PATH,
            # Lambda and the chat route cut a stream at this bound; the app ends it first, cleanly.
            "STREAM_TIMEOUT_SECONDS": str(self._settings.stream_timeout_seconds),
        }

    def _build_gateway(self, data: Data) -> lambda_.Function:
        web_adapter = lambda_.LayerVersion.from_layer_version_arn(
            self, "WebAdapterLayer", self._settings.web_adapter_layer_arn
        )
        fn = self.build_function(
            # It serves the streams, so it may run as long as one.
            replace(GATEWAY, timeout_seconds=self._settings.stream_timeout_seconds),
            {
                **data.environment(
                    data.models,
                    data.credentials,
                    data.cache,
                    data.usage,
                    data.policies,
                    data.audit,
                    data.responses,
                ),
                "SECRET_PREFIX": self.secret_prefix,
                "ALLOW_LOOPBACK_HTTP": "false",
                "EVENT_BUS_NAME": EVENT_BUS_NAME,
                "ALERTS_TOPIC_ARN": self._alerts_topic.topic_arn,
                "DATA_BUCKET": data.data_bucket.bucket_name,
                "KMS_KEY_ID": self._key.key_arn,
                **self._web_adapter_environment(),
            },
            # One execution environment per tenant (byom:tenantIsolation; docs/decisions.md).
            tenancy_config=lambda_.TenancyConfig.PER_TENANT if self._settings.tenant_isolation else None,
            # Adds /opt/bootstrap and the adapter's extension; no file of the other two layers overlaps.
            extra_layers=[web_adapter],
            snap_start=self._settings.snap_start,
        )
        self._grant_governance(fn, data)
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadModelsAndCredentials",
                # BatchGetItem: an alias and its credential are read in one request.
                actions=["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
                resources=[data.models.table_arn, data.credentials.table_arn],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadWriteResponseCache",
                actions=["dynamodb:GetItem", "dynamodb:PutItem"],
                resources=[data.cache.table_arn],
            )
        )
        fn.add_to_role_policy(self._usage_statement(data))
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="PutBudgetEvents",
                actions=["events:PutEvents"],
                resources=[self._event_bus_arn()],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="PublishBudgetAlerts",
                actions=["sns:Publish"],
                resources=[self._alerts_topic.topic_arn],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadTenantCredentials",
                actions=["secretsmanager:GetSecretValue"],
                resources=[self._tenant_secrets_arn()],
            )
        )
        # Encrypt and GenerateDataKey for the writes to the (encrypted) cache and usage tables, and
        # for the messages published to the (encrypted) alerts topic.
        fn.add_to_role_policy(
            self._key_statement(["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], through_sns=True)
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeBedrockModels",
                actions=BEDROCK_INVOKE_ACTIONS,
                resources=self._bedrock_model_arns(),
            )
        )
        self._grant_guardrails(fn, GUARDRAIL_APPLY_ACTIONS)
        return fn

    def _grant_governance(self, fn: lambda_.Function, data: Data) -> None:
        """What every call needs of governance: the tenant's policy (read with the alias), its audit
        record (written in the metering transaction) and, for tenants that log content, the
        encrypted prompt and answer under the tenant's prefix."""
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadPolicies",
                actions=["dynamodb:GetItem", "dynamodb:BatchGetItem"],
                resources=[data.policies.table_arn],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteAuditRecords", actions=["dynamodb:PutItem"], resources=[data.audit.table_arn]
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="StoreLoggedContent",
                # Tagged with its retention tier, which the bucket's lifecycle rules expire it by.
                actions=["s3:PutObject", "s3:PutObjectTagging"],
                resources=[
                    data.data_bucket.arn_for_objects("tenants/*/content/*"),
                    data.data_bucket.arn_for_objects("tenants/*/subjects/*"),
                ],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="EnvelopeKeysForContent",
                # Data keys for client-side encryption of logged content, bound to its purpose; each
                # one carries the tenant id in its encryption context, so decrypting needs it too.
                actions=["kms:GenerateDataKey"],
                resources=[self._key.key_arn],
                conditions={"StringEquals": {"kms:EncryptionContext:purpose": "audit-content"}},
            )
        )

    def grant_tenant_scope(self, role: iam.IRole) -> None:
        """The admin and gateway functions read and erase tenant data with credentials scoped to one
        tenant (byom.dal.tenant_scope): they may assume `role` with a `tenant_id` session tag."""
        for fn in (self.admin, self.gateway):
            fn.add_environment("TENANT_DATA_ROLE_ARN", role.role_arn)
            fn.add_to_role_policy(
                iam.PolicyStatement(
                    sid="AssumeTenantDataRole",
                    actions=["sts:AssumeRole", "sts:TagSession"],
                    resources=[role.role_arn],
                    conditions={"Null": {"aws:RequestTag/tenant_id": "false"}},
                )
            )

    def connect_usage_plans(self, rest_api_id: str, stage_name: str, platform_usage_key: str) -> None:
        """Once the API exists: the admin function manages the tenants' usage plans and API keys
        on its stage (byom.dal.usage_plans), the authorizer names the platform admin's key.

        No dependency cycle: the API's methods depend on the functions, the functions only on the
        RestApi resource (its id) and a fixed stage name, never on the stage or deployment."""
        self.authorizer.add_environment("PLATFORM_USAGE_KEY", platform_usage_key)
        self.admin.add_environment("REST_API_ID", rest_api_id)
        self.admin.add_environment("STAGE_NAME", stage_name)

        # Usage plans and API keys are region-level API Gateway resources without an account in
        # their ARN, and their ids are generated at creation, so /usageplans/* and /apikeys/* are
        # as tight as ARNs allow; each verb is granted only on the paths it is used on.
        def arns(*paths: str) -> list[str]:
            return [f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}::{path}" for path in paths]

        self.admin.add_to_role_policy(
            iam.PolicyStatement(
                sid="CreateUsagePlansAndKeys",
                actions=["apigateway:POST"],
                resources=arns("/usageplans", "/apikeys", "/usageplans/*/keys"),
            )
        )
        self.admin.add_to_role_policy(
            iam.PolicyStatement(
                sid="ManageUsagePlans",
                actions=["apigateway:GET", "apigateway:PATCH", "apigateway:DELETE"],
                resources=arns("/usageplans/*"),
            )
        )
        self.admin.add_to_role_policy(
            iam.PolicyStatement(
                sid="DeleteUsageKeys",
                actions=["apigateway:DELETE"],
                resources=arns("/apikeys/*"),
            )
        )

    # ------------------------------------------------------------------------------------ helpers

    def _key_statement(self, actions: list[str], *, through_sns: bool = False) -> iam.PolicyStatement:
        services = ["secretsmanager", "dynamodb", *(["sns"] if through_sns else [])]
        return key_via_services(self._key, actions, services)

    @staticmethod
    def _usage_statement(data: Data) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="ReadWriteUsage",
            actions=USAGE_TABLE_ACTIONS,
            resources=[data.usage.table_arn],
        )

    def _event_bus_arn(self) -> str:
        return Stack.of(self).format_arn(
            service="events",
            resource="event-bus",
            resource_name=EVENT_BUS_NAME,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    def _tenant_secrets_arn(self) -> str:
        return Stack.of(self).format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{self.secret_prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _grant_guardrails(self, fn: lambda_.Function, actions: list[str]) -> None:
        """The guardrails of `byom:guardrailArns` (default: the account's own, in this region)."""
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="UseTenantGuardrails",
                actions=actions,
                resources=list(self._settings.guardrail_arns),
            )
        )

    def _bedrock_model_arns(self) -> list[str]:
        stack = Stack.of(self)
        account_scoped = [
            "inference-profile/*",
            "application-inference-profile/*",
            "provisioned-model/*",
            "custom-model-deployment/*",
        ]
        return [
            # Cross-region inference profiles route to the foundation model in any region.
            f"arn:{Aws.PARTITION}:bedrock:*::foundation-model/*",
            *(f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{stack.account}:{name}" for name in account_scoped),
        ]
