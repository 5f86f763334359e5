"""checkov: every check skipped on the synthesized template, resource by resource, with its reason.

`make check` runs checkov on the template (docs/decisions.md). checkov reads a resource's skips from
its template Metadata (`checkov: {skip: [{id, comment}]}`); they are written here, next to the
resources they cover, like the cdk-nag acknowledgements of infra/nag.py, so that a new resource
that fails a check fails `make check` until it is fixed or skipped here with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aws_cdk import CfnResource
from constructs import IConstruct

from infra.nag import PUBLIC_HEALTH_REASON

if TYPE_CHECKING:
    from infra.stack import ByomGatewayStack

METADATA_KEY = "checkov"

NO_VPC_REASON = (
    "The functions reach only AWS service endpoints (DynamoDB, S3, KMS, Secrets Manager, Bedrock) and "
    "the tenants' own model providers on the internet; there is no private resource to reach. A VPC "
    "would add NAT gateways or interface endpoints (a fixed cost per AZ) and no control IAM does not "
    "already give: every call is authorized by the function's least-privilege role."
)
NO_RESERVED_CONCURRENCY_REASON = (
    "Load is bounded before it reaches Lambda: API Gateway stage throttling (byom:throttleRateLimit / "
    "byom:throttleBurstLimit) and per-key usage plans. Reserved concurrency would carve capacity out of "
    "the account's pool on every deploy, and fails the deploy in accounts whose concurrency quota is "
    "still the default for new accounts."
)
SYNCHRONOUS_DLQ_REASON = (
    "A dead-letter queue receives failed asynchronous invocations only. This function is invoked "
    "synchronously ({caller}), so a failure goes back to its caller, which answers or retries it; a "
    "queue would never receive a message."
)
TRAINING_EVENTS_DLQ_REASON = (
    "Bedrock job state-change events reach this function asynchronously from EventBridge (4 retries). "
    "An event that is still lost only delays the job: the state machine polls the job's status "
    "(fine_tuning.training_poll_seconds) whenever no event arrives, so no job is left waiting."
)
BATCH_EVENTS_DLQ_REASON = (
    "Bedrock batch job state-change events reach this function asynchronously from EventBridge (4 "
    "retries). An event that is still lost only delays the batch: the state machine looks at the job "
    "itself every poll interval (batches.POLL_SECONDS) when no event wakes it."
)
QUEUE_RUNNER_DLQ_REASON = (
    "The automation runner is invoked by an SQS event source mapping, which waits for its answer: a "
    "failed record goes back to the queue and, after its maxReceiveCount, to the queue's own "
    "dead-letter queue (with its depth alarm). A function dead-letter queue would never receive one."
)
RECONCILER_DLQ_REASON = (
    "The meter reconciler is invoked by an SQS event source mapping, which waits for its answer: a "
    "message it could not settle goes back to the meter backlog and, after its maxReceiveCount, to the "
    "backlog's own dead-letter queue (with its depth alarm). A function dead-letter queue would never "
    "receive one."
)
SCORER_DLQ_REASON = (
    "EventBridge invokes the evals scorer asynchronously; an event it fails on after Lambda's retries goes "
    "to the scorer's dead-letter queue through an on-failure destination (with its depth alarm), which "
    "carries the invocation's error as well. A DeadLetterConfig queue would be a second place for it."
)
SQS_MANAGED_ENCRYPTION_REASON = (
    "The queue is encrypted at rest, with SQS-managed keys (SqsManagedSseEnabled); checkov counts only a "
    "KMS key. With the stack's key, EventBridge and EventBridge Scheduler would need kms:GenerateDataKey "
    "on it through its key policy for every rule and schedule tenants create, widening who may use the "
    "key that seals tenant data (docs/decisions.md, automations)."
)
NO_STAGE_CACHE_REASON = (
    "Every answer is for one authenticated tenant and call (chat completions, embeddings, admin data); "
    "an API Gateway cache keyed on the request would serve one caller's answer to another and skip "
    "metering. The gateway's opt-in response cache is keyed by tenant and alias instead (SPEC §4.5)."
)
DATA_BUCKET_ACCESS_LOG_REASON = (
    "The bucket is reached only through the fine-tuning API and the pipeline's roles, which log every "
    "upload (API access logs) and every read (the state machine's execution log); server access logs "
    "would need a second bucket that cannot use the stack's KMS key. Enable CloudTrail S3 data events "
    "for object-level audit where required (the same finding is acknowledged for cdk-nag S1)."
)


def skip_findings(stack: ByomGatewayStack) -> None:
    """Write every skip of the stack into its resources' Metadata."""
    functions = stack.functions
    tasks = stack.fine_tuning.tasks
    api_functions = [
        functions.authorizer,
        functions.admin,
        functions.gateway,
        stack.fine_tuning.api_function,
        stack.evals.api_function,
    ]
    automations = stack.automations
    automation_tasks = list(automations.task_functions.values())
    batches = stack.batches
    every_function = [
        *api_functions,
        *tasks.all(),
        automations.runner,
        *automation_tasks,
        stack.evals.scorer,
        batches.api_function,
        *batches.tasks.all(),
        stack.metering.reconciler,
    ]

    for fn in every_function:
        skip(fn, "CKV_AWS_117", NO_VPC_REASON)
        skip(fn, "CKV_AWS_115", NO_RESERVED_CONCURRENCY_REASON)
    for fn in api_functions:
        skip(fn, "CKV_AWS_116", SYNCHRONOUS_DLQ_REASON.format(caller="by API Gateway"))
    for fn in tasks.all():
        if fn is tasks.training_events:
            skip(fn, "CKV_AWS_116", TRAINING_EVENTS_DLQ_REASON)
        else:
            skip(fn, "CKV_AWS_116", SYNCHRONOUS_DLQ_REASON.format(caller="by a Step Functions task"))

    skip(automations.runner, "CKV_AWS_116", QUEUE_RUNNER_DLQ_REASON)
    skip(stack.metering.reconciler, "CKV_AWS_116", RECONCILER_DLQ_REASON)
    for queue in (automations.queue, automations.dead_letters):
        skip(queue, "CKV_AWS_27", SQS_MANAGED_ENCRYPTION_REASON)
    for fn in automation_tasks:
        skip(fn, "CKV_AWS_116", SYNCHRONOUS_DLQ_REASON.format(caller="by a Step Functions task"))

    skip(stack.evals.scorer, "CKV_AWS_116", SCORER_DLQ_REASON)
    skip(stack.evals.dead_letters, "CKV_AWS_27", SQS_MANAGED_ENCRYPTION_REASON)
    skip(batches.api_function, "CKV_AWS_116", SYNCHRONOUS_DLQ_REASON.format(caller="by API Gateway"))
    for fn in batches.tasks.all():
        if fn is batches.tasks.job_state_changed:
            skip(fn, "CKV_AWS_116", BATCH_EVENTS_DLQ_REASON)
        else:
            skip(fn, "CKV_AWS_116", SYNCHRONOUS_DLQ_REASON.format(caller="by a Step Functions task"))

    skip(stack.api.rest_api.deployment_stage, "CKV_AWS_120", NO_STAGE_CACHE_REASON)
    skip(stack.api.health_method, "CKV_AWS_59", PUBLIC_HEALTH_REASON.format())
    skip(stack.data.data_bucket, "CKV_AWS_18", DATA_BUCKET_ACCESS_LOG_REASON)


def skip(construct: IConstruct, check_id: str, reason: str) -> None:
    resource = _cfn_resource(construct)
    existing: Any = resource.get_metadata(METADATA_KEY) or {}
    skips: list[dict[str, str]] = list(existing.get("skip", []))
    skips.append({"id": check_id, "comment": reason})
    resource.add_metadata(METADATA_KEY, {"skip": skips})


def skipped(template_resources: dict[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(logical id, check id, reason) of every skip in a synthesized template's resources."""
    for logical_id, resource in template_resources.items():
        for entry in resource.get("Metadata", {}).get(METADATA_KEY, {}).get("skip", []):
            yield logical_id, entry["id"], entry["comment"]


def _cfn_resource(construct: IConstruct) -> CfnResource:
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to carry a checkov skip")
    return resource
