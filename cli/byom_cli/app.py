"""The `byom` commands: each one HTTP call (or a poll of one) and a rendering of its answer.

Every command takes `--json` and then prints the server's JSON untouched, for scripts. Every
failure ends with one line on stderr, the server's own message when it sent one, and exit code 1."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text
from typer.core import TyperGroup

from byom_cli import config, render
from byom_cli.client import ApiError, Gateway, Unreachable, segment

# Reading a secret or a policy from stdin stops here: an endless pipe is not a key.
MAX_STDIN_BYTES = 64 * 1024
MIN_POLL_SECONDS, MAX_POLL_SECONDS = 0.5, 60.0
MAX_WATCH_SECONDS = 7 * 24 * 3600

out = Console()
err = Console(stderr=True, soft_wrap=True)


class ReportsErrors(TyperGroup):
    """Turns the CLI's own errors into one line and exit code 1, in one place, for every command."""

    # `ctx` is the click Context typer vendors (typer._click), which typer does not export.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (ApiError, Unreachable, config.ConfigError) as error:
            # Text, not markup: a server message with brackets prints as sent.
            err.print(Text.assemble(("Error: ", "red"), str(error)), highlight=False)
        raise typer.Exit(1)


app = typer.Typer(
    name="byom",
    cls=ReportsErrors,
    help="Administer a BYOM Gateway (local stack or cloud) through its HTTP API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _group(name: str, help_: str) -> typer.Typer:
    group = typer.Typer(help=help_, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


tenants = _group("tenants", "Tenants (platform admin key).")
keys = _group("keys", "A tenant's API keys.")
credentials = _group("credentials", "A tenant's provider credentials (keys are written, never read back).")
models = _group("models", "A tenant's model aliases.")
budget = _group("budget", "A tenant's monthly budget.")
policy = _group("policy", "A tenant's governance policy: redaction, content logging, retention, limits.")
jobs = _group("jobs", "Fine-tuning jobs (a tenant key: these are the tenant's /v1 routes).")
audit = _group("audit", "A tenant's audit records.")

Json = Annotated[bool, typer.Option("--json", help="Print the server's JSON, for scripts.")]
TenantOpt = Annotated[
    str | None,
    typer.Option("--tenant", "-t", help="Tenant id; default: $BYOM_TENANT, then the one `byom login` saved."),
]
KeyStdin = Annotated[bool, typer.Option("--key-stdin", help="Read the key from stdin (one line).")]
# Declared only to refuse them with a reason: a key on argv lands in shell history and `ps`.
KeyOnArgv = Annotated[str | None, typer.Option("--key", "--api-key", hidden=True)]


# Plumbing


def _gateway(ctx: typer.Context) -> Gateway:
    settings = config.resolve()
    if not settings.url or not settings.key:
        raise config.ConfigError(
            "Not logged in: run `byom login --url URL` (or set BYOM_URL and BYOM_ADMIN_KEY)"
        )
    # Tests hand an httpx transport in as the context object; otherwise the network is used.
    transport = ctx.find_root().obj
    return Gateway(
        settings.url, settings.key, transport if isinstance(transport, httpx.BaseTransport) else None
    )


def _tenant(tenant: str | None) -> str:
    chosen = tenant or config.resolve().tenant
    if not chosen:
        raise config.ConfigError(
            "Which tenant? Pass --tenant ID (or set BYOM_TENANT, or `byom login --tenant`)"
        )
    return chosen


def _tenant_path(tenant: str | None, *rest: str) -> str:
    return "/".join(["admin/tenants", segment(_tenant(tenant)), *(segment(part) for part in rest)])


def _emit_json(body: Any) -> None:
    typer.echo(json.dumps(body, indent=2))


def _show(body: Any, as_json: bool, title: str | None = None) -> None:
    if as_json:
        _emit_json(body)
    else:
        out.print(render.record(body, title))


def _list(body: Any, as_json: bool, columns: list[str], title: str) -> None:
    if as_json:
        _emit_json(body)
    else:
        out.print(render.table(body.get("data") or [], columns, title))


def _refuse_key_on_argv(value: str | None) -> None:
    if value is not None:
        raise config.ConfigError(
            "Keys are never taken from the command line (shell history, `ps`): "
            "pipe it with --key-stdin, set the environment variable, or answer the prompt"
        )


def _read_secret(from_stdin: bool, prompt: str) -> str:
    if from_stdin:
        raw = sys.stdin.read(MAX_STDIN_BYTES + 1)
        if len(raw) > MAX_STDIN_BYTES:
            raise config.ConfigError(f"stdin holds more than {MAX_STDIN_BYTES} bytes; not a key")
        return config.clean_key(raw)
    return config.clean_key(typer.prompt(prompt, hide_input=True))


def _read_json(path: str) -> Any:
    """A JSON document from a file, or stdin for `-`, bounded."""
    if path == "-":
        raw = sys.stdin.read(MAX_STDIN_BYTES + 1)
    else:
        file = Path(path)
        if not file.is_file():
            raise config.ConfigError(f"No file {path}")
        if file.stat().st_size > MAX_STDIN_BYTES:
            raise config.ConfigError(f"{path} is larger than {MAX_STDIN_BYTES} bytes")
        raw = file.read_text(encoding="utf-8")
    if len(raw) > MAX_STDIN_BYTES:
        raise config.ConfigError(f"The document is larger than {MAX_STDIN_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError as error:
        raise config.ConfigError(f"Not JSON: {error}") from None


# Login


@app.command()
def login(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="The gateway's URL; default $BYOM_URL or the saved one.")
    ] = None,
    key_stdin: KeyStdin = False,
    tenant: Annotated[str | None, typer.Option(help="Default tenant id for tenant commands.")] = None,
    verify: Annotated[bool, typer.Option(help="Check the key against the server first.")] = True,
    key: KeyOnArgv = None,
    as_json: Json = False,
) -> None:
    """Save the gateway's URL and key in the config file (readable by its owner only).

    The key comes from --key-stdin, $BYOM_ADMIN_KEY / $BYOM_API_KEY, or a hidden prompt."""
    _refuse_key_on_argv(key)
    path = config.config_path()
    saved = config.load_file(path)
    chosen_url = config.clean_url(url or config.resolve().url or typer.prompt("Gateway URL"))
    env_key = None if key_stdin else config.env_key()
    secret = config.clean_key(env_key) if env_key else _read_secret(key_stdin, "Admin key")
    role = "unverified"
    if verify:
        role = _probe(ctx, chosen_url, secret)
    config.save_file(path, config.Config(url=chosen_url, key=secret, tenant=tenant or saved.tenant))
    summary = {"url": chosen_url, "key": config.mask_key(secret), "role": role, "config": str(path)}
    if as_json:
        _emit_json(summary)
    else:
        out.print(f"Logged in to {chosen_url} with {summary['key']} ({role}); saved in {path}")


def _probe(ctx: typer.Context, url: str, key: str) -> str:
    """Which kind of key this is: only the platform admin key lists tenants; a tenant key is refused
    with 403, a wrong key with 401 (which ends the login)."""
    transport = ctx.find_root().obj
    gateway = Gateway(url, key, transport if isinstance(transport, httpx.BaseTransport) else None)
    try:
        gateway.get("admin/tenants")
    except ApiError as error:
        if error.status == 403:
            return "tenant key"
        raise
    finally:
        gateway.close()
    return "platform admin"


@app.command()
def logout(as_json: Json = False) -> None:
    """Forget the saved key (the URL and tenant stay)."""
    path = config.config_path()
    saved = config.load_file(path)
    if path.exists():
        config.save_file(path, config.Config(url=saved.url, tenant=saved.tenant))
    if as_json:
        _emit_json({"logged_out": True, "config": str(path)})
    else:
        out.print(f"Key removed from {path}")


# Tenants

TENANT_COLUMNS = ["id", "name", "created_at", "monthly_budget_usd"]


@tenants.command("list")
def tenants_list(ctx: typer.Context, as_json: Json = False) -> None:
    _list(_gateway(ctx).get("admin/tenants"), as_json, TENANT_COLUMNS, "Tenants")


@tenants.command("create")
def tenants_create(
    ctx: typer.Context,
    name: str,
    budget_usd: Annotated[float | None, typer.Option("--budget", min=0, help="Monthly budget, USD.")] = None,
    as_json: Json = False,
) -> None:
    body = _gateway(ctx).post("admin/tenants", {"name": name, "monthly_budget_usd": budget_usd})
    _show(body, as_json, "Tenant created")


@tenants.command("show")
def tenants_show(ctx: typer.Context, tenant_id: str, as_json: Json = False) -> None:
    _show(_gateway(ctx).get(f"admin/tenants/{segment(tenant_id)}"), as_json)


@tenants.command("delete")
def tenants_delete(
    ctx: typer.Context,
    tenant_id: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: Json = False,
) -> None:
    if not yes:
        typer.confirm(f"Delete tenant {tenant_id} and everything it owns?", abort=True)
    _show(_gateway(ctx).delete(f"admin/tenants/{segment(tenant_id)}"), as_json)


# Keys


@keys.command("list")
def keys_list(ctx: typer.Context, tenant: TenantOpt = None, as_json: Json = False) -> None:
    columns = ["id", "name", "role", "created_at", "revoked"]
    _list(_gateway(ctx).get(_tenant_path(tenant, "keys")), as_json, columns, "API keys")


@keys.command("create")
def keys_create(
    ctx: typer.Context,
    name: str,
    role: Annotated[str, typer.Option(help="admin, developer or viewer.")] = "developer",
    tenant: TenantOpt = None,
    as_json: Json = False,
) -> None:
    """Create a key; its secret is printed this once (the server keeps only a hash)."""
    body = _gateway(ctx).post(_tenant_path(tenant, "keys"), {"name": name, "role": role})
    if as_json:
        _emit_json(body)
        return
    out.print(render.record({k: v for k, v in body.items() if k != "key"}, "Key created"))
    out.print("The key, shown once; store it now:")
    typer.echo(body.get("key", ""))


@keys.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: str, tenant: TenantOpt = None, as_json: Json = False) -> None:
    _show(_gateway(ctx).delete(_tenant_path(tenant, "keys", key_id)), as_json, "Key revoked")


# Credentials


@credentials.command("list")
def credentials_list(ctx: typer.Context, tenant: TenantOpt = None, as_json: Json = False) -> None:
    columns = ["name", "provider", "base_url", "key_last4", "updated_at"]
    _list(_gateway(ctx).get(_tenant_path(tenant, "credentials")), as_json, columns, "Credentials")


@credentials.command("put")
def credentials_put(
    ctx: typer.Context,
    name: str,
    provider: Annotated[str, typer.Option(help="openai, openai_compatible or bedrock.")],
    base_url: Annotated[str | None, typer.Option(help="For openai_compatible endpoints.")] = None,
    key_stdin: KeyStdin = False,
    no_key: Annotated[bool, typer.Option("--no-key", help="A credential without a key (bedrock).")] = False,
    tenant: TenantOpt = None,
    api_key: KeyOnArgv = None,
    as_json: Json = False,
) -> None:
    """Store a provider credential; its key is read from stdin or a hidden prompt.

    No route ever returns the key: only its last four characters come back."""
    _refuse_key_on_argv(api_key)
    secret = None if no_key else _read_secret(key_stdin, "Provider API key")
    body = {"provider": provider, "api_key": secret, "base_url": base_url}
    _show(_gateway(ctx).put(_tenant_path(tenant, "credentials", name), body), as_json, "Credential stored")


@credentials.command("delete")
def credentials_delete(
    ctx: typer.Context, name: str, tenant: TenantOpt = None, as_json: Json = False
) -> None:
    _show(_gateway(ctx).delete(_tenant_path(tenant, "credentials", name)), as_json)


# Models


@models.command("list")
def models_list(ctx: typer.Context, tenant: TenantOpt = None, as_json: Json = False) -> None:
    columns = ["alias", "provider", "model_id", "credential", "pricing", "fallbacks"]
    _list(_gateway(ctx).get(_tenant_path(tenant, "models")), as_json, columns, "Model aliases")


@models.command("add")
def models_add(
    ctx: typer.Context,
    alias: str,
    provider: Annotated[str, typer.Option(help="openai, openai_compatible or bedrock.")],
    model_id: Annotated[str, typer.Option("--model-id", help="The provider's model id.")],
    credential: Annotated[str | None, typer.Option(help="A credential name of the tenant.")] = None,
    input_per_1k: Annotated[float | None, typer.Option("--input-per-1k", min=0, help="USD.")] = None,
    output_per_1k: Annotated[float | None, typer.Option("--output-per-1k", min=0, help="USD.")] = None,
    fallback: Annotated[list[str] | None, typer.Option(help="A fallback alias; repeat in order.")] = None,
    tenant: TenantOpt = None,
    as_json: Json = False,
) -> None:
    """Add an alias; without prices the server's catalog prices known model ids."""
    body: dict[str, Any] = {
        "alias": alias,
        "provider": provider,
        "model_id": model_id,
        "credential": credential,
        "fallbacks": fallback or [],
    }
    if input_per_1k is not None or output_per_1k is not None:
        body["pricing"] = {"input_per_1k_usd": input_per_1k or 0, "output_per_1k_usd": output_per_1k or 0}
    _show(_gateway(ctx).post(_tenant_path(tenant, "models"), body), as_json, "Model added")


@models.command("delete")
def models_delete(ctx: typer.Context, alias: str, tenant: TenantOpt = None, as_json: Json = False) -> None:
    _show(_gateway(ctx).delete(_tenant_path(tenant, "models", alias)), as_json)


# Budget and usage


@budget.command("show")
def budget_show(ctx: typer.Context, tenant: TenantOpt = None, as_json: Json = False) -> None:
    _show(_gateway(ctx).get(_tenant_path(tenant, "budget")), as_json, "Budget")


@budget.command("set")
def budget_set(
    ctx: typer.Context,
    limit_usd: Annotated[float, typer.Option("--limit", min=0, help="Monthly limit, USD.")],
    warn_at: Annotated[
        list[float] | None, typer.Option(min=0, max=1, help="A warning fraction; repeat. Default 0.5, 0.8.")
    ] = None,
    hard: Annotated[bool, typer.Option("--hard/--soft", help="Refuse calls past the limit.")] = True,
    ledger_shards: Annotated[
        int | None,
        typer.Option(min=1, max=32, help="Ledger items the month is split over: ~50 calls/s each."),
    ] = None,
    tenant: TenantOpt = None,
    as_json: Json = False,
) -> None:
    body: dict[str, Any] = {"monthly_limit_usd": limit_usd, "hard": hard}
    if warn_at:
        body["warn_at"] = warn_at
    if ledger_shards is not None:
        body["ledger_shards"] = ledger_shards
    _show(_gateway(ctx).put(_tenant_path(tenant, "budget"), body), as_json, "Budget set")


@app.command()
def usage(
    ctx: typer.Context,
    tenant: TenantOpt = None,
    month: Annotated[str | None, typer.Option(help="YYYY-MM; default the current UTC month.")] = None,
    by: Annotated[str, typer.Option("--by", help="model, key or day.")] = "model",
    as_json: Json = False,
) -> None:
    """The month's usage as a table by model, key or day, with the budget bar."""
    report = _gateway(ctx).get(_tenant_path(tenant, "usage"), month=month, group_by=by)
    if as_json:
        _emit_json(report)
    else:
        out.print(render.usage(report))


# Policy


@policy.command("show")
def policy_show(ctx: typer.Context, tenant: TenantOpt = None, as_json: Json = False) -> None:
    _show(_gateway(ctx).get(_tenant_path(tenant, "policy")), as_json, "Policy")


@policy.command("set")
def policy_set(
    ctx: typer.Context,
    file: Annotated[str, typer.Option("--file", "-f", help="The policy JSON (SPEC §4.2); `-` for stdin.")],
    tenant: TenantOpt = None,
    as_json: Json = False,
) -> None:
    _show(_gateway(ctx).put(_tenant_path(tenant, "policy"), _read_json(file)), as_json, "Policy set")


# Fine-tuning jobs

JOB_COLUMNS = ["id", "model", "byom_status", "status", "fine_tuned_model", "created_at"]
Limit = Annotated[int, typer.Option(min=1, max=100, help="At most this many (1-100).")]


@jobs.command("list")
def jobs_list(ctx: typer.Context, limit: Limit = 20, as_json: Json = False) -> None:
    _list(_gateway(ctx).get("v1/fine_tuning/jobs", limit=limit), as_json, JOB_COLUMNS, "Fine-tuning jobs")


@jobs.command("show")
def jobs_show(ctx: typer.Context, job_id: str, as_json: Json = False) -> None:
    gateway = _gateway(ctx)
    job = gateway.get(f"v1/fine_tuning/jobs/{segment(job_id)}")
    if as_json:
        _emit_json(job)
        return
    out.print(render.pipeline(job, _events(gateway, job_id)))


@jobs.command("events")
def jobs_events(ctx: typer.Context, job_id: str, limit: Limit = 20, as_json: Json = False) -> None:
    body = _gateway(ctx).get(f"v1/fine_tuning/jobs/{segment(job_id)}/events", limit=limit)
    _list(body, as_json, ["created_at", "level", "message"], f"Events of {job_id}")


@jobs.command("approve")
def jobs_approve(
    ctx: typer.Context,
    job_id: str,
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead.")] = False,
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    as_json: Json = False,
) -> None:
    """Answer the approval gate of a job that is awaiting it."""
    body = {"approved": not reject, "comment": comment}
    _show(_gateway(ctx).post(f"v1/fine_tuning/jobs/{segment(job_id)}/approve", body), as_json)


@jobs.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: str, as_json: Json = False) -> None:
    _show(_gateway(ctx).post(f"v1/fine_tuning/jobs/{segment(job_id)}/cancel", {}), as_json)


def _events(gateway: Gateway, job_id: str) -> list[dict[str, Any]]:
    page = gateway.get(f"v1/fine_tuning/jobs/{segment(job_id)}/events", limit=render.EVENT_LINES)
    return page.get("data") or []


@jobs.command("watch")
def jobs_watch(
    ctx: typer.Context,
    job_id: str,
    interval: Annotated[
        float, typer.Option(min=MIN_POLL_SECONDS, max=MAX_POLL_SECONDS, help="Seconds between polls.")
    ] = 2.0,
    timeout: Annotated[
        float, typer.Option(min=1, max=MAX_WATCH_SECONDS, help="Give up after this many seconds.")
    ] = 3600.0,
    as_json: Json = False,
) -> None:
    """Follow a job through the pipeline's states, live, until it ends.

    Exits 0 only when the job succeeded."""
    gateway = _gateway(ctx)
    path = f"v1/fine_tuning/jobs/{segment(job_id)}"
    deadline = time.monotonic() + timeout
    job = gateway.get(path)
    if as_json:
        job = _poll(gateway, path, job, interval, deadline)
        _emit_json(job)
    else:
        with Live(render.pipeline(job, []), console=out, auto_refresh=False) as live:

            def show(current: dict[str, Any]) -> None:
                live.update(render.pipeline(current, _events(gateway, job_id)), refresh=True)

            job = _poll(gateway, path, job, interval, deadline, show)
    status = job.get("byom_status")
    if status not in render.TERMINAL:
        err.print(f"Job {job_id} is still {status} after {timeout:.0f} s", highlight=False)
        raise typer.Exit(1)
    if status != "succeeded":
        raise typer.Exit(1)


def _poll(
    gateway: Gateway,
    path: str,
    job: dict[str, Any],
    interval: float,
    deadline: float,
    show: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The job, read every `interval` seconds until a terminal state or the deadline."""
    while True:
        if show is not None:
            show(job)
        if job.get("byom_status") in render.TERMINAL or time.monotonic() >= deadline:
            return job
        time.sleep(interval)
        job = gateway.get(path)


# Audit


def _seconds(value: str | None, name: str) -> int | None:
    """Unix seconds, or an ISO date / time (UTC unless it says otherwise)."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise config.ConfigError(f"--{name}: Unix seconds or an ISO date, like 2026-12-01T09:00") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


@audit.command("list")
def audit_list(
    ctx: typer.Context,
    tenant: TenantOpt = None,
    since: Annotated[str | None, typer.Option(help="From (Unix seconds or ISO time).")] = None,
    until: Annotated[str | None, typer.Option(help="Until (Unix seconds or ISO time).")] = None,
    kind: Annotated[str | None, typer.Option(help="interaction or admin.")] = None,
    key_id: Annotated[str | None, typer.Option("--key-id")] = None,
    model: Annotated[str | None, typer.Option(help="A model alias.")] = None,
    user: Annotated[str | None, typer.Option(help="A data subject id.")] = None,
    status: Annotated[str | None, typer.Option()] = None,
    limit: Limit = 20,
    next_token: Annotated[str | None, typer.Option("--next-token", help="The previous page's token.")] = None,
    include_content: Annotated[bool, typer.Option("--include-content", help="Stored prompt/answer.")] = False,
    as_json: Json = False,
) -> None:
    """Audit records, newest first, with the filters the audit route supports."""
    params = {
        "since": _seconds(since, "since"),
        "until": _seconds(until, "until"),
        "kind": kind,
        "key_id": key_id,
        "model": model,
        "user": user,
        "status": status,
        "limit": limit,
        "next_token": next_token,
        "include_content": "true" if include_content else None,
    }
    page = _gateway(ctx).get(_tenant_path(tenant, "audit"), **params)
    if as_json:
        _emit_json(page)
        return
    out.print(render.audit(page.get("data") or [], include_content))
    if page.get("next_token"):
        # Unwrapped, so the token copies whole.
        out.print(f"More: --next-token {page['next_token']}", highlight=False, soft_wrap=True)


def main() -> None:
    app()
