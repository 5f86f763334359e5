"""The Responses API through the local stack with the official openai SDK and the OpenAI Agents SDK,
unchanged: on a Bedrock alias (translated onto Converse), an OpenAI-compatible alias whose endpoint
serves Responses natively, and one that serves only chat completions (translated onto them).
Every body and event is checked against OpenAI's published schema."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2
import openai
import pytest

from tests.e2e.conftest import LocalStack
from tests.openai_schema import assert_valid

pytestmark = pytest.mark.e2e

ALIASES = ["br-resp", "oa-native", "oa-chat-only"]
PRICE = {"input_per_1k_usd": 0.001, "output_per_1k_usd": 0.002}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


def _tenant(local_stack: LocalStack, admin: httpx2.Client, name: str) -> dict:
    tenant = admin.post("/admin/tenants", json={"name": name}).json()
    base = f"/admin/tenants/{tenant['id']}"
    for credential, native in (("native", True), ("chat-only", False)):
        body = {
            "provider": "openai_compatible",
            "base_url": local_stack.openai_stand_in_url,
            "api_key": "sk-local-5678",
            "responses": native,
        }
        assert admin.put(f"{base}/credentials/{credential}", json=body).status_code == 200
    aliases = [
        {"alias": "br-resp", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
        {
            "alias": "oa-native",
            "provider": "openai_compatible",
            "model_id": "stand-in-chat",
            "credential": "native",
        },
        {
            "alias": "oa-chat-only",
            "provider": "openai_compatible",
            "model_id": "stand-in-chat",
            "credential": "chat-only",
        },
    ]
    for alias in aliases:
        created = admin.post(f"{base}/models", json={"pricing": PRICE, **alias})
        assert created.status_code == 201, created.text
    key = admin.post(f"{base}/keys", json={"name": "dev", "role": "developer"}).json()["key"]
    return tenant | {"key": key}


@pytest.fixture(scope="module")
def tenant(local_stack: LocalStack, admin: httpx2.Client) -> dict:
    return _tenant(local_stack, admin, "responses-team")


@pytest.fixture(scope="module")
def sdk(local_stack: LocalStack, tenant: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=tenant["key"], max_retries=0)


@pytest.fixture(scope="module")
def raw(local_stack: LocalStack, tenant: dict) -> httpx2.Client:
    return httpx2.Client(
        base_url=f"{local_stack.url}/v1", headers={"Authorization": f"Bearer {tenant['key']}"}, timeout=30
    )


@pytest.fixture
def upstream(local_stack: LocalStack) -> Iterator[callable]:  # type: ignore[valid-type]
    """The APIs the OpenAI-compatible stand-in was called on during the test, with their bodies."""
    url = local_stack.openai_stand_in_url.removesuffix("/v1") + "/_stand_in/requests"
    httpx2.delete(url)
    yield lambda: httpx2.get(url).json()["requests"]


@pytest.mark.parametrize("alias", ALIASES)
def test_a_response_answers_in_openai_shape_with_usage(
    sdk: openai.OpenAI, raw: httpx2.Client, alias: str
) -> None:
    answer = raw.post("/responses", json={"model": alias, "input": "Say hello", "store": False})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert_valid("Response", body)
    assert body["status"] == "completed" and body["model"] == alias
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    assert float(answer.headers["x-byom-cost-usd"]) > 0
    response = sdk.responses.create(model=alias, input="Say hello", instructions="Be brief")
    assert "Say hello" in response.output_text


def test_a_native_alias_is_called_on_the_responses_api_and_the_other_on_chat(
    sdk: openai.OpenAI,
    upstream: callable,  # type: ignore[valid-type]
) -> None:
    sdk.responses.create(model="oa-native", input="native please")
    sdk.responses.create(model="oa-chat-only", input="chat please")

    apis = [(r["api"], json.dumps(r["body"])) for r in upstream()]
    assert [api for api, body in apis if "native please" in body] == ["responses"]
    assert [api for api, body in apis if "chat please" in body] == ["chat.completions"]
    native = next(r["body"] for r in upstream() if r["api"] == "responses")
    assert native["store"] is False  # the gateway keeps the conversation, not the provider


def _events(raw: httpx2.Client, body: dict) -> list[dict]:
    events = []
    with raw.stream("POST", "/responses", json=body | {"stream": True}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    return events


@pytest.mark.parametrize("alias", ALIASES)
def test_a_streamed_response_sends_the_responses_event_sequence(raw: httpx2.Client, alias: str) -> None:
    events = _events(raw, {"model": alias, "input": "Stream a few words please"})

    for event in events:
        assert_valid("ResponseStreamEvent", event)
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "response.output_item.added" in types and "response.output_text.done" in types
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    assert text == final["output"][0]["content"][0]["text"] and "Stream a few words" in text
    assert final["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("alias", ALIASES)
def test_the_sdk_iterates_a_stream(sdk: openai.OpenAI, alias: str) -> None:
    with sdk.responses.stream(model=alias, input="Hello there") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert "".join(deltas) == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0


@pytest.mark.parametrize("alias", ALIASES)
def test_a_function_call_round_trip(sdk: openai.OpenAI, raw: httpx2.Client, alias: str) -> None:
    first = sdk.responses.create(model=alias, input="Use get_weather for Paris", tools=[WEATHER_TOOL])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "stand-in"}

    second = raw.post(
        "/responses",
        json={
            "model": alias,
            "previous_response_id": first.id,
            "tools": [WEATHER_TOOL],
            "input": [{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"}],
        },
    )

    assert second.status_code == 200, second.text
    assert_valid("Response", second.json())
    assert "The tool answered: Sunny, 21 C" in second.json()["output"][0]["content"][0]["text"]


@pytest.mark.parametrize("alias", ALIASES)
def test_json_schema_output_parses(sdk: openai.OpenAI, alias: str) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    response = sdk.responses.create(
        model=alias,
        input="Reply in JSON",
        text={"format": {"type": "json_schema", "name": "reply", "schema": schema}},
    )

    assert json.loads(response.output_text)["echo"] == "Reply in JSON"
    assert response.text.format.type == "json_schema"


def test_previous_response_id_sends_the_conversation_so_far(
    sdk: openai.OpenAI,
    upstream: callable,  # type: ignore[valid-type]
) -> None:
    first = sdk.responses.create(model="oa-chat-only", input="My name is Ada", instructions="Be kind")
    second = sdk.responses.create(
        model="oa-chat-only", input="What is my name?", previous_response_id=first.id
    )

    assert second.previous_response_id == first.id
    sent = upstream()[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]  # earlier instructions not carried
    assert sent[0]["content"] == "My name is Ada" and "My name is Ada" in sent[1]["content"]
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens


@pytest.mark.parametrize("alias", ["br-resp", "oa-native"])
def test_stored_responses_are_retrieved_listed_and_deleted(
    sdk: openai.OpenAI, raw: httpx2.Client, alias: str
) -> None:
    created = sdk.responses.create(model=alias, input="Remember this", metadata={"ticket": "T-1"})

    retrieved = raw.get(f"/responses/{created.id}")
    assert retrieved.status_code == 200
    assert_valid("Response", retrieved.json())
    again = sdk.responses.retrieve(created.id)
    assert again.model_dump() == created.model_dump() and again.metadata == {"ticket": "T-1"}
    items = raw.get(f"/responses/{created.id}/input_items")
    assert_valid("ResponseItemList", items.json())
    assert [i.content[0].text for i in sdk.responses.input_items.list(created.id).data] == ["Remember this"]

    sdk.responses.delete(created.id)

    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)


def test_input_items_page_through_a_long_input(sdk: openai.OpenAI) -> None:
    turns = [{"role": "user", "content": f"line {n}"} for n in range(5)]
    created = sdk.responses.create(model="oa-chat-only", input=turns)

    first = sdk.responses.input_items.list(created.id, limit=2, order="asc")
    assert [i.content[0].text for i in first.data] == ["line 0", "line 1"] and first.has_more
    every = [i.content[0].text for i in sdk.responses.input_items.list(created.id, order="asc", limit=2)]
    assert every == [f"line {n}" for n in range(5)]  # the SDK follows `after` page by page


def test_store_false_keeps_nothing(sdk: openai.OpenAI) -> None:
    created = sdk.responses.create(model="oa-chat-only", input="Forget this", store=False)

    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="oa-chat-only", input="and?", previous_response_id=created.id)


def test_another_tenants_response_is_not_found(
    local_stack: LocalStack, admin: httpx2.Client, sdk: openai.OpenAI
) -> None:
    other = _tenant(local_stack, admin, "responses-other")
    theirs = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=other["key"], max_retries=0)
    created = theirs.responses.create(model="oa-chat-only", input="Private")

    for attempt in (
        lambda: sdk.responses.retrieve(created.id),
        lambda: sdk.responses.delete(created.id),
        lambda: sdk.responses.input_items.list(created.id),
        lambda: sdk.responses.create(model="oa-chat-only", input="x", previous_response_id=created.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert theirs.responses.retrieve(created.id).id == created.id


def test_a_bad_request_is_a_400_naming_the_field(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model="oa-chat-only", input="x", tools=[{"type": "web_search"}])  # type: ignore[list-item]

    assert "tools.0" in refused.value.message


@pytest.mark.parametrize("alias", ["br-resp", "oa-native", "oa-chat-only"])
def test_an_agents_sdk_agent_runs_with_a_function_tool(
    local_stack: LocalStack, tenant: dict, alias: str
) -> None:
    from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled

    set_tracing_disabled(True)  # traces would go to OpenAI
    set_default_openai_client(
        openai.AsyncOpenAI(base_url=f"{local_stack.url}/v1", api_key=tenant["key"], max_retries=0),
        use_for_tracing=False,
    )
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        asked.append(city)
        return f"Sunny in {city}"

    agent = Agent(name="Weather", instructions="Answer with the weather.", model=alias, tools=[get_weather])

    result = Runner.run_sync(agent, "Use get_weather for Paris")

    assert asked == ["stand-in"]
    assert "The tool answered: Sunny in stand-in" in result.final_output
