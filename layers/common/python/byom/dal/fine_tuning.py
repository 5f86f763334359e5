"""Data access of the fine-tuning pipeline: the files and jobs tables, the data bucket, the state
machine, and Bedrock's model-customization control plane and runtime. The only boto3 code of it."""

from __future__ import annotations

import builtins
import json
import time
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from byom import clock
from byom.dal.aws import delete_versions_page, error_code, from_item, to_item
from byom.errors import Conflict
from byom.fine_tuning import (
    TERMINAL,
    FileRecord,
    Job,
    JobClosed,
    JobEvent,
    ProviderRejected,
    ProviderThrottled,
)

BY_TENANT_INDEX = "by_tenant"
JOB_SK = "job"
EVENT_PREFIX = "event#"
_OPEN = {":succeeded": "succeeded", ":failed": "failed", ":cancelled": "cancelled"}
_OPEN_CONDITION = "attribute_exists(job_id) AND NOT byom_status IN (:succeeded, :failed, :cancelled)"


def created_key(created_at: int, record_id: str) -> str:
    """Sorts by creation time, then id: the by_tenant index lists newest first from it."""
    return f"{created_at:012d}#{record_id}"


def _page(table: Any, tenant_id: str, after_key: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    condition = Key("tenant_id").eq(tenant_id)
    if after_key:
        condition = condition & Key("created_key").lt(after_key)
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "IndexName": BY_TENANT_INDEX,
        "KeyConditionExpression": condition,
        "ScanIndexForward": False,
        "Limit": limit + 1,
    }
    while len(items) <= limit:
        page = table.query(**kwargs)
        items.extend(from_item(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return items[:limit], len(items) > limit


class FileRepository:
    def __init__(self, table: Any) -> None:
        self._table = table

    def create(self, record: FileRecord) -> None:
        item = record.model_dump(exclude={"id"}) | {
            "file_id": record.id,
            "created_key": created_key(record.created_at, record.id),
        }
        self._table.put_item(Item=to_item(item), ConditionExpression="attribute_not_exists(file_id)")

    def get(self, tenant_id: str, file_id: str) -> FileRecord | None:
        """Another tenant's file is absent, as the API must answer it."""
        item = self._table.get_item(Key={"file_id": file_id}).get("Item")
        if not item or item.get("tenant_id") != tenant_id:
            return None
        plain = from_item(item)
        return FileRecord.model_validate(plain | {"id": plain["file_id"]})

    def delete(self, tenant_id: str, file_id: str) -> bool:
        """False when there was no such file of the tenant (deleted meanwhile, or another's)."""
        try:
            self._table.delete_item(
                Key={"file_id": file_id},
                ConditionExpression="tenant_id = :tenant",
                ExpressionAttributeValues={":tenant": tenant_id},
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def list(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[FileRecord], bool]:
        after_key = None
        if after:
            anchor = self.get(tenant_id, after)
            after_key = created_key(anchor.created_at, anchor.id) if anchor else None
        items, more = _page(self._table, tenant_id, after_key, limit)
        return [FileRecord.model_validate(i | {"id": i["file_id"]}) for i in items], more


class JobRepository:
    """One item per job (sk `job`) and one per event (sk `event#...`) under the job's id."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def create(self, job: Job) -> None:
        try:
            self._table.put_item(
                Item=to_item(self._item(job)), ConditionExpression="attribute_not_exists(job_id)"
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise Conflict(f"job {job.id} already exists") from None
            raise

    @staticmethod
    def _item(job: Job) -> dict[str, Any]:
        data = json.loads(job.model_dump_json(exclude={"id"}))
        return data | {"job_id": job.id, "sk": JOB_SK, "created_key": created_key(job.created_at, job.id)}

    @staticmethod
    def _job(item: dict[str, Any]) -> Job:
        plain = from_item(item)
        return Job.model_validate(plain | {"id": plain["job_id"]})

    def get(self, job_id: str) -> Job | None:
        item = self._table.get_item(Key={"job_id": job_id, "sk": JOB_SK}, ConsistentRead=True).get("Item")
        return self._job(item) if item else None

    def get_for_tenant(self, tenant_id: str, job_id: str) -> Job | None:
        job = self.get(job_id)
        return job if job is not None and job.tenant_id == tenant_id else None

    def task_token(self, job_id: str) -> tuple[str | None, str | None]:
        """The token of the callback the execution waits on, and what for (`training`, `approval`)."""
        item = self._table.get_item(
            Key={"job_id": job_id, "sk": JOB_SK},
            ConsistentRead=True,
            ProjectionExpression="task_token, waiting_for",
        ).get("Item")
        item = item or {}
        return item.get("task_token"), item.get("waiting_for")

    def list(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[Job], bool]:
        after_key = None
        if after:
            anchor = self.get_for_tenant(tenant_id, after)
            after_key = created_key(anchor.created_at, anchor.id) if anchor else None
        items, more = _page(self._table, tenant_id, after_key, limit)
        return [self._job(i) for i in items], more

    def update(
        self,
        job_id: str,
        fields: dict[str, Any],
        *,
        remove: tuple[str, ...] = (),
        expect_status: str | None = None,
    ) -> None:
        """Sets fields on an open job (JobClosed when it has ended), optionally only from one status."""
        names: dict[str, str] = {}
        values: dict[str, Any] = dict(_OPEN)
        sets = []
        for i, (name, value) in enumerate(fields.items()):
            if value is None:
                remove = (*remove, name)
                continue
            names[f"#f{i}"] = name
            values[f":v{i}"] = to_item({"v": value})["v"]
            sets.append(f"#f{i} = :v{i}")
        expression = ("SET " + ", ".join(sets)) if sets else ""
        removes = []
        for j, name in enumerate(remove):
            names[f"#r{j}"] = name
            removes.append(f"#r{j}")
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        condition = _OPEN_CONDITION
        if expect_status:
            values[":expected"] = expect_status
            condition += " AND byom_status = :expected"
        try:
            self._table.update_item(
                Key={"job_id": job_id, "sk": JOB_SK},
                UpdateExpression=expression.strip(),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise JobClosed(f"job {job_id} is not open for this change") from None
            raise

    def close(self, job_id: str, status: str, fields: dict[str, Any]) -> bool:
        """Ends an open job; False when it had already ended (the first ending wins)."""
        if status not in TERMINAL:
            raise ValueError(status)
        try:
            self.update(
                job_id,
                {"byom_status": status, "finished_at": clock.now(), **fields},
                remove=("task_token", "waiting_for"),
            )
        except JobClosed:
            return False
        return True

    def add_event(
        self, job_id: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> None:
        now = clock.now()
        event = JobEvent(id=clock.new_id("ftevent"), created_at=now, level=level, message=message, data=data)  # type: ignore[arg-type]
        # Nanoseconds: events of the same second keep the order they happened in.
        item = json.loads(event.model_dump_json()) | {
            "job_id": job_id,
            "sk": f"{EVENT_PREFIX}{time.time_ns():020d}#{event.id}",
        }
        self._table.put_item(Item=to_item(item))

    def events(self, job_id: str, after: str | None, limit: int) -> tuple[builtins.list[JobEvent], bool]:
        condition = Key("job_id").eq(job_id) & Key("sk").begins_with(EVENT_PREFIX)
        items: builtins.list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition, "ScanIndexForward": False}
        while True:
            page = self._table.query(**kwargs)
            items.extend(from_item(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        events = [JobEvent.model_validate(i) for i in items]
        if after:
            ids = [e.id for e in events]
            events = events[ids.index(after) + 1 :] if after in ids else []
        return events[:limit], len(events) > limit


class DataBucket:
    """Tenant files under `tenants/{tenant_id}/`, encrypted with the stack's key (the bucket default)."""

    def __init__(self, s3: Any, bucket: str, kms_key_id: str | None = None) -> None:
        self._s3 = s3
        self.name = bucket
        self._kms = kms_key_id

    def put(self, key: str, body: bytes, content_type: str = "application/jsonl") -> None:
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
        if self._kms:
            extra["SSEKMSKeyId"] = self._kms
        self._s3.put_object(Bucket=self.name, Key=key, Body=body, ContentType=content_type, **extra)

    def get(self, key: str) -> bytes:
        body: bytes = self._s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def delete(self, key: str) -> None:
        """Every version of the object: the bucket is versioned, and a plain delete would only hide
        it. Listed by the key as a prefix, which names that object alone (the keys end in `.jsonl`)."""
        done = False
        while not done:
            _, done = delete_versions_page(self._s3, self.name, key)

    def uri(self, key: str) -> str:
        return f"s3://{self.name}/{key}"


class Workflow:
    """The fine-tuning state machine: executions and the callbacks they wait on."""

    def __init__(self, sfn: Any, state_machine_arn: str) -> None:
        self._sfn = sfn
        self._arn = state_machine_arn

    def start(self, name: str, payload: dict[str, Any]) -> str:
        try:
            answer = self._sfn.start_execution(
                stateMachineArn=self._arn, name=name, input=json.dumps(payload)
            )
        except ClientError as error:
            if error_code(error) != "ExecutionAlreadyExists":
                raise
            # Started by an earlier try of the same request: the execution's name is the job id.
            execution_arn = self._arn.replace(":stateMachine:", ":execution:") + f":{name}"
            return execution_arn
        arn: str = answer["executionArn"]
        return arn

    def stop(self, execution_arn: str, cause: str) -> None:
        try:
            self._sfn.stop_execution(executionArn=execution_arn, error="JobCancelled", cause=cause[:32768])
        except ClientError as error:
            if error_code(error) not in ("ExecutionDoesNotExist", "ValidationException"):
                raise

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        """False when the execution no longer waits on the token (stopped, timed out, answered)."""
        try:
            self._sfn.send_task_success(taskToken=token, output=json.dumps(output))
        except ClientError as error:
            if error_code(error) in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
                return False
            raise
        return True

    def fail(self, token: str, error: str, cause: str) -> bool:
        try:
            self._sfn.send_task_failure(taskToken=token, error=error, cause=cause[:32768])
        except ClientError as failure:
            if error_code(failure) in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
                return False
            raise
        return True


_THROTTLING = {"ThrottlingException", "TooManyRequestsException", "ServiceUnavailableException"}
_NOT_FOUND = {"ResourceNotFoundException", "ValidationException"}


def _provider_call(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """Bedrock's errors as the pipeline's typed ones, quoting Bedrock's own message."""
    try:
        return call(*args, **kwargs)
    except ClientError as error:
        code = error_code(error)
        message = str(error.response.get("Error", {}).get("Message", ""))[:500]
        if code in _THROTTLING:
            raise ProviderThrottled(f"Bedrock throttled {what}: {code}") from None
        raise ProviderRejected(f"Bedrock refused {what}: {code}: {message}") from None
    except BotoCoreError as error:
        raise ProviderThrottled(f"Bedrock could not be reached for {what}: {type(error).__name__}") from None


class BedrockCustomization:
    """CreateModelCustomizationJob and the hosting of its result (on-demand or provisioned)."""

    def __init__(self, bedrock: Any) -> None:
        self._bedrock = bedrock

    def start(
        self,
        *,
        job_name: str,
        model_name: str,
        role_arn: str,
        base_model: str,
        training_uri: str,
        validation_uri: str | None,
        output_uri: str,
        hyperparameters: dict[str, str],
        kms_key_id: str | None,
        tags: dict[str, str],
    ) -> str:
        kwargs: dict[str, Any] = {
            "jobName": job_name,
            "customModelName": model_name,
            "roleArn": role_arn,
            "baseModelIdentifier": base_model,
            "customizationType": "FINE_TUNING",
            "trainingDataConfig": {"s3Uri": training_uri},
            "outputDataConfig": {"s3Uri": output_uri},
            "hyperParameters": hyperparameters,
            # The idempotency token of Bedrock: a retried start makes no second job.
            "clientRequestToken": job_name,
            "jobTags": [{"key": k, "value": v} for k, v in tags.items()],
            "customModelTags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        if validation_uri:
            kwargs["validationDataConfig"] = {"validators": [{"s3Uri": validation_uri}]}
        if kms_key_id:
            kwargs["customModelKmsKeyId"] = kms_key_id
        answer = _provider_call(
            "CreateModelCustomizationJob", self._bedrock.create_model_customization_job, **kwargs
        )
        arn: str = answer["jobArn"]
        return arn

    def job(self, job_identifier: str) -> dict[str, Any]:
        answer: dict[str, Any] = _provider_call(
            "GetModelCustomizationJob",
            self._bedrock.get_model_customization_job,
            jobIdentifier=job_identifier,
        )
        return answer

    def stop(self, job_identifier: str) -> None:
        try:
            self._bedrock.stop_model_customization_job(jobIdentifier=job_identifier)
        except ClientError as error:
            # Already ended, or never started: nothing is running.
            if error_code(error) not in (*_NOT_FOUND, "ConflictException"):
                raise

    def deploy(self, *, mode: str, name: str, model_arn: str, tags: dict[str, str]) -> str:
        tag_list = [{"key": k, "value": v} for k, v in tags.items()]
        if mode == "provisioned":
            answer = _provider_call(
                "CreateProvisionedModelThroughput",
                self._bedrock.create_provisioned_model_throughput,
                modelUnits=1,
                provisionedModelName=name,
                modelId=model_arn,
                clientRequestToken=name,
                tags=tag_list,
            )
            arn: str = answer["provisionedModelArn"]
            return arn
        answer = _provider_call(
            "CreateCustomModelDeployment",
            self._bedrock.create_custom_model_deployment,
            modelDeploymentName=name,
            modelArn=model_arn,
            clientRequestToken=name,
            tags=tag_list,
        )
        arn = answer["customModelDeploymentArn"]
        return arn

    def deployment_status(self, deployment_arn: str) -> tuple[str, str | None]:
        """('Creating' | 'Active' | 'Failed', failure message)."""
        if ":provisioned-model/" in deployment_arn:
            answer = _provider_call(
                "GetProvisionedModelThroughput",
                self._bedrock.get_provisioned_model_throughput,
                provisionedModelId=deployment_arn,
            )
            status = {"InService": "Active", "Creating": "Creating", "Updating": "Creating"}.get(
                answer.get("status", ""), "Failed"
            )
            return status, answer.get("failureMessage")
        answer = _provider_call(
            "GetCustomModelDeployment",
            self._bedrock.get_custom_model_deployment,
            customModelDeploymentIdentifier=deployment_arn,
        )
        return answer.get("status", "Failed"), answer.get("failureMessage")

    def undeploy(self, deployment_arn: str) -> None:
        try:
            if ":provisioned-model/" in deployment_arn:
                self._bedrock.delete_provisioned_model_throughput(provisionedModelId=deployment_arn)
            else:
                self._bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=deployment_arn)
        except ClientError as error:
            if error_code(error) not in _NOT_FOUND:
                raise


class JobEvents:
    """The pipeline's own EventBridge events (`source: byom`)."""

    def __init__(self, events: Any, bus: str) -> None:
        self._events = events
        self._bus = bus

    def put(self, detail_type: str, detail: dict[str, Any]) -> None:
        self._events.put_events(
            Entries=[
                {
                    "Source": "byom",
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "EventBusName": self._bus,
                }
            ]
        )
