"""The admin CLI's commands against an in-memory HTTP transport (no sockets): what each sends,
what it prints, how it fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from byom_cli import app as cli
from byom_cli.client import Gateway, error_from, segment
from typer.testing import CliRunner

KEY = "byom-0123456789abcdefWXYZ"
URL = "http://gateway.test"
Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """An httpx transport answering from a handler, keeping every request it saw."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler
        self.transport = httpx.MockTransport(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._handler(request)


def answer(status: int, body: object) -> Handler:
    return lambda _request: httpx.Response(status, json=body)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "BYOM_CONFIG": str(tmp_path / "config.json"),
        "BYOM_URL": URL,
        "BYOM_ADMIN_KEY": KEY,
        "COLUMNS": "200",
    }


def run(server: Server | None, args: list[str], env: dict[str, str], stdin: str | None = None):
    transport = server.transport if server else None
    return CliRunner().invoke(cli.app, args, env=env, input=stdin, obj=transport)


def test_help_lists_every_command_group() -> None:
    shown = CliRunner().invoke(cli.app, ["--help"], env={"COLUMNS": "200"}).stdout

    for name in (
        "login",
        "tenants",
        "keys",
        "credentials",
        "models",
        "budget",
        "policy",
        "usage",
        "jobs",
        "audit",
    ):
        assert name in shown


def test_login_saves_the_key_and_prints_it_masked(env: dict[str, str]) -> None:
    server = Server(answer(200, {"object": "list", "data": []}))
    env = {k: v for k, v in env.items() if k != "BYOM_ADMIN_KEY"}

    result = run(server, ["login", "--url", URL, "--key-stdin"], env, stdin=KEY + "\n")

    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    assert "byom-…WXYZ" in result.output
    assert json.loads(Path(env["BYOM_CONFIG"]).read_text())["key"] == KEY


def test_login_refuses_a_key_the_server_refuses(env: dict[str, str]) -> None:
    envelope = {
        "error": {"message": "Invalid API key", "type": "authentication_error", "code": "invalid_api_key"}
    }
    server = Server(answer(401, envelope))

    result = run(server, ["login", "--url", URL], env)

    assert result.exit_code == 1
    assert "Invalid API key" in result.stderr
    assert not Path(env["BYOM_CONFIG"]).exists()


def test_login_knows_a_tenant_key_by_its_403(env: dict[str, str]) -> None:
    server = Server(
        answer(403, {"error": {"message": "Only the platform admin", "type": "permission_error"}})
    )

    result = run(server, ["login", "--url", URL, "--json"], env)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["role"] == "tenant key"


@pytest.mark.parametrize(
    "args",
    [
        ["login", "--url", URL, "--key", KEY],
        ["credentials", "put", "c", "--provider", "openai", "--api-key", KEY],
    ],
)
def test_a_key_on_the_command_line_is_refused(env: dict[str, str], args: list[str]) -> None:
    server = Server(answer(200, {}))

    result = run(server, [*args, "--tenant", "t"] if args[0] == "credentials" else args, env)

    assert result.exit_code == 1
    assert "never taken from the command line" in result.stderr
    assert server.requests == []


def test_a_provider_key_from_stdin_is_sent_and_not_printed(env: dict[str, str]) -> None:
    provider_key = "sk-provider-secret-0000"
    stored = {"name": "main", "provider": "openai", "base_url": None, "key_last4": "0000", "updated_at": 1}
    server = Server(answer(200, stored))

    result = run(
        server,
        ["credentials", "put", "main", "--provider", "openai", "--key-stdin", "-t", "t1"],
        env,
        provider_key,
    )

    assert result.exit_code == 0, result.output
    assert json.loads(server.requests[0].content)["api_key"] == provider_key
    assert provider_key not in result.output


def test_the_server_s_error_message_is_shown_with_its_status(env: dict[str, str]) -> None:
    envelope = {
        "error": {"message": "No tenant 't-x'", "type": "not_found_error", "param": None, "code": None}
    }
    server = Server(answer(404, envelope))

    result = run(server, ["tenants", "show", "t-x"], env)

    assert result.exit_code == 1
    assert "404 not_found_error: No tenant 't-x'" in result.stderr


def test_json_prints_the_server_s_answer_as_is(env: dict[str, str]) -> None:
    report = {"object": "usage", "month": "2026-12", "items": [], "total": {}, "budget": None}
    server = Server(answer(200, report))

    result = run(server, ["usage", "-t", "t1", "--json"], env)

    assert json.loads(result.stdout) == report


def test_usage_asks_for_the_month_and_grouping(env: dict[str, str]) -> None:
    server = Server(answer(200, {"items": [], "total": {}, "budget": None}))

    run(server, ["usage", "-t", "t1", "--month", "2026-11", "--by", "day"], env)

    assert server.requests[0].url.path == "/admin/tenants/t1/usage"
    assert dict(server.requests[0].url.params) == {"month": "2026-11", "group_by": "day"}


def test_budget_set_sends_the_limit_and_the_ledger_shards(env: dict[str, str]) -> None:
    server = Server(answer(200, {"monthly_limit_usd": 5000, "hard": True, "ledger_shards": 20}))

    result = run(server, ["budget", "set", "--limit", "5000", "--ledger-shards", "20", "-t", "t1"], env)

    assert result.exit_code == 0, result.output
    assert server.requests[0].method == "PUT"
    assert json.loads(server.requests[0].content) == {
        "monthly_limit_usd": 5000,
        "hard": True,
        "ledger_shards": 20,
    }


def test_tenant_commands_say_which_tenant_is_missing(env: dict[str, str]) -> None:
    result = run(Server(answer(200, {})), ["keys", "list"], env)

    assert result.exit_code == 1
    assert "--tenant" in result.stderr


def test_without_a_login_the_cli_says_how_to_log_in(tmp_path: Path) -> None:
    result = run(None, ["tenants", "list"], {"BYOM_CONFIG": str(tmp_path / "none.json")})

    assert result.exit_code == 1
    assert "byom login" in result.stderr


def test_an_unreachable_gateway_is_named_in_the_error(env: dict[str, str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    result = run(Server(refuse), ["tenants", "list"], env)

    assert result.exit_code == 1
    assert f"Cannot reach {URL}" in result.stderr


def test_audit_filters_become_the_route_s_query(env: dict[str, str]) -> None:
    server = Server(answer(200, {"object": "list", "data": [], "next_token": None}))

    run(server, ["audit", "list", "-t", "t1", "--kind", "admin", "--since", "1970-01-01T00:01:40"], env)

    assert dict(server.requests[0].url.params) == {"kind": "admin", "since": "100", "limit": "20"}


def jobs_in_order(*statuses: str) -> Handler:
    remaining = list(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, json={"object": "list", "data": []})
        status = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return httpx.Response(200, json={"id": "ftjob-1", "byom_status": status})

    return handle


def test_watch_follows_a_job_until_it_succeeds(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.time, "sleep", lambda _seconds: None)
    server = Server(jobs_in_order("validating", "training", "succeeded"))

    result = run(server, ["jobs", "watch", "ftjob-1", "--json"], env)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["byom_status"] == "succeeded"


def test_watch_exits_1_when_the_job_fails(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.time, "sleep", lambda _seconds: None)
    server = Server(jobs_in_order("training", "failed"))

    result = run(server, ["jobs", "watch", "ftjob-1"], env)

    assert result.exit_code == 1
    assert "failed" in result.stdout


def test_a_stage_url_keeps_its_path() -> None:
    server = Server(answer(200, {}))

    Gateway("https://api.example/prod", KEY, server.transport).get("admin/tenants")

    assert str(server.requests[0].url) == "https://api.example/prod/admin/tenants"


def test_a_path_segment_cannot_change_the_route() -> None:
    assert segment("../keys/x") == "..%2Fkeys%2Fx"


def test_an_api_gateway_refusal_keeps_its_message() -> None:
    error = error_from(httpx.Response(429, json={"message": "Too Many Requests"}))

    assert str(error) == "429: Too Many Requests"


def test_a_non_json_error_body_is_cut_short() -> None:
    error = error_from(httpx.Response(502, text="<html>" + "x" * 5000))

    assert len(error.message) <= 300
