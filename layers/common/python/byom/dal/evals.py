"""Evaluations' AWS side: the evals table (one partition per tenant) and the test sets' files."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from byom.dal.aws import error_code, from_item, to_item
from byom.dal.fine_tuning import DataBucket, FileRepository
from byom.errors import NotFound
from byom.evals import AliasSummary, EvalRecord, RunRecord

_EVAL = "eval#"
_RUN = "run#"
# A page is at most 100 (the routes' limit); a tenant's newest evals and runs come first because
# their ids sort by creation time (byom.logic.evals.sortable_id).


def _run_sk(eval_id: str, run_id: str) -> str:
    return f"{_RUN}{eval_id}#{run_id}"


class EvalTable:
    """`eval#{eval_id}` items and their `run#{eval_id}#{run_id}` items, in the tenant's partition."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def put_eval(self, record: EvalRecord) -> None:
        item = record.model_dump(mode="json") | {"sk": f"{_EVAL}{record.id}"}
        self._table.put_item(Item=to_item(item))

    def get_eval(self, tenant_id: str, eval_id: str) -> EvalRecord | None:
        item = self._table.get_item(Key={"tenant_id": tenant_id, "sk": f"{_EVAL}{eval_id}"}).get("Item")
        return EvalRecord.model_validate(_fields(item)) if item else None

    def list_evals(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[EvalRecord], bool]:
        items, more = self._page(tenant_id, _EVAL, f"{_EVAL}{after}" if after else None, limit)
        return [EvalRecord.model_validate(_fields(i)) for i in items], more

    def delete_eval(self, tenant_id: str, eval_id: str) -> bool:
        """The eval only: its runs stay readable by id until the table's retention (their results
        are the evidence recommendations were made on)."""
        try:
            self._table.delete_item(
                Key={"tenant_id": tenant_id, "sk": f"{_EVAL}{eval_id}"},
                ConditionExpression="attribute_exists(sk)",
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put_run(self, run: RunRecord) -> None:
        item = run.model_dump(mode="json") | {"sk": _run_sk(run.eval_id, run.id)}
        self._table.put_item(Item=to_item(item))

    def get_run(self, tenant_id: str, eval_id: str, run_id: str) -> RunRecord | None:
        item = self._table.get_item(Key={"tenant_id": tenant_id, "sk": _run_sk(eval_id, run_id)}).get("Item")
        return RunRecord.model_validate(_fields(item)) if item else None

    def list_runs(
        self, tenant_id: str, eval_id: str, after: str | None, limit: int
    ) -> tuple[list[RunRecord], bool]:
        prefix = f"{_RUN}{eval_id}#"
        items, more = self._page(tenant_id, prefix, f"{prefix}{after}" if after else None, limit)
        return [RunRecord.model_validate(_fields(i)) for i in items], more

    def record_alias(
        self, tenant_id: str, eval_id: str, run_id: str, alias: str, summary: AliasSummary
    ) -> RunRecord:
        try:
            answer = self._table.update_item(
                Key={"tenant_id": tenant_id, "sk": _run_sk(eval_id, run_id)},
                UpdateExpression="SET aliases.#alias.summary = :summary",
                ConditionExpression="attribute_exists(aliases.#alias)",
                ExpressionAttributeNames={"#alias": alias},
                ExpressionAttributeValues={":summary": to_item(summary.model_dump(mode="json"))},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise NotFound(f"No such eval run: {run_id}") from None
            raise
        return RunRecord.model_validate(_fields(answer["Attributes"]))

    def finish_run(
        self, tenant_id: str, eval_id: str, run_id: str, status: str, error: dict[str, Any] | None, at: int
    ) -> None:
        names = {"#status": "status"}
        values: dict[str, Any] = {":status": status, ":at": at}
        update = "SET #status = :status, completed_at = :at"
        if error is not None:
            update += ", #error = :error"
            names["#error"] = "error"
            values[":error"] = to_item(error)
        self._table.update_item(
            Key={"tenant_id": tenant_id, "sk": _run_sk(eval_id, run_id)},
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _page(
        self, tenant_id: str, prefix: str, after_sk: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("tenant_id").eq(tenant_id) & Key("sk").begins_with(prefix),
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        if after_sk:
            query["ExclusiveStartKey"] = {"tenant_id": tenant_id, "sk": after_sk}
        items: list[dict[str, Any]] = []
        while len(items) <= limit:
            page = self._table.query(**query)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items[:limit], len(items) > limit


def _fields(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in from_item(item).items() if k != "sk"}


class TestSetFiles:
    """Test sets are the tenant's uploaded files (`POST /v1/files`, `purpose=evals`)."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, files: FileRepository, bucket: DataBucket) -> None:
        self._files = files
        self._bucket = bucket

    def read(self, tenant_id: str, file_id: str) -> tuple[str, bytes] | None:
        record = self._files.get(tenant_id, file_id)
        if record is None:
            return None
        return record.purpose, self._bucket.get(record.s3_key)
