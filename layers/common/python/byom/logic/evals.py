"""Evaluations (SPEC §10): evals, runs executed as batches, and their grading.

A run renders its template for every item of the test set and submits one batch per alias (through
the batches API's own path, so the same checks and budget reservation apply). When the batch of an
alias finishes (a `BatchFinished` event), that alias's lines are graded by every criterion
(byom.logic.evaluation, the one scorer), its figures recorded, and once every alias is graded the run
is `completed`. Grader calls go through the data plane's invocation path, metered like any call.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from byom import clock
from byom.domain import ModelAlias
from byom.errors import ByomError, InvalidRequest, NotFound
from byom.evals import (
    MAX_ITEMS,
    AliasBatch,
    AliasSummary,
    CompletionsDataSource,
    CreateEval,
    CreateRun,
    EvalRecord,
    RunRecord,
    ScoreModel,
)
from byom.logic import evaluation
from byom.logic.access import Principal, require_tenant_key
from byom.logic.invoke import Answer, Call
from byom.logic.recommend import Evidence
from byom.observability import logger
from byom.openai_types import ChatRequest

CHAT_ENDPOINT = "/v1/chat/completions"
FILE_PURPOSE = "evals"
WRITERS = ("admin", "developer")
BATCH_SOURCE = "byom.batches"
BATCH_FINISHED = "BatchFinished"


# -- collaborators ----------------------------------------------------------------------------------


class EvalRepository(Protocol):
    """Evals and their runs, one partition per tenant (byom.dal.evals.EvalTable)."""

    def put_eval(self, record: EvalRecord) -> None: ...

    def get_eval(self, tenant_id: str, eval_id: str) -> EvalRecord | None: ...

    def list_evals(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[EvalRecord], bool]: ...

    def delete_eval(self, tenant_id: str, eval_id: str) -> bool: ...

    def put_run(self, run: RunRecord) -> None: ...

    def get_run(self, tenant_id: str, eval_id: str, run_id: str) -> RunRecord | None: ...

    def list_runs(
        self, tenant_id: str, eval_id: str, after: str | None, limit: int
    ) -> tuple[list[RunRecord], bool]: ...

    def record_alias(
        self, tenant_id: str, eval_id: str, run_id: str, alias: str, summary: AliasSummary
    ) -> RunRecord:
        """Sets one alias's summary alone (two aliases graded at once do not overwrite each other);
        returns the run as it is after the write."""
        ...

    def finish_run(
        self, tenant_id: str, eval_id: str, run_id: str, status: str, error: dict[str, Any] | None, at: int
    ) -> None: ...


class Objects(Protocol):
    """The data bucket (byom.dal.fine_tuning.DataBucket): rendered items and graded output items."""

    def put(self, key: str, body: bytes, content_type: str = "application/jsonl") -> None: ...

    def get(self, key: str) -> bytes: ...


class TestSets(Protocol):
    """The tenant's uploaded files (byom.dal.evals.TestSetFiles)."""

    def read(self, tenant_id: str, file_id: str) -> tuple[str, bytes] | None:
        """The file's purpose and bytes; None when the tenant has no such file."""
        ...


class Aliases(Protocol):
    def get(self, tenant_id: str, alias: str) -> ModelAlias | None: ...


class FinishedLine(Protocol):
    """A line of a finished batch (byom.logic.batches.LineResult, batch contract §3)."""

    @property
    def custom_id(self) -> str: ...
    @property
    def status_code(self) -> int: ...
    @property
    def body(self) -> dict[str, Any]: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def latency_ms(self) -> int | None: ...


class BatchRunner(Protocol):
    """The batches API's path (byom.logic.batches.submit_lines / finished_lines)."""

    def submit(
        self, principal: Principal, *, endpoint: str, lines: list[dict[str, Any]], metadata: dict[str, str]
    ) -> str: ...

    def finished(self, principal: Principal, batch_id: str) -> list[FinishedLine] | None: ...


ChatCall = Callable[[Call, ChatRequest], Answer]


@dataclass
class EvalStore:
    """The collaborators; tests pass in-memory fakes."""

    evals: EvalRepository
    objects: Objects
    test_sets: TestSets
    aliases: Aliases
    batches: BatchRunner
    chat: ChatCall | None = None
    """The invocation path for grader calls; only the scorer needs it."""
    max_items: int = MAX_ITEMS


class RunNotReady(ByomError):
    """A finished batch whose lines cannot be read yet: the event is retried."""

    status = 503
    type = "api_error"


# -- ids and keys ---------------------------------------------------------------------------------------


def sortable_id(prefix: str, created_at: int) -> str:
    """Ids that sort by creation time, so a tenant's partition lists newest first without an index."""
    return f"{prefix}_{created_at:010x}{secrets.token_hex(8)}"


def run_prefix(tenant_id: str, eval_id: str, run_id: str) -> str:
    return f"tenants/{tenant_id}/evals/{eval_id}/runs/{run_id}/"


def items_key(run: RunRecord) -> str:
    return run_prefix(run.tenant_id, run.eval_id, run.id) + "items.jsonl"


def output_key(run: RunRecord, alias: str) -> str:
    return run_prefix(run.tenant_id, run.eval_id, run.id) + f"output/{alias}.jsonl"


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in rows).encode()


def _rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


# -- evals ----------------------------------------------------------------------------------------------


def _alias_of(store: EvalStore, tenant_id: str, alias: str, param: str) -> ModelAlias:
    found = store.aliases.get(tenant_id, alias)
    if found is None:
        raise InvalidRequest(
            f"{param}: the tenant has no model alias '{alias}'", param=param, code="model_not_found"
        )
    return found


def create_eval(store: EvalStore, principal: Principal, body: CreateEval) -> EvalRecord:
    tenant_id = require_tenant_key(principal, WRITERS)
    for n, criterion in enumerate(body.testing_criteria):
        if isinstance(criterion, ScoreModel):
            _alias_of(store, tenant_id, criterion.model, f"testing_criteria[{n}].model")
    now = clock.now()
    record = EvalRecord(
        id=sortable_id("eval", now),
        tenant_id=tenant_id,
        name=body.name or "eval",
        created_at=now,
        data_source_config=body.data_source_config,
        testing_criteria=body.testing_criteria,
        metadata=body.metadata or {},
    )
    store.evals.put_eval(record)
    return record


def get_eval(store: EvalStore, principal: Principal, eval_id: str) -> EvalRecord:
    tenant_id = require_tenant_key(principal)
    # Another tenant's eval is answered exactly as one that does not exist.
    record = store.evals.get_eval(tenant_id, eval_id)
    if record is None:
        raise NotFound(f"No such eval: {eval_id}", param="eval_id")
    return record


def list_evals(
    store: EvalStore, principal: Principal, *, after: str | None, limit: int
) -> tuple[list[EvalRecord], bool]:
    return store.evals.list_evals(require_tenant_key(principal), after, limit)


def delete_eval(store: EvalStore, principal: Principal, eval_id: str) -> EvalRecord:
    require_tenant_key(principal, WRITERS)
    record = get_eval(store, principal, eval_id)
    if not store.evals.delete_eval(record.tenant_id, record.id):
        raise NotFound(f"No such eval: {eval_id}", param="eval_id")
    return record


def latest_completed_run(
    evals: EvalRepository, tenant_id: str, name: str, *, scan: int = 100
) -> tuple[EvalRecord, RunRecord] | None:
    """The newest completed run of the tenant's newest eval named `name` that has one (SPEC §10:
    `/v1/models/recommend?task=NAME`). Reads at most `scan` evals and `scan` runs of each."""
    found, _ = evals.list_evals(tenant_id, None, scan)
    for record in (e for e in found if e.name == name):
        runs, _ = evals.list_runs(tenant_id, record.id, None, scan)
        for run in runs:
            if run.status == "completed":
                return record, run
    return None


def evidence(evals: EvalRepository, tenant_id: str, task: str) -> Evidence | None:
    """What `/v1/models/recommend?task=` ranks with; None when the eval has no completed run."""
    latest = latest_completed_run(evals, tenant_id, task)
    if latest is None:
        return None
    record, run = latest
    per_alias = {a: b.summary for a, b in run.aliases.items() if b.summary is not None}
    return Evidence(task=task, eval_id=record.id, run_id=run.id, per_alias=per_alias)


# -- runs -----------------------------------------------------------------------------------------------


def _test_set(store: EvalStore, tenant_id: str, file_id: str) -> list[dict[str, Any]]:
    param = "data_source.source.id"
    found = store.test_sets.read(tenant_id, file_id)
    if found is None:
        raise InvalidRequest(f"{param}: no file '{file_id}'", param=param, code="file_not_found")
    purpose, data = found
    if purpose != FILE_PURPOSE:
        raise InvalidRequest(
            f"{param}: file '{file_id}' was not uploaded with purpose '{FILE_PURPOSE}'", param=param
        )
    items = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise InvalidRequest(f"{param}: line {number} is not JSON", param=param) from None
        if not isinstance(row, dict) or not isinstance(row.get("item"), dict):
            raise InvalidRequest(f'{param}: line {number} is not an object {{"item": {{...}}}}', param=param)
        items.append(row["item"])
        if len(items) > store.max_items:
            raise InvalidRequest(f"{param}: a test set may have at most {store.max_items} items", param=param)
    if not items:
        raise InvalidRequest(f"{param}: the test set has no items", param=param)
    return items


def _messages(source: CompletionsDataSource, item: dict[str, Any]) -> list[dict[str, str]]:
    context = {"item": item}
    return [
        {"role": m.role, "content": evaluation.render(m.content, context)}
        for m in source.input_messages.template
    ]


def _request_line(
    source: CompletionsDataSource, item: dict[str, Any], number: int, alias: str
) -> dict[str, Any]:
    messages = _messages(source, item)
    sampling = source.sampling_params.model_dump(exclude_none=True) if source.sampling_params else {}
    return {
        "custom_id": f"item-{number}",
        "method": "POST",
        "url": CHAT_ENDPOINT,
        "body": {"model": alias, "messages": messages, **sampling},
    }


def create_run(store: EvalStore, principal: Principal, eval_id: str, body: CreateRun) -> RunRecord:
    tenant_id = require_tenant_key(principal, WRITERS)
    record = get_eval(store, principal, eval_id)
    aliases = body.data_source.aliases()
    for alias in aliases:
        _alias_of(store, tenant_id, alias, "data_source.model")
    items = _test_set(store, tenant_id, body.data_source.source.id)
    now = clock.now()
    run = RunRecord(
        id=sortable_id("evalrun", now),
        eval_id=record.id,
        tenant_id=tenant_id,
        name=body.name or f"{record.name} run",
        created_at=now,
        status="queued",
        data_source=body.data_source,
        items=len(items),
        key_id=principal.key_id,
        role=principal.role,
        metadata=body.metadata or {},
    )
    store.objects.put(items_key(run), _jsonl(items))
    store.evals.put_run(run)
    for alias in aliases:
        lines = [_request_line(body.data_source, item, n, alias) for n, item in enumerate(items)]
        metadata = {"eval_id": record.id, "eval_run_id": run.id, "alias": alias}
        try:
            batch_id = store.batches.submit(principal, endpoint=CHAT_ENDPOINT, lines=lines, metadata=metadata)
        except ByomError as error:
            # The batches already submitted run on and are graded (the run keeps their ids); the run
            # itself says it failed, and why.
            failed = {"status": "failed", "error": _error(error), "completed_at": clock.now()}
            store.evals.put_run(run.model_copy(update=failed))
            raise
        run.aliases[alias] = AliasBatch(batch_id=batch_id)
    run = run.model_copy(update={"status": "in_progress"})
    store.evals.put_run(run)
    return run


def _error(error: ByomError) -> dict[str, Any]:
    return {"code": error.code or error.type, "message": error.message}


def get_run(store: EvalStore, principal: Principal, eval_id: str, run_id: str) -> RunRecord:
    tenant_id = require_tenant_key(principal)
    run = store.evals.get_run(tenant_id, eval_id, run_id)
    if run is None:
        raise NotFound(f"No such eval run: {run_id}", param="run_id")
    return run


def list_runs(
    store: EvalStore, principal: Principal, eval_id: str, *, after: str | None, limit: int
) -> tuple[list[RunRecord], bool]:
    record = get_eval(store, principal, eval_id)
    return store.evals.list_runs(record.tenant_id, record.id, after, limit)


def output_items(
    store: EvalStore, principal: Principal, eval_id: str, run_id: str, *, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Every graded item of every alias graded so far, in item order then alias order."""
    run = get_run(store, principal, eval_id, run_id)
    rows: list[dict[str, Any]] = []
    for alias, batch in run.aliases.items():
        if batch.summary is not None:
            rows.extend(_rows(store.objects.get(output_key(run, alias))))
    rows.sort(key=lambda r: (r["datasource_item_id"], list(run.aliases).index(r["sample"]["model"])))
    if after is not None:
        ids = [r["id"] for r in rows]
        rows = rows[ids.index(after) + 1 :] if after in ids else []
    return rows[:limit], len(rows) > limit


# -- grading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchFinished:
    tenant_id: str
    batch_id: str
    status: str
    eval_id: str
    run_id: str
    alias: str


def parse_batch_finished(event: Mapping[str, Any]) -> BatchFinished | None:
    """The contract's event (batch contract §2); None for a batch that is not an eval run's."""
    if event.get("source") != BATCH_SOURCE or event.get("detail-type") != BATCH_FINISHED:
        return None
    detail = event.get("detail") or {}
    metadata = detail.get("metadata") or {}
    wanted = ("eval_id", "eval_run_id", "alias")
    if not all(isinstance(metadata.get(k), str) for k in wanted):
        return None
    if not isinstance(detail.get("tenant_id"), str) or not isinstance(detail.get("batch_id"), str):
        return None
    return BatchFinished(
        tenant_id=detail["tenant_id"],
        batch_id=detail["batch_id"],
        status=str(detail.get("status", "")),
        eval_id=metadata["eval_id"],
        run_id=metadata["eval_run_id"],
        alias=metadata["alias"],
    )


def _output_text(body: Mapping[str, Any]) -> str:
    choices = body.get("choices") or []
    if not choices:
        return ""
    content = (choices[0].get("message") or {}).get("content")
    return content if isinstance(content, str) else ""


def _grader(store: EvalStore, run: RunRecord, request_id: str) -> evaluation.Grader:
    chat = store.chat
    if chat is None:
        raise ValueError("grading a score_model criterion needs the invocation path")
    principal = Principal(key_id=run.key_id, role=run.role, tenant_id=run.tenant_id)
    calls = iter(range(1_000_000))

    def ask(alias: str, messages: list[dict[str, str]], params: dict[str, Any]) -> evaluation.GraderAnswer:
        sampling = (
            {"max_tokens": params["max_completions_tokens"]} if "max_completions_tokens" in params else {}
        )
        sampling |= {k: v for k, v in params.items() if k in ("temperature", "top_p", "seed")}
        request = ChatRequest.model_validate({"model": alias, "messages": messages, **sampling})
        # One request id per grader call, derived from the invocation's: Lambda retries an event
        # under the same request id, and metering is once per request id, so a retried grading does
        # not charge its grader calls twice.
        answer = chat(Call(principal, f"{request_id}-grade-{next(calls)}"), request)
        cost = (answer.cost_micros or 0) / 1_000_000
        return evaluation.GraderAnswer(_output_text(answer.body), cost)

    return ask


def _grade_line(
    record: EvalRecord, item: dict[str, Any], line: FinishedLine | None, grader: evaluation.Grader
) -> tuple[list[evaluation.Result], str, str | None]:
    """The criteria's results, the sample's text, and the line's error message if it failed."""
    if line is None:
        return [], "", "the batch has no line for this item"
    if line.status_code != 200:
        return [], "", str(line.body.get("message") or "the model call failed")
    text = _output_text(line.body)
    context = {"item": item, "sample": {"output_text": text, "output_json": _json_or_none(text)}}
    results = []
    for criterion in record.testing_criteria:
        try:
            results.append(evaluation.grade(criterion, context, grader))
        except ByomError as error:
            # A grader refused (budget, a deleted alias): the item fails that criterion, the run goes on.
            results.append(evaluation.Result(criterion.name, criterion.type, 0.0, False, error=error.message))
    return results, text, None


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _usage(body: Mapping[str, Any]) -> tuple[int, int]:
    usage = body.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def grade_alias(
    record: EvalRecord,
    run: RunRecord,
    alias: str,
    items: list[dict[str, Any]],
    lines: list[FinishedLine],
    grader: evaluation.Grader,
) -> tuple[AliasSummary, list[dict[str, Any]]]:
    """One alias's summary and its output items (OpenAI's `eval.run.output_item`)."""
    by_id = {line.custom_id: line for line in lines}
    outputs: list[dict[str, Any]] = []
    scores: list[float] = []
    passed = failed = errored = prompt = completion = 0
    cost = grader_cost = 0.0
    latencies: list[int] = []
    criteria = {c.name: {"passed": 0, "failed": 0} for c in record.testing_criteria}
    for number, item in enumerate(items):
        line = by_id.get(f"item-{number}")
        results, text, error = _grade_line(record, item, line, grader)
        if line is not None:
            cost += line.cost_usd
            if line.latency_ms is not None:
                latencies.append(line.latency_ms)
        grader_cost += sum(r.cost_usd for r in results)
        if error is not None:
            errored += 1
            status = "error"
        else:
            scores.append(sum(r.score for r in results) / len(results))
            ok = all(r.passed for r in results)
            passed, failed = passed + ok, failed + (not ok)
            status = "pass" if ok else "fail"
            for r in results:
                criteria[r.name]["passed" if r.passed else "failed"] += 1
        p, c = _usage(line.body) if line is not None and error is None else (0, 0)
        prompt, completion = prompt + p, completion + c
        outputs.append(_output_item(record, run, alias, number, item, text, results, status, error, (p, c)))
    graded = len(items)
    summary = AliasSummary(
        alias=alias,
        items=graded,
        # An errored item scores 0: an alias that fails to answer is not better for it.
        score=round(sum(scores) / graded, 4) if graded else 0.0,
        pass_rate=round(passed / graded, 4) if graded else 0.0,
        passed=passed,
        failed=failed,
        errored=errored,
        cost_usd=round(cost + grader_cost, 6),
        grader_cost_usd=round(grader_cost, 6),
        latency_p50_ms=evaluation.percentile(latencies, 0.5),
        latency_p95_ms=evaluation.percentile(latencies, 0.95),
        prompt_tokens=prompt,
        completion_tokens=completion,
        criteria=criteria,
    )
    return summary, outputs


def _output_item(
    record: EvalRecord,
    run: RunRecord,
    alias: str,
    number: int,
    item: dict[str, Any],
    text: str,
    results: list[evaluation.Result],
    status: str,
    error: str | None,
    tokens: tuple[int, int],
) -> dict[str, Any]:
    return {
        "id": f"outputitem_{run.id.removeprefix('evalrun_')}_{number:05d}_{alias}",
        "object": "eval.run.output_item",
        "created_at": clock.now(),
        "eval_id": record.id,
        "run_id": run.id,
        "datasource_item_id": number,
        "datasource_item": item,
        "status": status,
        "results": [r.public() for r in results],
        "sample": {
            "model": alias,
            "input": _messages(run.data_source, item),
            "output": [] if error else [{"role": "assistant", "content": text}],
            "error": {"code": "model_error", "message": error} if error else None,
            "finish_reason": "" if error else "stop",
            "usage": {
                "prompt_tokens": tokens[0],
                "completion_tokens": tokens[1],
                "total_tokens": sum(tokens),
                "cached_tokens": 0,
            },
            "max_completion_tokens": 0,
            "seed": 0,
            "temperature": 1.0,
            "top_p": 1.0,
        },
    }


def on_batch_finished(store: EvalStore, event: Mapping[str, Any], request_id: str) -> RunRecord | None:
    """Grades the alias whose batch finished; None when the event is not for a run (or it was
    graded already: EventBridge delivers at least once)."""
    finished = parse_batch_finished(event)
    if finished is None:
        return None
    run = store.evals.get_run(finished.tenant_id, finished.eval_id, finished.run_id)
    record = store.evals.get_eval(finished.tenant_id, finished.eval_id)
    batch = run.aliases.get(finished.alias) if run is not None else None
    if run is None or record is None or batch is None or batch.batch_id != finished.batch_id:
        logger.warning("BatchFinished for an unknown eval run dropped", extra={"batch_id": finished.batch_id})
        return None
    if batch.summary is not None:
        return run
    principal = Principal(key_id=run.key_id, role=run.role, tenant_id=run.tenant_id)
    lines = store.batches.finished(principal, finished.batch_id)
    if lines is None:
        raise RunNotReady(f"batch {finished.batch_id} is not finished yet")
    items = _rows(store.objects.get(items_key(run)))
    summary, outputs = grade_alias(record, run, finished.alias, items, lines, _grader(store, run, request_id))
    store.objects.put(output_key(run, finished.alias), _jsonl(outputs))
    run = store.evals.record_alias(run.tenant_id, run.eval_id, run.id, finished.alias, summary)
    if run.status == "in_progress" and all(b.summary is not None for b in run.aliases.values()):
        at = clock.now()
        store.evals.finish_run(run.tenant_id, run.eval_id, run.id, "completed", None, at)
        run = run.model_copy(update={"status": "completed", "completed_at": at})
    return run


# -- the run object -------------------------------------------------------------------------------------


def run_public(run: RunRecord) -> dict[str, Any]:
    """OpenAI's `eval.run`, with `byom_per_alias` (each alias's figures, once graded)."""
    summaries = [b.summary for b in run.aliases.values() if b.summary is not None]
    criteria: dict[str, dict[str, int]] = {}
    for s in summaries:
        for name, counts in s.criteria.items():
            into = criteria.setdefault(name, {"passed": 0, "failed": 0})
            into["passed"] += counts["passed"]
            into["failed"] += counts["failed"]
    source = run.data_source
    return {
        "id": run.id,
        "object": "eval.run",
        "eval_id": run.eval_id,
        "name": run.name,
        "created_at": run.created_at,
        "status": run.status,
        "model": ",".join(source.aliases()),
        "data_source": source.model_dump(mode="json", exclude_none=True),
        "error": run.error,
        "metadata": run.metadata,
        "report_url": None,
        "result_counts": {
            "total": run.items * len(run.aliases),
            "passed": sum(s.passed for s in summaries),
            "failed": sum(s.failed for s in summaries),
            "errored": sum(s.errored for s in summaries),
        },
        "per_model_usage": [
            {
                "model_name": s.alias,
                "invocation_count": s.items,
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
                "total_tokens": s.prompt_tokens + s.completion_tokens,
                "cached_tokens": 0,
            }
            for s in summaries
        ],
        "per_testing_criteria_results": [
            {"testing_criteria": name, **counts} for name, counts in criteria.items()
        ],
        "byom_per_alias": {
            alias: (b.summary.model_dump(exclude={"alias", "criteria"}) if b.summary else {})
            | {"batch_id": b.batch_id, "status": "completed" if b.summary else "in_progress"}
            for alias, b in run.aliases.items()
        },
    }
