"""Creating the template's AWS resources in the embedded AWS emulation (moto).

One small function per resource type, registered in CREATORS; adding a type is one entry.
Types without an entry are skipped: Lambda functions run in-process, API Gateway is emulated by
local_stack.apigateway (its usage plans and API keys are created here, in moto, where the
emulation reads them), IAM is not enforced locally (except for tenant-scoped sessions, which
local_stack.iam_emulation judges by the template's role policies).
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from local_stack.apigateway import api_id_of
from local_stack.template import ACCOUNT_ID, PARTITION, REGION, Physical, Resolver, Template, dependency_order

log = logging.getLogger(__name__)

ADMIN_KEY_ENV = "ADMIN_KEY_SECRET_ARN"


class ResourceCreationError(Exception):
    """A resource of the template could not be created in the emulation."""


@dataclass
class CreationContext:
    """What every creator needs: clients on the emulation, the resolver and local settings."""

    endpoint_url: str
    resolver: Resolver
    admin_key: str
    admin_secret_ids: set[str] = field(default_factory=set)
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self._clients[service]

    @property
    def stack_name(self) -> str:
        return self.resolver.template.stack_name


Creator = Callable[[CreationContext, str, dict[str, Any]], Physical]


def _tags(props: dict[str, Any]) -> list[dict[str, str]]:
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in props.get("Tags", [])]


def _pick(source: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: source[k] for k in keys if k in source}


# -- KMS --------------------------------------------------------------------------------------


def create_kms_key(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    kms = ctx.client("kms")
    # The key policy is not applied: moto does not evaluate it and it names roles that only
    # exist in the cloud.
    kwargs = _pick(props, "Description", "KeyUsage", "KeySpec", "MultiRegion")
    if props.get("Tags"):
        kwargs["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tags(props)]
    metadata = kms.create_key(**kwargs)["KeyMetadata"]
    key_id = metadata["KeyId"]
    if props.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=key_id)
    if props.get("Enabled") is False:
        kms.disable_key(KeyId=key_id)
    return Physical(ref=key_id, attributes={"Arn": metadata["Arn"], "KeyId": key_id})


def create_kms_alias(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    ctx.client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
    return Physical(ref=props["AliasName"])


# -- DynamoDB ---------------------------------------------------------------------------------


def _index(index: dict[str, Any], billing_mode: str) -> dict[str, Any]:
    result = _pick(index, "IndexName", "KeySchema", "Projection")
    if billing_mode == "PROVISIONED":
        result["ProvisionedThroughput"] = index.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    return result


def _create_dynamodb_table(
    ctx: CreationContext,
    logical_id: str,
    props: dict[str, Any],
    *,
    sse: dict[str, Any] | None,
    pitr: dict[str, Any] | None,
) -> Physical:
    dynamodb = ctx.client("dynamodb")
    name = props.get("TableName") or logical_id
    billing_mode = props.get("BillingMode", "PROVISIONED")
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing_mode,
    }
    if billing_mode == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = [_index(i, billing_mode) for i in props["GlobalSecondaryIndexes"]]
    if props.get("LocalSecondaryIndexes"):
        kwargs["LocalSecondaryIndexes"] = [
            _pick(i, "IndexName", "KeySchema", "Projection") for i in props["LocalSecondaryIndexes"]
        ]
    stream = props.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    if sse and sse.get("SSEEnabled"):
        # CloudFormation says SSEEnabled where the DynamoDB API says Enabled.
        kwargs["SSESpecification"] = {"Enabled": True, **_pick(sse, "SSEType", "KMSMasterKeyId")}
    if props.get("TableClass"):
        kwargs["TableClass"] = props["TableClass"]
    if props.get("DeletionProtectionEnabled") is not None:
        kwargs["DeletionProtectionEnabled"] = props["DeletionProtectionEnabled"]
    if props.get("Tags"):
        kwargs["Tags"] = _tags(props)
    table = dynamodb.create_table(**kwargs)["TableDescription"]

    if pitr and pitr.get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    attributes = {"Arn": table["TableArn"]}
    if table.get("LatestStreamArn"):
        attributes["StreamArn"] = table["LatestStreamArn"]
    return Physical(ref=name, attributes=attributes)


def create_dynamodb_table(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    return _create_dynamodb_table(
        ctx,
        logical_id,
        props,
        sse=props.get("SSESpecification"),
        pitr=props.get("PointInTimeRecoverySpecification"),
    )


def create_dynamodb_global_table(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    """CDK's TableV2: table-level settings plus the replica in this region."""
    replicas = props.get("Replicas", [])
    replica = next(
        (r for r in replicas if r.get("Region") in (REGION, None)), replicas[0] if replicas else {}
    )
    sse = dict(props.get("SSESpecification", {}))
    if replica.get("SSESpecification", {}).get("KMSMasterKeyId"):
        sse["KMSMasterKeyId"] = replica["SSESpecification"]["KMSMasterKeyId"]
    table_props = dict(props)
    if replica.get("Tags"):
        table_props["Tags"] = replica["Tags"]
    if replica.get("DeletionProtectionEnabled") is not None:
        table_props["DeletionProtectionEnabled"] = replica["DeletionProtectionEnabled"]
    return _create_dynamodb_table(
        ctx, logical_id, table_props, sse=sse, pitr=replica.get("PointInTimeRecoverySpecification")
    )


# -- Secrets Manager --------------------------------------------------------------------------


def _generate_secret_string(spec: dict[str, Any]) -> str:
    alphabet = ""
    if not spec.get("ExcludeLowercase"):
        alphabet += string.ascii_lowercase
    if not spec.get("ExcludeUppercase"):
        alphabet += string.ascii_uppercase
    if not spec.get("ExcludeNumbers"):
        alphabet += string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    if spec.get("IncludeSpace"):
        alphabet += " "
    excluded = set(spec.get("ExcludeCharacters", ""))
    alphabet = "".join(c for c in alphabet if c not in excluded) or string.ascii_letters
    password = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "SecretStringTemplate" in spec and "GenerateStringKey" in spec:
        document = json.loads(spec["SecretStringTemplate"])
        document[spec["GenerateStringKey"]] = password
        return json.dumps(document)
    return password


def create_secret(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    if logical_id in ctx.admin_secret_ids:
        value = ctx.admin_key
    elif "SecretString" in props:
        value = props["SecretString"]
    else:
        value = _generate_secret_string(props.get("GenerateSecretString", {}))
    kwargs: dict[str, Any] = {"Name": props.get("Name") or logical_id, "SecretString": value}
    kwargs.update(_pick(props, "Description", "KmsKeyId"))
    if props.get("Tags"):
        kwargs["Tags"] = _tags(props)
    arn = ctx.client("secretsmanager").create_secret(**kwargs)["ARN"]
    return Physical(ref=arn, attributes={"Id": arn})


# -- S3, SNS, SQS, EventBridge, SSM -----------------------------------------------------------


def create_s3_bucket(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    s3 = ctx.client("s3")
    name = props.get("BucketName") or f"{ctx.stack_name}-{logical_id}".lower()[:63]
    s3.create_bucket(Bucket=name)
    encryption = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration")
    if encryption:
        # CloudFormation's ServerSideEncryptionByDefault is the API's ApplyServerSideEncryptionByDefault.
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule.get("ServerSideEncryptionByDefault", {}),
                **_pick(rule, "BucketKeyEnabled"),
            }
            for rule in encryption
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if props.get("VersioningConfiguration"):
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
        )
    if props.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
    if props.get("Tags"):
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(props)})
    return Physical(
        ref=name,
        attributes={
            "Arn": f"arn:{PARTITION}:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com",
            "DualStackDomainName": f"{name}.s3.dualstack.{REGION}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{REGION}.amazonaws.com",
        },
    )


def create_sns_topic(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    attributes = {}
    if props.get("KmsMasterKeyId"):
        attributes["KmsMasterKeyId"] = props["KmsMasterKeyId"]
    if props.get("FifoTopic"):
        attributes["FifoTopic"] = "true"
    name = props.get("TopicName") or f"{ctx.stack_name}-{logical_id}"
    arn = ctx.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
    return Physical(ref=arn, attributes={"TopicArn": arn, "TopicName": name})


def create_sqs_queue(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    sqs = ctx.client("sqs")
    name = props.get("QueueName") or f"{ctx.stack_name}-{logical_id}" + (
        ".fifo" if props.get("FifoQueue") else ""
    )
    attribute_names = (
        "KmsMasterKeyId",
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "ReceiveMessageWaitTimeSeconds",
    )
    attributes = {k: str(props[k]) for k in attribute_names if k in props}
    if props.get("FifoQueue"):
        attributes["FifoQueue"] = "true"
    if props.get("RedrivePolicy"):
        attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT_ID}:{name}"
    return Physical(ref=url, attributes={"Arn": arn, "QueueName": name, "QueueUrl": url})


def create_event_bus(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    name = props["Name"]
    arn = ctx.client("events").create_event_bus(Name=name)["EventBusArn"]
    return Physical(ref=name, attributes={"Arn": arn, "Name": name})


def create_event_archive(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    """moto archives the bus's matching events, and replays them, as EventBridge does."""
    name = props.get("ArchiveName") or f"{ctx.stack_name}-{logical_id}"
    kwargs: dict[str, Any] = {"ArchiveName": name, "EventSourceArn": props["SourceArn"]}
    if props.get("EventPattern"):
        pattern = props["EventPattern"]
        kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    if props.get("RetentionDays") is not None:
        kwargs["RetentionDays"] = int(props["RetentionDays"])
    arn = ctx.client("events").create_archive(**kwargs)["ArchiveArn"]
    return Physical(ref=name, attributes={"Arn": arn, "ArchiveName": name})


def create_ssm_parameter(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    name = props.get("Name") or f"/{ctx.stack_name}/{logical_id}"
    ctx.client("ssm").put_parameter(Name=name, Value=str(props["Value"]), Type=props.get("Type", "String"))
    return Physical(ref=name, attributes={"Type": props.get("Type", "String"), "Value": props["Value"]})


def create_state_machine(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    """Created in moto's ASL interpreter (the local stack turns execution on before creating it)."""
    name = props.get("StateMachineName") or f"{ctx.stack_name}-{logical_id}"
    definition = props.get("DefinitionString") or json.dumps(props.get("Definition", {}))
    kwargs: dict[str, Any] = {
        "name": name,
        "definition": definition if isinstance(definition, str) else json.dumps(definition),
        # IAM is not enforced locally; the role only has to look like one.
        "roleArn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/{logical_id}Role",
        "type": props.get("StateMachineType", "STANDARD"),
    }
    if props.get("TracingConfiguration"):
        # CloudFormation says Enabled where the Step Functions API says enabled.
        kwargs["tracingConfiguration"] = {"enabled": bool(props["TracingConfiguration"].get("Enabled"))}
    arn = ctx.client("stepfunctions").create_state_machine(**kwargs)["stateMachineArn"]
    return Physical(ref=arn, attributes={"Arn": arn, "Name": name})


# -- API Gateway usage plans -----------------------------------------------------------------


def register_rest_api(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    """Not created in moto (local_stack.apigateway serves it): its Ref is the id the emulation
    gives it, so usage plans bound to "the API's stage" name the API that is served."""
    return Physical(ref=api_id_of(logical_id))


def register_stage(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    return Physical(ref=props["StageName"])


def create_api_key(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    kwargs: dict[str, Any] = {"name": props.get("Name") or logical_id, "enabled": bool(props.get("Enabled"))}
    kwargs |= {k.lower(): props[k] for k in ("Description", "Value") if k in props}
    key_id = ctx.client("apigateway").create_api_key(**kwargs)["id"]
    return Physical(ref=key_id, attributes={"APIKeyId": key_id})


def create_usage_plan(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    kwargs: dict[str, Any] = {"name": props.get("UsagePlanName") or logical_id}
    if props.get("Description"):
        kwargs["description"] = props["Description"]
    kwargs["apiStages"] = [{"apiId": s["ApiId"], "stage": s["Stage"]} for s in props.get("ApiStages", [])]
    throttle = props.get("Throttle") or {}
    if throttle:
        kwargs["throttle"] = {
            "rateLimit": float(throttle["RateLimit"]),
            "burstLimit": int(throttle["BurstLimit"]),
        }
    plan_id = ctx.client("apigateway").create_usage_plan(**kwargs)["id"]
    return Physical(ref=plan_id, attributes={"Id": plan_id})


def create_usage_plan_key(ctx: CreationContext, logical_id: str, props: dict[str, Any]) -> Physical:
    ctx.client("apigateway").create_usage_plan_key(
        usagePlanId=props["UsagePlanId"], keyId=props["KeyId"], keyType=props.get("KeyType", "API_KEY")
    )
    return Physical(ref=f"{props['UsagePlanId']}:{props['KeyId']}")


CREATORS: dict[str, Creator] = {
    "AWS::StepFunctions::StateMachine": create_state_machine,
    "AWS::KMS::Key": create_kms_key,
    "AWS::KMS::Alias": create_kms_alias,
    "AWS::DynamoDB::Table": create_dynamodb_table,
    "AWS::DynamoDB::GlobalTable": create_dynamodb_global_table,
    "AWS::SecretsManager::Secret": create_secret,
    "AWS::S3::Bucket": create_s3_bucket,
    "AWS::SNS::Topic": create_sns_topic,
    "AWS::SQS::Queue": create_sqs_queue,
    "AWS::Events::EventBus": create_event_bus,
    "AWS::Events::Archive": create_event_archive,
    "AWS::SSM::Parameter": create_ssm_parameter,
    "AWS::ApiGateway::RestApi": register_rest_api,
    "AWS::ApiGateway::Stage": register_stage,
    "AWS::ApiGateway::ApiKey": create_api_key,
    "AWS::ApiGateway::UsagePlan": create_usage_plan,
    "AWS::ApiGateway::UsagePlanKey": create_usage_plan_key,
}


def admin_secret_ids(template: Template) -> set[str]:
    """The secrets whose value is the platform admin key: those a function names in ADMIN_KEY_SECRET_ARN."""
    found: set[str] = set()
    for _, resource in template.of_type("AWS::Lambda::Function"):
        value = resource.get("Properties", {}).get("Environment", {}).get("Variables", {}).get(ADMIN_KEY_ENV)
        if isinstance(value, dict) and isinstance(value.get("Ref"), str):
            found.add(value["Ref"])
    if not found:
        secret_ids = [logical_id for logical_id, _ in template.of_type("AWS::SecretsManager::Secret")]
        if len(secret_ids) == 1:
            found.add(secret_ids[0])
    return found


def create_resources(template: Template, resolver: Resolver, endpoint_url: str, admin_key: str) -> list[str]:
    """Creates every supported resource in dependency order; answers the logical ids created."""
    ctx = CreationContext(
        endpoint_url=endpoint_url,
        resolver=resolver,
        admin_key=admin_key,
        admin_secret_ids=admin_secret_ids(template),
    )
    created: list[str] = []
    for logical_id in dependency_order(template):
        resource = template.resources[logical_id]
        creator = CREATORS.get(resource.get("Type", ""))
        if creator is None:
            log.debug("not created locally: %s (%s)", logical_id, resource.get("Type"))
            continue
        properties = resolver.resolve(resource.get("Properties", {}))
        try:
            physical = creator(ctx, logical_id, properties)
        except Exception as error:
            raise ResourceCreationError(
                f"creating {logical_id} ({resource['Type']}) failed: {error}"
            ) from error
        resolver.register(logical_id, physical)
        created.append(logical_id)
        log.debug("created %s (%s) -> %s", logical_id, resource["Type"], physical.ref)
    return created
