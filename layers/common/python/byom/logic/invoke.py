"""Model invocation (SPEC §4.3): resolve the caller's alias, call its provider, answer in OpenAI's shapes."""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from byom import clock
from byom.domain import CallRead, Credential, ModelAlias, StoredResponse
from byom.errors import (
    ByomError,
    GatewayMisconfigured,
    ModelNotFound,
    NotFound,
    ProviderError,
    RateLimited,
)
from byom.governance import screening
from byom.governance.guardrail import GuardrailScreen
from byom.governance.policy import Policy, RedactionMode
from byom.governance.screening import Screening
from byom.governance.trail import AuditLog, Trail, subject_of
from byom.logic import money, response_cache, responses
from byom.logic.access import Principal, require_tenant_key
from byom.logic.call_meter import (
    Backlog,
    CallMeter,
    CallMetrics,
    Foreseen,
    Foresight,
    Ledgers,
    ThresholdNotifier,
    give_back_ahead,
    keep,
    store_step,
)
from byom.logic.resilience import (
    ATTEMPTS_HEADER,
    Deadline,
    Outcome,
    RetryPolicy,
    Timing,
    call_with_fallbacks,
)
from byom.money import BudgetState, Hold, Ledger, Pending
from byom.observability import logger
from byom.openai_types import ChatRequest, EmbeddingRequest, ResponsesRequest
from byom.providers import ChatResult, EmbeddingResult, Provider, StreamEvent, Target, Usage

T = TypeVar("T")

INVOKE_ROLES = ("admin", "developer")
SSE_DONE = "data: [DONE]\n\n"
COST_HEADER = "x-byom-cost-usd"


class ProviderSource(Protocol):
    """The provider of a name (byom.providers.ProviderRegistry)."""

    def get(self, name: str) -> Provider: ...


class ContentSink(Protocol):
    """Where the prompts and answers of tenants with content logging go (byom.dal.content.ContentStore)."""

    def key(self, tenant_id: str, request_id: str, user: str | None) -> str:
        """Where `put` stores this call's content, known before the write."""
        ...

    def put(
        self,
        tenant_id: str,
        request_id: str,
        content: dict[str, Any],
        user: str | None,
        retention_days: int | None = None,
    ) -> str: ...


@dataclass
class InvokeStore:
    """The collaborators invocation needs; tests pass in-memory fakes."""

    calls: CallReader
    providers: ProviderSource
    now: Callable[[], int] = clock.now
    cache: response_cache.CacheStore | None = None
    """The response cache; None turns caching off whatever the aliases say."""
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timing: Timing = field(default_factory=Timing)
    usage: Ledgers | None = None
    """The usage table (budgets, metering); None: calls are neither metered nor budgeted. `calls`
    reads the budget state from the same table."""
    notifier: ThresholdNotifier | None = None
    """Announces budget thresholds (byom.dal.notify.Notifier)."""
    metrics: CallMetrics | None = None
    """Emits each call's CloudWatch metrics (byom.metrics.CallMetrics)."""
    guardrails: GuardrailScreen | None = None
    """Bedrock Guardrails, for tenants whose policy names one."""
    audit: AuditLog | None = None
    """The audit trail (byom.dal.audit.AuditTable); None: no records."""
    content: ContentSink | None = None
    """Where prompts and answers of tenants with content logging go (byom.dal.content.ContentStore)."""
    responses: ResponseKeeper | None = None
    """Stored responses (`store: true`, `previous_response_id`); None: none are kept."""
    backlog: Backlog | None = None
    """The meter backlog (byom.dal.meter_backlog): settles and audit records the tables could not
    take once the provider answered, kept for the reconciler; None: such a failure fails the call."""
    foresight: Foresight | None = None
    """What this environment last read of each alias, to reserve a chat call's hold beside its
    read; None: every call reserves after its read."""


@dataclass(frozen=True)
class Call:
    """Who is calling, and under which request id their call is metered."""

    principal: Principal
    request_id: str
    dry_run: bool = False
    subject: str | None = None
    """The `x-byom-user` header: the data subject, unless the body names one."""


@dataclass(frozen=True)
class Answer:
    target: Target
    """The model that answered: the alias asked for or one of its fallbacks."""
    body: dict[str, Any]
    usage: Usage
    attempts: int = 1
    """Provider calls made for this answer; 0 when it came from the cache."""
    cache: str | None = None
    """`hit` or `miss` when the alias is cached, else None."""
    cost_micros: int | None = None
    """What the call cost, when metered."""

    @property
    def headers(self) -> dict[str, str]:
        return _headers(self.target, self.attempts, self.cache, self.cost_micros)


@dataclass(frozen=True)
class StreamAnswer:
    target: Target
    events: Iterator[str]
    """Server-sent events, `data: {chunk}` each, ending with `data: [DONE]`."""
    attempts: int = 1
    cache: str | None = None
    cost_micros: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        return _headers(self.target, self.attempts, self.cache, self.cost_micros)


def headers(target: Target) -> dict[str, str]:
    return {"x-byom-provider": target.provider, "x-byom-model": target.model_id}


def cost_header(cost_micros: int) -> str:
    return f"{money.to_usd(cost_micros):.6f}"


def _headers(target: Target, attempts: int, cache: str | None, cost_micros: int | None) -> dict[str, str]:
    extra = {ATTEMPTS_HEADER: str(attempts)}
    if cache:
        extra[response_cache.CACHE_HEADER] = cache
    if cost_micros is not None:
        extra[COST_HEADER] = cost_header(cost_micros)
    return headers(target) | extra


class CallReader(Protocol):
    """The first read of a call (byom.dal.calls.CallTables: one BatchGetItem on a warm call)."""

    def read(
        self, tenant_id: str, alias: str, *, month: str | None = None, minute: str | None = None
    ) -> CallRead:
        """The alias and its credential; given the month and minute of a metered call, also the
        tenant's budget state, policy and this minute's tokens (else no state, the default policy)."""
        ...


def _found(alias: str, model: ModelAlias | None) -> ModelAlias:
    if model is None:
        raise ModelNotFound(
            f"The model '{alias}' does not exist or you do not have access to it", param="model"
        )
    return model


def _target(tenant_id: str, alias: str, model: ModelAlias, credential: Credential | None) -> Target:
    if model.credential and credential is None:
        raise GatewayMisconfigured(
            f"Model '{alias}' uses credential '{model.credential}', which does not exist"
        )
    return Target(
        tenant_id=tenant_id,
        alias=alias,
        provider=model.provider,
        model_id=model.model_id,
        credential=model.credential,
        base_url=credential.base_url if credential else None,
        has_key=bool(credential and credential.secret_arn),
        fallbacks=tuple(model.fallbacks),
        cache_ttl_seconds=model.cache_ttl_seconds,
        pricing=model.pricing,
        budget_pricing=model.budget_pricing or model.pricing,
        max_output_tokens=model.max_output_tokens,
        native_responses=model.provider == "openai"
        or bool(model.provider == "openai_compatible" and credential and credential.responses),
        prompt_caching=model.prompt_caching,
    )


def resolve_target(store: InvokeStore, tenant_id: str, alias: str) -> Target:
    read = store.calls.read(tenant_id, alias)
    return _target(tenant_id, alias, _found(alias, read.model), read.credential)


@dataclass(frozen=True)
class _Started:
    target: Target
    meter: CallMeter | None
    policy: Policy
    redaction_mode: RedactionMode
    """The mode that applies to this alias: its own override, else the tenant's."""


def _start(
    store: InvokeStore, call: Call, alias: str, trail: Trail, ahead: ChatRequest | None = None
) -> _Started:
    """The first read of a call: the alias asked for, the tenant's policy and, when metered, a
    meter for its money. A tenant over its tokens-per-minute limit is refused here.

    `ahead`: the chat request, whose hold is then reserved beside the read when this environment
    has read the alias before under a hard budget (`_reserve_ahead`); the meter keeps that hold
    when the read confirms it, and it is given back whatever else happens here."""
    tenant_id = trail.tenant_id
    now = store.now()
    early = _reserve_ahead(store, call, tenant_id, alias, ahead, now) if ahead is not None else None
    try:
        with store_step(
            "call read failed", "The gateway could not read this request's configuration. Try again."
        ):
            read = store.calls.read(tenant_id, alias, month=money.month_of(now), minute=money.minute_of(now))
        started = _started(store, call, alias, trail, read, now)
    except BaseException:
        if early is not None:
            _give_back(store, early)
        raise
    if early is not None and started.meter is not None:
        started.meter.adopt(early.result())
    elif early is not None:
        _give_back(store, early)
    return started


def _started(store: InvokeStore, call: Call, alias: str, trail: Trail, read: CallRead, now: int) -> _Started:
    tenant_id = trail.tenant_id
    trail.retention_days = read.policy.retention_days
    model = _found(alias, read.model)
    target = _target(tenant_id, alias, model, read.credential)
    if store.foresight is not None:
        budget = read.state.budget if read.state is not None else None
        foreseen = None
        if budget is not None and budget.hard:
            foreseen = Foreseen(budget, target.budget_pricing, target.max_output_tokens)
        store.foresight.remember(tenant_id, alias, foreseen)
    trail.provider, trail.provider_model = target.provider, target.model_id
    tokens_per_minute = read.policy.rate_limits.tokens_per_minute
    if tokens_per_minute is not None and read.minute_tokens >= tokens_per_minute:
        raise RateLimited(
            f"Rate limit reached: the tenant's {tokens_per_minute} tokens per minute are used up",
            retry_after_seconds=60 - now % 60,
        )
    mode = model.redaction_mode or read.policy.redaction.mode
    if read.state is None or store.usage is None:
        return _Started(target, None, read.policy, mode)
    meter = CallMeter(
        usage=store.usage,
        notifier=store.notifier,
        metrics=store.metrics,
        tenant_id=tenant_id,
        key_id=call.principal.key_id,
        request_id=call.request_id,
        state=read.state,
        now=store.now,
        tokens_minute=money.minute_of(now) if tokens_per_minute is not None else None,
        backlog=store.backlog,
    )
    return _Started(target, meter, read.policy, mode)


# Reservations sent beside their call's read (`_reserve_ahead`): a Lambda environment serves one
# call at a time; the local stack serves several side by side.
_AHEAD = ThreadPoolExecutor(max_workers=16, thread_name_prefix="reserve-ahead")


def _reserve_ahead(
    store: InvokeStore, call: Call, tenant_id: str, alias: str, request: ChatRequest, now: int
) -> Future[Hold | None] | None:
    """The call's hold, reserved beside its read from what this environment last read of the
    alias (its hard budget, the fallback chain's prices, the answer's cap), so a warm call under a
    hard budget makes one round trip before the provider, not two. The estimate is the unscreened
    request's; one that screening makes dearer reserves again after the read (CallMeter.admit)."""
    foreseen = store.foresight.get(tenant_id, alias) if store.foresight is not None else None
    if foreseen is None or store.usage is None or call.dry_run:
        return None
    usage = store.usage
    estimate = money.estimate_chat(request, foreseen.pricing, foreseen.max_output_tokens)
    meter = CallMeter(
        usage,
        None,
        None,
        tenant_id,
        call.principal.key_id,
        call.request_id,
        BudgetState(foreseen.budget, Ledger()),
        lambda: now,
    )
    hold = meter.hold_for(estimate.cost_micros)
    if hold is None:
        return None

    def reserve() -> Hold | None:
        try:
            usage.reserve(hold)
        except Exception as error:
            # Refused or failed: the call reserves after its read as if nothing was tried (a
            # reservation that landed unanswered stays held until swept, as there).
            logger.info("reservation ahead not taken", extra={"error_type": type(error).__name__})
            return None
        return hold

    return _AHEAD.submit(reserve)


def _give_back(store: InvokeStore, early: Future[Hold | None]) -> None:
    """A hold reserved ahead for a call that stopped before its meter took it."""
    hold = early.result()
    if hold is not None and store.usage is not None:
        give_back_ahead(store.usage, hold)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _metered(
    meter: CallMeter | None, target: Target, trail: Trail, run: Callable[[], Outcome[T]]
) -> Outcome[T]:
    """The provider call, its failure counted as an error (not spend) when metered."""
    started = time.perf_counter()
    try:
        return run()
    except ProviderError as error:
        if meter is not None:
            trail.failed(error)
            meter.failed(target.alias, latency_ms=_elapsed_ms(started), record=trail)
        raise


def _settle(
    meter: CallMeter | None, outcome: Outcome[Any], usage: Usage, started: float, trail: Trail
) -> int | None:
    trail.provider, trail.provider_model = outcome.target.provider, outcome.target.model_id
    if meter is None:
        trail.input_tokens, trail.output_tokens = usage.prompt_tokens, usage.completion_tokens
        return None
    return meter.succeeded(
        outcome.target.alias,
        usage,
        outcome.target.pricing,
        latency_ms=_elapsed_ms(started),
        record=trail,
        fell_back_from=outcome.fell_back_from,
    )


def billable(usage: Usage, input_bound: int, answer: dict[str, Any] | None) -> Usage:
    """The provider's token counts; where it reported none, the upper bounds: never zero."""
    if usage.prompt_tokens or usage.completion_tokens:
        return usage
    logger.warning("the provider reported no token usage; metering upper bounds instead")
    return Usage(input_bound, money.answer_tokens_bound(answer or {}))


def _settle_hit(meter: CallMeter | None, target: Target, usage: Usage, trail: Trail) -> int | None:
    trail.status, trail.cache_hit = "cache_hit", True
    if meter is None:
        return None
    return meter.succeeded(target.alias, usage, None, latency_ms=None, cache_hit=True, record=trail)


def _bounded(request: ChatRequest, target: Target, meter: CallMeter | None) -> ChatRequest:
    """Under a hard budget the answer must fit the reservation: a request without max_tokens gets
    the alias's cap (OpenAI's own API takes it as max_completion_tokens, the others as max_tokens)."""
    if meter is None or meter.hard_limit_micros is None or request.max_output_tokens is not None:
        return request
    cap = money.output_cap(request, target.max_output_tokens)
    name = "max_completion_tokens" if target.provider == "openai" else "max_tokens"
    return request.model_copy(update={name: cap})


def _guard(meter: CallMeter | None) -> AbstractContextManager[Any]:
    """The meter's `with`, which gives back a reservation the call did not settle; nothing when
    the call is not metered."""
    return meter if meter is not None else nullcontext()


def _completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def _resilient(
    store: InvokeStore, deadline: Deadline, first: Target, call: Callable[[Any, Target, float], T]
) -> Outcome[T]:
    """`call(provider, target, timeout)` with retries, then the fallbacks of `first`."""
    return call_with_fallbacks(
        first,
        lambda alias: resolve_target(store, first.tenant_id, alias),
        lambda target, timeout: call(store.providers.get(target.provider), target, timeout),
        policy=store.policy,
        timing=store.timing,
        deadline=deadline,
    )


def _cache_key(
    store: InvokeStore, target: Target, kind: response_cache.Kind, request: BaseModel
) -> str | None:
    if store.cache is None or not target.cache_ttl_seconds:
        return None
    return response_cache.cache_key(target, kind, request)


def _cached(
    store: InvokeStore, key: str | None, target: Target, kind: response_cache.Kind
) -> response_cache.Hit | None:
    if key is None or store.cache is None:
        return None
    return response_cache.lookup(store.cache, key, target, kind, store.now())


def _remember(
    store: InvokeStore,
    key: str | None,
    target: Target,
    kind: response_cache.Kind,
    result: response_cache.Result,
    answered_by: Target,
) -> None:
    if key is not None and store.cache is not None:
        response_cache.store(store.cache, key, target, kind, result, answered_by, store.now())


# Chat completions


def _subject(request: ChatRequest | ResponsesRequest) -> str | None:
    return request.user or request.safety_identifier


def dry_run_body(target: Target, estimate: money.Estimate, meter: CallMeter | None) -> dict[str, Any]:
    """What a chat request would cost at most, and whether a hard budget would admit it now."""
    body: dict[str, Any] = {
        "object": "byom.dry_run",
        "model": target.alias,
        "provider": target.provider,
        "provider_model": target.model_id,
        "estimate": {
            "max_input_tokens": estimate.input_tokens,
            "max_output_tokens": estimate.output_tokens,
            "max_cost_usd": estimate.cost_usd,
        },
        "pricing": target.budget_pricing.model_dump() if target.budget_pricing else None,
    }
    limit = meter.hard_limit_micros if meter is not None else None
    if meter is not None and limit is not None:
        remaining = limit - meter.state.ledger.committed_micros
        body["budget"] = {
            "remaining_usd": money.to_usd(max(remaining, 0)),
            "would_admit": estimate.cost_micros <= remaining,
        }
    return body


@dataclass(frozen=True)
class _Done(Generic[T]):
    value: T
    answered_by: Target
    attempts: int
    cache: str | None
    cost_micros: int | None


def _answered(
    store: InvokeStore,
    target: Target,
    meter: CallMeter | None,
    kind: response_cache.Kind,
    request: BaseModel,
    estimate: money.Estimate,
    call: Callable[[Any, Target, float], T],
    *,
    replay: Callable[[Any], T],
    as_result: Callable[[T], response_cache.Result],
    trail: Trail,
    content: Callable[[response_cache.Result], dict[str, Any]] | None = None,
) -> _Done[T]:
    """One invocation's life, whatever its kind: the cached answer, or a reservation, the provider
    (with retries and fallbacks), the settlement and the cache. `replay` turns a cached answer into
    what `call` answers; `as_result` the other way round. `content`: what the tenant's content
    log keeps of the call (None: nothing), stored while the call is settled."""
    with _guard(meter):
        deadline = Deadline(store.timing, store.policy.deadline_seconds)
        key = _cache_key(store, target, kind, request)
        hit = _from_cache(store, key, target, kind, meter, trail, content)
        if hit is not None:
            return _Done(replay(hit.value), hit.answered_by, 0, response_cache.HIT, hit.cost_micros)
        if meter is not None:
            meter.admit(estimate)
        started = time.perf_counter()
        outcome = _metered(meter, target, trail, lambda: _resilient(store, deadline, target, call))
        result = as_result(outcome.value)
        answer = result.message if isinstance(result, ChatResult) else None
        trail.cache_key = key
        kept = _keep_content(store, trail, content, result)
        cost = _settle(meter, outcome, billable(result.usage, estimate.input_tokens, answer), started, trail)
        _kept(kept)
    _remember(store, key, target, kind, result, outcome.target)
    return _Done(outcome.value, outcome.target, outcome.attempts, key and response_cache.MISS, cost)


def _from_cache(
    store: InvokeStore,
    key: str | None,
    target: Target,
    kind: response_cache.Kind,
    meter: CallMeter | None,
    trail: Trail,
    content: Callable[[response_cache.Result], dict[str, Any]] | None,
) -> _Done[response_cache.Result] | None:
    """The cached answer, settled as a hit; None on a miss."""
    hit = _cached(store, key, target, kind)
    if hit is None:
        return None
    kept = _keep_content(store, trail, content, hit.result)
    cost = _settle_hit(meter, target, hit.result.usage, trail)
    _kept(kept)
    return _Done(hit.result, hit.answered_by, 0, response_cache.HIT, cost)


# Prompts and answers of tenants with content logging are stored while the call settles.
_CONTENT_WRITER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="content")


def _keep_content(
    store: InvokeStore,
    trail: Trail,
    content: Callable[[response_cache.Result], dict[str, Any]] | None,
    result: response_cache.Result,
) -> Future[str] | None:
    if content is None or store.content is None:
        return None
    trail.content_key = store.content.key(trail.tenant_id, trail.request_id, trail.user)
    document = content(result)
    return _CONTENT_WRITER.submit(
        store.content.put, trail.tenant_id, trail.request_id, document, trail.user, trail.retention_days
    )


def _kept(kept: Future[str] | None) -> None:
    """Wait for the content's write: a function must not return with work in flight."""
    if kept is not None:
        kept.result()


@contextmanager
def _audited(store: InvokeStore, call: Call, route: str, model: str, user: str | None) -> Iterator[Trail]:
    """The call's audit record, whatever happens: written with the metering when there is one,
    else on its own once the outcome is known."""
    tenant_id = require_tenant_key(call.principal, INVOKE_ROLES)
    trail = Trail(
        tenant_id=tenant_id,
        key_id=call.principal.key_id,
        request_id=call.request_id,
        route=route,
        model=model,
        log=store.audit,
    )
    try:
        trail.user = subject_of(user, call.subject)
        yield trail
    except ByomError as error:
        trail.failed(error)
        raise
    except BaseException:
        trail.crashed()
        raise
    finally:
        try:
            trail.write()
        except Exception as error:  # the caller's answer stands; the record waits in the backlog
            _keep_audit(store, trail, error)


def _keep_audit(store: InvokeStore, trail: Trail, error: Exception) -> None:
    """An audit record the audit table did not take, kept for the reconciler to write."""
    where = {"request_id": trail.request_id, "error_type": type(error).__name__}
    if store.backlog is None or store.audit is None:
        logger.error("audit record not written", extra=where)
        return
    pending = Pending(None, None, (store.audit.transact_put(trail.record()),))
    trail.written = keep(store.backlog, pending, "audit record", where)


def _screened_chat(
    store: InvokeStore, started: _Started, request: ChatRequest, trail: Trail
) -> tuple[ChatRequest, Screening]:
    """The request as the provider may see it under the tenant's policy (SPEC §8)."""
    screened, screening_ = screening.screen_chat(
        request, started.policy.redaction, started.redaction_mode, store.guardrails
    )
    trail.redactions = screening_.counts
    return screened, screening_


def _begin_chat(
    store: InvokeStore, call: Call, request: ChatRequest, trail: Trail
) -> tuple[_Started, ChatRequest, Screening, money.Estimate]:
    """What every chat call does first: read, screen the request by the policy, bound its cost.
    A hold reserved beside the read is given back when screening refuses the request."""
    started = _start(store, call, request.model, trail, ahead=request)
    try:
        request, screening_ = _screened_chat(store, started, request, trail)
    except BaseException:
        if started.meter is not None:
            started.meter.give_back()
        raise
    target = started.target
    return (
        started,
        request,
        screening_,
        money.estimate_chat(request, target.budget_pricing, target.max_output_tokens),
    )


def _chat_content(started: _Started, request: ChatRequest) -> Callable[[Any], dict[str, Any]] | None:
    """What the content log keeps: the request and the answer as the provider saw and wrote them
    (masked where the policy masks), never the values redaction took out."""
    if not started.policy.content_logging:
        return None
    sent = request.model_dump(
        mode="json", include={"messages", "tools", "response_format"}, exclude_none=True
    )
    return lambda result: {"request": sent, "response": result.message}


@dataclass(frozen=True)
class _Chatted:
    """A chat call answered: what the provider was sent (screened) and what the client gets."""

    done: _Done[ChatResult]
    sent: ChatRequest
    result: ChatResult
    """The answer with what screening masked put back, where the policy restores it."""


def _asking(request: ChatRequest, responses: bool) -> Callable[[Any, Target, float], ChatResult]:
    """The provider call: the Responses API where the target serves it natively and the caller
    asked for a response, else chat completions."""

    def ask(provider: Any, target: Target, timeout: float) -> ChatResult:
        if responses and target.native_responses:
            return provider.respond(request, target, timeout=timeout)
        return provider.chat(request, target, timeout=timeout)

    return ask


def _chatted(
    store: InvokeStore, call: Call, request: ChatRequest, trail: Trail, *, responses: bool = False
) -> _Chatted | Answer:
    """One chat call, from the read to the settlement; a dry run answers its estimate instead."""
    started, request, screening_, estimate = _begin_chat(store, call, request, trail)
    target, meter = started.target, started.meter
    if call.dry_run:
        trail.status = "dry_run"
        return Answer(target, dry_run_body(target, estimate, meter), Usage(), attempts=0, cost_micros=0)
    done: _Done[ChatResult] = _answered(
        store,
        target,
        meter,
        "chat",
        request,
        estimate,
        _asking(_bounded(request, target, meter), responses),
        replay=lambda cached: cached,
        as_result=lambda result: result,
        trail=trail,
        content=_chat_content(started, request),
    )
    result = done.value
    if screening_.restores:
        result = ChatResult(
            message=screening.restore_message(result.message, screening_),
            finish_reason=result.finish_reason,
            usage=result.usage,
        )
    return _Chatted(done, request, result)


def _answer_of(chatted: _Chatted, body: dict[str, Any]) -> Answer:
    done = chatted.done
    return Answer(
        done.answered_by,
        body,
        done.value.usage,
        attempts=done.attempts,
        cache=done.cache,
        cost_micros=done.cost_micros,
    )


def chat(store: InvokeStore, call: Call, request: ChatRequest, *, route: str = "chat.completions") -> Answer:
    """`route` names the call in the audit trail (`batches` for a batch's lines)."""
    with _audited(store, call, route, request.model, _subject(request)) as trail:
        chatted = _chatted(store, call, request, trail)
    if isinstance(chatted, Answer):
        return chatted
    body = chatted.result.completion(completion_id=_completion_id(), created=store.now(), model=request.model)
    return _answer_of(chatted, body)


def chunks(
    events: Iterable[StreamEvent], *, completion_id: str, created: int, model: str, include_usage: bool
) -> Iterator[dict[str, Any]]:
    """OpenAI `chat.completion.chunk` objects. The usage chunk (no choices) is sent only when the
    caller asked for it, as OpenAI does; every other chunk then carries `usage: null`."""
    head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    for event in events:
        if isinstance(event, Usage):
            if include_usage:
                yield head | {"choices": [], "usage": event.openai()}
            continue
        choice = {"index": 0, "delta": event.delta, "logprobs": None, "finish_reason": event.finish_reason}
        yield head | {"choices": [choice]} | ({"usage": None} if include_usage else {})


def server_sent_events(items: Iterable[dict[str, Any]]) -> Iterator[str]:
    for item in items:
        yield sse(item)
    yield SSE_DONE


def sse(item: dict[str, Any]) -> str:
    return f"data: {json.dumps(item, separators=(',', ':'))}\n\n"


@dataclass
class _Opened:
    """A provider stream that has begun its answer: from here on it is the client's."""

    head: list[StreamEvent]
    rest: Iterator[StreamEvent]


def _begun(event: StreamEvent) -> bool:
    """An event that says something: text, a tool call, the end. A bare role delta does not."""
    if isinstance(event, Usage):
        return True
    delta = event.delta
    return bool(delta.get("content") or delta.get("tool_calls") or event.finish_reason)


def _opened(events: Iterator[StreamEvent], target: Target, deadline: Deadline) -> _Opened:
    """Reads until the answer begins, so that a provider that fails before (at the call, or after
    a bare role delta) is retried or falls back like any failed call, by the call's deadline; once
    it has begun, nothing is retried: the client has bytes."""
    iterator = iter(events)
    head: list[StreamEvent] = []
    try:
        for event in iterator:
            head.append(event)
            if _begun(event):
                break
            if deadline.remaining() <= 0:
                raise ProviderError(
                    f"The {target.provider} model '{target.model_id}' did not begin its answer in time",
                    status=504,
                    retryable=True,
                )
    except BaseException:
        _close(iterator)
        raise
    return _Opened(head, iterator)


def _close(events: Iterator[Any]) -> None:
    close = getattr(events, "close", None)
    if close is not None:
        close()


class Wire(Protocol):
    """How a stream's events are put on the wire: chat chunks, or Responses events."""

    def items(self, events: Iterable[StreamEvent]) -> Iterator[str]:
        """The server-sent events of the answer, the last of them ending the stream."""
        ...

    def is_last(self, item: str) -> bool:
        """The item that ends a complete stream: the call is settled before it is sent."""
        ...

    def error(self, error: ByomError) -> str:
        """The event that ends a stream the provider failed midway."""
        ...


@dataclass
class ChatWire:
    """Chat completion chunks, then `data: [DONE]`."""

    store: InvokeStore
    model: str
    include_usage: bool

    def items(self, events: Iterable[StreamEvent]) -> Iterator[str]:
        return server_sent_events(
            chunks(
                events,
                completion_id=_completion_id(),
                created=self.store.now(),
                model=self.model,
                include_usage=self.include_usage,
            )
        )

    def is_last(self, item: str) -> bool:
        return item == SSE_DONE

    def error(self, error: ByomError) -> str:
        return sse({"error": envelope_of(error)})


def chat_stream(store: InvokeStore, call: Call, request: ChatRequest) -> StreamAnswer:
    """A streamed chat completion, relayed as the provider produces it (SPEC §4.4)."""
    with _audit_scope(store, call, "chat.completions", request.model, _subject(request)) as (scope, trail):
        return _streamed(
            store,
            call,
            request,
            scope,
            trail,
            lambda sent: ChatWire(store, request.model, sent.include_usage),
        )


@contextmanager
def _audit_scope(
    store: InvokeStore, call: Call, route: str, model: str, user: str | None
) -> Iterator[tuple[ExitStack, Trail]]:
    """The audit record of a stream, kept open past the return: the stream's relay closes it when
    the stream ends; a call refused before the stream began closes it here."""
    scope = ExitStack()
    trail = scope.enter_context(_audited(store, call, route, model, user))
    try:
        yield scope, trail
    except BaseException as error:
        scope.__exit__(type(error), error, error.__traceback__)
        raise


def _streamed(
    store: InvokeStore,
    call: Call,
    request: ChatRequest,
    scope: ExitStack,
    trail: Trail,
    wire_for: Callable[[ChatRequest], Wire],
    *,
    responses: bool = False,
) -> StreamAnswer:
    """Everything that can refuse the call runs before this returns, so a refusal is an ordinary
    error response: the read, the policy's screening, the budget's reservation, the provider's
    retries and fallbacks up to its first event. The events then go to the client one by one and
    the call is settled when the stream ends, however it ends (`_Relay`)."""
    started, request, screening_, estimate = _begin_chat(store, call, request, trail)
    target, meter = started.target, started.meter
    scope.enter_context(_guard(meter))
    content = _chat_content(started, request)
    wire = wire_for(request)
    key = _cache_key(store, target, "chat", request)
    hit = _from_cache(store, key, target, "chat", meter, trail, content)
    if hit is not None:
        scope.close()
        assert isinstance(hit.value, ChatResult)
        events = screening.restore_stream(response_cache.replay(hit.value), screening_)
        return StreamAnswer(
            hit.answered_by,
            wire.items(events),
            attempts=0,
            cache=response_cache.HIT,
            cost_micros=hit.cost_micros,
        )
    if meter is not None:
        meter.admit(estimate)
    bounded = _bounded(request, target, meter)
    deadline = Deadline(store.timing, store.policy.deadline_seconds)
    began, begun_at = time.perf_counter(), store.timing.monotonic()

    def opened(provider: Any, t: Target, timeout: float) -> _Opened:
        native = responses and t.native_responses
        events = (provider.respond_stream if native else provider.stream)(bounded, t, timeout=timeout)
        return _opened(events, t, deadline)

    outcome = _metered(meter, target, trail, lambda: _resilient(store, deadline, target, opened))
    relay = _Relay(store, target, meter, trail, outcome, estimate, key, content, began, begun_at)
    events = screening.restore_stream(relay.events(), screening_)
    return StreamAnswer(
        outcome.target,
        relay.run(scope, wire, wire.items(events)),
        attempts=outcome.attempts,
        cache=key and response_cache.MISS,
    )


@dataclass
class _Relay:
    """A provider stream on its way to the client, and the call's settlement when it ends.

    Settled once, however the stream ends: with the provider's own usage when it finishes; when it
    fails midway (an error event ends the stream) or the client goes away (the provider's stream
    is closed), with what the provider reported, else at the reservation's bound: never at zero."""

    store: InvokeStore
    asked: Target
    """The alias asked for: its cache settings apply, whichever model answered."""
    meter: CallMeter | None
    trail: Trail
    outcome: Outcome[_Opened]
    estimate: money.Estimate
    cache_key: str | None
    content: Callable[[Any], dict[str, Any]] | None
    began: float
    """For the call's latency (perf_counter)."""
    begun_at: float
    """For the stream's limit (the store's monotonic clock)."""
    seen: list[StreamEvent] = field(default_factory=list)
    finished: bool = False

    def events(self) -> Iterator[StreamEvent]:
        opened = self.outcome.value
        limit = self.store.policy.stream_seconds
        self.seen += opened.head
        yield from opened.head
        for event in opened.rest:
            self.seen.append(event)
            yield event
            if limit is not None and self.store.timing.monotonic() - self.begun_at > limit:
                target = self.outcome.target
                raise ProviderError(
                    f"The {target.provider} model '{target.model_id}' was still answering after {limit:g} s",
                    status=504,
                )
        self.finished = True

    def run(self, scope: ExitStack, wire: Wire, items: Iterator[str]) -> Iterator[str]:
        with scope:
            try:
                for item in items:
                    if self.finished and wire.is_last(item):
                        self._settle(complete=True)
                    yield item
            except ProviderError as error:
                self.trail.failed(error)
                self._settle(complete=False)
                yield wire.error(error)
            except GeneratorExit:
                self.trail.status, self.trail.http_status = "client_disconnected", 499
                self._settle(complete=False)
            finally:
                _close(self.outcome.value.rest)

    def _settle(self, *, complete: bool) -> None:
        result = response_cache.assemble(self.seen)
        usage = result.usage
        if not complete and not (usage.prompt_tokens or usage.completion_tokens):
            usage = Usage(self.estimate.input_tokens, self.estimate.output_tokens)
        elif complete:
            usage = billable(usage, self.estimate.input_tokens, result.message)
        self.trail.cache_key = self.cache_key
        kept = _keep_content(self.store, self.trail, self.content, result)
        _settle(self.meter, self.outcome, usage, self.began, self.trail)
        _kept(kept)
        if complete:
            _remember(self.store, self.cache_key, self.asked, "chat", result, self.outcome.target)


def envelope_of(error: ByomError) -> dict[str, Any]:
    return {"message": error.message, "type": error.type, "param": error.param, "code": error.code}


# Responses (SPEC §4.3): the chat path above, translated by byom.logic.responses


class ResponseKeeper(Protocol):
    """Stored responses (byom.dal.responses.ResponseStore): what a call writes and continues."""

    def get(self, tenant_id: str, response_id: str) -> StoredResponse | None: ...

    def put(self, record: StoredResponse, retention_days: int | None) -> None: ...


@dataclass
class _Responding:
    """A Responses call on its way: its id, what it asks in chat terms, and where it is kept."""

    store: InvokeStore
    request: ResponsesRequest
    header: responses.Header
    trail: Trail
    context: list[dict[str, Any]]
    """The stored conversation it continues (`previous_response_id`)."""

    @classmethod
    def begin(cls, store: InvokeStore, request: ResponsesRequest, trail: Trail) -> _Responding:
        context: list[dict[str, Any]] = []
        if request.previous_response_id:
            previous = (
                store.responses.get(trail.tenant_id, request.previous_response_id)
                if store.responses
                else None
            )
            if previous is None:
                # Absent, expired, erased or another tenant's: the same answer (SPEC §4).
                raise NotFound(
                    f"Previous response with id '{request.previous_response_id}' not found.",
                    param="previous_response_id",
                )
            context = previous.context
            # A continuation carries its subject's words: it is theirs too, and erased with them.
            trail.user = trail.user or previous.user
        header = responses.Header(responses.new_id("resp"), store.now(), request.model, request)
        if request.stores and store.responses is not None:
            trail.response_id = header.response_id
        return cls(store, request, header, trail, context)

    def chat_request(self) -> ChatRequest:
        return responses.chat_request(self.request, self.context)

    def keep(self, sent: ChatRequest, response: dict[str, Any]) -> None:
        """Store the response, its input items (as screened: what the provider was sent) and the
        conversation so far, when the caller asked for it to be stored."""
        if not self.request.stores or self.store.responses is None:
            return
        asked = sent.model_dump(mode="json", exclude_none=True)["messages"]
        own = asked[(1 if self.request.instructions else 0) :]
        record = StoredResponse(
            id=self.header.response_id,
            tenant_id=self.trail.tenant_id,
            created_at=self.header.created_at,
            response=response,
            input_items=responses.input_items(own[len(self.context) :]),
            context=[*own, responses.answer_message(response["output"])],
            user=self.trail.user,
        )
        try:
            self.store.responses.put(record, self.trail.retention_days)
        except Exception as error:  # the answer is paid for and stands; it just cannot be continued
            self.trail.response_id = None
            logger.error("response not stored", extra={"error_type": type(error).__name__})


def respond(store: InvokeStore, call: Call, request: ResponsesRequest, *, route: str = "responses") -> Answer:
    """`POST /v1/responses` without streaming."""
    with _audited(store, call, route, request.model, _subject(request)) as trail:
        responding = _Responding.begin(store, request, trail)
        chatted = _chatted(store, call, responding.chat_request(), trail, responses=True)
        if isinstance(chatted, Answer):
            return chatted
        body = responses.completed(responding.header, chatted.result, store.now())
        responding.keep(chatted.sent, body)
    return _answer_of(chatted, body)


def respond_stream(store: InvokeStore, call: Call, request: ResponsesRequest) -> StreamAnswer:
    """`POST /v1/responses` with `stream: true`: the Responses event sequence, relayed as the
    provider produces it, by the same path as a chat stream."""
    with _audit_scope(store, call, "responses", request.model, _subject(request)) as (scope, trail):
        responding = _Responding.begin(store, request, trail)

        def wire_for(sent: ChatRequest) -> Wire:
            return responses.ResponseEvents(
                responding.header, store.now, on_completed=lambda body: responding.keep(sent, body)
            )

        return _streamed(store, call, responding.chat_request(), scope, trail, wire_for, responses=True)


# Embeddings


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """OpenAI's base64 form is the little-endian float32 array, which the SDK decodes by default."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def embeddings_body(result: EmbeddingResult, *, model: str, encoding_format: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(vector, encoding_format)}
            for i, vector in enumerate(result.vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": result.usage.prompt_tokens, "total_tokens": result.usage.prompt_tokens},
    }


def embed(store: InvokeStore, call: Call, request: EmbeddingRequest, *, route: str = "embeddings") -> Answer:
    with _audited(store, call, route, request.model, request.user) as trail:
        started = _start(store, call, request.model, trail)
        target, meter = started.target, started.meter
        texts, screening_ = screening.screen(
            request.texts, started.policy.redaction, started.redaction_mode, store.guardrails
        )
        trail.redactions = screening_.counts
        if texts != request.texts:
            request = request.model_copy(update={"input": texts})
        sent = {"input": texts}
        done: _Done[EmbeddingResult] = _answered(
            store,
            target,
            meter,
            "embeddings",
            request,
            money.estimate_embeddings(request, target.budget_pricing),
            lambda provider, t, timeout: provider.embed(request, t, timeout=timeout),
            replay=lambda cached: cached,
            as_result=lambda result: result,
            trail=trail,
            content=(lambda _result: {"request": sent}) if started.policy.content_logging else None,
        )
    body = embeddings_body(done.value, model=target.alias, encoding_format=request.encoding_format)
    return Answer(
        done.answered_by,
        body,
        done.value.usage,
        attempts=done.attempts,
        cache=done.cache,
        cost_micros=done.cost_micros,
    )
