"""Automations (SPEC §9): the automations table, the run queue and its dead-letter queue, the runner
Lambda (SQS event source, partial batch responses), the approval state machine (one Lambda per task),
the role Scheduler sends with, the results archive, the DLQ alarm, and what the admin function needs
to create rules and schedules, which is limited to names under the stack's automation prefix."""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import Settings
from infra.constructs.data import Data
from infra.constructs.functions import (
    BEDROCK_INVOKE_ACTIONS,
    EVENT_BUS_NAME,
    USAGE_TABLE_ACTIONS,
    Functions,
    FunctionSpec,
    key_via_services,
    secret_prefix,
)
from infra.constructs.observability import dead_letters_alarm, name_prefix

RUNNER_TIMEOUT_SECONDS = 60
# AWS's advice for an SQS event source: six times the function's timeout.
VISIBILITY_TIMEOUT = Duration.seconds(6 * RUNNER_TIMEOUT_SECONDS)
# Tries of one delivery before it goes to the dead-letter queue (the runner records the last as failed).
MAX_RECEIVE_COUNT = 3
BATCH_SIZE = 5
DLQ_RETENTION = Duration.days(14)
ARCHIVE_RETENTION = Duration.days(30)
APPROVAL_TIMEOUT_SECONDS = 7 * 24 * 3600
TASKS_CODE = "automation_tasks"

RUNNER = FunctionSpec(
    "automation_runner",
    "BYOM automation runner: render, call the model, publish",
    RUNNER_TIMEOUT_SECONDS,
    512,
)


def _task(name: str, description: str) -> FunctionSpec:
    return FunctionSpec(
        f"automation_{name}",
        f"BYOM automation approval: {description}",
        30,
        256,
        TASKS_CODE,
        f"{name}.handler",
    )


AWAIT_APPROVAL = _task("await_approval", "park the run until a tenant admin decides")
PUBLISH_APPROVED = _task("publish_approved", "publish an approved result")
REJECT = _task("reject", "record a rejected or expired run")


def automation_prefix(scope: Construct) -> str:
    """`AUTOMATION_PREFIX`: every rule and schedule an automation creates is `{prefix}{automation_id}`."""
    return f"{name_prefix(scope)}automation-"


class Automations(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        key: kms.IKey,
        data: Data,
        functions: Functions,
        alerts_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._key = key
        self._data = data
        self._functions = functions
        self._alerts_topic = alerts_topic
        stack = Stack.of(self)
        self.prefix = automation_prefix(self)
        self.state_machine_name = f"byom-{stack.stack_name}-automation-approval"
        self.state_machine_arn = stack.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self.state_machine_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.table = self._build_table()
        self.dead_letters, self.queue = self._build_queues()
        self.scheduler_role = self._build_scheduler_role()
        self.task_functions = self._build_tasks()
        self.log_group = logs.LogGroup(
            self, "ApprovalLogs", retention=settings.log_retention, encryption_key=key
        )
        self.state_machine = self._build_state_machine()
        self.runner = self._build_runner()
        self.archive = self._build_archive()
        self.dlq_alarm = self._build_dlq_alarm()
        self._grant_admin(functions.admin)

    # ----------------------------------------------------------------------------- helpers

    def _arn(
        self, service: str, resource: str, name: str, fmt: ArnFormat = ArnFormat.SLASH_RESOURCE_NAME
    ) -> str:
        return Stack.of(self).format_arn(
            service=service, resource=resource, resource_name=name, arn_format=fmt
        )

    @staticmethod
    def _allow(
        fn: lambda_.Function, sid: str, actions: list[str], resources: list[str], **kw: object
    ) -> None:
        fn.add_to_role_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources, **kw))  # type: ignore[arg-type]

    def _key_statement(self, actions: list[str], services: list[str]) -> iam.PolicyStatement:
        return key_via_services(self._key, actions, services)

    def _environment(self) -> dict[str, str]:
        return {
            "AUTOMATIONS_TABLE": self.table.table_name,
            "EVENT_BUS_NAME": EVENT_BUS_NAME,
            "ALERTS_TOPIC_ARN": self._alerts_topic.topic_arn,
        }

    def _rule_arns(self) -> list[str]:
        # A rule on the default bus is rule/{name}; on a named bus rule/{bus}/{name}.
        return [
            self._arn("events", "rule", f"{self.prefix}*"),
            self._arn("events", "rule", f"*/{self.prefix}*"),
        ]

    # ----------------------------------------------------------------------------- resources

    def _build_table(self) -> dynamodb.Table:
        """Automations and their runs, one partition per tenant; TTL sweeps old runs."""
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
            time_to_live_attribute="expires_at",
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,
        )

    def _build_queues(self) -> tuple[sqs.Queue, sqs.Queue]:
        # SQS-managed encryption: EventBridge and Scheduler deliver to it without a grant on the
        # stack's key (docs/decisions.md); TLS only.
        dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )
        queue = sqs.Queue(
            self,
            "Runs",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=VISIBILITY_TIMEOUT,
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=MAX_RECEIVE_COUNT),
        )
        # Only this stack's automation rules may send (EventBridge's own principal).
        queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAutomationRules",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[queue.queue_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": self._rule_arns()},
                },
            )
        )
        return dead_letters, queue

    def _build_scheduler_role(self) -> iam.Role:
        """What Scheduler assumes to deliver a schedule's tick: send to the run queue, nothing else;
        only for this account's schedules under the prefix."""
        role = iam.Role(
            self,
            "SchedulerRole",
            description="Assumed by EventBridge Scheduler to deliver BYOM automation schedules",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": self._arn("scheduler", "schedule", f"default/{self.prefix}*")
                    },
                },
            ),
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="SendToRunQueue", actions=["sqs:SendMessage"], resources=[self.queue.queue_arn]
            )
        )
        return role

    def _table_access(self, fn: lambda_.Function, *, write: bool = True) -> None:
        actions = ["dynamodb:GetItem", "dynamodb:Query"] + (["dynamodb:PutItem"] if write else [])
        self._allow(fn, "ReadWriteAutomations", actions, [self.table.table_arn])

    def _publish_access(self, fn: lambda_.Function) -> None:
        self._allow(
            fn, "PublishResults", ["events:PutEvents"], [self._arn("events", "event-bus", EVENT_BUS_NAME)]
        )
        self._allow(fn, "NotifyResults", ["sns:Publish"], [self._alerts_topic.topic_arn])

    def _build_tasks(self) -> dict[str, lambda_.Function]:
        built = {}
        for spec in (AWAIT_APPROVAL, PUBLISH_APPROVED, REJECT):
            fn = self._functions.build_function(spec, self._environment(), scope=self)
            self._table_access(fn)
            if spec is PUBLISH_APPROVED:
                self._publish_access(fn)
                fn.add_to_role_policy(
                    self._key_statement(
                        ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], ["dynamodb", "sns"]
                    )
                )
            else:
                fn.add_to_role_policy(
                    self._key_statement(["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], ["dynamodb"])
                )
            built[spec.name] = fn
        return built

    def _invoke(
        self, construct_id: str, fn: lambda_.IFunction, payload: dict[str, object], *, wait: bool = False
    ) -> tasks.LambdaInvoke:
        body = {
            "tenant_id": sfn.JsonPath.string_at("$.tenant_id"),
            "automation_id": sfn.JsonPath.string_at("$.automation_id"),
            "run_id": sfn.JsonPath.string_at("$.run_id"),
            **payload,
        }
        if wait:
            body["task_token"] = sfn.JsonPath.task_token
        step = tasks.LambdaInvoke(
            self,
            construct_id,
            lambda_function=fn,
            payload=sfn.TaskInput.from_object(body),
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN
            if wait
            else sfn.IntegrationPattern.REQUEST_RESPONSE,
            result_path="$.decision" if wait else sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.at("$.approval_timeout_seconds") if wait else None,
            retry_on_service_exceptions=True,
        )
        return step

    def _build_state_machine(self) -> sfn.StateMachine:
        """A run's answer waits for a tenant admin (the same waitForTaskToken pattern as fine-tuning):
        approved, it is published; rejected or undecided in time, it is recorded and not published."""
        t = self.task_functions
        await_approval = self._invoke("AwaitApproval", t[AWAIT_APPROVAL.name], {}, wait=True)
        publish = self._invoke("PublishApproved", t[PUBLISH_APPROVED.name], {})
        rejected = self._invoke(
            "RecordRejection", t[REJECT.name], {"decision": sfn.JsonPath.object_at("$.decision")}
        )
        expired = self._invoke(
            "RecordExpiry", t[REJECT.name], {"reason": "No decision within the approval window"}
        )
        await_approval.add_catch(expired, errors=["States.Timeout"], result_path="$.timeout")
        await_approval.next(
            sfn.Choice(self, "Approved?")
            .when(sfn.Condition.boolean_equals("$.decision.approved", True), publish)
            .otherwise(rejected)
        )
        return sfn.StateMachine(
            self,
            "ApprovalStateMachine",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(await_approval),
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
            tracing_enabled=True,
            comment="BYOM automation approval: wait for a tenant admin, then publish or record the rejection",
        )

    def _build_runner(self) -> lambda_.Function:
        data = self._data
        stack = Stack.of(self)
        fn = self._functions.build_function(
            RUNNER,
            {
                # What the data plane's invocation path reads (byom.api.gateway.invoke_store).
                **data.environment(
                    data.models, data.credentials, data.cache, data.usage, data.policies, data.audit
                ),
                "SECRET_PREFIX": secret_prefix(self),
                "ALLOW_LOOPBACK_HTTP": "false",
                "DATA_BUCKET": data.data_bucket.bucket_name,
                "KMS_KEY_ID": self._key.key_arn,
                **self._environment(),
                "APPROVAL_STATE_MACHINE_ARN": self.state_machine_arn,
                "AUTOMATION_MAX_RECEIVE_COUNT": str(MAX_RECEIVE_COUNT),
                "APPROVAL_TIMEOUT_SECONDS": str(APPROVAL_TIMEOUT_SECONDS),
            },
            scope=self,
        )
        fn.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=BATCH_SIZE,
                report_batch_item_failures=True,
                max_batching_window=Duration.seconds(1),
            )
        )
        self._table_access(fn)
        self._publish_access(fn)
        # The invocation path's reads and writes, as the gateway function has them.
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
        self._allow(fn, "StartApprovals", ["states:StartExecution"], [self.state_machine_arn])
        fn.add_to_role_policy(
            self._key_statement(
                ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], ["secretsmanager", "dynamodb", "sns"]
            )
        )
        return fn

    def _build_archive(self) -> events.Archive:
        """Every AutomationResult is kept for a while, so a consumer that was down can replay it."""
        bus = events.EventBus.from_event_bus_name(self, "PlatformBus", EVENT_BUS_NAME)
        return events.Archive(
            self,
            "ResultsArchive",
            source_event_bus=bus,
            archive_name=f"byom-{Stack.of(self).stack_name}-automation-results",
            description="BYOM AutomationResult events, for replay",
            event_pattern=events.EventPattern(source=["byom"], detail_type=["AutomationResult"]),
            retention=ARCHIVE_RETENTION,
        )

    def _build_dlq_alarm(self) -> cw.Alarm:
        return dead_letters_alarm(
            self,
            "DeadLettersAlarm",
            self.dead_letters,
            self._alerts_topic,
            name="automation-dead-letters",
            description="Automation deliveries failed every try and wait in the dead-letter queue",
        )

    def _grant_admin(self, admin: lambda_.Function) -> None:
        """The admin routes create, change and delete rules and schedules under the prefix only, pass
        only the scheduler role, fire automations on demand and answer approvals."""
        environment = {
            **self._environment(),
            "AUTOMATION_QUEUE_URL": self.queue.queue_url,
            "AUTOMATION_QUEUE_ARN": self.queue.queue_arn,
            "AUTOMATION_PREFIX": self.prefix,
            "SCHEDULER_ROLE_ARN": self.scheduler_role.role_arn,
            "APPROVAL_STATE_MACHINE_ARN": self.state_machine_arn,
        }
        for name, value in environment.items():
            admin.add_environment(name, value)
        self._allow(
            admin,
            "ManageAutomations",
            ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem"],
            [self.table.table_arn],
        )
        self._allow(
            admin,
            "ManageAutomationRules",
            [
                "events:PutRule",
                "events:PutTargets",
                "events:RemoveTargets",
                "events:DeleteRule",
                "events:EnableRule",
                "events:DisableRule",
            ],
            self._rule_arns(),
        )
        self._allow(
            admin,
            "ManageAutomationSchedules",
            ["scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule"],
            [self._arn("scheduler", "schedule", f"default/{self.prefix}*")],
        )
        self._allow(
            admin,
            "PassSchedulerRole",
            ["iam:PassRole"],
            [self.scheduler_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
        )
        self._allow(admin, "FireAutomations", ["sqs:SendMessage"], [self.queue.queue_arn])
        self._allow(
            admin,
            "AnswerApprovals",
            ["states:SendTaskSuccess", "states:SendTaskFailure"],
            [self.state_machine_arn],
        )
