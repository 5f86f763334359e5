"""The emulated API Gateway's optional authorizer cache (BYOM_AUTHORIZER_CACHE), as the cloud's."""

from __future__ import annotations

import pytest

from local_stack import apigateway
from local_stack.apigateway import LocalApiGateway, build_rest_api
from local_stack.stack import StackSettings
from local_stack.template import Resolver, Template
from tests.unit.local_stack.sample import sample_template
from tests.unit.local_stack.test_local_api_gateway import FakeFunctions, call, error_of


@pytest.fixture
def functions() -> FakeFunctions:
    return FakeFunctions()


@pytest.fixture
def cached(functions: FakeFunctions) -> LocalApiGateway:
    template = Template(body=sample_template(), stack_name="Sample")
    api = build_rest_api(template, Resolver(template))
    return LocalApiGateway(api, functions.invoke, cache_authorizer_results=True)


def test_the_authorizer_ttl_comes_from_the_template() -> None:
    template = Template(body=sample_template(), stack_name="Sample")
    matched = build_rest_api(template, Resolver(template)).match("GET", "/v1/models")
    assert matched is not None
    authorizer = matched[0].authorizer
    assert authorizer is not None and authorizer.result_ttl_seconds == 300


def test_an_allow_is_reused_for_the_same_key(cached: LocalApiGateway, functions: FakeFunctions) -> None:
    first = call(cached, "GET", "/v1/models")
    second = call(cached, "POST", "/v1/models")

    assert (first.status, second.status) == (200, 200)
    assert len(functions.events["AuthFn"]) == 1
    assert functions.events["EchoFn"][-1]["requestContext"]["authorizer"]["tenant_id"] == "t-1"


def test_another_key_is_authorized_afresh(cached: LocalApiGateway, functions: FakeFunctions) -> None:
    call(cached, "GET", "/v1/models", token="allow")
    call(cached, "GET", "/v1/models", token="deny")

    assert len(functions.events["AuthFn"]) == 2


def test_a_refusal_is_not_cached(cached: LocalApiGateway, functions: FakeFunctions) -> None:
    statuses = [call(cached, "GET", "/v1/models", token="unknown").status for _ in range(2)]

    assert statuses == [401, 401]
    assert len(functions.events["AuthFn"]) == 2


def test_a_cached_deny_still_denies(cached: LocalApiGateway, functions: FakeFunctions) -> None:
    responses = [call(cached, "GET", "/v1/models", token="deny") for _ in range(2)]

    assert [r.status for r in responses] == [403, 403]
    assert error_of(responses[1])["type"] == "permission_error"


def test_an_answer_older_than_the_ttl_is_asked_again(
    cached: LocalApiGateway, functions: FakeFunctions, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(apigateway.time, "monotonic", lambda: now[0])
    call(cached, "GET", "/v1/models")
    now[0] += 301

    call(cached, "GET", "/v1/models")

    assert len(functions.events["AuthFn"]) == 2


@pytest.mark.parametrize(
    ("value", "expected"), [(None, True), ("true", True), ("1", True), ("no", False), ("false", False)]
)
def test_the_cache_is_on_unless_byom_authorizer_cache_turns_it_off(value: str | None, expected: bool) -> None:
    environ = {"BYOM_AUTHORIZER_CACHE": value} if value is not None else {}
    assert StackSettings.from_env(environ).authorizer_cache is expected


@pytest.fixture
def flushed_on_admin_writes(functions: FakeFunctions) -> LocalApiGateway:
    template = Template(body=sample_template(), stack_name="Sample")
    api = build_rest_api(template, Resolver(template))
    return LocalApiGateway(
        api, functions.invoke, cache_authorizer_results=True, flush_cache_after_writes_under="/v1/"
    )


def test_a_successful_write_under_the_prefix_flushes_the_cache(
    flushed_on_admin_writes: LocalApiGateway, functions: FakeFunctions
) -> None:
    call(flushed_on_admin_writes, "GET", "/v1/models")
    call(flushed_on_admin_writes, "POST", "/v1/models")
    call(flushed_on_admin_writes, "GET", "/v1/models")

    assert len(functions.events["AuthFn"]) == 2


def test_reads_do_not_flush_the_cache(
    flushed_on_admin_writes: LocalApiGateway, functions: FakeFunctions
) -> None:
    for _ in range(3):
        call(flushed_on_admin_writes, "GET", "/v1/models")

    assert len(functions.events["AuthFn"]) == 1
