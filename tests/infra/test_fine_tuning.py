"""The fine-tuning state machine, its functions and roles, as synthesized."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from local_stack.iam_policy import Decision, Request, evaluate
from local_stack.template import Physical, Resolver, load_template
from tests.infra.stack_template import as_list, environment, function_id, props, resources, role_statements

TASKS = (
    "Validate",
    "StartTraining",
    "AwaitTraining",
    "CheckTraining",
    "StartOpenAITraining",
    "CheckOpenAITraining",
    "Deploy",
    "CheckDeployment",
    "Evaluate",
    "RequestApproval",
    "Register",
)


def _fine_tuning_machine(template: Template) -> dict[str, Any]:
    (machine,) = [
        m
        for m in resources(template, "AWS::StepFunctions::StateMachine").values()
        if props(m)["StateMachineName"].endswith("-fine-tuning")
    ]
    return machine


def _definition(template: Template) -> dict[str, Any]:
    machine = _fine_tuning_machine(template)
    parts = props(machine)["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "arn:aws:lambda:::function:X" for p in parts)
    definition: dict[str, Any] = json.loads(text)
    return definition


def _machine(template: Template) -> dict[str, Any]:
    return props(_fine_tuning_machine(template))


def test_the_state_machine_is_a_standard_workflow_logging_all_with_tracing(template: Template) -> None:
    machine = _machine(template)
    assert machine["StateMachineType"] == "STANDARD"
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["TracingConfiguration"] == {"Enabled": True}


def test_every_task_retries_throttling_with_backoff_and_jitter(template: Template) -> None:
    states = _definition(template)["States"]
    for name in (*TASKS, "RecordFailure"):
        throttling = [r for r in states[name]["Retry"] if "ProviderThrottled" in r["ErrorEquals"]]
        assert throttling, name
        assert throttling[0]["BackoffRate"] == 2 and throttling[0]["JitterStrategy"] == "FULL", name
        assert throttling[0]["MaxAttempts"] >= 3, name


def test_every_task_catches_everything_into_the_failure_path(template: Template) -> None:
    states = _definition(template)["States"]
    for name in TASKS:
        catchers = states[name]["Catch"]
        assert catchers[-1] == {
            "ErrorEquals": ["States.ALL"],
            "ResultPath": "$.error",
            "Next": "RecordFailure",
        }, name
    assert states["RecordFailure"]["Next"] == "JobFailed"
    assert states["JobFailed"]["Type"] == "Fail"


def test_training_waits_for_an_event_and_polls_when_none_comes(template: Template) -> None:
    states = _definition(template)["States"]
    wait = states["AwaitTraining"]
    assert wait["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert wait["TimeoutSecondsPath"] == "$.settings.training_poll_seconds"
    assert wait["Catch"][0] == {
        "ErrorEquals": ["States.Timeout"],
        "ResultPath": "$.poll",
        "Next": "CheckTraining",
    }
    choice = states["TrainingDone?"]
    assert choice["Default"] == "AwaitTraining"


def test_the_approval_gate_waits_for_a_token_with_a_configurable_timeout(template: Template) -> None:
    gate = _definition(template)["States"]["RequestApproval"]
    assert gate["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert gate["TimeoutSecondsPath"] == "$.settings.approval_timeout_seconds"
    assert gate["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"


def test_success_is_announced_on_eventbridge(template: Template) -> None:
    states = _definition(template)["States"]
    assert states["Register"]["Next"] == "NotifySucceeded"
    notify = states["NotifySucceeded"]
    assert notify["Resource"].endswith(":states:::events:putEvents")
    assert notify["Parameters"]["Entries"][0]["DetailType"] == "FineTuningJobSucceeded"


def test_bedrock_job_state_changes_reach_the_training_events_function(template: Template) -> None:
    (rule,) = [
        r
        for r in resources(template, "AWS::Events::Rule").values()
        if props(r)["EventPattern"].get("source") == ["aws.bedrock"]
        and "Model Customization" in json.dumps(props(r)["EventPattern"])
    ]
    assert props(rule)["EventPattern"] == {
        "source": ["aws.bedrock"],
        "detail-type": ["Model Customization Job State Change"],
    }


def test_the_bedrock_service_role_reads_prepared_data_only_and_only_for_this_account(
    template: Template,
) -> None:
    roles = resources(template, "AWS::IAM::Role")
    (role_id,) = [
        i
        for i, r in roles.items()
        if any(
            s["Principal"].get("Service") == "bedrock.amazonaws.com"
            for s in props(r)["AssumeRolePolicyDocument"]["Statement"]
        )
        and "customization" in props(r).get("Description", "")
    ]
    trust = props(roles[role_id])["AssumeRolePolicyDocument"]["Statement"][0]
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    statements = [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in props(p)["Roles"]
        for s in props(p)["PolicyDocument"]["Statement"]
    ]
    reads = [s for s in statements if s["Action"] == "s3:GetObject"]
    assert len(reads) == 1 and "/tenants/*/fine-tuning/*/data/*" in json.dumps(reads[0]["Resource"])


def test_only_the_start_task_may_pass_the_bedrock_role_and_only_to_bedrock(template: Template) -> None:
    statements = role_statements(template, "ft_start_training")
    (pass_role,) = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}
    for other in ("ft_validate", "ft_evaluate", "ft_register", "fine_tuning"):
        assert not [s for s in role_statements(template, other) if "iam:PassRole" in as_list(s["Action"])], (
            other
        )


def test_the_api_function_may_start_and_stop_only_its_own_executions(template: Template) -> None:
    statements = role_statements(template, "fine_tuning")
    states = {
        a: json.dumps(s["Resource"])
        for s in statements
        for a in as_list(s["Action"])
        if a.startswith("states:")
    }
    assert set(states) == {
        "states:StartExecution",
        "states:StopExecution",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
    }
    assert all("byom-ByomGateway-fine-tuning" in resource for resource in states.values())


def test_the_data_bucket_is_kms_encrypted_private_and_tls_only(template: Template) -> None:
    (bucket,) = resources(template, "AWS::S3::Bucket").values()
    rule = props(bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert props(bucket)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    (policy,) = resources(template, "AWS::S3::BucketPolicy").values()
    denies = [s for s in props(policy)["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)


def test_validation_branches_on_the_provider_bedrock_by_default(template: Template) -> None:
    states = _definition(template)["States"]
    assert states["Validate"]["Next"] == "Provider?"
    choice = states["Provider?"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {
            "Variable": "$.steps.Validate.output.provider",
            "StringEquals": "openai",
            "Next": "StartOpenAITraining",
        }
    ]
    assert choice["Default"] == "StartTraining"


def test_an_openai_job_is_polled_with_a_wait_state_between_looks(template: Template) -> None:
    states = _definition(template)["States"]
    assert states["StartOpenAITraining"]["Next"] == "WaitForOpenAITraining"
    wait = states["WaitForOpenAITraining"]
    assert wait["Type"] == "Wait" and wait["SecondsPath"] == "$.settings.openai_poll_seconds"
    assert wait["Next"] == "CheckOpenAITraining"
    assert states["CheckOpenAITraining"]["Next"] == "OpenAITrainingDone?"
    done = states["OpenAITrainingDone?"]
    assert done["Choices"] == [
        {"Variable": "$.steps.CheckOpenAITraining.output.done", "BooleanEquals": True, "Next": "Evaluate"}
    ]
    # Not done: back to the wait, never straight back to the check (no busy loop).
    assert done["Default"] == "WaitForOpenAITraining"


def test_the_api_passes_the_openai_poll_interval_to_every_execution(template: Template) -> None:
    assert environment(template, "fine_tuning")["OPENAI_POLL_SECONDS"] == "60"


OPENAI_CALLERS = (
    "ft_start_openai_training",
    "ft_check_openai_training",
    "ft_evaluate",
    "ft_record_failure",
    "fine_tuning",
)


def test_only_the_functions_that_call_openai_read_tenant_secrets_and_only_under_the_prefix(
    template: Template,
) -> None:
    for name in OPENAI_CALLERS:
        statements = role_statements(template, name)
        (secrets,) = [s for s in statements if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
        assert as_list(secrets["Action"]) == ["secretsmanager:GetSecretValue"], name
        assert json.dumps(secrets["Resource"]).endswith(':secret:byom/ByomGateway/tenants/*"]]}'), name
        (decrypt,) = [s for s in statements if s.get("Sid") == "DecryptTenantCredentials"]
        assert decrypt["Action"] == "kms:Decrypt", name
        assert "secretsmanager." in json.dumps(decrypt["Condition"]["StringEquals"]["kms:ViaService"]), name
        assert environment(template, name)["ALLOW_LOOPBACK_HTTP"] == "false", name
    for name in ("ft_validate", "ft_start_training", "ft_check_training", "ft_deploy", "ft_register"):
        statements = role_statements(template, name)
        assert not [s for s in statements if "secretsmanager" in json.dumps(s["Action"])], name
        assert "CREDENTIALS_TABLE" not in environment(template, name), name


BUCKET = "arn:aws:s3:::data-bucket"
TABLES = "arn:aws:dynamodb:us-east-1:123456789012:table"


@pytest.fixture(scope="module")
def api_policies(template: Template, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The API function's role policies, resolved with fixed ARNs for the bucket and the tables
    (each table named by its logical id), for the local IAM policy evaluator."""
    path = tmp_path_factory.mktemp("fine-tuning") / "ByomGateway.template.json"
    path.write_text(json.dumps(template.to_json()))
    resolver = Resolver(load_template(path, stack_name="ByomGateway"))
    (bucket_id,) = resources(template, "AWS::S3::Bucket")
    resolver.register(bucket_id, Physical(ref="data-bucket", attributes={"Arn": BUCKET}))
    for table_id in resources(template, "AWS::DynamoDB::Table"):
        arn = f"{TABLES}/{table_id}"
        resolver.register(
            table_id, Physical(ref=table_id, attributes={"Arn": arn, "StreamArn": f"{arn}/stream"})
        )
    fn = resources(template, "AWS::Lambda::Function")[function_id(template, "fine_tuning")]
    role_id = props(fn)["Role"]["Fn::GetAtt"][0]
    return [
        resolver.resolve(props(policy)["PolicyDocument"])
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in props(policy)["Roles"]
    ]


def _table(template: Template, env_var: str) -> str:
    return f"{TABLES}/{environment(template, 'fine_tuning')[env_var]['Ref']}"


@pytest.mark.parametrize("action", ["s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion"])
def test_the_api_function_reads_and_deletes_uploaded_files_and_no_other_objects(
    api_policies: list[dict[str, Any]], action: str
) -> None:
    upload = evaluate(api_policies, Request(action, f"{BUCKET}/tenants/tnt_a/files/file-1.jsonl"))
    job_data = evaluate(api_policies, Request(action, f"{BUCKET}/tenants/tnt_a/fine-tuning/ftjob-1/data/x"))
    content = evaluate(api_policies, Request(action, f"{BUCKET}/tenants/tnt_a/content/req-1.json"))

    assert (upload, job_data, content) == (Decision.ALLOW, Decision.IMPLICIT_DENY, Decision.IMPLICIT_DENY)


def test_the_api_function_lists_versions_of_uploaded_files_only(api_policies: list[dict[str, Any]]) -> None:
    def versions(prefix: str | None) -> Decision:
        context = {} if prefix is None else {"s3:prefix": prefix}
        return evaluate(api_policies, Request("s3:ListBucketVersions", BUCKET, context))

    assert (
        versions("tenants/tnt_a/files/file-1.jsonl"),
        versions("tenants/"),
        versions("tenants/tnt_a/content/"),
        versions(None),
    ) == (Decision.ALLOW, Decision.IMPLICIT_DENY, Decision.IMPLICIT_DENY, Decision.IMPLICIT_DENY)


def test_the_api_function_deletes_file_records_but_no_job(template: Template, api_policies: list) -> None:
    def delete(env_var: str) -> Decision:
        return evaluate(api_policies, Request("dynamodb:DeleteItem", _table(template, env_var)))

    assert (delete("FILES_TABLE"), delete("JOBS_TABLE")) == (Decision.ALLOW, Decision.IMPLICIT_DENY)
