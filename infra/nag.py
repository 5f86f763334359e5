"""cdk-nag: the AwsSolutions pack and every acknowledgement, each with the reason it is acceptable.

Acknowledgements are scoped to the construct that raises the finding, and wildcard findings
(IAM5) are acknowledged one resource pattern at a time, so a new wildcard still fails the synth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, App, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from infra.config import DEFAULT_GUARDRAIL_ARNS, guardrail_arns
from infra.constructs.functions import RUNTIME

if TYPE_CHECKING:
    from infra.stack import ByomGatewayStack

PACK = "AwsSolutions"

# Once an app holds any acknowledgement, CDK fails the synth on error-level findings only; strict
# mode makes warning-level ones (APIG3, DDB3, ...) fail it too. App context: set before the stack.
APP_CONTEXT = {"@aws-cdk/core:strictCfnValidateErrors": True}

# How cdk-nag renders the pseudo parameters inside a finding.
_ARN = "arn:<AWS::Partition>"
_REGION_ACCOUNT = "<AWS::Region>:<AWS::AccountId>"

XRAY_REASON = (
    "X-Ray PutTraceSegments and PutTelemetryRecords do not support resource-level permissions "
    "(Service Authorization Reference), so active tracing needs Resource '*'. It is the only "
    "wildcard-resource statement of the role (asserted by tests/infra)."
)
TENANT_SECRETS_REASON = (
    "Provider credentials are created at runtime, one secret per tenant credential, so their names "
    "are unknown at deploy time. Access is confined to this stack's prefix {prefix} (the platform "
    "admin key lives outside it) and the secrets are encrypted with the stack's KMS key."
)
BEDROCK_REASON = (
    "Tenants register Bedrock model ids at runtime through the admin API (models are data, not "
    "infrastructure), so the gateway may invoke any {what}; the grant is limited to InvokeModel and "
    "InvokeModelWithResponseStream. Which models are usable is governed by Bedrock model access; "
    "restrict further with an SCP if required."
)
GUARDRAILS_REASON = (
    "A tenant's redaction policy names its own Bedrock guardrail (id and version), set at runtime through "
    "the admin API, so the guardrail ids are unknown at deploy time. The grant is {actions} only, on "
    "{what}; narrow it with the byom:guardrailArns context."
)
SPEND_ALARMS_REASON = (
    "The admin API creates and deletes one CloudWatch alarm per tenant with a budget, named "
    "{prefix}{{tenant_id}}; tenants are data created at runtime, so the names are unknown at deploy time. "
    "The grant is PutMetricAlarm and DeleteAlarms only, on alarms under this stack's spend prefix: the "
    "stack's own alarms and any other alarm of the account are outside it."
)
USAGE_PLANS_REASON = (
    "The admin API creates one API Gateway usage plan per tenant and one API key per tenant key at "
    "runtime (requests per minute per key, SPEC §8); API Gateway generates their ids, and usage plans "
    "and API keys are region-level resources with no account or API in their ARN, so {pattern} is as "
    "tight as IAM allows. Each verb is granted only on the paths the admin function uses it on."
)
PUBLIC_HEALTH_REASON = (
    'GET /health is the public liveness probe: it answers a constant {{"status": "ok"}}, reads no '
    "tenant data and calls no provider, so uptime monitors can call it without credentials."
)
API_KEY_AUTH_REASON = (
    "Callers are OpenAI SDKs and services holding API keys, not Cognito users: every method but "
    "GET /health uses the Lambda REQUEST authorizer, which looks up the SHA-256 hash of the Bearer key, "
    "rejects unknown and revoked keys and returns the tenant and role that the handlers authorize on."
)


def attach(app: App) -> None:
    """Run the AwsSolutions pack at synth; any unacknowledged finding fails the synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def fail_on_open_findings(assembly_dir: str) -> None:
    """Exit non-zero if the validation report lists any unacknowledged finding.

    CDK already fails an in-process synth; under the CDK CLI's process mode it only sets the Node
    exit code, which the Python app would not propagate. This keeps the gate in every mode.
    """
    report_file = Path(assembly_dir) / "validation-report.json"
    if not report_file.is_file():
        return
    report = json.loads(report_file.read_text())
    findings = [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report.get("pluginReports", [])
        for violation in plugin.get("violations", [])
        for construct in violation.get("violatingConstructs", [])
    ]
    if findings:
        raise SystemExit("unacknowledged cdk-nag findings:\n  " + "\n  ".join(findings))


def acknowledge(construct: IConstruct, rule: str, reason: str, *, finding: str | None = None) -> None:
    rule_id = f"{PACK}-{rule}" + (f"[{finding}]" if finding else "")
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{PACK}::{rule_id}", reason=reason))


FINE_TUNING_OBJECTS_REASON = (
    "Tenants' files and each job's prepared data and outputs are objects created at runtime under "
    "tenants/{{tenant_id}}/..., so their keys are unknown at deploy time. The pattern confines this role "
    "to the part of the bucket its step needs ({pattern}); tenant ids are checked by the code that "
    "builds the keys, and objects are encrypted with the stack's key."
)
FINE_TUNING_BEDROCK_REASON = (
    "Bedrock customization jobs, custom models and their hostings are created at runtime, one per "
    "fine-tuning job and named after it, so their ARNs are unknown at deploy time. The grant is limited "
    "to the actions this step needs on {what} of this account and region."
)
FINE_TUNING_BASE_MODEL_REASON = (
    "Tenants choose the base model of a fine-tuning job at runtime (any customizable foundation model "
    "of the region); the grant is CreateModelCustomizationJob, StopModelCustomizationJob and TagResource."
)
STATE_MACHINE_INVOKE_REASON = (
    "CDK's LambdaInvoke grant covers the function's versions and aliases (<function arn>:*) besides the "
    "function; the state machine invokes only the functions of its own tasks."
)
STATE_MACHINE_LOGS_REASON = (
    "Step Functions log delivery (logs:CreateLogDelivery, ...) and X-Ray tracing do not support "
    "resource-level permissions, so logging ALL and tracing need Resource '*'."
)
EXECUTIONS_REASON = (
    "Cancelling a job stops its execution; executions are created at runtime, one per job, under this "
    "stack's state machine only (execution:{name}:*)."
)
TENANT_OBJECTS_REASON = (
    "The tenant data role reads and erases one tenant's objects: the key pattern is bound to the "
    "session's tenant_id tag (aws:PrincipalTag), which the trust policy requires, so a session of one "
    "tenant matches tenants/<its id>/* only. The objects are created at runtime, so the keys are unknown "
    "at deploy time."
)
TENANT_RESPONSE_BODIES_REASON = (
    "A stored response too large for its DynamoDB item is written, sealed client-side, as an object "
    "created at runtime under tenants/<tenant id>/responses/, named by the response id; the pattern is "
    "bound to the session's tenant_id tag (aws:PrincipalTag), which the trust policy requires, so a "
    "session of one tenant may put objects under its own responses/ prefix only."
)
TENANT_AUDIT_INDEXES_REASON = (
    "The tenant data role queries the audit table's indexes (by_subject: a data subject's records for "
    "export and erasure); every grant on the table and its indexes is conditioned on "
    "dynamodb:LeadingKeys matching the session's tenant_id tag, so the wildcard names the table's "
    "indexes, not other tenants' items."
)


RUNTIME_REASON = (
    "The functions run {runtime}, one minor version behind the newest Lambda Python runtime, on purpose "
    "(docs/decisions.md): it is the newest one the tests also run on, and AWS patches it until its "
    "deprecation date. Only functions on that runtime are acknowledged; moving to a newer one is "
    "RUNTIME and the Makefile's LAYER_PYTHON together."
)


def acknowledge_findings(stack: ByomGatewayStack) -> None:
    _acknowledge_runtime(stack)
    _acknowledge_function_roles(stack)
    _acknowledge_guardrails(stack)
    _acknowledge_governance(stack)
    _acknowledge_fine_tuning(stack)
    _acknowledge_admin_key_secret(stack)
    _acknowledge_api(stack)
    _acknowledge_automations(stack)
    _acknowledge_evals(stack)
    _acknowledge_batches(stack)


def _acknowledge_runtime(stack: ByomGatewayStack) -> None:
    for construct in stack.node.find_all():
        if isinstance(construct, lambda_.Function) and construct.runtime.name == RUNTIME.name:
            acknowledge(construct, "L1", RUNTIME_REASON.format(runtime=RUNTIME.name))


def _acknowledge_function_roles(stack: ByomGatewayStack) -> None:
    functions = stack.functions
    for fn in (functions.authorizer, functions.admin, functions.gateway, stack.metering.reconciler):
        acknowledge(_role(fn.role), "IAM5", XRAY_REASON, finding="Resource::*")

    tenant_secrets = f"Resource::{_ARN}:secretsmanager:{_REGION_ACCOUNT}:secret:{functions.secret_prefix}*"
    reason = TENANT_SECRETS_REASON.format(prefix=functions.secret_prefix)
    for fn in (functions.admin, functions.gateway):
        acknowledge(_role(fn.role), "IAM5", reason, finding=tenant_secrets)

    acknowledge(
        _role(functions.admin.role),
        "IAM5",
        SPEND_ALARMS_REASON.format(prefix=functions.spend_alarm_prefix),
        finding=f"Resource::{_ARN}:cloudwatch:{_REGION_ACCOUNT}:alarm:{functions.spend_alarm_prefix}*",
    )

    for pattern in ("/usageplans/*", "/usageplans/*/keys", "/apikeys/*"):
        acknowledge(
            _role(functions.admin.role),
            "IAM5",
            USAGE_PLANS_REASON.format(pattern=pattern),
            finding=f"Resource::{_ARN}:apigateway:<AWS::Region>::{pattern}",
        )

    gateway_role = _role(functions.gateway.role)
    acknowledge(
        gateway_role,
        "IAM5",
        BEDROCK_REASON.format(
            what="foundation model; the region is a wildcard because cross-region inference profiles "
            "route requests to the model in another region"
        ),
        finding=f"Resource::{_ARN}:bedrock:*::foundation-model/*",
    )
    for resource in (
        "inference-profile",
        "application-inference-profile",
        "provisioned-model",
        "custom-model-deployment",
    ):
        acknowledge(
            gateway_role,
            "IAM5",
            BEDROCK_REASON.format(what=f"{resource} of this account and region"),
            finding=f"Resource::{_ARN}:bedrock:{_REGION_ACCOUNT}:{resource}/*",
        )


def _acknowledge_guardrails(stack: ByomGatewayStack) -> None:
    arns = guardrail_arns(stack)
    if arns == DEFAULT_GUARDRAIL_ARNS:
        patterns = {
            f"{_ARN}:bedrock:{_REGION_ACCOUNT}:guardrail/*": "the guardrails of this account and region"
        }
    else:
        patterns = {arn: f"the guardrails matching {arn} (byom:guardrailArns)" for arn in arns if "*" in arn}
    functions = stack.functions
    for fn, actions in ((functions.gateway, "ApplyGuardrail"), (functions.admin, "GetGuardrail")):
        for pattern, what in patterns.items():
            acknowledge(
                _role(fn.role),
                "IAM5",
                GUARDRAILS_REASON.format(actions=actions, what=what),
                finding=f"Resource::{pattern}",
            )


CONTENT_LOG_REASON = (
    "Tenants with content logging have each call's prompt and answer stored as an object created at "
    "runtime under tenants/<tenant id>/content/ (or .../subjects/<hash>/content/ when the call names a "
    "data subject), so the keys are unknown at deploy time; the gateway may only put them (never read), "
    "and their contents are encrypted client-side with a data key bound to the tenant."
)


def _acknowledge_governance(stack: ByomGatewayStack) -> None:
    role = stack.governance.tenant_data_role
    bucket_id = stack.resolve(stack.data.data_bucket.bucket_arn)["Fn::GetAtt"][0]
    for pattern in ("tenants/*/content/*", "tenants/*/subjects/*"):
        acknowledge(
            _role(stack.functions.gateway.role),
            "IAM5",
            CONTENT_LOG_REASON,
            finding=f"Resource::<{bucket_id}.Arn>/{pattern}",
        )
    audit_id = stack.resolve(stack.data.audit.table_arn)["Fn::GetAtt"][0]
    acknowledge(
        role,
        "IAM5",
        TENANT_OBJECTS_REASON,
        finding=f"Resource::<{bucket_id}.Arn>/tenants/<aws:PrincipalTag/tenant_id>/*",
    )
    acknowledge(
        role,
        "IAM5",
        TENANT_RESPONSE_BODIES_REASON,
        finding=f"Resource::<{bucket_id}.Arn>/tenants/<aws:PrincipalTag/tenant_id>/responses/*",
    )
    acknowledge(role, "IAM5", TENANT_AUDIT_INDEXES_REASON, finding=f"Resource::<{audit_id}.Arn>/index/*")


def _acknowledge_fine_tuning(stack: ByomGatewayStack) -> None:
    fine_tuning = stack.fine_tuning
    bucket_arn = stack.resolve(stack.data.data_bucket.bucket_arn)["Fn::GetAtt"][0]
    roles = [_role(fn.role) for fn in (*fine_tuning.tasks.all(), fine_tuning.api_function)]
    bedrock = f"Resource::{_ARN}:bedrock:{_REGION_ACCOUNT}"
    for role in roles:
        acknowledge(role, "IAM5", XRAY_REASON, finding="Resource::*")
        for pattern in ("tenants/*/files/*", "tenants/*/fine-tuning/*/data/*"):
            acknowledge(
                role,
                "IAM5",
                FINE_TUNING_OBJECTS_REASON.format(pattern=pattern),
                finding=f"Resource::<{bucket_arn}.Arn>/{pattern}",
            )
        for resource in (
            "model-customization-job",
            "custom-model",
            "custom-model-deployment",
            "provisioned-model",
        ):
            acknowledge(
                role,
                "IAM5",
                FINE_TUNING_BEDROCK_REASON.format(what=f"{resource}/*"),
                finding=f"{bedrock}:{resource}/*",
            )
    tenant_secrets = (
        f"Resource::{_ARN}:secretsmanager:{_REGION_ACCOUNT}:secret:{stack.functions.secret_prefix}*"
    )
    for fn in fine_tuning.openai_callers:
        acknowledge(
            _role(fn.role),
            "IAM5",
            TENANT_SECRETS_REASON.format(prefix=stack.functions.secret_prefix),
            finding=tenant_secrets,
        )
    acknowledge(
        _role(fine_tuning.tasks.start_training.role),
        "IAM5",
        FINE_TUNING_BASE_MODEL_REASON,
        finding=f"Resource::{_ARN}:bedrock:<AWS::Region>::foundation-model/*",
    )
    acknowledge(
        _role(fine_tuning.api_function.role),
        "IAM5",
        EXECUTIONS_REASON.format(name=fine_tuning.state_machine_name),
        finding=f"Resource::{_ARN}:states:{_REGION_ACCOUNT}:execution:{fine_tuning.state_machine_name}:*",
    )
    bedrock_role = fine_tuning.bedrock_role
    for pattern in ("tenants/*/fine-tuning/*/data/*", "tenants/*/fine-tuning/*/output/*"):
        acknowledge(
            bedrock_role,
            "IAM5",
            FINE_TUNING_OBJECTS_REASON.format(pattern=pattern),
            finding=f"Resource::<{bucket_arn}.Arn>/{pattern}",
        )
    machine_role = fine_tuning.state_machine.role
    acknowledge(machine_role, "IAM5", STATE_MACHINE_LOGS_REASON, finding="Resource::*")
    for fn in fine_tuning.tasks.all():
        if fn is fine_tuning.tasks.training_events:
            continue
        function_id = stack.resolve(fn.function_arn)["Fn::GetAtt"][0]
        acknowledge(
            machine_role, "IAM5", STATE_MACHINE_INVOKE_REASON, finding=f"Resource::<{function_id}.Arn>:*"
        )
    acknowledge(
        stack.data.data_bucket,
        "S1",
        "The bucket is reached only through the fine-tuning API and the pipeline's roles, which log every "
        "upload (API access logs) and every read (the state machine's execution log); server access logs "
        "would need a second, unencrypted-by-CMK bucket. Enable CloudTrail S3 data events for object-level "
        "audit where required.",
    )
    for method in stack.api.fine_tuning_methods:
        acknowledge(method, "COG4", API_KEY_AUTH_REASON)


def _acknowledge_admin_key_secret(stack: ByomGatewayStack) -> None:
    acknowledge(
        stack.security.admin_key_secret,
        "SMG4",
        "The platform admin key is a bearer credential held by the operators who call the admin API; "
        "scheduled rotation would lock them out without notice. Operators rotate it on demand "
        "(put a new value in the secret); the authorizer re-reads it within its cache max age.",
    )


def _acknowledge_api(stack: ByomGatewayStack) -> None:
    api = stack.api
    acknowledge(api.health_method, "APIG4", PUBLIC_HEALTH_REASON)
    acknowledge(api.health_method, "COG4", PUBLIC_HEALTH_REASON)
    methods = (
        api.admin_method,
        api.v1_method,
        api.chat_method,
        api.responses_method,
        api.stored_responses_method,
        *api.docs_methods,
        *api.evals_methods,
    )
    for method in methods:
        acknowledge(method, "COG4", API_KEY_AUTH_REASON)

    cloud_watch_role = api.rest_api.node.find_child("CloudWatchRole")
    acknowledge(
        cloud_watch_role,
        "IAM4",
        "AmazonAPIGatewayPushToCloudWatchLogs is the AWS-maintained policy for API Gateway's "
        "account-level logging role, assumed only by apigateway.amazonaws.com; execution and access "
        "logging need it and AWS keeps it in step with the service.",
        finding=f"Policy::{_ARN}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
    )

    if api.web_acl_association is None:
        acknowledge(
            api.rest_api.deployment_stage,
            "APIG3",
            "AWS WAF is opt-in: set the context byom:webAclArn to associate the organisation's web ACL "
            "(often managed centrally with Firewall Manager). No ACL is created by default because the "
            "AWS managed common rule set blocks bodies over 8 KB, which chat completions routinely "
            "exceed; stage throttling and the authorizer protect every route in the meantime.",
        )


def _role(role: iam.IRole | None) -> iam.IRole:
    if role is None:
        raise ValueError("every function is created with its own role")
    return role


AUTOMATION_TRIGGERS_REASON = (
    "Tenants create automations at runtime; each one's EventBridge rule or Scheduler schedule is named "
    "{prefix}{{automation_id}}, so the names are unknown at deploy time. The admin function may manage "
    "rules and schedules under this stack's automation prefix only ({what}), as it manages spend alarms."
)


def _acknowledge_automations(stack: ByomGatewayStack) -> None:
    automations = stack.automations
    prefix = automations.prefix
    admin = _role(stack.functions.admin.role)
    for pattern, what in (
        (f"events:{_REGION_ACCOUNT}:rule/{prefix}*", "rules on the default bus"),
        (f"events:{_REGION_ACCOUNT}:rule/*/{prefix}*", "rules on a bus the tenant names"),
        (f"scheduler:{_REGION_ACCOUNT}:schedule/default/{prefix}*", "schedules of the default group"),
    ):
        acknowledge(
            admin,
            "IAM5",
            AUTOMATION_TRIGGERS_REASON.format(prefix=prefix, what=what),
            finding=f"Resource::{_ARN}:{pattern}",
        )
    for fn in (automations.runner, *automations.task_functions.values()):
        acknowledge(_role(fn.role), "IAM5", XRAY_REASON, finding="Resource::*")
    # The runner calls models through the gateway's own invocation path, so it holds the gateway's grants.
    _acknowledge_invocation_path(stack, _role(automations.runner.role))
    machine_role = automations.state_machine.role
    acknowledge(machine_role, "IAM5", STATE_MACHINE_LOGS_REASON, finding="Resource::*")
    for fn in automations.task_functions.values():
        fn_id = stack.resolve(fn.function_arn)["Fn::GetAtt"][0]
        acknowledge(machine_role, "IAM5", STATE_MACHINE_INVOKE_REASON, finding=f"Resource::<{fn_id}.Arn>:*")


def _acknowledge_invocation_path(stack: ByomGatewayStack, runner: iam.IRole) -> None:
    """The grants of a function that calls models through the data plane's invocation path."""
    tenant_secrets = (
        f"Resource::{_ARN}:secretsmanager:{_REGION_ACCOUNT}:secret:{stack.functions.secret_prefix}*"
    )
    acknowledge(
        runner,
        "IAM5",
        TENANT_SECRETS_REASON.format(prefix=stack.functions.secret_prefix),
        finding=tenant_secrets,
    )
    bucket_id = stack.resolve(stack.data.data_bucket.bucket_arn)["Fn::GetAtt"][0]
    for pattern in ("tenants/*/content/*", "tenants/*/subjects/*"):
        acknowledge(runner, "IAM5", CONTENT_LOG_REASON, finding=f"Resource::<{bucket_id}.Arn>/{pattern}")
    acknowledge(
        runner,
        "IAM5",
        BEDROCK_REASON.format(what="foundation model, in any region (cross-region inference profiles)"),
        finding=f"Resource::{_ARN}:bedrock:*::foundation-model/*",
    )
    for resource in (
        "inference-profile",
        "application-inference-profile",
        "provisioned-model",
        "custom-model-deployment",
    ):
        acknowledge(
            runner,
            "IAM5",
            BEDROCK_REASON.format(what=f"{resource} of this account and region"),
            finding=f"Resource::{_ARN}:bedrock:{_REGION_ACCOUNT}:{resource}/*",
        )
    arns = guardrail_arns(stack)
    patterns = (
        {f"{_ARN}:bedrock:{_REGION_ACCOUNT}:guardrail/*": "the guardrails of this account and region"}
        if arns == DEFAULT_GUARDRAIL_ARNS
        else {arn: f"the guardrails matching {arn} (byom:guardrailArns)" for arn in arns if "*" in arn}
    )
    for pattern, what in patterns.items():
        acknowledge(
            runner,
            "IAM5",
            GUARDRAILS_REASON.format(actions="ApplyGuardrail", what=what),
            finding=f"Resource::{pattern}",
        )


def _acknowledge_evals(stack: ByomGatewayStack) -> None:
    evals = stack.evals
    acknowledge(
        evals.dead_letters,
        "SQS3",
        "This queue is the evals scorer's dead-letter queue (its on-failure destination for events it "
        "could not grade); a dead-letter queue of its own would only move the same messages again.",
    )
    bucket_id = stack.resolve(stack.data.data_bucket.bucket_arn)["Fn::GetAtt"][0]
    for fn in (evals.api_function, evals.scorer):
        role = _role(fn.role)
        acknowledge(role, "IAM5", XRAY_REASON, finding="Resource::*")
        acknowledge(
            role,
            "IAM5",
            FINE_TUNING_OBJECTS_REASON.format(
                pattern="tenants/*/evals/*: eval runs' items and graded output"
            ),
            finding=f"Resource::<{bucket_id}.Arn>/tenants/*/evals/*",
        )
    acknowledge(
        _role(evals.api_function.role),
        "IAM5",
        FINE_TUNING_OBJECTS_REASON.format(pattern="tenants/*/files/*: the test sets tenants upload"),
        finding=f"Resource::<{bucket_id}.Arn>/tenants/*/files/*",
    )
    # A run's batches: the API submits them (submit_lines), the scorer reads their lines.
    for fn in (evals.api_function, evals.scorer):
        acknowledge(
            _role(fn.role),
            "IAM5",
            BATCH_OBJECTS_REASON.format(pattern="tenants/*/batches/*: an eval run's batches"),
            finding=f"Resource::<{bucket_id}.Arn>/tenants/*/batches/*",
        )
    # Grader calls take the gateway's own invocation path, so the scorer holds the gateway's grants.
    _acknowledge_invocation_path(stack, _role(evals.scorer.role))


BATCH_OBJECTS_REASON = (
    "A batch's input, results and output files are objects created at runtime under "
    "tenants/{{tenant_id}}/batches/{{batch_id}}/ (and the output files under tenants/{{tenant_id}}/files/), "
    "so their keys are unknown at deploy time; the pattern confines the role to {pattern}, and objects are "
    "encrypted with the stack's key."
)
BATCH_JOBS_REASON = (
    "Bedrock batch inference jobs are created at runtime, one per batch and named after it, so their ARNs "
    "are unknown at deploy time; tenants choose the model at runtime (any foundation model or inference "
    "profile). The grant is limited to the batch actions each step needs ({what})."
)


def _acknowledge_batches(stack: ByomGatewayStack) -> None:
    """The batch functions that run lines hold the invocation path's grants, as the automation runner."""
    batches = stack.batches
    bucket_id = stack.resolve(stack.data.data_bucket.bucket_arn)["Fn::GetAtt"][0]
    tenant_secrets = (
        f"Resource::{_ARN}:secretsmanager:{_REGION_ACCOUNT}:secret:{stack.functions.secret_prefix}*"
    )
    bedrock = f"Resource::{_ARN}:bedrock:{_REGION_ACCOUNT}"
    for fn in (*batches.tasks.all(), batches.api_function):
        role = _role(fn.role)
        acknowledge(role, "IAM5", XRAY_REASON, finding="Resource::*")
        acknowledge(
            role,
            "IAM5",
            TENANT_SECRETS_REASON.format(prefix=stack.functions.secret_prefix),
            finding=tenant_secrets,
        )
        for pattern in ("tenants/*/batches/*", "tenants/*/files/*"):
            acknowledge(
                role,
                "IAM5",
                BATCH_OBJECTS_REASON.format(pattern=pattern),
                finding=f"Resource::<{bucket_id}.Arn>/{pattern}",
            )
        for resource in ("model-invocation-job", "inference-profile"):
            acknowledge(
                role,
                "IAM5",
                BATCH_JOBS_REASON.format(what=f"{resource}/*"),
                finding=f"{bedrock}:{resource}/*",
            )
        acknowledge(
            role,
            "IAM5",
            BATCH_JOBS_REASON.format(what="foundation models in any region"),
            finding=f"Resource::{_ARN}:bedrock:*::foundation-model/*",
        )
    acknowledge(
        _role(batches.api_function.role),
        "IAM5",
        "Lists a tenant's batches on the batches table's by_tenant index only.",
        finding=f"Resource::<{stack.resolve(batches.table.table_arn)['Fn::GetAtt'][0]}.Arn>/index/by_tenant",
    )
    # The chunk runner calls models through the gateway's own invocation path, so it holds its grants.
    _acknowledge_invocation_path(stack, _role(batches.tasks.run_chunk.role))
    acknowledge(
        batches.service_role,
        "IAM5",
        BATCH_OBJECTS_REASON.format(pattern="tenants/*/batches/*"),
        finding=f"Resource::<{bucket_id}.Arn>/tenants/*/batches/*",
    )
    machine_role = batches.state_machine.role
    acknowledge(machine_role, "IAM5", STATE_MACHINE_LOGS_REASON, finding="Resource::*")
    for fn in batches.tasks.all():
        if fn is batches.tasks.job_state_changed:
            continue
        fn_id = stack.resolve(fn.function_arn)["Fn::GetAtt"][0]
        acknowledge(machine_role, "IAM5", STATE_MACHINE_INVOKE_REASON, finding=f"Resource::<{fn_id}.Arn>:*")
    for method in stack.api.batches_methods:
        acknowledge(method, "COG4", API_KEY_AUTH_REASON)
