"""The `byom` admin CLI driven against the local stack: log in, set a tenant up, make one call with
the openai SDK, and read it back as `byom usage` shows it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import openai
import pytest
from byom_cli.app import app
from typer.testing import CliRunner, Result

from tests.e2e.conftest import ADMIN_KEY, LocalStack

pytestmark = pytest.mark.e2e

PROVIDER_KEY = "sk-cli-provider-key-5678"


@dataclass
class Cli:
    """`byom` with its own config file and none of the caller's BYOM_* variables."""

    config: Path
    outputs: list[str] = field(default_factory=list)

    def __call__(self, *args: str, stdin: str | None = None, api_key: str | None = None) -> Result:
        env: dict[str, str | None] = {
            "BYOM_CONFIG": str(self.config),
            "BYOM_URL": None,
            "BYOM_ADMIN_KEY": None,
            "BYOM_API_KEY": api_key,
            "BYOM_TENANT": None,
            "COLUMNS": "200",
        }
        result = CliRunner().invoke(app, list(args), env=env, input=stdin)
        self.outputs.append(result.output)
        return result

    def json(self, *args: str, stdin: str | None = None) -> dict:
        result = self(*args, "--json", stdin=stdin)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cli(local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    cli = Cli(tmp_path_factory.mktemp("byom") / "config.json")
    login = cli("login", "--url", local_stack.url, "--key-stdin", stdin=ADMIN_KEY + "\n")
    assert login.exit_code == 0, login.output
    return cli


@pytest.fixture(scope="module")
def team(local_stack: LocalStack, cli: Cli) -> dict:
    """A tenant set up through the CLI alone, with one chat call made through the openai SDK."""
    tenant = cli.json("tenants", "create", "cli-team")["id"]
    scope = ("--tenant", tenant)
    cli.json(
        "credentials", "put", "local", "--provider", "openai_compatible",
        "--base-url", local_stack.openai_stand_in_url, "--key-stdin", *scope,
        stdin=PROVIDER_KEY,
    )  # fmt: skip
    cli.json(
        "models", "add", "fast", "--provider", "openai_compatible", "--model-id", "stand-in-chat",
        "--credential", "local", "--input-per-1k", "0.001", "--output-per-1k", "0.002", *scope,
    )  # fmt: skip
    cli.json("budget", "set", "--limit", "5", *scope)
    key = cli.json("keys", "create", "app", "--role", "admin", *scope)["key"]
    sdk = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0)
    sdk.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hello"}], max_tokens=20)
    return {"id": tenant, "key": key, "sdk": sdk}


def test_login_never_prints_the_key(cli: Cli) -> None:
    login = cli.outputs[0]

    assert ADMIN_KEY not in login
    assert "platform admin" in login


def test_the_config_file_is_readable_by_its_owner_only(cli: Cli) -> None:
    assert stat.S_IMODE(cli.config.stat().st_mode) & 0o077 == 0


def test_usage_prints_a_table_with_the_model_row_and_the_budget_bar(cli: Cli, team: dict) -> None:
    result = cli("usage", "--tenant", team["id"])

    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 2}
    assert "fast" in rows
    assert "Budget [" in result.stdout
    assert "of $5.00" in result.stdout


def test_the_installed_byom_command_prints_the_usage_table(cli: Cli, team: dict) -> None:
    """`make install` puts `byom` beside the interpreter; this is the command a user types."""
    byom = Path(sys.executable).with_name("byom")
    assert byom.exists(), "run `make install`: it installs the byom console script"
    env = os.environ | {"BYOM_CONFIG": str(cli.config), "COLUMNS": "200"}
    env = {k: v for k, v in env.items() if k not in ("BYOM_URL", "BYOM_ADMIN_KEY", "BYOM_API_KEY")}

    result = subprocess.run(
        [str(byom), "usage", "--tenant", team["id"]], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert "Usage " in result.stdout and "│ fast " in result.stdout


def test_usage_json_counts_the_call(cli: Cli, team: dict) -> None:
    report = cli.json("usage", "--tenant", team["id"])

    assert [(i["model"], i["requests"]) for i in report["items"]] == [("fast", 1)]


def test_an_error_shows_the_server_s_message_and_exits_1(cli: Cli, admin: httpx2.Client) -> None:
    expected = admin.get("/admin/tenants/no-such-tenant").json()["error"]["message"]

    result = cli("tenants", "show", "no-such-tenant")

    assert result.exit_code == 1
    assert f"404 not_found_error: {expected}" in result.stderr


def test_tenant_routes_refuse_the_platform_key_with_the_server_s_reason(cli: Cli) -> None:
    result = cli("jobs", "list")

    assert result.exit_code == 1
    assert "use a tenant API key" in result.stderr


def test_the_new_tenant_is_listed_as_json(cli: Cli, team: dict) -> None:
    listed = cli.json("tenants", "list")

    assert team["id"] in {t["id"] for t in listed["data"]}


def test_the_audit_lists_the_cli_s_admin_actions(cli: Cli, team: dict) -> None:
    page = cli.json("audit", "list", "--tenant", team["id"], "--kind", "admin")

    assert page["data"]
    assert {r["kind"] for r in page["data"]} == {"admin"}


def test_no_key_ever_appears_in_the_cli_s_output(cli: Cli, team: dict) -> None:
    cli("credentials", "list", "--tenant", team["id"])
    cli("keys", "list", "--tenant", team["id"])

    printed = "\n".join(cli.outputs)
    assert PROVIDER_KEY not in printed
    assert ADMIN_KEY not in printed
    assert printed.count(team["key"]) == 1  # `keys create` shows a new key once, by design


def test_jobs_watch_follows_a_job_to_its_end_and_exits_1_when_it_fails(cli: Cli, team: dict) -> None:
    lines = [
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    ]
    bad = "\n".join([*lines * 4, '{"messages": [', *lines * 8]).encode()
    cli.json(
        "models",
        "add",
        "nova",
        "--provider",
        "bedrock",
        "--model-id",
        "amazon.nova-micro-v1:0",
        "-t",
        team["id"],
    )
    training_file = team["sdk"].files.create(file=("train.jsonl", bad), purpose="fine-tune").id
    job = team["sdk"].fine_tuning.jobs.create(model="nova", training_file=training_file)

    result = cli("jobs", "watch", job.id, "--interval", "0.5", "--timeout", "120", api_key=team["key"])

    assert result.exit_code == 1, result.output
    assert "✗ │ failed" in result.stdout
    assert "line 5: not valid JSON" in result.stdout
