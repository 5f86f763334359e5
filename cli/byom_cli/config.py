"""Where the CLI finds the gateway and its key: flags, then the environment, then the config file.

The key is a bearer secret: it is read from stdin, a hidden prompt or the environment, never from
argv (shell history, `ps`), stored only in a file its owner alone can read, and shown only masked."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

CONFIG_ENV = "BYOM_CONFIG"
URL_ENV = "BYOM_URL"
# The first one set wins: a platform admin key, else a tenant key.
KEY_ENVS = ("BYOM_ADMIN_KEY", "BYOM_API_KEY")
TENANT_ENV = "BYOM_TENANT"
# A config file larger than this is not ours; reading it whole would be unbounded.
MAX_CONFIG_BYTES = 64 * 1024
MAX_KEY_LENGTH = 4096


class ConfigError(Exception):
    """Something the user must fix in how the CLI is set up; the message says what."""


@dataclass(frozen=True)
class Config:
    url: str | None = None
    key: str | None = None
    tenant: str | None = None


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    base = (
        Path(env["XDG_CONFIG_HOME"]).expanduser() if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    )
    return base / "byom" / "config.json"


def mask_key(key: str | None) -> str:
    """Enough to tell two keys apart, never enough to use one: `byom-` (every tenant key's public
    prefix) and the last four characters, nothing of a key shorter than 12."""
    if not key:
        return "(none)"
    prefix = "byom-" if key.startswith("byom-") else ""
    return f"{prefix}…{key[-4:]}" if len(key) >= 12 else f"{prefix}…"


def clean_key(raw: str) -> str:
    key = raw.strip()
    if not key:
        raise ConfigError("The key is empty")
    if len(key) > MAX_KEY_LENGTH or any(c.isspace() for c in key):
        raise ConfigError("That does not look like an API key (one line, no spaces)")
    return key


def clean_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"The URL must start with https:// or http:// (got {url[:80]!r})")
    return url


def load_file(path: Path) -> Config:
    if not path.exists():
        return Config()
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes; not a byom config file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"Cannot read {path}: {error.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return Config(url=_text(data.get("url")), key=_text(data.get("key")), tenant=_text(data.get("tenant")))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def save_file(path: Path, config: Config) -> None:
    """Written owner-only from its first byte (created 0600, not chmod-ed after), in an 0700 folder."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body = json.dumps({k: v for k, v in asdict(config).items() if v is not None}, indent=2) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # An existing file keeps its mode through O_CREAT: tighten it before writing the key.
    os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(body)


def resolve(env: Mapping[str, str] | None = None, path: Path | None = None) -> Config:
    """The file's settings, each overridden by its environment variable when that is set."""
    env = os.environ if env is None else env
    stored = load_file(path or config_path(env))
    return Config(
        url=env.get(URL_ENV) or stored.url,
        key=env_key(env) or stored.key,
        tenant=env.get(TENANT_ENV) or stored.tenant,
    )


def env_key(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return next((env[name] for name in KEY_ENVS if env.get(name)), None)
