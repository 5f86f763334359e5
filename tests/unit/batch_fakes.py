"""In-memory collaborators of byom.logic.batches, each implementing the Protocol the logic names."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from byom.batches import Batch
from byom.domain import Budget, ModelAlias, Pricing
from byom.fine_tuning import FileRecord
from byom.governance.policy import Policy, default_policy
from byom.logic import batches as logic
from byom.logic.access import Principal
from byom.logic.fine_tuning_jobs import file_key
from byom.money import Hold, Metered, ReservationRefused
from byom.providers import Target, Usage
from byom.providers.batch import BatchLine, LineOutcome, ProviderJob

from tests.unit.fakes import FakeModels

TENANT = "t1"
NOW = 1_790_000_000
DEVELOPER = Principal(key_id="k1", role="developer", tenant_id=TENANT)
PRICE = Pricing(
    input_per_1k_usd=1.0, output_per_1k_usd=2.0, batch_input_per_1k_usd=0.5, batch_output_per_1k_usd=1.0
)


class FakeBatches:
    def __init__(self) -> None:
        self.items: dict[str, Batch] = {}

    def create(self, batch: Batch) -> None:
        self.items[batch.id] = batch

    def get(self, batch_id: str) -> Batch | None:
        return self.items.get(batch_id)

    def get_for_tenant(self, tenant_id: str, batch_id: str) -> Batch | None:
        batch = self.items.get(batch_id)
        return batch if batch is not None and batch.tenant_id == tenant_id else None

    def list(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[Batch], bool]:
        found = sorted(
            (b for b in self.items.values() if b.tenant_id == tenant_id), key=lambda b: -b.created_at
        )
        return found[:limit], len(found) > limit

    def update(self, batch_id: str, fields: dict[str, Any], *, expect: Iterable[str]) -> bool:
        batch = self.items.get(batch_id)
        if batch is None or batch.status not in tuple(expect):
            return False
        self.items[batch_id] = Batch.model_validate(batch.model_dump() | fields)
        return True

    def add_counts(self, batch_id: str, *, completed: int, failed: int, cost_micros: int) -> None:
        batch = self.items[batch_id]
        self.items[batch_id] = batch.model_copy(
            update={
                "completed": batch.completed + completed,
                "failed": batch.failed + failed,
                "cost_micros": batch.cost_micros + cost_micros,
            }
        )


class FakeFiles:
    def __init__(self) -> None:
        self.items: dict[str, FileRecord] = {}

    def create(self, record: FileRecord) -> None:
        self.items[record.id] = record

    def get(self, tenant_id: str, file_id: str) -> FileRecord | None:
        record = self.items.get(file_id)
        return record if record is not None and record.tenant_id == tenant_id else None


class FakeBucket:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def find(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def uri(self, key: str) -> str:
        return f"s3://data/{key}"


@dataclass
class FakeLedgers:
    """A month's ledger: holds take from what remains; settles count once per request id."""

    budget: Budget | None = None
    remaining: int = 0
    holds: dict[str, Hold] = field(default_factory=dict)
    metered: dict[str, Metered] = field(default_factory=dict)
    released: list[Hold] = field(default_factory=list)

    def get_budget(self, tenant_id: str) -> Budget | None:
        return self.budget

    def reserve(self, hold: Hold) -> None:
        if hold.amount_micros > self.remaining:
            raise ReservationRefused("tenant", self.remaining)
        self.remaining -= hold.amount_micros
        self.holds[hold.request_id] = hold

    def release(self, hold: Hold) -> bool:
        if self.holds.pop(hold.request_id, None) is None:
            return False
        self.remaining += hold.amount_micros
        self.released.append(hold)
        return True

    def sweep(self, tenant_id: str, month: str, now: int, shards: int | None = None) -> int:
        return 0

    def settle(self, metered: Metered, hold: Hold | None, *, within: Hold | None = None) -> bool:
        if metered.request_id in self.metered:
            return False
        self.metered[metered.request_id] = metered
        if hold is not None or within is not None:
            self.remaining -= metered.cost_micros - (hold.amount_micros if hold else 0)
        return True

    @property
    def spent(self) -> int:
        return sum(m.cost_micros for m in self.metered.values())


@dataclass
class FakeWorkflow:
    started: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    woken: list[str] = field(default_factory=list)

    def start(self, name: str, payload: dict[str, Any]) -> str:
        self.started.append((name, payload))
        return f"arn:execution:{name}"

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        self.woken.append(token)
        return True


@dataclass
class FakeProviderBatches:
    """A provider's batch service that answers every line it was given, 7 tokens in and 3 out."""

    submitted: list[tuple[str, list[BatchLine], str]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    state: str = "completed"

    def submit(
        self, target: Target, endpoint: str, lines: Sequence[BatchLine], *, name: str, s3_prefix: str
    ) -> str:
        self.submitted.append((endpoint, list(lines), s3_prefix))
        return "job-1"

    def status(self, target: Target, job_id: str) -> ProviderJob:
        total = len(self.submitted[-1][1])
        return ProviderJob(state=self.state, total=total, completed=total, failed=0)  # type: ignore[arg-type]

    def outcomes(self, target: Target, job_id: str) -> Iterator[LineOutcome]:
        for line in self.submitted[-1][1]:
            body = {"object": "chat.completion", "choices": [{"message": {"content": "done"}}]}
            yield LineOutcome(line.custom_id, 200, body, Usage(7, 3))

    def cancel(self, target: Target, job_id: str) -> None:
        self.cancelled.append(job_id)


@dataclass
class FakeLines:
    """The invocation path: every line answers 'ok' with 10 tokens in and 5 out, except one whose
    prompt says 'fail', which the provider refuses."""

    calls: list[str] = field(default_factory=list)

    def __call__(
        self, principal: Principal, request_id: str, endpoint: str, body: dict[str, Any]
    ) -> logic.LineAnswer:
        self.calls.append(request_id)
        if "fail" in json.dumps(body):
            error = {"message": "upstream 500", "type": "provider_error", "param": None, "code": None}
            return logic.LineAnswer(502, {"error": error})
        return logic.LineAnswer(
            200, {"object": "chat.completion", "id": request_id}, Usage(10, 5), "bulk", PRICE
        )


@dataclass
class FakeEvents:
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def put(self, detail_type: str, detail: dict[str, Any]) -> None:
        self.sent.append((detail_type, detail))


@dataclass
class FakePolicies:
    policy: Policy | None = None

    def get(self, tenant_id: str) -> Policy:
        return self.policy or default_policy(tenant_id)


@dataclass
class FakeAudit:
    lines: list[tuple[str, int]] = field(default_factory=list)

    def line(self, batch: Batch, request_id: str, outcome: LineOutcome, cost_micros: int) -> None:
        self.lines.append((request_id, cost_micros))


@dataclass
class Harness:
    store: logic.BatchStore
    ledgers: FakeLedgers
    workflow: FakeWorkflow
    provider: FakeProviderBatches
    lines: FakeLines
    events: FakeEvents
    audit: FakeAudit
    policies: FakePolicies
    bucket: FakeBucket
    files: FakeFiles
    models: FakeModels

    def add_alias(self, alias: str = "bulk", provider: str = "openai_compatible", **fields: Any) -> None:
        self.models.create(
            ModelAlias(
                tenant_id=TENANT,
                alias=alias,
                provider=provider,  # type: ignore[arg-type]
                model_id=fields.pop("model_id", f"{alias}-model"),
                pricing=PRICE,
                created_at=NOW,
                **fields,
            )
        )

    def upload(self, lines: list[dict[str, Any]] | bytes, file_id: str = "file-in") -> str:
        data = (
            lines if isinstance(lines, bytes) else "".join(json.dumps(item) + "\n" for item in lines).encode()
        )
        record = FileRecord(
            id=file_id,
            tenant_id=TENANT,
            filename="in.jsonl",
            purpose="batch",
            bytes=len(data),
            created_at=NOW,
            s3_key=file_key(TENANT, file_id),
        )
        self.bucket.put(record.s3_key, data)
        self.files.create(record)
        return file_id

    def hard_budget(self, limit_usd: float) -> None:
        self.ledgers.budget = Budget(tenant_id=TENANT, monthly_limit_usd=limit_usd, hard=True, updated_at=NOW)
        self.ledgers.remaining = int(limit_usd * 1_000_000)


def harness() -> Harness:
    ledgers, workflow, provider = FakeLedgers(), FakeWorkflow(), FakeProviderBatches()
    lines, events, audit, policies = FakeLines(), FakeEvents(), FakeAudit(), FakePolicies()
    bucket, files, models = FakeBucket(), FakeFiles(), FakeModels()

    def target(tenant_id: str, alias: str) -> Target:
        model = models.get(tenant_id, alias)
        assert model is not None
        return Target(tenant_id, alias, model.provider, model.model_id, pricing=model.pricing)

    store = logic.BatchStore(
        batches=FakeBatches(),
        files=files,
        bucket=bucket,
        models=models,
        usage=ledgers,
        workflow=workflow,
        providers=lambda name: provider if name in ("bedrock", "openai") else None,
        targets=target,
        run_line=lines,
        events=events,
        policies=policies,
        audit=audit,
        bedrock_min_records=1,  # a test that is about the quota sets it
        now=lambda: NOW,
    )
    return Harness(store, ledgers, workflow, provider, lines, events, audit, policies, bucket, files, models)


def chat_line(custom_id: str, content: str = "hello", **overrides: Any) -> dict[str, Any]:
    body = {"model": "bulk", "messages": [{"role": "user", "content": content}], "max_tokens": 10}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body} | overrides
