"""`make demo`: the local stack with a ready tenant, seeded through the admin API as a user would.

Tenant `demo` gets a tenant admin key and a developer key, a credential on the OpenAI-compatible
stand-in, and aliases on both stand-ins: `fast` (Bedrock), `smart` (OpenAI-compatible, falling
back to `fast`) and `embed` (embeddings). The exports it prints (and writes to `.byom-demo.env`)
are what the README's examples use.
"""

from __future__ import annotations

import json
import os
import shlex
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Stable, so the URLs in `.byom-demo.env` and in seeded credentials stay right across restarts.
DEFAULT_OPENAI_STANDIN_PORT = 8788
DEFAULT_BEDROCK_STANDIN_PORT = 8789
ENV_FILE = ".byom-demo.env"
TENANT_NAME = "demo"
# Stand-in models have no catalog price; a made-up one, so calls are metered and budgets apply.
STAND_IN_PRICE = {"input_per_1k_usd": 0.0005, "output_per_1k_usd": 0.0015}
REQUEST_TIMEOUT_SECONDS = 30
PYTHON_SNIPPET = """\
import os
from openai import OpenAI

client = OpenAI(base_url=os.environ["BYOM_URL"] + "/v1", api_key=os.environ["BYOM_KEY"])
reply = client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "Hello"}])
print(reply.choices[0].message.content)
"""


class DemoSeedError(Exception):
    """The admin API refused a seeding step; the message names it and quotes the answer."""


@dataclass(frozen=True)
class DemoTenant:
    url: str
    admin_key: str
    tenant_id: str
    tenant_admin_key: str
    developer_key: str
    openai_stand_in_url: str

    def exports(self) -> dict[str, str]:
        return {
            "BYOM_URL": self.url,
            "BYOM_KEY": self.developer_key,
            "BYOM_TENANT_ADMIN_KEY": self.tenant_admin_key,
            "BYOM_ADMIN_KEY": self.admin_key,
            "BYOM_TENANT": self.tenant_id,
            "BYOM_OPENAI_STANDIN_URL": self.openai_stand_in_url,
        }

    def export_lines(self) -> list[str]:
        return [f"export {name}={shlex.quote(value)}" for name, value in self.exports().items()]


def aliases(credential: str) -> list[dict[str, Any]]:
    stand_in = {"provider": "openai_compatible", "credential": credential, "pricing": STAND_IN_PRICE}
    return [
        # A Bedrock model the price catalog knows and the stand-in can fine-tune.
        {"alias": "fast", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"},
        {"alias": "smart", "model_id": "stand-in-chat", "fallbacks": ["fast"], **stand_in},
        {"alias": "embed", "model_id": "stand-in-embed", **stand_in},
    ]


class _AdminApi:
    def __init__(self, url: str, key: str) -> None:
        self._url = url
        self._key = key
        # Loopback only: a proxy from the environment must not see the admin key.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self._url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as error:
            raise DemoSeedError(
                f"{method} {path}: {error.code} {error.read().decode(errors='replace')}"
            ) from error


def seed(url: str, admin_key: str, openai_stand_in_url: str) -> DemoTenant:
    """Creates the demo tenant on a running stack (`url`, without /v1)."""
    api = _AdminApi(url, admin_key)
    tenant_id = str(api.call("POST", "/admin/tenants", {"name": TENANT_NAME})["id"])
    base = f"/admin/tenants/{tenant_id}"
    api.call(
        "PUT",
        f"{base}/credentials/stand-in",
        # The stand-in accepts any key; the gateway wants one for an OpenAI-compatible credential.
        {"provider": "openai_compatible", "base_url": openai_stand_in_url, "api_key": "sk-local-stand-in"},
    )
    for alias in aliases("stand-in"):
        api.call("POST", f"{base}/models", alias)
    tenant_admin = api.call("POST", f"{base}/keys", {"name": "demo-admin", "role": "admin"})["key"]
    developer = api.call("POST", f"{base}/keys", {"name": "demo-app", "role": "developer"})["key"]
    return DemoTenant(url, admin_key, tenant_id, str(tenant_admin), str(developer), openai_stand_in_url)


def write_env_file(tenant: DemoTenant, path: Path) -> None:
    # It holds keys: readable by its owner only, from the moment it exists.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write("\n".join(tenant.export_lines()) + "\n")
    path.chmod(0o600)  # an older file keeps its mode through O_TRUNC


def instructions(tenant: DemoTenant, env_file: Path) -> Iterator[str]:
    yield "Demo tenant 'demo' is ready: aliases fast (Bedrock stand-in), smart (OpenAI-compatible"
    yield "stand-in, falls back to fast) and embed (embeddings). In this shell or another:"
    yield f"  source {env_file}"
    yield "or paste:"
    for line in tenant.export_lines():
        yield f"  {line}".rstrip()
    yield "then run this Python (pip install openai):"
    for line in PYTHON_SNIPPET.splitlines():
        yield f"  {line}".rstrip()
    yield "The demo lives in memory like all local state: a restart seeds it afresh, with new keys."
