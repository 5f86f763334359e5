"""Batches (byom.logic.batches) with in-memory collaborators: validation, the budget at creation,
the gateway's run and a provider's batch job, metering at batch prices, cancel, the files."""

from __future__ import annotations

import json
from typing import Any

import pytest
from byom.batches import CreateBatch
from byom.errors import BudgetExceeded, InvalidRequest, NotFound
from byom.governance.policy import Policy, Redaction
from byom.logic import batches as logic
from byom.logic.access import Principal
from byom.pricing import catalog_price
from byom.providers.bedrock_batch import job_name

from tests.unit.batch_fakes import DEVELOPER, NOW, TENANT, Harness, chat_line, harness


def create(
    h: Harness, lines: list[dict[str, Any]] | bytes, endpoint: str = "/v1/chat/completions", **extra: Any
) -> Any:
    body = CreateBatch.model_validate(
        {"input_file_id": h.upload(lines), "endpoint": endpoint, "completion_window": "24h", **extra}
    )
    return logic.create_batch(h.store, DEVELOPER, body)


def run_to_end(h: Harness, batch_id: str) -> Any:
    batch = h.store.batches.get(batch_id)
    assert batch is not None
    for chunk in range(batch.chunks):
        logic.run_chunk(h.store, batch_id, chunk)
    logic.finalize(h.store, batch_id)
    return h.store.batches.get(batch_id)


def rows(h: Harness, file_id: str) -> list[dict[str, Any]]:
    record = h.files.items[file_id]
    return [json.loads(line) for line in h.bucket.objects[record.s3_key].splitlines()]


# Validation


def test_bad_lines_become_error_lines_and_the_batch_still_runs() -> None:
    h = harness()
    h.add_alias()
    batch = create(
        h,
        [
            chat_line("a"),
            chat_line("b", url="/v1/embeddings"),
            chat_line("a"),
            chat_line("c", method="GET"),
            {"custom_id": "d", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "other"}},
            chat_line("e"),
        ],
    )

    done = run_to_end(h, batch.id)

    assert (done.status, done.total, done.completed, done.failed) == ("completed", 6, 2, 4)
    assert [(r["custom_id"], r["error"]["code"]) for r in rows(h, done.error_file_id)] == [
        ("b", "mismatched_url"),
        ("a", "duplicate_custom_id"),
        ("c", "invalid_method"),
        ("d", "mismatched_model"),
    ]


def test_a_file_over_fifty_thousand_lines_fails_the_batch_with_errors() -> None:
    h = harness()
    h.add_alias()
    data = (json.dumps(chat_line("x")) + "\n").encode() * (logic.MAX_LINES + 1)

    batch = create(h, data)

    assert batch.status == "failed"
    assert batch.public()["errors"]["data"][0]["code"] == "too_many_lines"
    assert h.workflow.started == []


def test_a_file_of_another_purpose_is_refused() -> None:
    h = harness()
    h.add_alias()
    file_id = h.upload([chat_line("a")])
    h.files.items[file_id] = h.files.items[file_id].model_copy(update={"purpose": "fine-tune"})

    with pytest.raises(InvalidRequest, match="purpose 'batch'"):
        logic.create_batch(
            h.store,
            DEVELOPER,
            CreateBatch(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"),
        )


# Money


def test_creation_reserves_the_whole_batchs_upper_bound_until_the_window_ends() -> None:
    h = harness()
    h.add_alias()
    h.hard_budget(10.0)

    batch = create(h, [chat_line(f"l{i}") for i in range(3)])

    [hold] = h.ledgers.holds.values()
    # Per line: 5 bytes + 16 per message + 16 per request = 37 tokens at $0.5/1K, 10 at $1/1K.
    assert hold.amount_micros == 3 * (37 * 500 + 10 * 1000)
    assert hold.expires_at > batch.expires_at >= NOW + 24 * 3600


def test_a_batch_over_the_hard_budget_is_refused_naming_need_and_remainder() -> None:
    h = harness()
    h.add_alias()
    h.hard_budget(0.05)

    with pytest.raises(BudgetExceeded) as refused:
        create(h, [chat_line(f"l{i}") for i in range(3)])

    assert refused.value.status == 429 and refused.value.code == "insufficient_quota"
    assert "may cost up to $0.085500" in refused.value.message
    assert "$0.050000 remaining" in refused.value.message
    assert h.store.batches.list(TENANT, None, 10) == ([], False)
    assert h.workflow.started == []


def test_each_line_is_metered_once_at_batch_prices_and_the_hold_released() -> None:
    h = harness()
    h.add_alias()
    h.hard_budget(10.0)
    batch = create(h, [chat_line(f"l{i}") for i in range(3)])

    done = run_to_end(h, batch.id)

    # 10 tokens in at $0.5/1K and 5 out at $1/1K: half the on-demand price.
    assert [m.cost_micros for m in h.ledgers.metered.values()] == [10_000] * 3
    assert done.cost_micros == 30_000
    assert h.ledgers.holds == {} and h.ledgers.remaining == 10_000_000 - 30_000


def test_a_retried_chunk_is_not_metered_twice() -> None:
    h = harness()
    h.add_alias()
    batch = create(h, [chat_line("a"), chat_line("b")])
    logic.run_chunk(h.store, batch.id, 0)
    del h.bucket.objects[logic.chunk_key(h.store.batches.get(batch.id), 0, "results")]  # type: ignore[arg-type]

    logic.run_chunk(h.store, batch.id, 0)

    assert len(h.lines.calls) == 4
    assert len(h.ledgers.metered) == 2


def test_a_failed_line_is_an_error_in_the_error_file_and_costs_nothing() -> None:
    h = harness()
    h.add_alias()
    batch = create(h, [chat_line("ok"), chat_line("bad", "please fail")])

    done = run_to_end(h, batch.id)

    [error] = rows(h, done.error_file_id)
    assert (error["custom_id"], error["response"]["status_code"]) == ("bad", 502)
    failed = h.ledgers.metered[logic.line_request_id(batch.id, 1)]
    assert failed.error and failed.cost_micros == 0


# The gateway's run


def test_output_lines_are_in_input_order_in_openais_shape() -> None:
    h = harness()
    h.add_alias()
    batch = create(h, [chat_line(f"line-{i:02d}") for i in range(25)])

    done = run_to_end(h, batch.id)

    output = rows(h, done.output_file_id)
    assert [r["custom_id"] for r in output] == [f"line-{i:02d}" for i in range(25)]
    assert set(output[0]) == {"id", "custom_id", "response", "error"}
    assert output[0]["response"]["request_id"] == logic.line_request_id(batch.id, 0)


def test_a_batch_is_run_as_chunks_of_a_state_machine_execution() -> None:
    h = harness()
    h.add_alias()

    batch = create(h, [chat_line(f"l{i}") for i in range(25)])

    [(name, payload)] = h.workflow.started
    assert name == batch.id
    assert payload["mode"] == "gateway" and payload["chunks"] == [0, 1, 2]


def test_finishing_publishes_batch_finished_with_the_metadata() -> None:
    h = harness()
    h.add_alias()
    batch = create(h, [chat_line("a")], metadata={"eval": "e1"})

    run_to_end(h, batch.id)

    assert h.events.sent == [
        (
            "BatchFinished",
            {"tenant_id": TENANT, "batch_id": batch.id, "status": "completed", "metadata": {"eval": "e1"}},
        )
    ]


# Cancel


def test_a_cancelled_batch_runs_no_more_lines_and_releases_the_hold() -> None:
    h = harness()
    h.add_alias()
    h.hard_budget(10.0)
    batch = create(h, [chat_line(f"l{i}") for i in range(25)])
    logic.run_chunk(h.store, batch.id, 0)

    cancelling = logic.cancel_batch(h.store, DEVELOPER, batch.id)
    done = run_to_end(h, batch.id)

    assert cancelling.status == "cancelling"
    assert (done.status, done.completed) == ("cancelled", 10)
    assert len(h.lines.calls) == 10 and len(h.ledgers.metered) == 10
    assert h.ledgers.holds == {}


def test_another_tenants_batch_is_not_found() -> None:
    h = harness()
    h.add_alias()
    batch = create(h, [chat_line("a")])
    stranger = Principal(key_id="k2", role="developer", tenant_id="t2")

    with pytest.raises(NotFound):
        logic.get_batch(h.store, stranger, batch.id)
    with pytest.raises(NotFound):
        logic.cancel_batch(h.store, stranger, batch.id)


# A provider's batch service


def test_a_bedrock_chat_batch_runs_as_the_providers_batch_job() -> None:
    h = harness()
    h.add_alias("bulk", "bedrock", model_id="amazon.nova-micro-v1:0")

    batch = create(h, [chat_line("a")])

    assert batch.mode == "provider"
    assert h.workflow.started[0][1]["mode"] == "provider"


def test_a_bedrock_embeddings_batch_is_run_by_the_gateway() -> None:
    h = harness()
    h.add_alias("bulk", "bedrock", model_id="amazon.titan-embed-text-v2:0")
    line = {
        "custom_id": "e",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "bulk", "input": "x"},
    }

    batch = create(h, [line], endpoint="/v1/embeddings")

    assert batch.mode == "gateway"


def test_lines_sent_to_a_provider_are_screened_and_name_the_model_id() -> None:
    h = harness()
    h.add_alias("bulk", "bedrock", model_id="amazon.nova-micro-v1:0")
    h.policies.policy = Policy(tenant_id=TENANT, redaction=Redaction(mode="mask", types=["email"]))
    batch = create(h, [chat_line("a", "mail me at jane@example.com")])

    logic.submit(h.store, batch.id)

    [(endpoint, [sent], prefix)] = h.provider.submitted
    assert endpoint == "/v1/chat/completions"
    assert sent.body["model"] == "amazon.nova-micro-v1:0"
    assert "jane@example.com" not in json.dumps(sent.body)
    assert prefix == f"s3://data/tenants/{TENANT}/batches/{batch.id}/"


def test_a_provider_jobs_outcomes_are_metered_at_batch_prices_and_audited() -> None:
    h = harness()
    h.add_alias("bulk", "bedrock", model_id="amazon.nova-micro-v1:0")
    batch = create(h, [chat_line("a"), chat_line("b")])
    logic.submit(h.store, batch.id)

    assert logic.check_job(h.store, batch.id) == {"done": True, "state": "completed"}
    logic.finalize(h.store, batch.id)

    done = h.store.batches.get(batch.id)
    assert done is not None and (done.status, done.completed) == ("completed", 2)
    # 7 tokens in at $0.5/1K and 3 out at $1/1K.
    assert [m.cost_micros for m in h.ledgers.metered.values()] == [6_500, 6_500]
    assert [cost for _, cost in h.audit.lines] == [6_500, 6_500]
    assert [r["custom_id"] for r in rows(h, done.output_file_id or "")] == ["a", "b"]


def test_a_bedrock_batch_below_bedrocks_minimum_records_is_run_by_the_gateway() -> None:
    h = harness()
    h.store.bedrock_min_records = 100
    h.add_alias("bulk", "bedrock", model_id="amazon.nova-micro-v1:0")

    batch = create(h, [chat_line(f"l{i}") for i in range(99)])
    done = run_to_end(h, batch.id)

    assert batch.mode == "gateway"
    assert h.provider.submitted == [] and len(h.lines.calls) == 99
    assert done.status == "completed" and done.completed == 99


def test_a_bedrock_batch_of_bedrocks_minimum_records_is_a_batch_inference_job() -> None:
    h = harness()
    h.store.bedrock_min_records = 100
    h.add_alias("bulk", "bedrock", model_id="amazon.nova-micro-v1:0")

    batch = create(h, [chat_line(f"l{i}") for i in range(100)])

    assert batch.mode == "provider"


def test_a_running_provider_job_keeps_the_execution_waiting() -> None:
    h = harness()
    h.add_alias("bulk", "bedrock", model_id="amazon.nova-micro-v1:0")
    batch = create(h, [chat_line("a")])
    logic.submit(h.store, batch.id)
    h.provider.state = "in_progress"

    assert logic.check_job(h.store, batch.id)["done"] is False


def test_bedrocks_job_event_wakes_the_waiting_execution() -> None:
    h = harness()
    h.add_alias("bulk", "bedrock", model_id="amazon.nova-micro-v1:0")
    batch = create(h, [chat_line("a")])
    logic.submit(h.store, batch.id)
    logic.await_job(h.store, batch.id, "token-1")

    # Bedrock's jobName takes no '_': the job is named batch-<hex> (byom.providers.bedrock_batch).
    woken = logic.job_state_changed(h.store, {"batchJobName": job_name(batch.id), "status": "Completed"})

    assert woken and h.workflow.woken == ["token-1"]


def test_without_a_job_event_the_poll_finds_the_job_ended_and_the_batch_completes() -> None:
    h = harness()
    h.add_alias("bulk", "bedrock", model_id="amazon.nova-micro-v1:0")
    batch = create(h, [chat_line("a"), chat_line("b")])
    logic.submit(h.store, batch.id)
    h.provider.state = "in_progress"

    # AwaitJob times out (no event): CheckJob looks, the Choice loops back to AwaitJob, then again.
    logic.await_job(h.store, batch.id, "token-1")
    first = logic.check_job(h.store, batch.id)
    logic.await_job(h.store, batch.id, "token-2")
    h.provider.state = "completed"
    second = logic.check_job(h.store, batch.id)
    logic.finalize(h.store, batch.id)

    done = h.store.batches.get(batch.id)
    assert (first["done"], second["done"]) == (False, True)
    assert h.workflow.woken == []
    assert done is not None and (done.status, done.completed, done.task_token) == ("completed", 2, None)


def test_cancelling_a_provider_batch_stops_the_providers_job() -> None:
    h = harness()
    h.add_alias("bulk", "bedrock", model_id="amazon.nova-micro-v1:0")
    batch = create(h, [chat_line("a")])
    logic.submit(h.store, batch.id)

    logic.cancel_batch(h.store, DEVELOPER, batch.id)

    assert h.provider.cancelled == ["job-1"]


# The end, and the contract with evaluations


def test_a_failed_task_fails_the_batch_and_releases_the_hold() -> None:
    h = harness()
    h.add_alias()
    h.hard_budget(10.0)
    batch = create(h, [chat_line("a")])

    logic.record_failure(h.store, batch.id, {"Error": "States.TaskFailed", "Cause": "{}"})

    failed = h.store.batches.get(batch.id)
    assert failed is not None and failed.status == "failed"
    assert h.ledgers.holds == {}
    assert h.events.sent[0][1]["status"] == "failed"


def test_finished_lines_are_none_while_running_then_every_line_with_its_cost() -> None:
    h = harness()
    h.add_alias()
    batch_id = logic.submit_lines(
        h.store,
        DEVELOPER,
        endpoint="/v1/chat/completions",
        lines=[chat_line("a"), chat_line("b", url="x")],
        metadata={},
    )

    running = logic.finished_lines(h.store, DEVELOPER, batch_id)
    run_to_end(h, batch_id)
    finished = logic.finished_lines(h.store, DEVELOPER, batch_id)

    assert running is None
    assert finished is not None
    assert [(r.custom_id, r.status_code, r.cost_usd) for r in finished] == [("a", 200, 0.01), ("b", 400, 0.0)]
    assert finished[0].latency_ms is not None


# Prices


def test_the_catalog_prices_batch_lines_at_half_of_on_demand() -> None:
    price = catalog_price("amazon.nova-micro-v1:0")

    assert price is not None
    assert price.batch().input_per_1k_usd == price.input_per_1k_usd / 2
    assert price.batch().output_per_1k_usd == price.output_per_1k_usd / 2
