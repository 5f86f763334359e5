"""A batch's reservation at creation against the real usage table (moto): the budget is its own
item, not one of the month's counters, so the batch logic must read it as such."""

from __future__ import annotations

import boto3
from byom.batches import CreateBatch
from byom.dal.ledger import UsageTable
from byom.domain import Budget
from byom.logic import batches as logic

from tests.unit.batch_fakes import DEVELOPER, NOW, TENANT, chat_line, harness


def test_a_batch_under_a_hard_budget_holds_its_upper_bound_in_the_usage_table(aws: dict[str, str]) -> None:
    usage = UsageTable(boto3.resource("dynamodb").Table(aws["USAGE_TABLE"]))
    budget = Budget(tenant_id=TENANT, monthly_limit_usd=10.0, hard=True, updated_at=NOW)
    month = logic.money.month_of(NOW)
    usage.put_budget(budget, month, {}, 10_000_000)
    h = harness()
    h.store.usage = usage
    h.add_alias()
    body = CreateBatch.model_validate(
        {
            "input_file_id": h.upload([chat_line(f"l{i}") for i in range(3)]),
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
    )

    batch = logic.create_batch(h.store, DEVELOPER, body)

    ledger = usage.budget_state(usage.month_items(TENANT, month), TENANT).ledger
    assert batch.hold_micros is not None and batch.hold_micros > 0
    assert ledger.committed_micros == batch.hold_micros
    assert ledger.remaining_micros == 10_000_000 - batch.hold_micros
