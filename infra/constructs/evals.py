"""Evaluations (SPEC §10): the evals table, the evals API function (/v1/evals), and the scorer, which
an EventBridge rule wakes when an eval run's batch finishes (`BatchFinished` on the platform bus,
batch contract §2), with a dead-letter queue and its alarm for the events it could not grade."""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import Settings
from infra.constructs.batches import Batches
from infra.constructs.data import Data
from infra.constructs.functions import (
    BEDROCK_INVOKE_ACTIONS,
    EVENT_BUS_NAME,
    USAGE_TABLE_ACTIONS,
    Functions,
    FunctionSpec,
    secret_prefix,
)
from infra.constructs.observability import dead_letters_alarm

CODE = "evals"
API = FunctionSpec("evals", "BYOM Gateway evals API (/v1/evals)", 29, 512, CODE)
# Grading one alias: a grader call per item and score_model criterion, so minutes, not seconds.
SCORER = FunctionSpec(
    "evals_scorer",
    "BYOM evals scorer: grade a run's alias when its batch finishes",
    900,
    1024,
    CODE,
    "scorer.handler",
)

BATCH_SOURCE = "byom.batches"
BATCH_FINISHED = "BatchFinished"
RUN_OBJECTS = "tenants/*/evals/*"
UPLOADS = "tenants/*/files/*"
BATCH_OBJECTS = "tenants/*/batches/*"
# Lambda's asynchronous retries of an event the scorer failed on, then the dead-letter queue.
SCORER_RETRIES = 2
SCORER_MAX_EVENT_AGE = Duration.hours(6)
DLQ_RETENTION = Duration.days(14)
MAX_EVAL_ITEMS = 500


class Evals(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        key: kms.IKey,
        data: Data,
        functions: Functions,
        batches: Batches,
        alerts_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._batches = batches
        self._key = key
        self._data = data
        self._functions = functions
        self._alerts_topic = alerts_topic
        self.table = self._build_table()
        self.api_function = self._build_api_function()
        self.dead_letters = self._build_dead_letters()
        self.scorer = self._build_scorer()
        self.rule = self._build_rule()
        self.dlq_alarm = self._build_dlq_alarm()
        self._grant_recommendations(functions.gateway)

    # ----------------------------------------------------------------------------- helpers

    @staticmethod
    def _allow(
        fn: lambda_.Function, sid: str, actions: list[str], resources: list[str], **kw: object
    ) -> None:
        fn.add_to_role_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources, **kw))  # type: ignore[arg-type]

    def _arn(
        self, service: str, resource: str, name: str, fmt: ArnFormat = ArnFormat.SLASH_RESOURCE_NAME
    ) -> str:
        return Stack.of(self).format_arn(
            service=service, resource=resource, resource_name=name, arn_format=fmt
        )

    def _key_statement(self, services: list[str]) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="UseKeyThroughAwsServices",
            actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
            resources=[self._key.key_arn],
            conditions={
                "StringEquals": {"kms:ViaService": [f"{s}.{Aws.REGION}.amazonaws.com" for s in services]}
            },
        )

    def _environment(self) -> dict[str, str]:
        data = self._data
        return {
            "EVALS_TABLE": self.table.table_name,
            **data.environment(data.files, data.models),
            "DATA_BUCKET": data.data_bucket.bucket_name,
            "KMS_KEY_ID": self._key.key_arn,
            "MAX_EVAL_ITEMS": str(MAX_EVAL_ITEMS),
            # A run's batches are read through the batches' own store (byom.settings.BatchSettings).
            "BATCHES_TABLE": self._batches.table.table_name,
        }

    def _submit_environment(self) -> dict[str, str]:
        """What submitting a run's batch reads (byom.settings.BatchSettings): the hold on the usage
        table, the state machine it starts, the bus its announcement goes to."""
        batches = self._batches
        return {
            **self._data.environment(self._data.usage),
            "EVENT_BUS_NAME": EVENT_BUS_NAME,
            "BATCH_STATE_MACHINE_ARN": batches.state_machine_arn,
            "BYOM_BATCH_ROLE_ARN": batches.service_role.role_arn,
        }

    def _run_records(self, fn: lambda_.Function, actions: list[str]) -> None:
        self._allow(fn, "ReadWriteEvals", actions, [self.table.table_arn])
        self._allow(
            fn,
            "ReadWriteRunObjects",
            ["s3:GetObject", "s3:PutObject"],
            [self._data.data_bucket.arn_for_objects(RUN_OBJECTS)],
        )

    # ----------------------------------------------------------------------------- resources

    def _build_table(self) -> dynamodb.Table:
        """Evals and their runs, one partition per tenant (the automations table's style)."""
        return dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="tenant_id", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self._key,
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,
        )

    def _build_api_function(self) -> lambda_.Function:
        data = self._data
        fn = self._functions.build_function(
            API, {**self._environment(), **self._submit_environment()}, scope=self
        )
        self._run_records(
            fn,
            [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Query",
            ],
        )
        self._allow(
            fn, "ReadAliasesAndTestSets", ["dynamodb:GetItem"], [data.models.table_arn, data.files.table_arn]
        )
        self._allow(fn, "ReadTestSets", ["s3:GetObject"], [data.data_bucket.arn_for_objects(UPLOADS)])
        self._grant_batch_submission(fn)
        fn.add_to_role_policy(self._key_statement(["dynamodb", "s3"]))
        return fn

    def _grant_batch_submission(self, fn: lambda_.Function) -> None:
        """`submit_lines` (batch contract §3) as POST /v1/files + POST /v1/batches make a batch: the
        input file (object and record), the batch and its chunks, the hold, the execution; a batch
        with no valid line is finalized at once (its error file, the hold back, `BatchFinished`)."""
        data, batches = self._data, self._batches
        self._allow(
            fn,
            "WriteBatches",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [batches.table.table_arn],
        )
        self._allow(fn, "WriteBatchFiles", ["dynamodb:PutItem"], [data.files.table_arn])
        self._allow(
            fn,
            "WriteBatchObjects",
            ["s3:GetObject", "s3:PutObject"],
            [data.data_bucket.arn_for_objects(UPLOADS), data.data_bucket.arn_for_objects(BATCH_OBJECTS)],
        )
        self._allow(fn, "ReserveBudget", USAGE_TABLE_ACTIONS, [data.usage.table_arn])
        self._allow(fn, "StartBatches", ["states:StartExecution"], [batches.state_machine_arn])
        self._allow(fn, "AnnounceFinished", ["events:PutEvents"], [self._bus_arn()])

    def _bus_arn(self) -> str:
        return self._arn("events", "event-bus", EVENT_BUS_NAME)

    def _build_dead_letters(self) -> sqs.Queue:
        # SQS-managed encryption, as the automations' queues (docs/decisions.md); TLS only.
        return sqs.Queue(
            self,
            "ScorerDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )

    def _build_scorer(self) -> lambda_.Function:
        data = self._data
        stack = Stack.of(self)
        fn = self._functions.build_function(
            SCORER,
            {
                # What the data plane's invocation path reads (byom.api.gateway.invoke_store).
                **data.environment(
                    data.models, data.credentials, data.cache, data.usage, data.policies, data.audit
                ),
                "SECRET_PREFIX": secret_prefix(self),
                "ALLOW_LOOPBACK_HTTP": "false",
                "EVENT_BUS_NAME": EVENT_BUS_NAME,
                "ALERTS_TOPIC_ARN": self._alerts_topic.topic_arn,
                **self._environment(),
            },
            scope=self,
        )
        fn.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=SCORER_RETRIES,
            max_event_age=SCORER_MAX_EVENT_AGE,
        )
        self._run_records(fn, ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"])
        # `finished_lines` (batch contract §3): the batch and its lines file.
        self._allow(fn, "ReadBatches", ["dynamodb:GetItem"], [self._batches.table.table_arn])
        self._allow(
            fn,
            "ReadBatchLines",
            ["s3:GetObject"],
            [self._data.data_bucket.arn_for_objects(BATCH_OBJECTS)],
        )
        # Grader calls: the invocation path's reads and writes, as the gateway function has them.
        self._allow(
            fn,
            "ReadModelsAndCredentials",
            ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
            [data.models.table_arn, data.credentials.table_arn],
        )
        self._allow(
            fn, "ReadWriteResponseCache", ["dynamodb:GetItem", "dynamodb:PutItem"], [data.cache.table_arn]
        )
        self._allow(fn, "ReadWriteUsage", USAGE_TABLE_ACTIONS, [data.usage.table_arn])
        self._allow(
            fn, "ReadPolicies", ["dynamodb:GetItem", "dynamodb:BatchGetItem"], [data.policies.table_arn]
        )
        self._allow(fn, "WriteAuditRecords", ["dynamodb:PutItem"], [data.audit.table_arn])
        self._allow(
            fn,
            "StoreLoggedContent",
            ["s3:PutObject", "s3:PutObjectTagging"],
            [
                data.data_bucket.arn_for_objects("tenants/*/content/*"),
                data.data_bucket.arn_for_objects("tenants/*/subjects/*"),
            ],
        )
        self._allow(
            fn,
            "EnvelopeKeysForContent",
            ["kms:GenerateDataKey"],
            [self._key.key_arn],
            conditions={"StringEquals": {"kms:EncryptionContext:purpose": "audit-content"}},
        )
        self._allow(
            fn,
            "ReadTenantCredentials",
            ["secretsmanager:GetSecretValue"],
            [self._arn("secretsmanager", "secret", f"{secret_prefix(self)}*", ArnFormat.COLON_RESOURCE_NAME)],
        )
        self._allow(
            fn,
            "InvokeBedrockModels",
            BEDROCK_INVOKE_ACTIONS,
            [
                f"arn:{Aws.PARTITION}:bedrock:*::foundation-model/*",
                *(
                    f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{stack.account}:{name}/*"
                    for name in (
                        "inference-profile",
                        "application-inference-profile",
                        "provisioned-model",
                        "custom-model-deployment",
                    )
                ),
            ],
        )
        self._allow(
            fn, "UseTenantGuardrails", ["bedrock:ApplyGuardrail"], list(self._settings.guardrail_arns)
        )
        self._allow(fn, "NotifyBudgets", ["events:PutEvents"], [self._bus_arn()])
        self._allow(fn, "NotifyAlerts", ["sns:Publish"], [self._alerts_topic.topic_arn])
        fn.add_to_role_policy(self._key_statement(["secretsmanager", "dynamodb", "s3", "sns"]))
        return fn

    def _build_rule(self) -> events.Rule:
        """Only the batches of eval runs: their metadata names the run."""
        bus = events.EventBus.from_event_bus_name(self, "PlatformBus", EVENT_BUS_NAME)
        rule = events.Rule(
            self,
            "BatchFinishedRule",
            event_bus=bus,
            description="BYOM: grade an eval run's alias when its batch finishes",
            event_pattern=events.EventPattern(
                source=[BATCH_SOURCE],
                detail_type=[BATCH_FINISHED],
                detail={"metadata": {"eval_run_id": [{"exists": True}]}},
            ),
        )
        rule.add_target(targets.LambdaFunction(self.scorer, retry_attempts=SCORER_RETRIES))
        return rule

    def _build_dlq_alarm(self) -> cw.Alarm:
        return dead_letters_alarm(
            self,
            "ScorerDeadLettersAlarm",
            self.dead_letters,
            self._alerts_topic,
            name="evals-scorer-dead-letters",
            description="An eval run's alias could not be graded; its event is in the dead letters",
        )

    def _grant_recommendations(self, gateway: lambda_.Function) -> None:
        """`/v1/models/recommend?task=` reads the latest run of the eval it names."""
        gateway.add_environment("EVALS_TABLE", self.table.table_name)
        self._allow(gateway, "ReadEvalRuns", ["dynamodb:Query"], [self.table.table_arn])
