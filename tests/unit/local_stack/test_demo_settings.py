"""The demo's settings and its exports file, without a running stack."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest

from local_stack.demo import DemoTenant, write_env_file
from local_stack.stack import StackError, StackSettings, check_admin_key

TENANT = DemoTenant(
    url="http://127.0.0.1:8787",
    admin_key="admin key with spaces",
    tenant_id="tnt_1",
    tenant_admin_key="byom-admin",
    developer_key="byom-dev",
    openai_stand_in_url="http://127.0.0.1:8788/v1",
)


def test_the_demo_defaults_the_stand_in_ports_unless_the_environment_sets_them() -> None:
    settings = StackSettings.from_env({"BYOM_OPENAI_STANDIN_PORT": "9001"}, stand_in_ports=(8788, 8789))

    assert (settings.openai_stand_in_port, settings.bedrock_stand_in_port) == (9001, 8789)


@pytest.mark.parametrize("value", ["-1", "65536", "eighty"])
def test_a_stand_in_port_out_of_range_is_a_clear_error(value: str) -> None:
    with pytest.raises(StackError, match="BYOM_BEDROCK_STANDIN_PORT must be a port number"):
        StackSettings.from_env({"BYOM_BEDROCK_STANDIN_PORT": value})


@pytest.mark.parametrize("key", ["byom-looks-like-a-tenant-key", "with inner spaces", "x"])
def test_any_printable_admin_key_is_accepted(key: str) -> None:
    check_admin_key(key)


@pytest.mark.parametrize("key", [" leading", "trailing ", "tab\there", "naïve"])
def test_an_admin_key_no_header_can_carry_is_refused(key: str) -> None:
    with pytest.raises(StackError, match="BYOM_ADMIN_KEY"):
        check_admin_key(key)


def test_the_exports_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / ".byom-demo.env"

    write_env_file(TENANT, path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_exports_file_quotes_values_for_the_shell(tmp_path: Path) -> None:
    path = tmp_path / ".byom-demo.env"

    write_env_file(TENANT, path)

    line = next(x for x in path.read_text().splitlines() if x.startswith("export BYOM_ADMIN_KEY="))
    assert shlex.split(line.removeprefix("export BYOM_ADMIN_KEY=")) == ["admin key with spaces"]
