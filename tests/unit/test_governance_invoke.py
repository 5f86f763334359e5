"""Redaction, restore, tokens-per-minute limits and audit records on the invocation path, with fakes."""

from __future__ import annotations

from typing import Any

import pytest
from byom.errors import ContentPolicyViolation, ModelNotFound, ProviderError, RateLimited
from byom.governance.audit import AuditRecord
from byom.governance.guardrail import GuardrailVerdict
from byom.governance.policy import Policy, PutPolicy
from byom.logic import invoke
from byom.providers import ChatResult, StreamDelta, Target, Usage

from tests.unit.fakes import FakeClock
from tests.unit.invoke_fakes import DEVELOPER, NOW, FlakyProvider, add_model, chat_request, make_store


class FakePolicies:
    def __init__(self) -> None:
        self.items: dict[str, Policy] = {}

    def get(self, tenant_id: str) -> Policy:
        return self.items.get(tenant_id) or Policy(tenant_id=tenant_id)

    def set(self, tenant_id: str, **fields: Any) -> None:
        self.items[tenant_id] = Policy.model_validate(
            PutPolicy.model_validate(fields).model_dump() | {"tenant_id": tenant_id}
        )


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def write(self, record: AuditRecord) -> None:
        self.records.append(record)

    def transact_put(self, record: AuditRecord) -> dict[str, Any]:
        self.records.append(record)
        return {"Put": {"record": record.request_id}}


class EchoProvider(FlakyProvider):
    """Answers with the last user message, so what the provider saw can be read back."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def chat(self, request, target: Target, *, timeout=None) -> ChatResult:  # type: ignore[no-untyped-def]
        text = str(request.messages[-1].content)
        self.seen.append(text)
        return ChatResult(
            message={"role": "assistant", "content": f"You said: {text}"},
            finish_reason="stop",
            usage=Usage(5, 3),
        )

    def stream(self, request, target: Target, *, timeout=None):  # type: ignore[no-untyped-def]
        text = f"You said: {request.messages[-1].content}"
        self.seen.append(str(request.messages[-1].content))
        yield StreamDelta({"role": "assistant", "content": ""})
        for i in range(0, len(text), 3):  # 3-character chunks split every placeholder
            yield StreamDelta({"content": text[i : i + 3]})
        yield StreamDelta({}, finish_reason="stop")
        yield Usage(5, 3)


PII = "Mail jane.doe@example.com, card 4111 1111 1111 1111."


@pytest.fixture
def provider() -> EchoProvider:
    return EchoProvider()


@pytest.fixture
def store(provider: EchoProvider) -> invoke.InvokeStore:
    store = make_store(provider, FakeClock())
    store.calls.policies = FakePolicies()
    store.audit = FakeAudit()
    add_model(store, "fast", pricing={"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002})
    return store


def _call(request_id: str = "req-1", subject: str | None = None) -> invoke.Call:
    return invoke.Call(DEVELOPER, request_id, subject=subject)


def _ask(store: invoke.InvokeStore, text: str = PII, **fields: Any) -> invoke.Answer:
    return invoke.chat(store, _call(), chat_request(messages=[{"role": "user", "content": text}], **fields))


def test_masking_sends_placeholders_never_the_values(
    store: invoke.InvokeStore, provider: EchoProvider
) -> None:
    store.calls.policies.set("tnt_a", redaction={"mode": "mask"})
    _ask(store)
    assert provider.seen == ["Mail <EMAIL_1>, card <PAYMENT_CARD_1>."]


def test_without_restore_the_answer_keeps_the_placeholders(store: invoke.InvokeStore) -> None:
    store.calls.policies.set("tnt_a", redaction={"mode": "mask"})
    answer = _ask(store)
    assert (
        answer.body["choices"][0]["message"]["content"] == "You said: Mail <EMAIL_1>, card <PAYMENT_CARD_1>."
    )


def test_restore_puts_the_values_back_in_the_answer(store: invoke.InvokeStore) -> None:
    store.calls.policies.set("tnt_a", redaction={"mode": "mask", "restore": True})
    answer = _ask(store)
    assert answer.body["choices"][0]["message"]["content"] == f"You said: {PII}"


def test_restore_works_on_streams_split_inside_placeholders(
    store: invoke.InvokeStore, provider: EchoProvider
) -> None:
    store.calls.policies.set("tnt_a", redaction={"mode": "mask", "restore": True})
    streamed = invoke.chat_stream(
        store, _call(), chat_request(messages=[{"role": "user", "content": PII}], stream=True)
    )
    import json

    text = "".join(
        (json.loads(e[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for e in streamed.events
        if e.startswith("data: {")
    )
    assert provider.seen == ["Mail <EMAIL_1>, card <PAYMENT_CARD_1>."]
    assert text == f"You said: {PII}"


def test_block_refuses_naming_the_types_not_the_values(
    store: invoke.InvokeStore, provider: EchoProvider
) -> None:
    store.calls.policies.set("tnt_a", redaction={"mode": "block"})
    with pytest.raises(ContentPolicyViolation) as refused:
        _ask(store)
    assert "email" in refused.value.message and "payment_card" in refused.value.message
    assert "jane" not in refused.value.message and "4111" not in refused.value.message
    assert provider.seen == []
    assert refused.value.status == 400 and refused.value.code == "content_policy_violation"
    (record,) = store.audit.records  # type: ignore[union-attr]
    assert record.status == "policy_blocked" and record.redactions == {"email": 1, "payment_card": 1}


def test_an_alias_may_override_the_tenants_mode(store: invoke.InvokeStore, provider: EchoProvider) -> None:
    store.calls.policies.set("tnt_a", redaction={"mode": "block"})
    add_model(
        store,
        "in-account",
        redaction_mode="off",
        pricing={"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002},
    )
    invoke.chat(store, _call(), chat_request("in-account", messages=[{"role": "user", "content": PII}]))
    assert provider.seen == [PII]


def test_tool_results_and_text_parts_are_masked(store: invoke.InvokeStore, provider: EchoProvider) -> None:
    store.calls.policies.set("tnt_a", redaction={"mode": "mask"})
    request = chat_request(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "I am jane.doe@example.com"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"to": "jane.doe@example.com"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sent to bob@example.org"},
        ]
    )
    screened, _ = invoke.screening.screen_chat(request, store.calls.policies.get("tnt_a").redaction, "mask")
    assert screened.messages[0].content[0].text == "I am <EMAIL_1>"
    assert screened.messages[1].tool_calls[0].function.arguments == '{"to": "<EMAIL_1>"}'
    assert screened.messages[2].content == "sent to <EMAIL_2>"


def test_embeddings_input_is_masked(store: invoke.InvokeStore, provider: EchoProvider) -> None:
    store.calls.policies.set("tnt_a", redaction={"mode": "mask"})
    seen: list[list[str]] = []
    original = provider.embed

    def embed(request, target, *, timeout=None):  # type: ignore[no-untyped-def]
        seen.append(request.texts)
        return original(request, target, timeout=timeout)

    provider.embed = embed  # type: ignore[method-assign]
    from tests.unit.invoke_fakes import embedding_request

    invoke.embed(store, _call(), embedding_request(input=["call +44 20 7946 0958", "plain"]))
    assert seen == [["call <PHONE_1>", "plain"]]


class BlockingGuardrail:
    def __init__(self, verdict: GuardrailVerdict) -> None:
        self.verdict = verdict
        self.texts: list[str] = []

    def screen(self, guardrail_id: str, version: str, texts: list[str]) -> GuardrailVerdict:
        self.texts.extend(texts)
        return self.verdict

    def exists(self, guardrail_id: str, version: str) -> bool:
        return True


def test_a_guardrails_matches_are_masked_with_our_placeholders(
    store: invoke.InvokeStore, provider: EchoProvider
) -> None:
    store.guardrails = BlockingGuardrail(GuardrailVerdict(values={"Jane Doe": "name"}))
    store.calls.policies.set(
        "tnt_a", redaction={"mode": "mask", "types": [], "guardrail": {"id": "abc123", "version": "1"}}
    )
    _ask(store, "I am Jane Doe")
    assert provider.seen == ["I am <NAME_1>"]


def test_a_guardrail_that_blocks_refuses_the_call(store: invoke.InvokeStore, provider: EchoProvider) -> None:
    store.guardrails = BlockingGuardrail(GuardrailVerdict(blocked_types=["us_ssn"], intervened=True))
    store.calls.policies.set(
        "tnt_a", redaction={"mode": "mask", "guardrail": {"id": "abc123", "version": "1"}}
    )
    with pytest.raises(ContentPolicyViolation, match="us_ssn"):
        _ask(store, "hello")
    assert provider.seen == []


# Audit records


def _records(store: invoke.InvokeStore) -> list[AuditRecord]:
    return store.audit.records  # type: ignore[union-attr]


def test_a_success_is_recorded_once_with_its_figures(store: invoke.InvokeStore) -> None:
    store.calls.policies.set("tnt_a", redaction={"mode": "mask"}, retention_days=7)
    invoke.chat(store, _call(subject="subject-1"), chat_request(messages=[{"role": "user", "content": PII}]))
    (record,) = _records(store)
    assert (record.status, record.model, record.provider, record.user) == (
        "succeeded",
        "fast",
        "bedrock",
        "subject-1",
    )
    assert (record.input_tokens, record.output_tokens) == (5, 3)
    assert record.redactions == {"email": 1, "payment_card": 1}
    assert record.expires_at == record.created_at_ms // 1000 + 7 * 86_400
    assert "jane" not in record.model_dump_json() and "4111" not in record.model_dump_json()


def test_the_body_user_is_the_subject_before_the_header(store: invoke.InvokeStore) -> None:
    invoke.chat(store, _call(subject="from-header"), chat_request(user="from-body"))
    assert _records(store)[0].user == "from-body"


def test_a_subject_id_over_256_characters_is_a_400(store: invoke.InvokeStore) -> None:
    with pytest.raises(Exception) as refused:
        invoke.chat(store, _call(), chat_request(user="u" * 257))
    assert getattr(refused.value, "status", None) == 400


@pytest.mark.parametrize(
    ("setup", "error", "status"),
    [
        (
            lambda s, p: s.calls.policies.set("tnt_a", redaction={"mode": "block"}),
            ContentPolicyViolation,
            "policy_blocked",
        ),
        (
            lambda s, p: (
                p.fail("model-fast", ProviderError("down", status=503))
                or p.fail("model-fast", ProviderError("down", status=503))
                or p.fail("model-fast", ProviderError("down", status=503))
            ),
            ProviderError,
            "provider_error",
        ),
    ],
)
def test_refusals_and_failures_are_recorded(store, provider, setup, error, status) -> None:  # type: ignore[no-untyped-def]
    setup(store, provider)
    provider.chat = FlakyProvider.chat.__get__(provider)  # type: ignore[method-assign]
    with pytest.raises(error):
        _ask(store)
    (record,) = _records(store)
    assert record.status == status


def test_an_unknown_model_is_recorded_as_an_invalid_request(store: invoke.InvokeStore) -> None:
    with pytest.raises(ModelNotFound):
        invoke.chat(store, _call(), chat_request("nope"))
    assert _records(store)[0].status == "invalid_request"


def test_a_dry_run_is_recorded(store: invoke.InvokeStore) -> None:
    invoke.chat(store, invoke.Call(DEVELOPER, "req-d", dry_run=True), chat_request())
    assert _records(store)[0].status == "dry_run"


# Tokens per minute


def test_a_tenant_over_its_tokens_per_minute_is_refused_with_retry_after(
    store: invoke.InvokeStore,
) -> None:
    store.calls.policies.set("tnt_a", rate_limits={"tokens_per_minute": 100})
    store.calls.minute_tokens = 100
    with pytest.raises(RateLimited) as refused:
        _ask(store, "hello")
    assert refused.value.status == 429 and refused.value.code == "rate_limit_exceeded"
    assert refused.value.headers["retry-after"] == str(60 - NOW % 60)
    assert _records(store)[0].status == "rate_limited"
