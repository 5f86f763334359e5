"""Resources created in moto from a template's own properties: the sample and the real BYOM template."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from local_stack.resources import create_resources
from local_stack.stack import SerializedMotoServer
from local_stack.template import Resolver, load_template

ADMIN_KEY = "integration-admin-key"

# docs/contracts.md: env var -> (key schema, global secondary indexes)
CONTRACT_TABLES = {
    "TENANTS_TABLE": ([("tenant_id", "HASH")], {}),
    "API_KEYS_TABLE": ([("key_hash", "HASH")], {"by_tenant": [("tenant_id", "HASH"), ("key_id", "RANGE")]}),
    "CREDENTIALS_TABLE": ([("tenant_id", "HASH"), ("name", "RANGE")], {}),
    "MODELS_TABLE": ([("tenant_id", "HASH"), ("alias", "RANGE")], {}),
    "CACHE_TABLE": ([("cache_key", "HASH")], {}),
    "RESPONSES_TABLE": ([("tenant_id", "HASH"), ("id", "RANGE")], {}),
}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = SerializedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def client(service: str, moto_url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create(template_path: Path, moto_url: str) -> Resolver:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.open(urllib.request.Request(moto_url + "/moto-api/reset", method="POST")).read()
    template = load_template(template_path)
    resolver = Resolver(template)
    create_resources(template, resolver, moto_url, ADMIN_KEY)
    return resolver


def key_schema(table: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]]


def test_sample_table_has_its_keys_index_encryption_pitr_and_ttl(
    sample_template_path: Path, moto_url: str
) -> None:
    resolver = create(sample_template_path, moto_url)
    dynamodb = client("dynamodb", moto_url)
    name = resolver.resolve({"Ref": "Items"})

    table = dynamodb.describe_table(TableName=name)["Table"]
    backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]

    assert key_schema(table) == [("pk", "HASH")]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "by_owner"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSEDescription"]["SSEType"] == "KMS"
    assert table["SSEDescription"]["KMSMasterKeyArn"] == resolver.resolve({"Fn::GetAtt": ["Key", "Arn"]})
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_sample_key_rotates_and_the_admin_secret_holds_the_admin_key(
    sample_template_path: Path, moto_url: str
) -> None:
    resolver = create(sample_template_path, moto_url)
    key_id = resolver.resolve({"Ref": "Key"})
    secret = client("secretsmanager", moto_url).describe_secret(
        SecretId=resolver.resolve({"Ref": "AdminSecret"})
    )
    value = client("secretsmanager", moto_url).get_secret_value(SecretId=secret["ARN"])["SecretString"]

    assert client("kms", moto_url).get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    assert value == ADMIN_KEY
    assert secret["KmsKeyId"] == resolver.resolve({"Fn::GetAtt": ["Key", "Arn"]})


def test_buckets_topics_queues_and_global_tables_are_one_entry_each(tmp_path: Path, moto_url: str) -> None:
    body = {
        "Resources": {
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}
                        ]
                    }
                },
            },
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {}},
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 60}},
            "Global": {
                "Type": "AWS::DynamoDB::GlobalTable",
                "Properties": {
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                    "BillingMode": "PAY_PER_REQUEST",
                    "Replicas": [
                        {
                            "Region": "us-east-1",
                            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                        }
                    ],
                },
            },
        }
    }
    path = tmp_path / "Other.template.json"
    path.write_text(__import__("json").dumps(body))
    resolver = create(path, moto_url)

    bucket = resolver.resolve({"Ref": "Bucket"})
    encryption = client("s3", moto_url).get_bucket_encryption(Bucket=bucket)
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert resolver.resolve({"Ref": "Topic"}).startswith("arn:aws:sns:us-east-1:")
    assert resolver.resolve({"Fn::GetAtt": ["Queue", "Arn"]}).startswith("arn:aws:sqs:us-east-1:")
    backups = client("dynamodb", moto_url).describe_continuous_backups(TableName="Global")
    assert backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"][
        "PointInTimeRecoveryStatus"
    ] == ("ENABLED")


# -- the real template ----------------------------------------------------------------------------


def _function_environments(template_path: Path, resolver: Resolver) -> dict[str, str]:
    environment: dict[str, str] = {}
    for _, resource in load_template(template_path).of_type("AWS::Lambda::Function"):
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        environment |= resolver.resolve(variables)
    return environment


def test_real_template_tables_follow_the_contract(real_template: Path, moto_url: str) -> None:
    resolver = create(real_template, moto_url)
    environment = _function_environments(real_template, resolver)
    dynamodb = client("dynamodb", moto_url)
    key_arn = environment["KMS_KEY_ID"]

    for variable, (keys, indexes) in CONTRACT_TABLES.items():
        name = environment[variable]
        table = dynamodb.describe_table(TableName=name)["Table"]
        backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        assert key_schema(table) == keys, variable
        found = {
            i["IndexName"]: (key_schema(i), i["Projection"]["ProjectionType"])
            for i in table.get("GlobalSecondaryIndexes", [])
        }
        assert found == {index: (index_keys, "ALL") for index, index_keys in indexes.items()}, variable
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST", variable
        assert table["SSEDescription"]["KMSMasterKeyArn"] == key_arn, variable
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED", variable


def test_real_template_key_rotates_and_the_admin_secret_is_the_admin_key(
    real_template: Path, moto_url: str
) -> None:
    resolver = create(real_template, moto_url)
    environment = _function_environments(real_template, resolver)
    kms = client("kms", moto_url)
    secrets = client("secretsmanager", moto_url)

    assert kms.get_key_rotation_status(KeyId=environment["KMS_KEY_ID"])["KeyRotationEnabled"] is True
    assert secrets.get_secret_value(SecretId=environment["ADMIN_KEY_SECRET_ARN"])["SecretString"] == ADMIN_KEY
    assert (
        secrets.describe_secret(SecretId=environment["ADMIN_KEY_SECRET_ARN"])["KmsKeyId"]
        == environment["KMS_KEY_ID"]
    )
    assert environment["SECRET_PREFIX"].endswith("/")


@pytest.mark.parametrize("variable", ["CACHE_TABLE", "RESPONSES_TABLE"])
def test_real_template_cache_and_stored_responses_expire_on_expires_at(
    real_template: Path, moto_url: str, variable: str
) -> None:
    resolver = create(real_template, moto_url)
    name = _function_environments(real_template, resolver)[variable]

    ttl = client("dynamodb", moto_url).describe_time_to_live(TableName=name)["TimeToLiveDescription"]

    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_conditional_writes_stay_atomic_under_concurrent_callers(
    sample_template_path: Path, moto_url: str
) -> None:
    """Budget reservations rely on this: N concurrent conditional increments never pass the limit."""
    resolver = create(sample_template_path, moto_url)
    table = resolver.resolve({"Ref": "Items"})
    dynamodb = client("dynamodb", moto_url)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "budget"}, "spent": {"N": "0"}})

    def reserve(_: int) -> bool:
        try:
            client("dynamodb", moto_url).update_item(
                TableName=table,
                Key={"pk": {"S": "budget"}},
                UpdateExpression="SET spent = spent + :one",
                ConditionExpression="spent < :limit",
                ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": "10"}},
            )
            return True
        except dynamodb.exceptions.ConditionalCheckFailedException:
            return False

    with ThreadPoolExecutor(max_workers=16) as pool:
        granted = sum(pool.map(reserve, range(40)))

    spent = dynamodb.get_item(TableName=table, Key={"pk": {"S": "budget"}})["Item"]["spent"]["N"]
    assert (granted, spent) == (10, "10")
