"""Batches (SPEC §10): the batches table, the API function, one Lambda per Step Functions task, the
state machine (the gateway's own run: a Map with bounded concurrency; a provider's batch job: submit,
then wait for its event or poll), the Bedrock batch service role and the rule that wakes executions
when a Bedrock batch inference job changes state."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import Settings
from infra.constructs.data import FINE_TUNING_BY_TENANT_INDEX, Data
from infra.constructs.functions import (
    BEDROCK_INVOKE_ACTIONS,
    EVENT_BUS_NAME,
    USAGE_TABLE_ACTIONS,
    Functions,
    FunctionSpec,
    secret_prefix,
)

TASKS_CODE = "batch_tasks"
API = FunctionSpec("batches", "BYOM Gateway batches (/v1/batches)", 29, 1024)

# The Map's iterations in flight: each runs LINE_CONCURRENCY (byom.logic.batches) lines at once.
MAX_CONCURRENCY = 4
POLL_SECONDS = 300
# Worth another try, with backoff: the provider's throttling and failures, Lambda's own hiccups.
RETRIED_ERRORS = ["ProviderError", "RateLimited", "Lambda.TooManyRequestsException"]
RETRY_INTERVAL = Duration.seconds(5)
RETRY_ATTEMPTS = 4
RETRY_BACKOFF = 2.0
RETRY_MAX_DELAY = Duration.minutes(2)

BATCH_DATA = "tenants/*/batches/*"
FILES = "tenants/*/files/*"
BEDROCK_BATCH_STATE_CHANGE = "Batch Inference Job State Change"


def _task(name: str, description: str, timeout: int = 60, memory: int = 512) -> FunctionSpec:
    return FunctionSpec(
        f"batch_{name}", f"BYOM batch task: {description}", timeout, memory, TASKS_CODE, f"{name}.handler"
    )


RUN_CHUNK = _task("run_chunk", "run one chunk of lines through the invocation path", 900, 1024)
SUBMIT = _task("submit", "hand the lines to the provider's batch service", 300, 1024)
AWAIT_JOB = _task("await_job", "park the execution until the provider job changes state", 30, 256)
CHECK_JOB = _task("check_job", "read the provider job's progress")
JOB_STATE_CHANGED = _task("job_state_changed", "wake the execution on Bedrock batch job events", 30, 256)
FINALIZE = _task("finalize", "write the output and error files, meter, announce", 900, 1024)
RECORD_FAILURE = _task("record_failure", "record the error and release the hold")


@dataclass(frozen=True)
class TaskFunctions:
    run_chunk: lambda_.Function
    submit: lambda_.Function
    await_job: lambda_.Function
    check_job: lambda_.Function
    job_state_changed: lambda_.Function
    finalize: lambda_.Function
    record_failure: lambda_.Function

    def all(self) -> list[lambda_.Function]:
        return list(self.__dict__.values())


class Batches(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        key: kms.IKey,
        data: Data,
        functions: Functions,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._key = key
        self._data = data
        self._functions = functions
        stack = Stack.of(self)
        self.state_machine_name = f"byom-{stack.stack_name}-batches"
        # Named, not referenced: the task functions' policies name the state machine, which a token
        # would turn into a dependency cycle.
        self.state_machine_arn = stack.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self.state_machine_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.table = self._build_table()
        self.service_role = self._build_service_role()
        self.tasks = self._build_tasks()
        self.log_group = logs.LogGroup(
            self, "StateMachineLogs", retention=settings.log_retention, encryption_key=key
        )
        self.state_machine = self._build_state_machine()
        self.job_rule = self._build_job_rule()
        self.api_function = self._build_api_function()

    # ------------------------------------------------------------------------------ helpers

    def _bedrock_arn(self, resource: str) -> str:
        return f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"

    def _objects(self, *patterns: str) -> list[str]:
        return [self._data.data_bucket.arn_for_objects(p) for p in patterns]

    @staticmethod
    def _allow(
        fn: lambda_.Function, sid: str, actions: list[str], resources: list[str], **kw: object
    ) -> None:
        fn.add_to_role_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources, **kw))  # type: ignore[arg-type]

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
            # What the batch logic reads (byom.settings.BatchSettings) and what resolving an alias
            # as the data plane does reads (byom.settings.GatewaySettings).
            **data.environment(
                data.files, data.models, data.credentials, data.usage, data.policies, data.audit
            ),
            "BATCHES_TABLE": self.table.table_name,
            "DATA_BUCKET": data.data_bucket.bucket_name,
            "KMS_KEY_ID": self._key.key_arn,
            "EVENT_BUS_NAME": EVENT_BUS_NAME,
            "BATCH_STATE_MACHINE_ARN": self.state_machine_arn,
            "BYOM_BATCH_ROLE_ARN": self.service_role.role_arn,
            "BATCH_POLL_SECONDS": str(POLL_SECONDS),
            "SECRET_PREFIX": secret_prefix(self),
            "ALLOW_LOOPBACK_HTTP": "false",
        }

    def _function(self, spec: FunctionSpec) -> lambda_.Function:
        fn = self._functions.build_function(spec, self._environment(), scope=self)
        self._allow(
            fn,
            "ReadWriteBatches",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [self.table.table_arn],
        )
        return fn

    def _resolve_aliases(self, fn: lambda_.Function) -> None:
        """An alias and its credential, read as the data plane reads them, and the credential's key."""
        data = self._data
        self._allow(
            fn,
            "ReadModelsAndCredentials",
            ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
            [data.models.table_arn, data.credentials.table_arn],
        )
        self._allow(
            fn,
            "ReadTenantCredentials",
            ["secretsmanager:GetSecretValue"],
            [
                Stack.of(self).format_arn(
                    service="secretsmanager",
                    resource="secret",
                    resource_name=f"{secret_prefix(self)}*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        )

    def _batch_data(self, fn: lambda_.Function) -> None:
        self._allow(fn, "ReadWriteBatchData", ["s3:GetObject", "s3:PutObject"], self._objects(BATCH_DATA))

    def _bedrock_jobs(self, fn: lambda_.Function, actions: list[str]) -> None:
        self._allow(
            fn,
            "BedrockBatchJobs",
            actions,
            [
                self._bedrock_arn("model-invocation-job/*"),
                f"arn:{Aws.PARTITION}:bedrock:*::foundation-model/*",
                self._bedrock_arn("inference-profile/*"),
            ],
        )

    # ----------------------------------------------------------------------------- resources

    def _build_table(self) -> dynamodb.Table:
        """One item per batch keyed by its id; the by_tenant index lists a tenant's newest first."""
        table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="batch_id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self._key,
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,
        )
        table.add_global_secondary_index(
            index_name=FINE_TUNING_BY_TENANT_INDEX,
            partition_key=dynamodb.Attribute(name="tenant_id", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="created_key", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        return table

    def _build_service_role(self) -> iam.Role:
        """What Bedrock batch inference assumes: read a batch's input and write its output under the
        batches prefix, nothing else; only this account's batch inference jobs may assume it."""
        role = iam.Role(
            self,
            "BedrockBatchRole",
            description="Assumed by Bedrock batch inference jobs of the BYOM Gateway",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": self._bedrock_arn("model-invocation-job/*")},
                },
            ),
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadWriteBatchData",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=self._objects(BATCH_DATA),
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListBatchPrefixes",
                actions=["s3:ListBucket"],
                resources=[self._data.data_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [BATCH_DATA]}},
            )
        )
        role.add_to_policy(self._key_statement(["s3"]))
        return role

    def _build_tasks(self) -> TaskFunctions:
        data = self._data
        stack = Stack.of(self)

        run_chunk = self._function(RUN_CHUNK)
        self._batch_data(run_chunk)
        self._resolve_aliases(run_chunk)
        # The invocation path's own reads and writes, as the gateway function has them; the batch
        # meters the lines itself (the usage table).
        self._allow(run_chunk, "ReadWriteUsage", USAGE_TABLE_ACTIONS, [data.usage.table_arn])
        self._allow(
            run_chunk,
            "ReadPolicies",
            ["dynamodb:GetItem", "dynamodb:BatchGetItem"],
            [data.policies.table_arn],
        )
        self._allow(run_chunk, "WriteAuditRecords", ["dynamodb:PutItem"], [data.audit.table_arn])
        self._allow(
            run_chunk,
            "StoreLoggedContent",
            ["s3:PutObject", "s3:PutObjectTagging"],
            self._objects("tenants/*/content/*", "tenants/*/subjects/*"),
        )
        self._allow(
            run_chunk,
            "EnvelopeKeysForContent",
            ["kms:GenerateDataKey"],
            [self._key.key_arn],
            conditions={"StringEquals": {"kms:EncryptionContext:purpose": "audit-content"}},
        )
        self._allow(
            run_chunk,
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
            run_chunk, "UseTenantGuardrails", ["bedrock:ApplyGuardrail"], list(self._settings.guardrail_arns)
        )
        run_chunk.add_to_role_policy(self._key_statement(["s3", "dynamodb", "secretsmanager"]))

        submit = self._function(SUBMIT)
        self._batch_data(submit)
        self._resolve_aliases(submit)
        self._allow(submit, "ReadPolicies", ["dynamodb:GetItem"], [data.policies.table_arn])
        self._bedrock_jobs(
            submit,
            ["bedrock:CreateModelInvocationJob", "bedrock:StopModelInvocationJob", "bedrock:TagResource"],
        )
        self._allow(
            submit,
            "PassBatchRole",
            ["iam:PassRole"],
            [self.service_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
        )
        submit.add_to_role_policy(self._key_statement(["s3", "dynamodb", "secretsmanager"]))

        await_job = self._function(AWAIT_JOB)
        self._allow(await_job, "WakeExecution", ["states:SendTaskSuccess"], [self.state_machine_arn])
        await_job.add_to_role_policy(self._key_statement(["dynamodb"]))

        check_job = self._function(CHECK_JOB)
        self._resolve_aliases(check_job)
        self._bedrock_jobs(check_job, ["bedrock:GetModelInvocationJob"])
        check_job.add_to_role_policy(self._key_statement(["dynamodb", "secretsmanager"]))

        job_state_changed = self._function(JOB_STATE_CHANGED)
        self._allow(job_state_changed, "WakeExecution", ["states:SendTaskSuccess"], [self.state_machine_arn])
        job_state_changed.add_to_role_policy(self._key_statement(["dynamodb"]))

        finalize = self._function(FINALIZE)
        self._batch_data(finalize)
        self._resolve_aliases(finalize)
        self._bedrock_jobs(finalize, ["bedrock:GetModelInvocationJob"])
        self._allow(finalize, "WriteOutputFiles", ["s3:PutObject"], self._objects(FILES))
        self._allow(
            finalize, "RecordOutputFiles", ["dynamodb:GetItem", "dynamodb:PutItem"], [data.files.table_arn]
        )
        self._allow(finalize, "MeterLines", USAGE_TABLE_ACTIONS, [data.usage.table_arn])
        self._allow(finalize, "WriteAuditRecords", ["dynamodb:PutItem"], [data.audit.table_arn])
        self._allow(finalize, "AnnounceFinished", ["events:PutEvents"], [self._event_bus_arn()])
        finalize.add_to_role_policy(self._key_statement(["s3", "dynamodb", "secretsmanager"]))

        record_failure = self._function(RECORD_FAILURE)
        self._allow(record_failure, "ReleaseHold", USAGE_TABLE_ACTIONS, [data.usage.table_arn])
        self._allow(record_failure, "AnnounceFinished", ["events:PutEvents"], [self._event_bus_arn()])
        record_failure.add_to_role_policy(self._key_statement(["dynamodb"]))

        return TaskFunctions(
            run_chunk=run_chunk,
            submit=submit,
            await_job=await_job,
            check_job=check_job,
            job_state_changed=job_state_changed,
            finalize=finalize,
            record_failure=record_failure,
        )

    def _event_bus_arn(self) -> str:
        return Stack.of(self).format_arn(
            service="events",
            resource="event-bus",
            resource_name=EVENT_BUS_NAME,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    def _invoke(
        self,
        construct_id: str,
        fn: lambda_.IFunction,
        *,
        payload: dict[str, object] | None = None,
        wait_for_token: bool = False,
    ) -> tasks.LambdaInvoke:
        body: dict[str, object] = {"batch_id": sfn.JsonPath.string_at("$.batch_id"), **(payload or {})}
        if wait_for_token:
            body["task_token"] = sfn.JsonPath.task_token
        step = tasks.LambdaInvoke(
            self,
            construct_id,
            lambda_function=fn,
            payload=sfn.TaskInput.from_object(body),
            integration_pattern=(
                sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN
                if wait_for_token
                else sfn.IntegrationPattern.REQUEST_RESPONSE
            ),
            result_selector=None if wait_for_token else {"output.$": "$.Payload"},
            result_path=f"$.steps.{construct_id}",
            task_timeout=sfn.Timeout.at("$.settings.poll_seconds") if wait_for_token else None,
            retry_on_service_exceptions=True,
        )
        step.add_retry(
            errors=RETRIED_ERRORS,
            interval=RETRY_INTERVAL,
            max_attempts=RETRY_ATTEMPTS,
            backoff_rate=RETRY_BACKOFF,
            max_delay=RETRY_MAX_DELAY,
            jitter_strategy=sfn.JitterType.FULL,
        )
        return step

    def _build_state_machine(self) -> sfn.StateMachine:
        t = self.tasks
        fail = sfn.Fail(self, "BatchFailed", error="BatchFailed", cause="See the batch's errors")
        record_failure = self._invoke(
            "RecordFailure", t.record_failure, payload={"error": sfn.JsonPath.object_at("$.error")}
        )
        record_failure.add_catch(fail, errors=["States.ALL"], result_path="$.failure_of_failure")
        record_failure.next(fail)

        def guarded(step: sfn.TaskStateBase | sfn.Map) -> sfn.TaskStateBase | sfn.Map:
            step.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")
            return step

        finalize = guarded(self._invoke("Finalize", t.finalize))
        finalize.next(sfn.Succeed(self, "BatchEnded"))

        # The gateway's own run: chunks of lines, MAX_CONCURRENCY at a time. A chunk that fails
        # every try does not stop the others; finalize fails its lines.
        run_chunk = self._invoke(
            "RunChunk", t.run_chunk, payload={"chunk": sfn.JsonPath.number_at("$.chunk")}
        )
        run_chunk.add_catch(
            sfn.Pass(self, "ChunkGaveUp", comment="finalize fails this chunk's lines"),
            errors=["States.ALL"],
            result_path="$.error",
        )
        run_lines = sfn.Map(
            self,
            "RunLines",
            items_path="$.chunks",
            max_concurrency=MAX_CONCURRENCY,
            item_selector={
                "batch_id": sfn.JsonPath.string_at("$.batch_id"),
                "chunk": sfn.JsonPath.number_at("$$.Map.Item.Value"),
            },
            result_path=sfn.JsonPath.DISCARD,
        )
        run_lines.item_processor(run_chunk)
        guarded(run_lines).next(finalize)

        # A provider's batch job: submit, then wait for its state-change event; no event within
        # the poll interval, look for ourselves (the polling fallback), until the job has ended.
        submit = guarded(self._invoke("SubmitJob", t.submit))
        await_job = self._invoke("AwaitJob", t.await_job, wait_for_token=True)
        check_job = guarded(self._invoke("CheckJob", t.check_job))
        await_job.add_catch(check_job, errors=["States.Timeout"], result_path="$.poll")
        guarded(await_job)
        submit.next(await_job).next(check_job).next(
            sfn.Choice(self, "JobDone?")
            .when(sfn.Condition.boolean_equals("$.steps.CheckJob.output.done", True), finalize)
            .otherwise(await_job)
        )

        start = (
            sfn.Choice(self, "Mode?")
            .when(sfn.Condition.string_equals("$.mode", "provider"), submit)
            .otherwise(run_lines)
        )
        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(start),
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
            tracing_enabled=True,
            timeout=Duration.hours(26),
            comment="BYOM batches: run the lines (gateway or provider batch job), then finalize",
        )

    def _build_job_rule(self) -> events.Rule:
        rule = events.Rule(
            self,
            "JobStateChangedRule",
            description="Bedrock batch inference jobs changed state: wake the waiting execution",
            event_pattern=events.EventPattern(
                source=["aws.bedrock"], detail_type=[BEDROCK_BATCH_STATE_CHANGE]
            ),
        )
        rule.add_target(targets.LambdaFunction(self.tasks.job_state_changed, retry_attempts=4))
        return rule

    def _build_api_function(self) -> lambda_.Function:
        data = self._data
        fn = self._functions.build_function(API, self._environment(), scope=self)
        self._allow(
            fn,
            "ReadWriteBatches",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [self.table.table_arn],
        )
        self._allow(
            fn,
            "ListByTenant",
            ["dynamodb:Query"],
            [f"{self.table.table_arn}/index/{FINE_TUNING_BY_TENANT_INDEX}"],
        )
        self._allow(fn, "ReadFiles", ["dynamodb:GetItem"], [data.files.table_arn])
        self._allow(fn, "ReadUploads", ["s3:GetObject"], self._objects(FILES))
        self._batch_data(fn)
        self._resolve_aliases(fn)
        # The batch's upper bound reserved at creation (and given back when it cannot start).
        self._allow(fn, "ReserveBudget", USAGE_TABLE_ACTIONS, [data.usage.table_arn])
        self._allow(
            fn,
            "StartAndWakeExecutions",
            ["states:StartExecution", "states:SendTaskSuccess"],
            [self.state_machine_arn],
        )
        self._bedrock_jobs(fn, ["bedrock:StopModelInvocationJob"])  # a cancel stops the provider's job
        fn.add_to_role_policy(self._key_statement(["s3", "dynamodb", "secretsmanager"]))
        return fn
