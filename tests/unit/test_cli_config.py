"""The admin CLI's configuration: where the URL and key come from, and how the key is kept."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from byom_cli import config

KEY = "byom-0123456789abcdefWXYZ"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_config_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "byom" / "config.json"

    config.save_file(path, config.Config(url="http://127.0.0.1:8787", key=KEY))

    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_saving_over_a_world_readable_file_takes_its_other_bits_away(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0o644)

    config.save_file(path, config.Config(url="http://x", key=KEY))

    assert mode(path) == 0o600


def test_a_saved_config_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    saved = config.Config(url="https://gw.example/prod", key=KEY, tenant="t-1")

    config.save_file(path, saved)

    assert config.load_file(path) == saved


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    config.save_file(path, config.Config(url="http://file", key="byom-from-the-file", tenant="t-file"))
    env = {"BYOM_URL": "http://env", "BYOM_ADMIN_KEY": "byom-from-env", "BYOM_TENANT": "t-env"}

    assert config.resolve(env, path) == config.Config(url="http://env", key="byom-from-env", tenant="t-env")


def test_the_admin_key_variable_wins_over_the_api_key_variable() -> None:
    env = {"BYOM_API_KEY": "byom-tenant", "BYOM_ADMIN_KEY": "byom-admin"}

    assert config.env_key(env) == "byom-admin"


def test_the_config_path_follows_byom_config(tmp_path: Path) -> None:
    assert config.config_path({"BYOM_CONFIG": str(tmp_path / "c.json")}) == tmp_path / "c.json"


def test_a_masked_key_shows_only_its_last_four_characters() -> None:
    assert config.mask_key(KEY) == "byom-…WXYZ"


def test_a_short_key_is_masked_entirely() -> None:
    assert config.mask_key("byom-abc") == "byom-…"


def test_a_key_of_another_shape_is_not_given_the_byom_prefix() -> None:
    assert config.mask_key("platform-admin-secret") == "…cret"


@pytest.mark.parametrize("raw", ["", "   \n", "two words", "x" * (config.MAX_KEY_LENGTH + 1)])
def test_what_cannot_be_a_key_is_refused(raw: str) -> None:
    with pytest.raises(config.ConfigError):
        config.clean_key(raw)


def test_a_key_read_from_a_pipe_loses_its_newline() -> None:
    assert config.clean_key(KEY + "\n") == KEY


def test_a_url_without_a_scheme_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="https://"):
        config.clean_url("gateway.example")


def test_an_oversized_config_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(" " * (config.MAX_CONFIG_BYTES + 1))

    with pytest.raises(config.ConfigError, match="larger"):
        config.load_file(path)
