"""Fine-tuning: the API function, one Lambda per Step Functions task, the state machine (a Bedrock
branch and an OpenAI branch), the Bedrock service role and the EventBridge rule that wakes executions
when a Bedrock job changes state."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, Duration, Stack
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
from infra.constructs.functions import EVENT_BUS_NAME, Functions, FunctionSpec, secret_prefix

TASKS_CODE = "fine_tuning_tasks"
API = FunctionSpec(
    "fine_tuning", "BYOM Gateway files and fine-tuning jobs (/v1/files, /v1/fine_tuning)", 29, 512
)

# Errors worth another try, with backoff: the provider's throttling and Lambda's own hiccups.
THROTTLING_ERRORS = ["ProviderThrottled", "Lambda.TooManyRequestsException"]
RETRY_INTERVAL = Duration.seconds(5)
RETRY_ATTEMPTS = 6
RETRY_BACKOFF = 2.0
RETRY_MAX_DELAY = Duration.minutes(5)

DATA_PREFIX = "tenants/*/fine-tuning/*/data/*"
OUTPUT_PREFIX = "tenants/*/fine-tuning/*/output/*"
UPLOADS_PREFIX = "tenants/*/files/*"
ALL_JOB_DATA = "tenants/*/fine-tuning/*"

BEDROCK_JOB_STATE_CHANGE = "Model Customization Job State Change"


def _task(name: str, description: str, timeout: int = 60, memory: int = 512) -> FunctionSpec:
    return FunctionSpec(
        f"ft_{name}", f"BYOM fine-tuning task: {description}", timeout, memory, TASKS_CODE, f"{name}.handler"
    )


VALIDATE = _task("validate", "validate and convert the dataset", 300, 1024)
START_TRAINING = _task("start_training", "start the Bedrock customization job")
AWAIT_TRAINING = _task("await_training", "park the execution until the job changes state")
CHECK_TRAINING = _task("check_training", "read the customization job's status")
TRAINING_EVENTS = _task("training_state_changed", "wake the execution on Bedrock's job events")
START_OPENAI_TRAINING = _task("start_openai_training", "upload the data and start the OpenAI job")
CHECK_OPENAI_TRAINING = _task("check_openai_training", "read the OpenAI fine-tuning job's status")
DEPLOY = _task("deploy", "host the custom model (on-demand or provisioned)")
CHECK_DEPLOYMENT = _task("check_deployment", "read the hosting's status")
EVALUATE = _task("evaluate", "score the model on held-out examples", 900, 512)
REQUEST_APPROVAL = _task("request_approval", "park the execution until a human decides")
REGISTER = _task("register", "register the model as a tenant alias")
RECORD_FAILURE = _task("record_failure", "record the error and release resources")


@dataclass(frozen=True)
class TaskFunctions:
    validate: lambda_.Function
    start_training: lambda_.Function
    await_training: lambda_.Function
    check_training: lambda_.Function
    training_events: lambda_.Function
    start_openai_training: lambda_.Function
    check_openai_training: lambda_.Function
    deploy: lambda_.Function
    check_deployment: lambda_.Function
    evaluate: lambda_.Function
    request_approval: lambda_.Function
    register: lambda_.Function
    record_failure: lambda_.Function

    def all(self) -> list[lambda_.Function]:
        return list(self.__dict__.values())


class FineTuning(Construct):
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
        self.state_machine_name = f"byom-{stack.stack_name}-fine-tuning"
        # Named, not referenced: the task functions' policies name the state machine that invokes
        # them, which a token would turn into a dependency cycle.
        self.state_machine_arn = stack.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self.state_machine_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.execution_arns = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.bedrock_role = self._build_bedrock_role()
        self.openai_callers: list[lambda_.Function] = []
        """The functions that call OpenAI with a tenant's credential (they read its secret)."""
        self.tasks = self._build_tasks()
        self.log_group = logs.LogGroup(
            self, "StateMachineLogs", retention=settings.log_retention, encryption_key=key
        )
        self.state_machine = self._build_state_machine()
        self.training_rule = self._build_training_rule()
        self.api_function = self._build_api_function()

    # ------------------------------------------------------------------------------ helpers

    def _bedrock_arn(self, resource: str) -> str:
        return f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"

    def _object_arns(self, *patterns: str) -> list[str]:
        return [self._data.data_bucket.arn_for_objects(p) for p in patterns]

    def _key_statement(self, services: list[str]) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="UseKeyThroughAwsServices",
            actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
            resources=[self._key.key_arn],
            conditions={
                "StringEquals": {"kms:ViaService": [f"{s}.{Aws.REGION}.amazonaws.com" for s in services]}
            },
        )

    @staticmethod
    def _allow(
        fn: lambda_.Function, sid: str, actions: list[str], resources: list[str], **kw: object
    ) -> None:
        fn.add_to_role_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources, **kw))  # type: ignore[arg-type]

    def _environment(self) -> dict[str, str]:
        data = self._data
        return {
            **data.environment(data.files, data.jobs, data.models),
            "DATA_BUCKET": data.data_bucket.bucket_name,
            "KMS_KEY_ID": self._key.key_arn,
            "EVENT_BUS_NAME": EVENT_BUS_NAME,
        }

    def _jobs_access(self, fn: lambda_.Function, *, write: bool = True) -> None:
        actions = ["dynamodb:GetItem", "dynamodb:Query"]
        if write:
            actions += ["dynamodb:PutItem", "dynamodb:UpdateItem"]
        self._allow(fn, "ReadWriteJobs", actions, [self._data.jobs.table_arn])

    def _openai_access(self, fn: lambda_.Function) -> None:
        """What calling OpenAI with a tenant's credential takes, as the data plane reads it: the
        credential's record, its key under the tenants' secret prefix, decrypted through Secrets
        Manager only. The environment is added here so only these functions build an OpenAI client."""
        self.openai_callers.append(fn)
        stack = Stack.of(self)
        prefix = secret_prefix(self)
        fn.add_environment("CREDENTIALS_TABLE", self._data.credentials.table_name)
        fn.add_environment("SECRET_PREFIX", prefix)
        fn.add_environment("ALLOW_LOOPBACK_HTTP", "false")
        self._allow(fn, "ReadCredentials", ["dynamodb:GetItem"], [self._data.credentials.table_arn])
        self._allow(
            fn,
            "ReadTenantCredentials",
            ["secretsmanager:GetSecretValue"],
            [
                stack.format_arn(
                    service="secretsmanager",
                    resource="secret",
                    resource_name=f"{prefix}*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        )
        self._allow(
            fn,
            "DecryptTenantCredentials",
            ["kms:Decrypt"],
            [self._key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"}},
        )

    def _event_bus_arn(self) -> str:
        return Stack.of(self).format_arn(
            service="events",
            resource="event-bus",
            resource_name=EVENT_BUS_NAME,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    # ----------------------------------------------------------------------------- resources

    def _build_bedrock_role(self) -> iam.Role:
        """What Bedrock assumes to train: read the prepared data, write the outputs, nothing else.
        Tenants' raw uploads are outside it; only this account's customization jobs may assume it."""
        role = iam.Role(
            self,
            "BedrockCustomizationRole",
            description="Assumed by Bedrock model customization jobs of the BYOM Gateway",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": self._bedrock_arn("model-customization-job/*")},
                },
            ),
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadPreparedData", actions=["s3:GetObject"], resources=self._object_arns(DATA_PREFIX)
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOutputs", actions=["s3:PutObject"], resources=self._object_arns(OUTPUT_PREFIX)
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListJobPrefixes",
                actions=["s3:ListBucket"],
                resources=[self._data.data_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": ["tenants/*/fine-tuning/*"]}},
            )
        )
        role.add_to_policy(self._key_statement(["s3"]))
        return role

    def _task_function(self, spec: FunctionSpec, extra_env: dict[str, str] | None = None) -> lambda_.Function:
        return self._functions.build_function(spec, {**self._environment(), **(extra_env or {})}, scope=self)

    def _build_tasks(self) -> TaskFunctions:
        customization = [self._bedrock_arn("model-customization-job/*"), self._bedrock_arn("custom-model/*")]
        hosting = [
            self._bedrock_arn("custom-model/*"),
            self._bedrock_arn("custom-model-deployment/*"),
            self._bedrock_arn("provisioned-model/*"),
        ]

        validate = self._task_function(
            VALIDATE,
            {
                "MIN_TRAINING_EXAMPLES": str(self._settings.fine_tuning.min_training_examples),
                **self._data.environment(self._data.policies),
            },
        )
        self._jobs_access(validate)
        # Datasets are redacted by the tenant's policy, as prompts are.
        self._allow(validate, "ReadPolicies", ["dynamodb:GetItem"], [self._data.policies.table_arn])
        self._allow(validate, "ReadFiles", ["dynamodb:GetItem"], [self._data.files.table_arn])
        self._allow(validate, "ReadUploads", ["s3:GetObject"], self._object_arns(UPLOADS_PREFIX))
        self._allow(validate, "WritePreparedData", ["s3:PutObject"], self._object_arns(DATA_PREFIX))
        validate.add_to_role_policy(self._key_statement(["s3", "dynamodb"]))

        start = self._task_function(START_TRAINING, {"BEDROCK_ROLE_ARN": self.bedrock_role.role_arn})
        self._jobs_access(start)
        self._allow(
            start,
            "StartCustomization",
            [
                "bedrock:CreateModelCustomizationJob",
                "bedrock:StopModelCustomizationJob",
                "bedrock:TagResource",
            ],
            [*customization, f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}::foundation-model/*"],
        )
        self._allow(
            start,
            "PassBedrockRole",
            ["iam:PassRole"],
            [self.bedrock_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
        )
        start.add_to_role_policy(self._key_statement(["dynamodb"]))

        def watcher(spec: FunctionSpec, *, send: bool) -> lambda_.Function:
            fn = self._task_function(spec)
            self._jobs_access(fn)
            self._allow(fn, "ReadCustomizationJob", ["bedrock:GetModelCustomizationJob"], customization[:1])
            if send:
                self._allow(fn, "WakeExecution", ["states:SendTaskSuccess"], [self.state_machine_arn])
            fn.add_to_role_policy(self._key_statement(["dynamodb"]))
            return fn

        await_training = watcher(AWAIT_TRAINING, send=True)
        check_training = watcher(CHECK_TRAINING, send=False)
        training_events = watcher(TRAINING_EVENTS, send=True)

        start_openai = self._task_function(START_OPENAI_TRAINING)
        self._jobs_access(start_openai)
        self._allow(start_openai, "ReadPreparedData", ["s3:GetObject"], self._object_arns(DATA_PREFIX))
        self._openai_access(start_openai)
        start_openai.add_to_role_policy(self._key_statement(["s3", "dynamodb"]))

        check_openai = self._task_function(CHECK_OPENAI_TRAINING)
        self._jobs_access(check_openai)
        self._openai_access(check_openai)
        check_openai.add_to_role_policy(self._key_statement(["dynamodb"]))

        deploy = self._task_function(DEPLOY)
        self._jobs_access(deploy)
        self._allow(
            deploy,
            "HostCustomModel",
            [
                "bedrock:CreateCustomModelDeployment",
                "bedrock:CreateProvisionedModelThroughput",
                "bedrock:DeleteCustomModelDeployment",
                "bedrock:DeleteProvisionedModelThroughput",
                "bedrock:TagResource",
            ],
            hosting,
        )
        deploy.add_to_role_policy(self._key_statement(["dynamodb"]))

        check_deployment = self._task_function(CHECK_DEPLOYMENT)
        self._jobs_access(check_deployment, write=False)
        self._allow(
            check_deployment,
            "ReadHosting",
            ["bedrock:GetCustomModelDeployment", "bedrock:GetProvisionedModelThroughput"],
            hosting[1:],
        )
        check_deployment.add_to_role_policy(self._key_statement(["dynamodb"]))

        evaluate = self._task_function(
            EVALUATE, {"MAX_EVAL_EXAMPLES": str(self._settings.fine_tuning.max_eval_examples)}
        )
        self._jobs_access(evaluate)
        self._allow(evaluate, "ReadPreparedData", ["s3:GetObject"], self._object_arns(DATA_PREFIX))
        self._allow(evaluate, "InvokeCustomModel", ["bedrock:InvokeModel"], hosting)
        self._openai_access(evaluate)
        evaluate.add_to_role_policy(self._key_statement(["s3", "dynamodb"]))

        request_approval = self._task_function(REQUEST_APPROVAL)
        self._jobs_access(request_approval)
        self._allow(request_approval, "AnnounceApproval", ["events:PutEvents"], [self._event_bus_arn()])
        request_approval.add_to_role_policy(self._key_statement(["dynamodb"]))

        register = self._task_function(REGISTER)
        self._jobs_access(register)
        self._allow(
            register,
            "RegisterAlias",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
            [self._data.models.table_arn],
        )
        register.add_to_role_policy(self._key_statement(["dynamodb"]))

        record_failure = self._task_function(RECORD_FAILURE)
        self._jobs_access(record_failure)
        self._allow(
            record_failure,
            "ReleaseResources",
            [
                "bedrock:StopModelCustomizationJob",
                "bedrock:DeleteCustomModelDeployment",
                "bedrock:DeleteProvisionedModelThroughput",
            ],
            [*customization[:1], *hosting[1:]],
        )
        self._allow(record_failure, "AnnounceFailure", ["events:PutEvents"], [self._event_bus_arn()])
        self._openai_access(record_failure)  # cancels a running OpenAI job
        record_failure.add_to_role_policy(self._key_statement(["dynamodb"]))

        return TaskFunctions(
            validate=validate,
            start_training=start,
            await_training=await_training,
            check_training=check_training,
            training_events=training_events,
            start_openai_training=start_openai,
            check_openai_training=check_openai,
            deploy=deploy,
            check_deployment=check_deployment,
            evaluate=evaluate,
            request_approval=request_approval,
            register=register,
            record_failure=record_failure,
        )

    def _invoke(
        self,
        construct_id: str,
        fn: lambda_.IFunction,
        *,
        payload: dict[str, object] | None = None,
        wait_for_token: bool = False,
        timeout_path: str | None = None,
    ) -> tasks.LambdaInvoke:
        body: dict[str, object] = {"job_id": sfn.JsonPath.string_at("$.job_id"), **(payload or {})}
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
            task_timeout=sfn.Timeout.at(timeout_path) if timeout_path else None,
            retry_on_service_exceptions=True,
        )
        step.add_retry(
            errors=THROTTLING_ERRORS,
            interval=RETRY_INTERVAL,
            max_attempts=RETRY_ATTEMPTS,
            backoff_rate=RETRY_BACKOFF,
            max_delay=RETRY_MAX_DELAY,
            jitter_strategy=sfn.JitterType.FULL,
        )
        return step

    def _build_state_machine(self) -> sfn.StateMachine:
        t = self.tasks
        fail = sfn.Fail(
            self, "JobFailed", error="FineTuningJobFailed", cause="See the job's error and events"
        )
        record_failure = self._invoke(
            "RecordFailure", t.record_failure, payload={"error": sfn.JsonPath.object_at("$.error")}
        )
        record_failure.add_catch(fail, errors=["States.ALL"], result_path="$.failure_of_failure")
        record_failure.next(fail)

        def guarded(step: tasks.LambdaInvoke) -> tasks.LambdaInvoke:
            step.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")
            return step

        validate = guarded(self._invoke("Validate", t.validate))
        start = guarded(self._invoke("StartTraining", t.start_training))
        await_training = self._invoke(
            "AwaitTraining",
            t.await_training,
            wait_for_token=True,
            timeout_path="$.settings.training_poll_seconds",
        )
        check_training = guarded(self._invoke("CheckTraining", t.check_training))
        # No event within the poll interval: look for ourselves (the polling fallback).
        await_training.add_catch(check_training, errors=["States.Timeout"], result_path="$.poll")
        guarded(await_training)

        # OpenAI sends no events: wait, look, and wait again until the job has ended.
        start_openai = guarded(self._invoke("StartOpenAITraining", t.start_openai_training))
        wait_openai = sfn.Wait(
            self, "WaitForOpenAITraining", time=sfn.WaitTime.seconds_path("$.settings.openai_poll_seconds")
        )
        check_openai = guarded(self._invoke("CheckOpenAITraining", t.check_openai_training))

        deploy = guarded(self._invoke("Deploy", t.deploy))
        wait_deployment = sfn.Wait(
            self, "WaitForDeployment", time=sfn.WaitTime.seconds_path("$.settings.deployment_poll_seconds")
        )
        check_deployment = guarded(self._invoke("CheckDeployment", t.check_deployment))
        evaluate = guarded(self._invoke("Evaluate", t.evaluate))
        request_approval = guarded(
            self._invoke(
                "RequestApproval",
                t.request_approval,
                wait_for_token=True,
                timeout_path="$.settings.approval_timeout_seconds",
            )
        )
        register = guarded(self._invoke("Register", t.register))
        notify = tasks.EventBridgePutEvents(
            self,
            "NotifySucceeded",
            entries=[
                tasks.EventBridgePutEventsEntry(
                    source="byom",
                    detail_type="FineTuningJobSucceeded",
                    detail=sfn.TaskInput.from_object(
                        {
                            "job_id": sfn.JsonPath.string_at("$.job_id"),
                            "tenant_id": sfn.JsonPath.string_at("$.tenant_id"),
                            "fine_tuned_model": sfn.JsonPath.string_at(
                                "$.steps.Register.output.fine_tuned_model"
                            ),
                        }
                    ),
                    event_bus=events.EventBus.from_event_bus_name(self, "DefaultBus", EVENT_BUS_NAME),
                )
            ],
            result_path=sfn.JsonPath.DISCARD,
        )
        notify.add_retry(
            errors=["States.ALL"], interval=RETRY_INTERVAL, max_attempts=3, backoff_rate=RETRY_BACKOFF
        )
        # The model is registered and the job succeeded: a lost notice must not fail it.
        succeeded = sfn.Succeed(self, "JobSucceeded")
        notify.add_catch(succeeded, errors=["States.ALL"], result_path="$.notify_error")

        validate.next(
            sfn.Choice(self, "Provider?")
            .when(sfn.Condition.string_equals("$.steps.Validate.output.provider", "openai"), start_openai)
            .otherwise(start)
        )
        start_openai.next(wait_openai).next(check_openai).next(
            sfn.Choice(self, "OpenAITrainingDone?")
            .when(sfn.Condition.boolean_equals("$.steps.CheckOpenAITraining.output.done", True), evaluate)
            .otherwise(wait_openai)
        )
        (
            start.next(await_training)
            .next(check_training)
            .next(
                sfn.Choice(self, "TrainingDone?")
                .when(sfn.Condition.boolean_equals("$.steps.CheckTraining.output.done", True), deploy)
                .otherwise(await_training)
            )
        )
        deploy.next(wait_deployment).next(check_deployment).next(
            sfn.Choice(self, "DeploymentActive?")
            .when(sfn.Condition.boolean_equals("$.steps.CheckDeployment.output.active", True), evaluate)
            .otherwise(wait_deployment)
        )
        evaluate.next(request_approval).next(register).next(notify).next(succeeded)

        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(validate),
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            tracing_enabled=True,
            comment="BYOM fine-tuning: validate, train on Bedrock or OpenAI, evaluate, approve, register",
        )

    def _build_training_rule(self) -> events.Rule:
        rule = events.Rule(
            self,
            "TrainingStateChanged",
            description="Bedrock customization jobs changed state: wake the waiting execution",
            event_pattern=events.EventPattern(
                source=["aws.bedrock"],
                detail_type=[BEDROCK_JOB_STATE_CHANGE],
            ),
        )
        rule.add_target(targets.LambdaFunction(self.tasks.training_events, retry_attempts=4))
        return rule

    def _build_api_function(self) -> lambda_.Function:
        data = self._data
        fine = self._settings.fine_tuning
        fn = self._functions.build_function(
            API,
            {
                **self._environment(),
                **data.environment(data.idempotency, data.audit, data.policies),
                "STATE_MACHINE_ARN": self.state_machine_arn,
                "MAX_FILE_BYTES": str(fine.max_file_bytes),
                "TRAINING_POLL_SECONDS": str(fine.training_poll_seconds),
                "DEPLOYMENT_POLL_SECONDS": str(fine.deployment_poll_seconds),
                "OPENAI_POLL_SECONDS": str(fine.openai_poll_seconds),
                "APPROVAL_TIMEOUT_SECONDS": str(fine.approval_timeout_seconds),
                "DEFAULT_EVAL_THRESHOLD": str(fine.default_eval_threshold),
            },
            scope=self,
        )
        self._allow(
            fn,
            "ReadWriteFilesAndJobs",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
            [data.files.table_arn, data.jobs.table_arn],
        )
        self._allow(
            fn,
            "ListByTenant",
            ["dynamodb:Query"],
            [
                f"{data.files.table_arn}/index/{FINE_TUNING_BY_TENANT_INDEX}",
                f"{data.jobs.table_arn}/index/{FINE_TUNING_BY_TENANT_INDEX}",
            ],
        )
        self._allow(fn, "ReadBaseAliases", ["dynamodb:GetItem"], [data.models.table_arn])
        self._allow(
            fn,
            "IdempotentJobCreation",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            [data.idempotency.table_arn],
        )
        # Approvals and cancellations are admin actions in the audit trail, kept for the tenant's retention.
        self._allow(fn, "RecordAdminActions", ["dynamodb:PutItem"], [data.audit.table_arn])
        self._allow(fn, "ReadRetention", ["dynamodb:GetItem"], [data.policies.table_arn])
        self._allow(fn, "StoreUploads", ["s3:PutObject"], self._object_arns(UPLOADS_PREFIX))
        # GET /v1/files/{id}/content, and DELETE /v1/files/{id}: every version, the bucket is versioned.
        self._allow(
            fn,
            "ReadAndDeleteUploads",
            ["s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion"],
            self._object_arns(UPLOADS_PREFIX),
        )
        self._allow(
            fn,
            "ListUploadVersions",
            ["s3:ListBucketVersions"],
            [self._data.data_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [UPLOADS_PREFIX]}},
        )
        self._allow(fn, "DeleteFileRecords", ["dynamodb:DeleteItem"], [data.files.table_arn])
        self._allow(fn, "StartExecutions", ["states:StartExecution"], [self.state_machine_arn])
        self._allow(
            fn,
            "AnswerCallbacks",
            ["states:SendTaskSuccess", "states:SendTaskFailure"],
            [self.state_machine_arn],
        )
        self._allow(fn, "StopExecutions", ["states:StopExecution"], [self.execution_arns])
        self._allow(
            fn,
            "ReleaseOnCancel",
            [
                "bedrock:StopModelCustomizationJob",
                "bedrock:DeleteCustomModelDeployment",
                "bedrock:DeleteProvisionedModelThroughput",
            ],
            [
                self._bedrock_arn("model-customization-job/*"),
                self._bedrock_arn("custom-model-deployment/*"),
                self._bedrock_arn("provisioned-model/*"),
            ],
        )
        self._openai_access(fn)  # a cancel cancels a running OpenAI job
        fn.add_to_role_policy(self._key_statement(["s3", "dynamodb"]))
        return fn
