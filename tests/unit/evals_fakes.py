"""In-memory stand-ins for the evals' collaborators (byom.logic.evals Protocols), the batches
contract's §3 functions included."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from byom.domain import ModelAlias, Pricing
from byom.errors import NotFound
from byom.evals import AliasSummary, EvalRecord, RunRecord
from byom.logic.access import Principal
from byom.logic.evals import EvalStore, FinishedLine
from byom.logic.invoke import Answer, Call
from byom.openai_types import ChatRequest
from byom.providers import Target, Usage

from tests.unit.fakes import FakeModels


class FakeEvals:
    def __init__(self) -> None:
        self.evals: dict[tuple[str, str], EvalRecord] = {}
        self.runs: dict[tuple[str, str, str], RunRecord] = {}

    def put_eval(self, record: EvalRecord) -> None:
        self.evals[(record.tenant_id, record.id)] = record

    def get_eval(self, tenant_id: str, eval_id: str) -> EvalRecord | None:
        return self.evals.get((tenant_id, eval_id))

    def list_evals(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[EvalRecord], bool]:
        found = sorted(
            (e for (t, _), e in self.evals.items() if t == tenant_id), key=lambda e: e.id, reverse=True
        )
        if after:
            found = [e for e in found if e.id < after]
        return found[:limit], len(found) > limit

    def delete_eval(self, tenant_id: str, eval_id: str) -> bool:
        return self.evals.pop((tenant_id, eval_id), None) is not None

    def put_run(self, run: RunRecord) -> None:
        self.runs[(run.tenant_id, run.eval_id, run.id)] = run.model_copy(deep=True)

    def get_run(self, tenant_id: str, eval_id: str, run_id: str) -> RunRecord | None:
        run = self.runs.get((tenant_id, eval_id, run_id))
        return run.model_copy(deep=True) if run else None

    def list_runs(
        self, tenant_id: str, eval_id: str, after: str | None, limit: int
    ) -> tuple[list[RunRecord], bool]:
        found = sorted(
            (r for (t, e, _), r in self.runs.items() if t == tenant_id and e == eval_id),
            key=lambda r: r.id,
            reverse=True,
        )
        if after:
            found = [r for r in found if r.id < after]
        return found[:limit], len(found) > limit

    def record_alias(
        self, tenant_id: str, eval_id: str, run_id: str, alias: str, summary: AliasSummary
    ) -> RunRecord:
        run = self.runs.get((tenant_id, eval_id, run_id))
        if run is None or alias not in run.aliases:
            raise NotFound("no such run")
        run.aliases[alias] = run.aliases[alias].model_copy(update={"summary": summary})
        return run.model_copy(deep=True)

    def finish_run(
        self, tenant_id: str, eval_id: str, run_id: str, status: str, error: dict[str, Any] | None, at: int
    ) -> None:
        key = (tenant_id, eval_id, run_id)
        self.runs[key] = self.runs[key].model_copy(
            update={"status": status, "error": error, "completed_at": at}
        )


class FakeObjects:
    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}

    def put(self, key: str, body: bytes, content_type: str = "application/jsonl") -> None:
        self.items[key] = body

    def get(self, key: str) -> bytes:
        return self.items[key]


class FakeTestSets:
    __test__ = False

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], tuple[str, bytes]] = {}

    def read(self, tenant_id: str, file_id: str) -> tuple[str, bytes] | None:
        return self.files.get((tenant_id, file_id))


@dataclass(frozen=True)
class Line:
    """byom.logic.batches.LineResult's shape (batch contract §3)."""

    custom_id: str
    status_code: int
    body: dict[str, Any]
    cost_usd: float
    latency_ms: int | None


@dataclass
class FakeBatches:
    """submit_lines / finished_lines of the batches contract: records submissions; a test decides
    each batch's lines with `finish`."""

    submitted: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, list[FinishedLine]] = field(default_factory=dict)

    def submit(
        self, principal: Principal, *, endpoint: str, lines: list[dict[str, Any]], metadata: dict[str, str]
    ) -> str:
        batch_id = f"batch_{len(self.submitted)}"
        self.submitted.append(
            {
                "id": batch_id,
                "principal": principal,
                "endpoint": endpoint,
                "lines": lines,
                "metadata": metadata,
            }
        )
        return batch_id

    def finished(self, principal: Principal, batch_id: str) -> list[FinishedLine] | None:
        return self.results.get(batch_id)

    def finish(
        self, batch_id: str, answers: list[str | None], *, cost: float = 0.001, latency: int | None = 100
    ) -> None:
        """One line per answer, in order; None: that line failed."""
        self.results[batch_id] = [
            Line(f"item-{n}", 200, completion(a), cost, latency)
            if a is not None
            else Line(
                f"item-{n}",
                500,
                {"message": "upstream failed", "type": "api_error", "param": None, "code": None},
                0.0,
                None,
            )
            for n, a in enumerate(answers)
        ]


def completion(text: str) -> dict[str, Any]:
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }


@dataclass
class FakeGraderChat:
    """The invocation path for grader calls: answers with `reply`, costing `cost_micros`."""

    reply: str = '{"score": 0.8}'
    cost_micros: int = 500
    calls: list[tuple[Call, ChatRequest]] = field(default_factory=list)

    def __call__(self, call: Call, request: ChatRequest) -> Answer:
        self.calls.append((call, request))
        target = Target(tenant_id="t", alias=request.model, provider="openai_compatible", model_id="grader")
        return Answer(
            target=target, body=completion(self.reply), usage=Usage(10, 2), cost_micros=self.cost_micros
        )


def alias(tenant_id: str, name: str, input_price: float = 0.001, output_price: float = 0.002) -> ModelAlias:
    return ModelAlias(
        tenant_id=tenant_id,
        alias=name,
        provider="openai_compatible",
        model_id=f"{name}-model",
        pricing=Pricing(input_per_1k_usd=input_price, output_per_1k_usd=output_price),
        created_at=1,
    )


def eval_store(grader: FakeGraderChat | None = None) -> EvalStore:
    return EvalStore(
        evals=FakeEvals(),
        objects=FakeObjects(),
        test_sets=FakeTestSets(),
        aliases=FakeModels(),
        batches=FakeBatches(),
        chat=grader or FakeGraderChat(),
    )
