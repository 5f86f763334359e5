"""Tenant-scoped credentials in the local stack: the IAM emulation refuses another tenant's data.

The stack runs on the real synthesized template; the code under test is byom.dal.tenant_scope,
with the TENANT_DATA_ROLE_ARN and endpoint the stack gives its functions.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local_stack.stack import LocalStack, StackSettings


@pytest.fixture(scope="module")
def stack(real_template: Path) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(port=0, template=real_template)) as running:
        yield running


@pytest.fixture
def tenant_scope(stack: LocalStack) -> Any:
    # The byom package the stack's functions run (the layer's copy), with the stack's environment.
    module = importlib.import_module("byom.dal.tenant_scope")
    module.clear()
    yield module
    module.clear()


def _env(stack: LocalStack, name: str) -> str:
    return next(f.environment[name] for f in stack.functions.values() if name in f.environment)


@pytest.fixture
def audit_table(stack: LocalStack) -> str:
    # By its logical id: no function names the audit table yet.
    name = next(n for n in stack.iam.tables if n.startswith("DataAudit"))
    boto3.client("dynamodb").put_item(
        TableName=name, Item={"tenant_id": {"S": "tnt_b"}, "sk": {"S": "0000000000001#interaction#req_b"}}
    )
    return name


def _query(table: Any, tenant_id: str) -> list[dict]:
    items: list[dict] = table.query(
        KeyConditionExpression="tenant_id = :t", ExpressionAttributeValues={":t": tenant_id}
    )["Items"]
    return items


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def test_the_functions_are_given_the_tenant_data_role(stack: LocalStack) -> None:
    assert os.environ["TENANT_DATA_ROLE_ARN"] in stack.iam.roles


def test_tenant_a_reads_its_own_audit_partition(tenant_scope: Any, audit_table: str) -> None:
    assert _query(tenant_scope.scoped_table("tnt_a", audit_table), "tnt_a") == []


def test_tenant_a_asking_for_tenant_b_audit_records_is_refused(tenant_scope: Any, audit_table: str) -> None:
    table = tenant_scope.scoped_table("tnt_a", audit_table)

    with pytest.raises(ClientError) as refused:
        _query(table, "tnt_b")

    assert _code(refused) == "AccessDeniedException"
    assert len(_query(tenant_scope.scoped_table("tnt_b", audit_table), "tnt_b")) == 1


def test_tenant_a_reading_tenant_b_usage_is_refused(stack: LocalStack, tenant_scope: Any) -> None:
    usage = tenant_scope.scoped_table("tnt_a", _env(stack, "USAGE_TABLE"))

    assert "Item" not in usage.get_item(Key={"pk": "tnt_a#2026-11", "sk": "total"})
    with pytest.raises(ClientError) as refused:
        usage.get_item(Key={"pk": "tnt_b#2026-11", "sk": "total"})
    assert _code(refused) == "AccessDeniedException"


def test_tenant_scoped_sessions_cannot_write_usage(stack: LocalStack, tenant_scope: Any) -> None:
    usage = tenant_scope.scoped_table("tnt_a", _env(stack, "USAGE_TABLE"))

    with pytest.raises(ClientError) as refused:
        usage.put_item(Item={"pk": "tnt_a#2026-11", "sk": "total", "spent": 0})
    assert _code(refused) == "AccessDeniedException"


def test_tenant_a_objects_are_readable_and_tenant_b_objects_are_refused(
    stack: LocalStack, tenant_scope: Any
) -> None:
    bucket = _env(stack, "DATA_BUCKET")
    own = boto3.client("s3")
    own.put_object(Bucket=bucket, Key="tenants/tnt_a/content/req_a.json", Body=b"a")
    own.put_object(Bucket=bucket, Key="tenants/tnt_b/content/req_b.json", Body=b"b")
    s3 = tenant_scope.scoped_client("tnt_a", "s3")

    assert s3.get_object(Bucket=bucket, Key="tenants/tnt_a/content/req_a.json")["Body"].read() == b"a"
    assert s3.list_objects_v2(Bucket=bucket, Prefix="tenants/tnt_a/")["KeyCount"] == 1
    for call in (
        lambda: s3.get_object(Bucket=bucket, Key="tenants/tnt_b/content/req_b.json"),
        lambda: s3.delete_object(Bucket=bucket, Key="tenants/tnt_b/content/req_b.json"),
        lambda: s3.list_objects_v2(Bucket=bucket, Prefix="tenants/"),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert _code(refused) == "AccessDenied"
    assert own.get_object(Bucket=bucket, Key="tenants/tnt_b/content/req_b.json")["Body"].read() == b"b"


def test_a_data_key_of_tenant_b_cannot_be_decrypted_by_tenant_a(stack: LocalStack, tenant_scope: Any) -> None:
    key_id = os.environ["KMS_KEY_ID"]
    context_b = {"tenant_id": "tnt_b", "purpose": "audit-content"}
    blob = tenant_scope.scoped_client("tnt_b", "kms").generate_data_key(
        KeyId=key_id, KeySpec="AES_256", EncryptionContext=context_b
    )["CiphertextBlob"]

    kms_a = tenant_scope.scoped_client("tnt_a", "kms")
    with pytest.raises(ClientError) as refused:
        kms_a.decrypt(CiphertextBlob=blob, EncryptionContext=context_b)
    assert _code(refused) == "AccessDeniedException"
    assert tenant_scope.scoped_client("tnt_b", "kms").decrypt(
        CiphertextBlob=blob, EncryptionContext=context_b
    )


def test_an_untagged_assume_role_is_refused(stack: LocalStack) -> None:
    with pytest.raises(ClientError) as refused:
        boto3.client("sts").assume_role(
            RoleArn=os.environ["TENANT_DATA_ROLE_ARN"], RoleSessionName="untagged"
        )

    assert _code(refused) == "AccessDenied"


def test_a_session_carrying_another_tag_is_refused(stack: LocalStack) -> None:
    with pytest.raises(ClientError) as refused:
        boto3.client("sts").assume_role(
            RoleArn=os.environ["TENANT_DATA_ROLE_ARN"],
            RoleSessionName="extra-tag",
            Tags=[{"Key": "tenant_id", "Value": "tnt_a"}, {"Key": "role", "Value": "admin"}],
        )

    assert _code(refused) == "AccessDenied"


def _stored_response(tenant_id: str, rid: str, text: str) -> Any:
    from byom.domain import StoredResponse

    return StoredResponse(
        id=rid,
        tenant_id=tenant_id,
        created_at=int(time.time()),
        response={"id": rid, "object": "response"},
        input_items=[{"id": "msg_1", "type": "message", "role": "user", "content": text}],
        context=[{"role": "user", "content": text}],
    )


@pytest.mark.parametrize("max_inline_bytes", [350 * 1024, 1024], ids=["in the item", "in the bucket"])
def test_stored_responses_round_trip_on_the_tenants_scoped_session(
    stack: LocalStack, tenant_scope: Any, max_inline_bytes: int
) -> None:
    """The store's every call (item, body object and its tag, data keys, deletion of versions) is
    one the tenant data role grants for the session's own tenant."""
    from byom.dal.responses import ResponseStore

    store = ResponseStore(
        lambda t: tenant_scope.scoped_table(t, _env(stack, "RESPONSES_TABLE")),
        lambda t: tenant_scope.scoped_client(t, "s3"),
        lambda t: tenant_scope.scoped_client(t, "kms"),
        _env(stack, "DATA_BUCKET"),
        os.environ["KMS_KEY_ID"],
        max_inline_bytes=max_inline_bytes,
    )
    record = _stored_response("tnt_a", "resp_scoped", "x" * 4000)

    store.put(record, retention_days=30)
    found = store.get("tnt_a", "resp_scoped")
    removed = store.delete_many("tnt_a", ["resp_scoped"])

    assert found is not None and found.context == record.context
    assert (removed, store.get("tnt_a", "resp_scoped")) == (1, None)


def test_tenant_a_reading_tenant_b_stored_responses_is_refused(stack: LocalStack, tenant_scope: Any) -> None:
    table = tenant_scope.scoped_table("tnt_a", _env(stack, "RESPONSES_TABLE"))

    for call in (
        lambda: table.get_item(Key={"tenant_id": "tnt_b", "id": "resp_1"}),
        lambda: table.delete_item(Key={"tenant_id": "tnt_b", "id": "resp_1"}),
        lambda: table.scan(),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert _code(refused) == "AccessDeniedException"
