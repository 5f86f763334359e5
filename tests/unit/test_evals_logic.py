"""Evals and their runs (byom.logic.evals) with fakes of every collaborator, the batches contract's
§3 functions included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from byom.errors import BudgetExceeded, InvalidRequest, NotFound
from byom.evals import CreateEval, CreateRun
from byom.logic import evals as logic
from byom.logic.access import Principal

from tests.unit.evals_fakes import FakeBatches, FakeEvals, FakeGraderChat, FakeTestSets, alias, eval_store

TENANT = "acme"
CALLER = Principal(key_id="key_1", role="developer", tenant_id=TENANT)
OTHER = Principal(key_id="key_2", role="developer", tenant_id="globex")
ITEMS = [
    {"question": "Capital of France?", "expected": "Paris"},
    {"question": "Capital of Italy?", "expected": "Rome"},
]


def _eval_body(**overrides: Any) -> CreateEval:
    body = {
        "name": "capitals",
        "data_source_config": {
            "type": "custom",
            "item_schema": {"type": "object"},
            "include_sample_schema": True,
        },
        "testing_criteria": [
            {
                "type": "string_check",
                "name": "exact",
                "input": "{{sample.output_text}}",
                "reference": "{{item.expected}}",
                "operation": "eq",
            }
        ],
    }
    return CreateEval.model_validate(body | overrides)


def _run_body(*aliases: str) -> CreateRun:
    return CreateRun.model_validate(
        {
            "data_source": {
                "type": "completions",
                "model": aliases[0],
                **({"models": list(aliases[1:])} if len(aliases) > 1 else {}),
                "input_messages": {
                    "type": "template",
                    "template": [{"role": "user", "content": "{{item.question}}"}],
                },
                "source": {"type": "file_id", "id": "file-1"},
            }
        }
    )


@pytest.fixture
def store() -> logic.EvalStore:
    built = eval_store()
    for name in ("fast", "smart", "judge"):
        built.aliases.create(alias(TENANT, name))  # type: ignore[attr-defined]
    lines = "".join(json.dumps({"item": i}) + "\n" for i in ITEMS).encode()
    test_sets = built.test_sets
    assert isinstance(test_sets, FakeTestSets)
    test_sets.files[(TENANT, "file-1")] = ("evals", lines)
    test_sets.files[(TENANT, "file-ft")] = ("fine-tune", lines)
    return built


def _batches(store: logic.EvalStore) -> FakeBatches:
    assert isinstance(store.batches, FakeBatches)
    return store.batches


def _event(batch: dict[str, Any], tenant: str = TENANT) -> dict[str, Any]:
    detail = {
        "tenant_id": tenant,
        "batch_id": batch["id"],
        "status": "completed",
        "metadata": batch["metadata"],
    }
    return {"source": "byom.batches", "detail-type": "BatchFinished", "detail": detail}


def test_an_eval_with_a_grader_alias_the_tenant_lacks_is_refused(store: logic.EvalStore) -> None:
    grader = {
        "type": "score_model",
        "name": "judge",
        "model": "nope",
        "input": [{"role": "user", "content": "x"}],
    }
    with pytest.raises(InvalidRequest) as refused:
        logic.create_eval(store, CALLER, _eval_body(testing_criteria=[grader]))
    assert refused.value.param == "testing_criteria[0].model"


def test_another_tenants_eval_is_not_found(store: logic.EvalStore) -> None:
    record = logic.create_eval(store, CALLER, _eval_body())
    with pytest.raises(NotFound):
        logic.get_eval(store, OTHER, record.id)


def test_a_run_submits_one_batch_per_alias_with_the_rendered_items(store: logic.EvalStore) -> None:
    record = logic.create_eval(store, CALLER, _eval_body())
    run = logic.create_run(store, CALLER, record.id, _run_body("fast", "smart"))
    submitted = _batches(store).submitted
    assert [s["metadata"] for s in submitted] == [
        {"eval_id": record.id, "eval_run_id": run.id, "alias": "fast"},
        {"eval_id": record.id, "eval_run_id": run.id, "alias": "smart"},
    ]
    first = submitted[1]["lines"][0]
    assert first["custom_id"] == "item-0" and first["url"] == "/v1/chat/completions"
    assert first["body"] == {
        "model": "smart",
        "messages": [{"role": "user", "content": "Capital of France?"}],
    }
    assert run.status == "in_progress"


def test_a_run_over_a_file_of_another_purpose_is_refused(store: logic.EvalStore) -> None:
    record = logic.create_eval(store, CALLER, _eval_body())
    body = _run_body("fast")
    body.data_source.source.id = "file-ft"
    with pytest.raises(InvalidRequest, match="purpose 'evals'"):
        logic.create_run(store, CALLER, record.id, body)


def test_a_run_over_another_tenants_file_is_refused_as_missing(store: logic.EvalStore) -> None:
    store.aliases.create(alias("globex", "fast"))  # type: ignore[attr-defined]
    record = logic.create_eval(store, OTHER, _eval_body())
    with pytest.raises(InvalidRequest) as refused:
        logic.create_run(store, OTHER, record.id, _run_body("fast"))
    assert refused.value.code == "file_not_found"


def test_a_finished_batch_grades_its_alias_and_the_run_waits_for_the_others(store: logic.EvalStore) -> None:
    record = logic.create_eval(store, CALLER, _eval_body())
    run = logic.create_run(store, CALLER, record.id, _run_body("fast", "smart"))
    batches = _batches(store)
    batches.finish("batch_0", ["Paris", "Milan"], cost=0.01, latency=100)
    graded = logic.on_batch_finished(store, _event(batches.submitted[0]), "req-1")
    assert graded is not None and graded.status == "in_progress"
    summary = graded.aliases["fast"].summary
    assert summary is not None
    assert (summary.score, summary.pass_rate, summary.cost_usd, summary.latency_p50_ms) == (
        0.5,
        0.5,
        0.02,
        100,
    )
    assert run.id == graded.id


def test_the_run_is_completed_when_every_alias_is_graded(store: logic.EvalStore) -> None:
    record = logic.create_eval(store, CALLER, _eval_body())
    run = logic.create_run(store, CALLER, record.id, _run_body("fast", "smart"))
    batches = _batches(store)
    batches.finish("batch_0", ["Paris", "Milan"])
    batches.finish("batch_1", ["Paris", "Rome"])
    for batch in batches.submitted:
        logic.on_batch_finished(store, _event(batch), "req")
    public = logic.run_public(logic.get_run(store, CALLER, record.id, run.id))
    assert public["status"] == "completed"
    assert public["result_counts"] == {"total": 4, "passed": 3, "failed": 1, "errored": 0}
    assert public["per_testing_criteria_results"] == [{"testing_criteria": "exact", "passed": 3, "failed": 1}]
    assert public["byom_per_alias"]["smart"]["score"] == 1.0


def test_a_failed_line_counts_as_an_error_and_scores_zero(store: logic.EvalStore) -> None:
    record = logic.create_eval(store, CALLER, _eval_body())
    logic.create_run(store, CALLER, record.id, _run_body("fast"))
    batches = _batches(store)
    batches.finish("batch_0", ["Paris", None])
    graded = logic.on_batch_finished(store, _event(batches.submitted[0]), "req")
    assert graded is not None
    summary = graded.aliases["fast"].summary
    assert summary is not None and (summary.errored, summary.score) == (1, 0.5)


def test_a_repeated_event_does_not_grade_twice() -> None:
    grader = FakeGraderChat(reply='{"score": 1}')
    store = eval_store(grader)
    store.aliases.create(alias(TENANT, "fast"))  # type: ignore[attr-defined]
    store.aliases.create(alias(TENANT, "judge"))  # type: ignore[attr-defined]
    assert isinstance(store.test_sets, FakeTestSets)
    store.test_sets.files[(TENANT, "file-1")] = ("evals", json.dumps({"item": ITEMS[0]}).encode())
    rubric = {
        "type": "score_model",
        "name": "judge",
        "model": "judge",
        "input": [{"role": "user", "content": "x"}],
    }
    record = logic.create_eval(store, CALLER, _eval_body(testing_criteria=[rubric]))
    logic.create_run(store, CALLER, record.id, _run_body("fast"))
    batches = _batches(store)
    batches.finish("batch_0", ["Paris"])
    for _ in range(2):
        logic.on_batch_finished(store, _event(batches.submitted[0]), "req")
    assert len(grader.calls) == 1


def test_grader_calls_are_made_as_the_runs_caller_and_their_cost_counted() -> None:
    grader = FakeGraderChat(reply='{"score": 0.9}', cost_micros=2_000)
    store = eval_store(grader)
    for name in ("fast", "judge"):
        store.aliases.create(alias(TENANT, name))  # type: ignore[attr-defined]
    assert isinstance(store.test_sets, FakeTestSets)
    store.test_sets.files[(TENANT, "file-1")] = ("evals", json.dumps({"item": ITEMS[0]}).encode())
    rubric = {
        "type": "score_model",
        "name": "judge",
        "model": "judge",
        "input": [{"role": "user", "content": "x"}],
    }
    record = logic.create_eval(store, CALLER, _eval_body(testing_criteria=[rubric]))
    logic.create_run(store, CALLER, record.id, _run_body("fast"))
    batches = _batches(store)
    batches.finish("batch_0", ["Paris"], cost=0.001)
    graded = logic.on_batch_finished(store, _event(batches.submitted[0]), "req")
    call, request = grader.calls[0]
    assert (call.principal.tenant_id, call.principal.key_id, request.model) == (TENANT, "key_1", "judge")
    assert graded is not None and graded.aliases["fast"].summary is not None
    assert graded.aliases["fast"].summary.cost_usd == 0.003


def test_an_event_for_a_batch_that_is_not_an_eval_runs_is_ignored(store: logic.EvalStore) -> None:
    detail = {"tenant_id": TENANT, "batch_id": "batch_x", "status": "completed", "metadata": {}}
    event = {"source": "byom.batches", "detail-type": "BatchFinished", "detail": detail}
    assert logic.on_batch_finished(store, event, "req") is None


def test_an_event_naming_another_tenant_finds_no_run(store: logic.EvalStore) -> None:
    record = logic.create_eval(store, CALLER, _eval_body())
    logic.create_run(store, CALLER, record.id, _run_body("fast"))
    batches = _batches(store)
    batches.finish("batch_0", ["Paris", "Rome"])
    assert logic.on_batch_finished(store, _event(batches.submitted[0], tenant="globex"), "req") is None


def test_output_items_hold_each_aliases_sample_and_results(store: logic.EvalStore) -> None:
    record = logic.create_eval(store, CALLER, _eval_body())
    run = logic.create_run(store, CALLER, record.id, _run_body("fast", "smart"))
    batches = _batches(store)
    batches.finish("batch_0", ["Paris", "Milan"])
    batches.finish("batch_1", ["Paris", "Rome"])
    for batch in batches.submitted:
        logic.on_batch_finished(store, _event(batch), "req")
    rows, more = logic.output_items(store, CALLER, record.id, run.id, after=None, limit=10)
    assert [(r["datasource_item_id"], r["sample"]["model"], r["status"]) for r in rows] == [
        (0, "fast", "pass"),
        (0, "smart", "pass"),
        (1, "fast", "fail"),
        (1, "smart", "pass"),
    ]
    assert rows[2]["results"] == [{"name": "exact", "type": "string_check", "score": 0.0, "passed": False}]
    assert more is False


def test_the_latest_completed_run_is_the_evidence_for_its_task(store: logic.EvalStore) -> None:
    record = logic.create_eval(store, CALLER, _eval_body())
    logic.create_run(store, CALLER, record.id, _run_body("fast"))
    batches = _batches(store)
    batches.finish("batch_0", ["Paris", "Rome"])
    logic.on_batch_finished(store, _event(batches.submitted[0]), "req")
    assert isinstance(store.evals, FakeEvals)
    found = logic.evidence(store.evals, TENANT, "capitals")
    assert found is not None and found.per_alias["fast"].score == 1.0
    assert logic.evidence(store.evals, TENANT, "other") is None


class RefusingBatches(FakeBatches):
    """Accepts the first batch, refuses the second (a budget refusal at creation)."""

    def submit(
        self, principal: Principal, *, endpoint: str, lines: list[dict[str, Any]], metadata: dict[str, str]
    ) -> str:
        if self.submitted:
            raise BudgetExceeded("The batch needs $1.00; $0.10 remains this month")
        return super().submit(principal, endpoint=endpoint, lines=lines, metadata=metadata)


def test_a_refused_batch_fails_the_run_keeping_the_batches_already_submitted(store: logic.EvalStore) -> None:
    store.batches = RefusingBatches()
    record = logic.create_eval(store, CALLER, _eval_body())
    with pytest.raises(BudgetExceeded):
        logic.create_run(store, CALLER, record.id, _run_body("fast", "smart"))
    (run,) = logic.list_runs(store, CALLER, record.id, after=None, limit=10)[0]
    assert run.status == "failed" and run.error is not None
    assert list(run.aliases) == ["fast"]
