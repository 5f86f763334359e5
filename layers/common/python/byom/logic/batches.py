"""Batches (OpenAI's Batch API, SPEC §10): validation and the budget at creation, the lines run by
the gateway or by the provider's batch service, metering at batch prices, the output and error files.

The API half (create, read, list, cancel) and the Step Functions half (one function per task) share
the batch record; every status change is a conditional write, so a task still running after a
cancel cannot bring the batch back. Layout of a batch's data in the bucket, under
`tenants/<tenant>/batches/<batch>/`: `input/<chunk>.jsonl` (the valid lines, as run), `invalid.jsonl`
(the lines refused at validation), `results/<chunk>.jsonl` (what each line answered and cost),
`lines.jsonl` (every line's result once finished: what `finished_lines` reads).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from byom import clock
from byom.batches import (
    BATCH_PURPOSE,
    CHAT,
    EMBEDDINGS,
    OUTPUT_PURPOSE,
    RESPONSES,
    TERMINAL,
    Batch,
    BatchClosed,
    BatchError,
    CreateBatch,
    ProviderJobFailed,
)
from byom.domain import Budget, ModelAlias, Pricing
from byom.errors import BudgetExceeded, ByomError, Conflict, InvalidRequest, NotFound
from byom.fine_tuning import FileRecord
from byom.governance import screening
from byom.governance.policy import Policy
from byom.logic import money
from byom.logic.access import Principal, require_tenant_key
from byom.logic.fine_tuning_jobs import file_key
from byom.money import Hold, Metered, ReservationRefused
from byom.openai_types import ChatRequest, EmbeddingRequest, ResponsesRequest
from byom.providers import Target, Usage
from byom.providers.batch import BatchLine, LineOutcome, ProviderBatches

WRITERS = ("admin", "developer")
READERS = ("admin", "developer")
MAX_LINES = 50_000
CUSTOM_ID_MAX = 512
COMPLETION_WINDOW_SECONDS = 24 * 3600
# A batch's hold outlives its window by this much: the last lines are metered after the window ends.
HOLD_SLACK_SECONDS = 3600
# The Map state's items: lines are grouped so a 50,000-line batch is at most this many iterations
# (Step Functions' 25,000-event history holds them with room to spare).
MAX_CHUNKS = 1000
MIN_CHUNK_LINES = 10
# Lines of one chunk run side by side, within the Map's own MaxConcurrency.
LINE_CONCURRENCY = 4
REQUEST_MODELS: dict[str, type[BaseModel]] = {
    CHAT: ChatRequest,
    EMBEDDINGS: EmbeddingRequest,
    RESPONSES: ResponsesRequest,
}
# What each provider's batch service takes; the other lines are run by the gateway itself.
PROVIDER_ENDPOINTS = {"bedrock": (CHAT,), "openai": (CHAT, EMBEDDINGS)}


# -- collaborators ----------------------------------------------------------------------------------


class Batches(Protocol):
    """Batch records (byom.dal.batches.BatchRepository)."""

    def create(self, batch: Batch) -> None: ...

    def get(self, batch_id: str) -> Batch | None: ...

    def get_for_tenant(self, tenant_id: str, batch_id: str) -> Batch | None:
        """Another tenant's batch is absent."""
        ...

    def list(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[Batch], bool]: ...

    def update(self, batch_id: str, fields: dict[str, Any], *, expect: Iterable[str]) -> bool:
        """Set fields while the batch's status is one of `expect`; False when it is not."""
        ...

    def add_counts(self, batch_id: str, *, completed: int, failed: int, cost_micros: int) -> None: ...


class Files(Protocol):
    """The tenants' files (byom.dal.fine_tuning.FileRepository)."""

    def create(self, record: FileRecord) -> None: ...

    def get(self, tenant_id: str, file_id: str) -> FileRecord | None: ...


class Bucket(Protocol):
    """The data bucket (byom.dal.batches.BatchData)."""

    def put(self, key: str, body: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def find(self, key: str) -> bytes | None:
        """The object, or None when there is none."""
        ...

    def uri(self, key: str) -> str: ...


class Aliases(Protocol):
    def get(self, tenant_id: str, alias: str) -> ModelAlias | None: ...


class Ledgers(Protocol):
    """The usage table's money operations (byom.dal.ledger.UsageTable)."""

    def get_budget(self, tenant_id: str) -> Budget | None: ...

    def reserve(self, hold: Hold) -> None: ...

    def release(self, hold: Hold) -> bool: ...

    def sweep(self, tenant_id: str, month: str, now: int) -> int: ...

    def settle(self, metered: Metered, hold: Hold | None, *, within: Hold | None = None) -> Any: ...


class Workflow(Protocol):
    """The batch state machine (byom.dal.fine_tuning.Workflow on the batch state machine)."""

    def start(self, name: str, payload: dict[str, Any]) -> str: ...

    def succeed(self, token: str, output: dict[str, Any]) -> bool: ...


class Publisher(Protocol):
    """`byom.batches` events on the platform bus (byom.dal.batches.BatchEvents)."""

    def put(self, detail_type: str, detail: dict[str, Any]) -> None: ...


class Policies(Protocol):
    def get(self, tenant_id: str) -> Policy: ...


@dataclass(frozen=True)
class LineAnswer:
    """What one line answered when the gateway ran it."""

    status_code: int
    body: dict[str, Any]
    """The OpenAI response body, or OpenAI's error object."""
    usage: Usage | None = None
    alias: str = ""
    """The alias that answered (the batch's, or one of its fallbacks)."""
    pricing: Pricing | None = None
    """The answering alias's prices; its batch prices are what the line is metered at."""


class LineRunner(Protocol):
    """One line through the gateway's invocation path, unmetered: the batch meters it
    (byom.api.batch_tasks.InvokedLines)."""

    def __call__(
        self, principal: Principal, request_id: str, endpoint: str, body: dict[str, Any]
    ) -> LineAnswer: ...


class Audit(Protocol):
    """One audit record per line a provider ran (byom.api.batch_tasks.LineAudit)."""

    def line(self, batch: Batch, request_id: str, outcome: LineOutcome, cost_micros: int) -> None: ...


@dataclass
class BatchStore:
    """The collaborators; tests pass in-memory fakes."""

    batches: Batches
    files: Files
    bucket: Bucket
    models: Aliases
    usage: Ledgers | None
    """None: batches are neither budgeted nor metered."""
    workflow: Workflow
    providers: Callable[[str], ProviderBatches | None]
    """The provider's batch service for a provider name (byom.providers.batch.provider_batches)."""
    targets: Callable[[str, str], Target]
    """The target of a tenant's alias, as the invocation path resolves it."""
    run_line: LineRunner | None = None
    """The gateway's invocation path (the run task only)."""
    events: Publisher | None = None
    policies: Policies | None = None
    """For lines that leave through a provider's batch service: screened by the tenant's policy."""
    audit: Audit | None = None
    poll_seconds: int = 300
    bedrock_min_records: int = 100
    """Bedrock refuses a batch inference job with fewer records (its per-account quota)."""
    now: Callable[[], int] = clock.now


# -- keys and ids -------------------------------------------------------------------------------------


def prefix(batch: Batch) -> str:
    return f"tenants/{batch.tenant_id}/batches/{batch.id}/"


def chunk_key(batch: Batch, chunk: int, kind: str = "input") -> str:
    return f"{prefix(batch)}{kind}/{chunk:05d}.jsonl"


def line_request_id(batch_id: str, index: int) -> str:
    """The line's request id: metering counts it once under it, whatever retries run it again."""
    return f"{batch_id}:{index}"


def _dumps(items: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(item, separators=(",", ":")) + "\n" for item in items).encode()


def _loads(data: bytes | None) -> list[dict[str, Any]]:
    if not data:
        return []
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _line_id() -> str:
    return f"batch_req_{secrets.token_hex(16)}"


# -- validation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Valid:
    index: int
    custom_id: str
    body: dict[str, Any]
    cost_micros: int


@dataclass(frozen=True)
class _Invalid:
    index: int
    custom_id: str | None
    code: str
    message: str

    def error_line(self) -> dict[str, Any]:
        """OpenAI's error-file line for a request that was never sent."""
        return {
            "id": _line_id(),
            "custom_id": self.custom_id,
            "response": None,
            "error": {"code": self.code, "message": self.message},
        }


def _bound_line(endpoint: str, body: dict[str, Any], request: Any, alias: ModelAlias) -> dict[str, Any]:
    """A line without an answer cap gets the alias's (as a hard budget caps a call): the reservation
    needs a bound on what the provider can bill."""
    cap = alias.max_output_tokens or money.DEFAULT_OUTPUT_CAP
    if endpoint == CHAT and request.max_output_tokens is None:
        name = "max_completion_tokens" if alias.provider == "openai" else "max_tokens"
        return {**body, name: cap}
    if endpoint == RESPONSES and body.get("max_output_tokens") is None:
        return {**body, "max_output_tokens": cap}
    return body


def line_estimate(endpoint: str, request: Any, alias: ModelAlias, body: dict[str, Any]) -> int:
    """The most a line can cost at the alias's batch prices, as byom.logic.money bounds a call."""
    base = alias.budget_pricing or alias.pricing
    pricing = base.batch() if base else None
    if endpoint == CHAT:
        return money.estimate_chat(request, pricing, alias.max_output_tokens).cost_micros
    if endpoint == EMBEDDINGS:
        return money.estimate_embeddings(request, pricing).cost_micros
    # A Responses request's input, every item and instruction, is inside its JSON: its bytes bound
    # its tokens as the chat bound does; the answer is capped by max_output_tokens.
    input_tokens = len(json.dumps(body).encode()) + money.REQUEST_OVERHEAD_TOKENS
    output_tokens = int(body.get("max_output_tokens") or money.DEFAULT_OUTPUT_CAP)
    return money.cost_micros(pricing, input_tokens, output_tokens, upper=True) if pricing else 0


def _check_line(
    raw: bytes, index: int, endpoint: str, seen: set[str]
) -> tuple[str, dict[str, Any], str] | _Invalid:
    """The line's custom_id, body and model, or why it cannot be run."""
    try:
        line = json.loads(raw)
    except ValueError:
        return _Invalid(index, None, "invalid_json", f"Line {index + 1} is not valid JSON")
    if not isinstance(line, dict):
        return _Invalid(index, None, "invalid_request", f"Line {index + 1} is not a JSON object")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > CUSTOM_ID_MAX:
        return _Invalid(
            index,
            None,
            "missing_custom_id",
            f"Line {index + 1}: custom_id must be a string of 1-512 characters",
        )
    if custom_id in seen:
        return _Invalid(
            index,
            custom_id,
            "duplicate_custom_id",
            f"Line {index + 1}: custom_id '{custom_id}' is not unique",
        )
    seen.add(custom_id)
    if line.get("method") != "POST":
        return _Invalid(index, custom_id, "invalid_method", f"Line {index + 1}: method must be POST")
    if line.get("url") != endpoint:
        return _Invalid(
            index,
            custom_id,
            "mismatched_url",
            f"Line {index + 1}: url must be the batch's endpoint {endpoint}",
        )
    body = line.get("body")
    if not isinstance(body, dict):
        return _Invalid(index, custom_id, "invalid_body", f"Line {index + 1}: body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _Invalid(index, custom_id, "missing_model", f"Line {index + 1}: body.model must name a model")
    return custom_id, body, model


def _parse_request(endpoint: str, body: dict[str, Any], index: int, custom_id: str) -> Any:
    try:
        return REQUEST_MODELS[endpoint].model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return _Invalid(
            index, custom_id, "invalid_body", f"Line {index + 1}: body.{where}: {first.get('msg', 'invalid')}"
        )


@dataclass(frozen=True)
class Validated:
    valid: list[_Valid]
    invalid: list[_Invalid]
    alias: ModelAlias | None
    total: int


def validate(store: BatchStore, tenant_id: str, endpoint: str, data: bytes) -> Validated | BatchError:
    """Every line checked against OpenAI's rules: `{custom_id, method: POST, url: endpoint, body}`,
    unique custom_ids, one model per batch and that model an alias of the tenant. Bad lines are
    kept to be error-file lines; a file that is not a batch at all fails the batch."""
    raw_lines = [line for line in data.splitlines() if line.strip()]
    if not raw_lines:
        return BatchError(code="empty_file", message="The input file has no request lines")
    if len(raw_lines) > MAX_LINES:
        return BatchError(
            code="too_many_lines",
            message=f"The input file has {len(raw_lines)} lines; a batch may have at most {MAX_LINES}",
        )
    seen: set[str] = set()
    valid: list[_Valid] = []
    invalid: list[_Invalid] = []
    alias: ModelAlias | None = None
    for index, raw in enumerate(raw_lines):
        checked = _check_line(raw, index, endpoint, seen)
        if isinstance(checked, _Invalid):
            invalid.append(checked)
            continue
        custom_id, body, model = checked
        if alias is None:
            alias = store.models.get(tenant_id, model)
        if alias is None or model != alias.alias:
            code, message = (
                ("model_not_found", f"Line {index + 1}: the model '{model}' does not exist")
                if alias is None
                else (
                    "mismatched_model",
                    f"Line {index + 1}: every line of a batch must use the model '{alias.alias}'",
                )
            )
            invalid.append(_Invalid(index, custom_id, code, message))
            continue
        request = _parse_request(endpoint, body, index, custom_id)
        if isinstance(request, _Invalid):
            invalid.append(request)
            continue
        bounded = _bound_line(endpoint, body, request, alias)
        request = REQUEST_MODELS[endpoint].model_validate(bounded)
        valid.append(_Valid(index, custom_id, bounded, line_estimate(endpoint, request, alias, bounded)))
    return Validated(valid, invalid, alias, len(raw_lines))


# -- money ----------------------------------------------------------------------------------------------


def _refusal(refused: ReservationRefused, needed: int, lines: int) -> BudgetExceeded:
    remaining = max(refused.remaining_micros or 0, 0)
    whose = "this API key's" if refused.scope == "key" else "the tenant's"
    return BudgetExceeded(
        f"Hard budget reached: this batch of {lines} requests may cost up to "
        f"${money.to_usd(needed):.6f} at batch prices, and {whose} monthly budget has "
        f"${money.to_usd(remaining):.6f} remaining. "
        "Split the batch, lower max_tokens, or raise the budget."
    )


def reserve(store: BatchStore, batch: Batch, needed: int, lines: int) -> Hold | None:
    """The whole batch's upper bound, held against a hard budget until the batch ends (or 429)."""
    if store.usage is None:
        return None
    month = money.month_of(batch.created_at)
    # The budget item, not the month's counters: those hold the ledger, never the budget itself.
    budget = store.usage.get_budget(batch.tenant_id)
    if budget is None or not budget.hard:
        return None
    key_limit = budget.key_limits.get(batch.key_id)
    hold = Hold(
        tenant_id=batch.tenant_id,
        month=month,
        request_id=f"batch:{batch.id}",
        key_id=batch.key_id,
        amount_micros=needed,
        limit_micros=money.to_micros(budget.monthly_limit_usd),
        key_limit_micros=money.to_micros(key_limit) if key_limit is not None else None,
        expires_at=batch.expires_at + HOLD_SLACK_SECONDS,
        # A batch's hold and lines are on the month's first ledger shard (borrowing from the others
        # when the month is split): `batch_hold` finds it there without storing where it is.
        shard=0,
        shards=budget.ledger_shards,
    )
    try:
        store.usage.reserve(hold)
    except ReservationRefused as refused:
        if not store.usage.sweep(batch.tenant_id, month, store.now()):
            raise _refusal(refused, needed, lines) from None
        try:
            store.usage.reserve(hold)
        except ReservationRefused as again:
            raise _refusal(again, needed, lines) from None
    return hold


def batch_hold(batch: Batch) -> Hold | None:
    if batch.hold_micros is None or batch.hold_month is None:
        return None
    return Hold(
        tenant_id=batch.tenant_id,
        month=batch.hold_month,
        request_id=f"batch:{batch.id}",
        key_id=batch.key_id,
        amount_micros=batch.hold_micros,
        limit_micros=batch.hold_limit_micros or 0,
        key_limit_micros=batch.hold_key_limit_micros,
        expires_at=batch.hold_expires_at or 0,
    )


def meter_line(
    store: BatchStore,
    batch: Batch,
    index: int,
    *,
    alias: str,
    usage: Usage | None,
    pricing: Pricing | None,
    latency_ms: int | None,
) -> int:
    """Counts one line once (its request id) with the provider's token counts at batch prices; a
    failed line is an error, not spend. Its cost."""
    cost = 0
    if usage is not None and pricing is not None:
        cost = money.cost_micros(pricing.batch(), usage.prompt_tokens, usage.completion_tokens)
    if store.usage is None:
        return cost
    now = store.now()
    metered = Metered(
        tenant_id=batch.tenant_id,
        month=batch.hold_month or money.month_of(batch.created_at),
        day=money.day_of(now),
        request_id=line_request_id(batch.id, index),
        key_id=batch.key_id,
        alias=alias or batch.model,
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        cost_micros=cost,
        error=usage is None,
        latency_ms=latency_ms,
    )
    # The batch's hold stays until the batch ends; each line's cost is committed beside it, so
    # while a batch runs never less is held than it can still spend (byom.dal.ledger: `within`).
    store.usage.settle(metered, None, within=batch_hold(batch))
    return cost


# -- the API --------------------------------------------------------------------------------------------


def _input_file(store: BatchStore, tenant_id: str, file_id: str) -> FileRecord:
    record = store.files.get(tenant_id, file_id)
    if record is None:
        raise InvalidRequest(
            f"input_file_id: no file '{file_id}'", param="input_file_id", code="file_not_found"
        )
    if record.purpose != BATCH_PURPOSE:
        raise InvalidRequest(
            f"input_file_id: file '{file_id}' was not uploaded with purpose '{BATCH_PURPOSE}'",
            param="input_file_id",
        )
    return record


def _chunks(valid: Sequence[_Valid]) -> list[list[_Valid]]:
    size = max(MIN_CHUNK_LINES, math.ceil(len(valid) / MAX_CHUNKS))
    return [list(valid[i : i + size]) for i in range(0, len(valid), size)]


def _mode(store: BatchStore, alias: ModelAlias, endpoint: str, lines: int) -> str:
    if endpoint not in PROVIDER_ENDPOINTS.get(alias.provider, ()):
        return "gateway"
    if alias.provider == "bedrock" and lines < store.bedrock_min_records:
        # Bedrock would refuse the job outright: the gateway runs the lines, metered the same way.
        return "gateway"
    return "provider" if store.providers(alias.provider) is not None else "gateway"


def create_batch(store: BatchStore, principal: Principal, body: CreateBatch) -> Batch:
    tenant_id = require_tenant_key(principal, WRITERS)
    record = _input_file(store, tenant_id, body.input_file_id)
    now = store.now()
    batch = Batch(
        id=clock.new_id("batch"),
        tenant_id=tenant_id,
        key_id=principal.key_id,
        role=principal.role or "developer",
        endpoint=body.endpoint,
        input_file_id=record.id,
        metadata=body.metadata,
        created_at=now,
        expires_at=now + COMPLETION_WINDOW_SECONDS,
    )
    checked = validate(store, tenant_id, body.endpoint, store.bucket.get(record.s3_key))
    if isinstance(checked, BatchError):
        failed = batch.model_copy(update={"status": "failed", "failed_at": now, "errors": [checked]})
        store.batches.create(failed)
        return failed
    needed = sum(line.cost_micros for line in checked.valid)
    alias = checked.alias
    batch = batch.model_copy(
        update={
            "model": alias.alias if alias else "",
            "provider": alias.provider if alias else "",
            "mode": _mode(store, alias, body.endpoint, len(checked.valid)) if alias else "gateway",
            "total": checked.total,
            "failed": len(checked.invalid),
            "invalid": len(checked.invalid),
        }
    )
    hold = reserve(store, batch, needed, len(checked.valid)) if checked.valid else None
    chunks = _chunks(checked.valid)
    batch = batch.model_copy(
        update={
            "status": "in_progress",
            "in_progress_at": now,
            "chunks": len(chunks),
            **_hold_fields(hold),
        }
    )
    try:
        for number, lines in enumerate(chunks):
            store.bucket.put(
                chunk_key(batch, number),
                _dumps({"index": v.index, "custom_id": v.custom_id, "body": v.body} for v in lines),
            )
        store.bucket.put(
            f"{prefix(batch)}invalid.jsonl",
            _dumps({"index": i.index, **i.error_line()} for i in checked.invalid),
        )
        store.batches.create(batch)
    except Exception:
        if hold is not None and store.usage is not None:
            store.usage.release(hold)
        raise
    if not chunks:
        finalize(store, batch.id)
        return store.batches.get(batch.id) or batch
    _start(store, batch, hold)
    return batch


def _hold_fields(hold: Hold | None) -> dict[str, Any]:
    if hold is None:
        return {}
    return {
        "hold_micros": hold.amount_micros,
        "hold_month": hold.month,
        "hold_limit_micros": hold.limit_micros,
        "hold_key_limit_micros": hold.key_limit_micros,
        "hold_expires_at": hold.expires_at,
    }


def _start(store: BatchStore, batch: Batch, hold: Hold | None) -> None:
    try:
        store.workflow.start(
            batch.id,
            {
                "batch_id": batch.id,
                "tenant_id": batch.tenant_id,
                "mode": batch.mode,
                "chunks": list(range(batch.chunks)),
                "settings": {"poll_seconds": store.poll_seconds},
            },
        )
    except Exception:
        store.batches.update(
            batch.id,
            {
                "status": "failed",
                "failed_at": store.now(),
                "errors": [
                    BatchError(code="start_failed", message="The batch could not be started").model_dump()
                ],
            },
            expect=("in_progress",),
        )
        if hold is not None and store.usage is not None:
            store.usage.release(hold)
        raise


def get_batch(store: BatchStore, principal: Principal, batch_id: str) -> Batch:
    tenant_id = require_tenant_key(principal, READERS)
    batch = store.batches.get_for_tenant(tenant_id, batch_id)
    if batch is None:
        raise NotFound(f"No such Batch object: {batch_id}", param="batch_id")
    return batch


def list_batches(
    store: BatchStore, principal: Principal, *, after: str | None, limit: int
) -> tuple[list[Batch], bool]:
    tenant_id = require_tenant_key(principal, READERS)
    return store.batches.list(tenant_id, after, limit)


def cancel_batch(store: BatchStore, principal: Principal, batch_id: str) -> Batch:
    """`cancelling` at once; the lines already answered are kept and metered, the rest are not run,
    and the batch ends `cancelled` once what was running has finished."""
    batch = get_batch(store, principal, batch_id)
    require_tenant_key(principal, WRITERS)
    if batch.status in ("cancelling", "cancelled"):
        return batch
    now = store.now()
    if not store.batches.update(
        batch.id, {"status": "cancelling", "cancelling_at": now}, expect=("validating", "in_progress")
    ):
        current = store.batches.get(batch.id) or batch
        if current.status in ("cancelling", "cancelled"):
            return current
        raise Conflict(f"Batch {batch.id} is {current.status} and can no longer be cancelled")
    if batch.mode == "provider" and batch.provider_job_id:
        service = store.providers(batch.provider)
        if service is not None:
            service.cancel(store.targets(batch.tenant_id, batch.model), batch.provider_job_id)
    if batch.task_token:
        # Wakes a waiting execution, which then sees the job stopped.
        store.workflow.succeed(batch.task_token, {"cancelled": True})
    return batch.model_copy(update={"status": "cancelling", "cancelling_at": now})


# -- contract with evaluations (docs/batches.md) ------------------------------------------------------


def submit_lines(
    store: BatchStore,
    principal: Principal,
    *,
    endpoint: str,
    lines: list[dict[str, Any]],
    metadata: dict[str, str],
) -> str:
    """A purpose=batch file of these request lines and a batch over it, as POST /v1/files and
    POST /v1/batches make them (the same checks, the same budget reservation): the batch id."""
    tenant_id = require_tenant_key(principal, WRITERS)
    data = _dumps(lines)
    record = FileRecord(
        id=clock.new_id("file").replace("_", "-"),
        tenant_id=tenant_id,
        filename="batch-input.jsonl",
        purpose=BATCH_PURPOSE,
        bytes=len(data),
        created_at=store.now(),
        s3_key="",
        lines=len(lines),
    )
    record = record.model_copy(update={"s3_key": file_key(tenant_id, record.id)})
    store.bucket.put(record.s3_key, data)
    store.files.create(record)
    body = CreateBatch.model_validate(
        {"input_file_id": record.id, "endpoint": endpoint, "completion_window": "24h", "metadata": metadata}
    )
    return create_batch(store, principal, body).id


@dataclass(frozen=True)
class LineResult:
    custom_id: str
    status_code: int
    body: dict[str, Any]
    cost_usd: float
    latency_ms: int | None


def finished_lines(store: BatchStore, principal: Principal, batch_id: str) -> list[LineResult] | None:
    """Every line of a finished batch, in input order; None while the batch is still running."""
    batch = get_batch(store, principal, batch_id)
    if batch.status not in TERMINAL:
        return None
    return [
        LineResult(
            custom_id=item["custom_id"] or "",
            status_code=int(item["status_code"]),
            body=item["body"],
            cost_usd=money.to_usd(int(item.get("cost_micros") or 0)),
            latency_ms=item.get("latency_ms"),
        )
        for item in _loads(store.bucket.find(f"{prefix(batch)}lines.jsonl"))
    ]


# -- the state machine's tasks: lines the gateway runs -------------------------------------------------


def _batch(store: BatchStore, batch_id: str) -> Batch:
    batch = store.batches.get(batch_id)
    if batch is None:
        raise BatchClosed(f"batch {batch_id} does not exist")
    return batch


def _error_body(status_code: int, error: ByomError | None = None, message: str = "") -> dict[str, Any]:
    if error is not None:
        return {
            "error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}
        }
    return {"error": {"message": message, "type": "api_error", "param": None, "code": None}}


def run_chunk(store: BatchStore, batch_id: str, chunk: int) -> dict[str, Any]:
    """Runs one chunk's lines through the invocation path, side by side, metering each at batch
    prices. Lines not yet started when the batch is cancelled are not run. A retried chunk runs
    again but is metered once per line (its request id)."""
    batch = _batch(store, batch_id)
    if store.bucket.find(chunk_key(batch, chunk, "results")) is not None:
        return {"chunk": chunk, "ran": 0}
    if batch.status != "in_progress":
        return {"chunk": chunk, "ran": 0}
    assert store.run_line is not None, "the run task is given the invocation path"
    runner = store.run_line
    principal = Principal(key_id=batch.key_id, role=batch.role, tenant_id=batch.tenant_id)
    lines = _loads(store.bucket.get(chunk_key(batch, chunk)))

    def run(line: dict[str, Any]) -> dict[str, Any] | None:
        current = store.batches.get(batch.id)
        if current is None or current.status != "in_progress":
            return None
        request_id = line_request_id(batch.id, line["index"])
        started = time.perf_counter()
        answer = runner(principal, request_id, batch.endpoint, line["body"])
        latency = round((time.perf_counter() - started) * 1000)
        ok = answer.status_code == 200
        cost = meter_line(
            store,
            batch,
            line["index"],
            alias=answer.alias,
            usage=answer.usage if ok else None,
            pricing=answer.pricing,
            latency_ms=latency,
        )
        return {
            "index": line["index"],
            "custom_id": line["custom_id"],
            "request_id": request_id,
            "status_code": answer.status_code,
            "body": answer.body,
            "cost_micros": cost,
            "latency_ms": latency,
        }

    with ThreadPoolExecutor(max_workers=LINE_CONCURRENCY) as pool:
        results = [r for r in pool.map(run, lines) if r is not None]
    store.bucket.put(chunk_key(batch, chunk, "results"), _dumps(results))
    ok = sum(1 for r in results if r["status_code"] == 200)
    store.batches.add_counts(
        batch.id,
        completed=ok,
        failed=len(results) - ok,
        cost_micros=sum(r["cost_micros"] for r in results),
    )
    return {"chunk": chunk, "ran": len(results)}


# -- the state machine's tasks: lines a provider's batch service runs ----------------------------------


def _screened(store: BatchStore, batch: Batch, body: dict[str, Any], model_id: str) -> dict[str, Any]:
    """The line as the provider may see it under the tenant's policy (SPEC §8), its model the
    target's model id. Raises ContentPolicyViolation where the policy blocks it."""
    policy = store.policies.get(batch.tenant_id) if store.policies else None
    if policy is None:
        return {**body, "model": model_id}
    mode = policy.redaction.mode
    if batch.endpoint == CHAT:
        screened, _ = screening.screen_chat(ChatRequest.model_validate(body), policy.redaction, mode)
        sent = screened.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    else:
        request = EmbeddingRequest.model_validate(body)
        texts, _ = screening.screen(request.texts, policy.redaction, mode)
        sent = {**body, "input": texts}
    return {**sent, "model": model_id}


def _service(store: BatchStore, batch: Batch) -> ProviderBatches:
    service = store.providers(batch.provider)
    if service is None:
        raise ProviderJobFailed(f"No batch service for provider {batch.provider}")
    return service


def submit(store: BatchStore, batch_id: str) -> dict[str, Any]:
    """Screens every line and hands them to the provider's batch service."""
    batch = _batch(store, batch_id)
    if batch.status != "in_progress":
        raise BatchClosed(f"batch {batch.id} is {batch.status}")
    if batch.provider_job_id:
        return {"job_id": batch.provider_job_id}
    target = store.targets(batch.tenant_id, batch.model)
    lines: list[BatchLine] = []
    blocked: list[dict[str, Any]] = []
    for chunk in range(batch.chunks):
        for line in _loads(store.bucket.get(chunk_key(batch, chunk))):
            try:
                lines.append(
                    BatchLine(line["custom_id"], _screened(store, batch, line["body"], target.model_id))
                )
            except ByomError as error:
                blocked.append(
                    {
                        "index": line["index"],
                        "custom_id": line["custom_id"],
                        "request_id": line_request_id(batch.id, line["index"]),
                        "status_code": error.status,
                        "body": _error_body(error.status, error),
                        "cost_micros": 0,
                        "latency_ms": None,
                    }
                )
    store.bucket.put(f"{prefix(batch)}blocked.jsonl", _dumps(blocked))
    if not lines:
        return {"job_id": None}
    job_id = _service(store, batch).submit(
        target, batch.endpoint, lines, name=batch.id, s3_prefix=store.bucket.uri(prefix(batch))
    )
    if not store.batches.update(batch.id, {"provider_job_id": job_id}, expect=("in_progress",)):
        # Cancelled while the job was being created: it must not run (and bill) unwatched.
        _service(store, batch).cancel(target, job_id)
        store.batches.update(batch.id, {"provider_job_id": job_id}, expect=("cancelling",))
    return {"job_id": job_id}


def await_job(store: BatchStore, batch_id: str, token: str) -> dict[str, Any]:
    """Parks the execution until the provider's state-change event (or the poll timeout) wakes it."""
    batch = _batch(store, batch_id)
    store.batches.update(batch.id, {"task_token": token}, expect=("in_progress", "cancelling"))
    if batch.status == "cancelling" or not batch.provider_job_id:
        store.workflow.succeed(token, {})
    return {}


def job_state_changed(store: BatchStore, detail: dict[str, Any]) -> bool:
    """Bedrock's `Batch Inference Job State Change` event: wakes the execution waiting on the job
    (named after the batch). The state itself is read afresh by check_job."""
    name = str(detail.get("batchJobName") or detail.get("jobName") or "")
    status = str(detail.get("status") or "")
    # A jobName takes no '_': the job of batch_<hex> is batch-<hex> (byom.providers.bedrock_batch.job_name).
    batch_id = "batch_" + name.removeprefix("batch-") if name.startswith("batch-") else name
    if not batch_id.startswith("batch_") or status in ("Submitted", "Validating", "Scheduled", "InProgress"):
        return False
    batch = store.batches.get(batch_id)
    if batch is None or not batch.task_token:
        return False
    return bool(store.workflow.succeed(batch.task_token, {"status": status}))


def check_job(store: BatchStore, batch_id: str) -> dict[str, Any]:
    """One look at the provider's job: its progress into request_counts, and whether it ended."""
    batch = _batch(store, batch_id)
    if not batch.provider_job_id:
        return {"done": True}
    job = _service(store, batch).status(store.targets(batch.tenant_id, batch.model), batch.provider_job_id)
    store.batches.update(
        batch.id,
        {"completed": job.completed, "failed": batch.invalid + job.failed, "task_token": None},
        expect=("in_progress", "cancelling"),
    )
    return {"done": job.state != "in_progress", "state": job.state}


def _provider_results(store: BatchStore, batch: Batch) -> list[dict[str, Any]]:
    """The provider's outcomes, each line metered once at batch prices and audited."""
    results = _loads(store.bucket.find(f"{prefix(batch)}blocked.jsonl"))
    if not batch.provider_job_id:
        return results
    indexes = {
        line["custom_id"]: line["index"]
        for chunk in range(batch.chunks)
        for line in _loads(store.bucket.get(chunk_key(batch, chunk)))
    }
    target = store.targets(batch.tenant_id, batch.model)
    for outcome in _service(store, batch).outcomes(target, batch.provider_job_id):
        index = indexes.get(outcome.custom_id)
        if index is None:
            continue
        request_id = line_request_id(batch.id, index)
        ok = outcome.status_code == 200
        cost = meter_line(
            store,
            batch,
            index,
            alias=batch.model,
            usage=outcome.usage if ok else None,
            pricing=target.pricing,
            latency_ms=None,
        )
        if store.audit is not None:
            store.audit.line(batch, request_id, outcome, cost)
        body = outcome.body if ok or "error" in outcome.body else {"error": outcome.body}
        results.append(
            {
                "index": index,
                "custom_id": outcome.custom_id,
                "request_id": request_id,
                "status_code": outcome.status_code,
                "body": body,
                "cost_micros": cost,
                "latency_ms": None,
            }
        )
    return results


# -- the state machine's tasks: the end ---------------------------------------------------------------


def _gateway_results(store: BatchStore, batch: Batch, stopped: bool) -> list[dict[str, Any]]:
    """The chunks' results; a chunk that failed every try has its lines failed (unless the batch
    was cancelled, when lines never run are simply not part of it)."""
    results: list[dict[str, Any]] = []
    for chunk in range(batch.chunks):
        found = store.bucket.find(chunk_key(batch, chunk, "results"))
        if found is not None:
            results.extend(_loads(found))
            continue
        if stopped:
            continue
        for line in _loads(store.bucket.get(chunk_key(batch, chunk))):
            results.append(
                {
                    "index": line["index"],
                    "custom_id": line["custom_id"],
                    "request_id": line_request_id(batch.id, line["index"]),
                    "status_code": 500,
                    "body": _error_body(500, message="The gateway could not run this request"),
                    "cost_micros": 0,
                    "latency_ms": None,
                }
            )
    return results


def _output_line(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _line_id(),
        "custom_id": result["custom_id"],
        "response": {
            "status_code": result["status_code"],
            "request_id": result["request_id"],
            "body": result["body"],
        },
        "error": None,
    }


def _write_file(store: BatchStore, batch: Batch, kind: str, lines: list[dict[str, Any]]) -> str | None:
    """An output or error file of the tenant (purpose batch_output); its id is the batch's, so a
    retried finalize writes the same file."""
    if not lines:
        return None
    file_id = f"file-{batch.id.removeprefix('batch_')}-{kind}"
    data = _dumps(lines)
    record = FileRecord(
        id=file_id,
        tenant_id=batch.tenant_id,
        filename=f"{batch.id}_{kind}.jsonl",
        purpose=OUTPUT_PURPOSE,
        bytes=len(data),
        created_at=store.now(),
        s3_key=file_key(batch.tenant_id, file_id),
        lines=len(lines),
    )
    store.bucket.put(record.s3_key, data)
    if store.files.get(batch.tenant_id, file_id) is None:
        store.files.create(record)
    return file_id


def finalize(store: BatchStore, batch_id: str) -> dict[str, Any]:
    """The output and error files in input order, the lines metered, the hold released, the batch
    closed and BatchFinished published. Safe to run again."""
    batch = _batch(store, batch_id)
    if batch.status in TERMINAL:
        return {"status": batch.status}
    stopped = batch.status == "cancelling"
    store.batches.update(batch.id, {"finalizing_at": store.now()}, expect=("in_progress", "cancelling"))
    if batch.mode == "provider":
        ran = _provider_results(store, batch)
    else:
        ran = _gateway_results(store, batch, stopped)
    invalid = _loads(store.bucket.find(f"{prefix(batch)}invalid.jsonl"))
    ran.sort(key=lambda r: int(r["index"]))
    succeeded = [r for r in ran if r["status_code"] == 200]
    failed = [r for r in ran if r["status_code"] != 200]
    errors = sorted(
        [{"index": r["index"], **_output_line(r)} for r in failed]
        + [{k: v for k, v in line.items()} for line in invalid],
        key=lambda item: int(item["index"]),
    )
    output_file = _write_file(store, batch, "output", [_output_line(r) for r in succeeded])
    error_file = _write_file(
        store, batch, "error", [{k: v for k, v in e.items() if k != "index"} for e in errors]
    )
    every = sorted(
        ran
        + [
            {
                "index": line["index"],
                "custom_id": line["custom_id"],
                "status_code": 400,
                "body": {"error": {**line["error"], "type": "invalid_request_error", "param": None}},
                "cost_micros": 0,
                "latency_ms": None,
            }
            for line in invalid
        ],
        key=lambda r: int(r["index"]),
    )
    store.bucket.put(f"{prefix(batch)}lines.jsonl", _dumps(every))
    hold = batch_hold(batch)
    if hold is not None and store.usage is not None:
        store.usage.release(hold)
    now = store.now()
    status = "cancelled" if stopped else ("expired" if now > batch.expires_at else "completed")
    closed = store.batches.update(
        batch.id,
        {
            "status": status,
            f"{status}_at": now,
            "completed": len(succeeded),
            "failed": len(failed) + len(invalid),
            "cost_micros": sum(int(r.get("cost_micros") or 0) for r in ran),
            "output_file_id": output_file,
            "error_file_id": error_file,
            "task_token": None,
        },
        expect=("in_progress", "cancelling"),
    )
    if closed:
        _publish(store, batch, status)
    return {"status": status}


def record_failure(store: BatchStore, batch_id: str, error: dict[str, Any]) -> dict[str, Any]:
    """A task failed every try: the batch fails with a message of its own (never a stack trace),
    the hold goes back."""
    batch = store.batches.get(batch_id)
    if batch is None or batch.status in TERMINAL:
        return {"recorded": False}
    cause = str(error.get("Cause") or "")
    try:
        payload = json.loads(cause)
    except ValueError:
        payload = {}
    kind = (
        str(payload.get("errorType") or error.get("Error") or "States.TaskFailed")
        if isinstance(payload, dict)
        else "States.TaskFailed"
    )
    message = (
        str(payload.get("errorMessage"))[:1000]
        if kind in ("ProviderJobFailed", "ProviderError") and isinstance(payload, dict)
        else f"The batch could not be run ({kind})"
    )
    hold = batch_hold(batch)
    if hold is not None and store.usage is not None:
        store.usage.release(hold)
    now = store.now()
    closed = store.batches.update(
        batch.id,
        {
            "status": "failed",
            "failed_at": now,
            "errors": [BatchError(code="batch_failed", message=message).model_dump()],
            "task_token": None,
        },
        expect=("in_progress", "cancelling", "validating"),
    )
    if closed:
        _publish(store, batch, "failed")
    return {"recorded": closed}


def _publish(store: BatchStore, batch: Batch, status: str) -> None:
    """Contract §2: after the files are written and the lines metered."""
    if store.events is None:
        return
    store.events.put(
        "BatchFinished",
        {
            "tenant_id": batch.tenant_id,
            "batch_id": batch.id,
            "status": status,
            "metadata": batch.metadata or {},
        },
    )
