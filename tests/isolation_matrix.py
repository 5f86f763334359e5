"""The tenant isolation matrix: every route the admin, gateway and fine-tuning apps serve, how to aim
it at tenant B, and what tenant A's keys must get.

Generated from the apps' own routes (`routes()`), so a route cannot be added without an entry
here: tests/unit/test_isolation_matrix.py fails on a route the table does not cover, and
tests/e2e/test_isolation.py calls every route with every role of tenant A. Entries for routes not
served yet (other branches' work) are kept; only the routes that exist are called.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

ROLES = ("admin", "developer", "viewer")
WRITERS = frozenset({"admin", "developer"})  # invoke and fine-tune; viewers read usage and models
ADMIN_ONLY = frozenset({"developer", "viewer"})


@dataclass
class World:
    """Tenant B's real resources (and tenant A's id), as the e2e fixture created them."""

    a_id: str
    b_id: str
    b_key_id: str
    b_file_id: str
    b_job_id: str
    b_response_id: str = "resp_none"
    b_alias: str = "b-model"
    b_credential: str = "b-cred"
    b_subject: str = "b-subject"
    # Automations: tenant B's tenant id in the path already makes every route a 404 for tenant A.
    b_automation_id: str = "aut_b0000000000000000000000"
    b_run_id: str = "run_b000000000000000000000"
    # Batches: tenant B's batch id, answered as a missing one is.
    b_batch_id: str = "batch_b00000000000000000000000"

    def markers(self) -> list[str]:
        """Strings that only tenant B's data contains: none may reach tenant A."""
        return [
            self.b_id,
            self.b_key_id,
            self.b_file_id,
            self.b_job_id,
            self.b_response_id,
            self.b_alias,
            self.b_credential,
            self.b_subject,
        ]


# Path parameter -> tenant B's value for it. A new parameter needs a way to find B's resource here.
PARAMETERS: dict[str, Callable[[World], str]] = {
    "tenant_id": lambda w: w.b_id,
    "key_id": lambda w: w.b_key_id,
    "name": lambda w: w.b_credential,
    "alias": lambda w: w.b_alias,
    "file_id": lambda w: w.b_file_id,
    "job_id": lambda w: w.b_job_id,
    "response_id": lambda w: w.b_response_id,
    "user": lambda w: w.b_subject,
    "automation_id": lambda w: w.b_automation_id,
    "run_id": lambda w: w.b_run_id,
    "batch_id": lambda w: w.b_batch_id,
}
# The same parameters naming nothing: B's resource must be answered as a missing one is.
MISSING: dict[str, str] = {
    "tenant_id": "tnt_missing0000000000000000",
    "key_id": "key_missing0000000000000000",
    "name": "missing-cred",
    "alias": "missing-model",
    "file_id": "file-missing000000000000000",
    "job_id": "ftjob-missing00000000000000",
    "response_id": "resp_missing0000000000000000",
    "user": "missing-subject",
    "automation_id": "aut_missing0000000000000000",
    "run_id": "run_missing0000000000000000",
    "batch_id": "batch_missing00000000000000000",
}


class Kind(Enum):
    TENANT_B = "names tenant B's resource in its path: 404 for each role of tenant A"
    PLATFORM = "the platform admin's: 403 for every tenant key"
    OWN_TENANT = "acts on the caller's tenant: never answers with tenant B's data"
    PUBLIC = "unauthenticated"


@dataclass(frozen=True)
class Case:
    kind: Kind
    body: Callable[[World], Any] | None = None
    multipart: bool = False
    # Roles that may not use the route at all (403 whatever the resource, so the answer reveals
    # nothing about tenant B); every other role of tenant A gets 404.
    role_refused: frozenset[str] = field(default_factory=frozenset)
    # OWN_TENANT routes whose request names tenant B's resource: they must be refused (4xx).
    names_b: bool = False
    # Reads whose answer changes by itself (the audit log), left out of the "B unchanged" snapshot.
    volatile: bool = False


def _b(kind: Kind = Kind.TENANT_B, **kwargs: Any) -> Case:
    return Case(kind, **kwargs)


_ADMIN = "/admin/tenants/{tenant_id}"

EXPECTATIONS: dict[tuple[str, str], Case] = {
    # Platform routes.
    ("POST", "/admin/tenants"): Case(Kind.PLATFORM, body=lambda w: {"name": "rogue"}),
    ("GET", "/admin/tenants"): Case(Kind.PLATFORM),
    # Tenant B's admin routes: scope is checked before role, so every role gets 404.
    ("GET", _ADMIN): _b(),
    ("DELETE", _ADMIN): _b(),
    ("POST", f"{_ADMIN}/keys"): _b(body=lambda w: {"name": "intruder", "role": "admin"}),
    ("GET", f"{_ADMIN}/keys"): _b(),
    ("DELETE", f"{_ADMIN}/keys/{{key_id}}"): _b(),
    ("PUT", f"{_ADMIN}/credentials/{{name}}"): _b(
        body=lambda w: {"provider": "openai", "api_key": "sk-overwrite"}
    ),
    ("GET", f"{_ADMIN}/credentials"): _b(),
    ("DELETE", f"{_ADMIN}/credentials/{{name}}"): _b(),
    ("POST", f"{_ADMIN}/models"): _b(
        body=lambda w: {"alias": "intruder", "provider": "bedrock", "model_id": "amazon.nova-micro-v1:0"}
    ),
    ("GET", f"{_ADMIN}/models"): _b(),
    ("DELETE", f"{_ADMIN}/models/{{alias}}"): _b(),
    ("PUT", f"{_ADMIN}/budget"): _b(
        body=lambda w: {"monthly_limit_usd": 0.01, "warn_at": [0.5], "hard": True}
    ),
    ("GET", f"{_ADMIN}/budget"): _b(),
    ("DELETE", f"{_ADMIN}/budget"): _b(),
    ("GET", f"{_ADMIN}/usage"): _b(),
    # Governance routes (SPEC §4.2).
    ("PUT", f"{_ADMIN}/policy"): _b(
        body=lambda w: {"redaction": {"mode": "off"}, "content_logging": True, "retention_days": 1}
    ),
    ("GET", f"{_ADMIN}/policy"): _b(),
    ("GET", f"{_ADMIN}/audit"): _b(volatile=True),
    ("GET", f"{_ADMIN}/subjects/{{user}}"): _b(),
    ("DELETE", f"{_ADMIN}/subjects/{{user}}"): _b(),
    # Automations (SPEC §9).
    ("POST", f"{_ADMIN}/automations"): _b(
        body=lambda w: {
            "name": "intruder",
            "model": w.b_alias,
            "trigger": {"schedule": "rate(1 hour)"},
            "prompt": "hi",
        }
    ),
    ("GET", f"{_ADMIN}/automations"): _b(),
    ("GET", f"{_ADMIN}/automations/{{automation_id}}"): _b(),
    ("PATCH", f"{_ADMIN}/automations/{{automation_id}}"): _b(body=lambda w: {"enabled": False}),
    ("DELETE", f"{_ADMIN}/automations/{{automation_id}}"): _b(),
    ("POST", f"{_ADMIN}/automations/{{automation_id}}/run"): _b(body=lambda w: {}),
    ("GET", f"{_ADMIN}/automations/{{automation_id}}/runs"): _b(),
    ("POST", f"{_ADMIN}/automations/{{automation_id}}/runs/{{run_id}}/approve"): _b(
        body=lambda w: {"approved": True, "comment": "intruder"}
    ),
    # Data plane: the tenant is the caller's; tenant B's resources are named by id.
    ("GET", "/health"): Case(Kind.PUBLIC),
    # The API's description: the same for every caller, no tenant's data in it.
    ("GET", "/openapi.json"): Case(Kind.OWN_TENANT),
    ("GET", "/docs"): Case(Kind.OWN_TENANT),
    ("GET", "/v1/models"): Case(Kind.OWN_TENANT),
    ("GET", "/v1/models/recommend"): Case(Kind.OWN_TENANT),
    ("GET", "/v1/models/{alias}"): _b(),
    ("GET", "/v1/usage"): Case(Kind.OWN_TENANT),
    ("POST", "/v1/chat/completions"): Case(
        Kind.OWN_TENANT,
        body=lambda w: {"model": w.b_alias, "messages": [{"role": "user", "content": "hi"}]},
        names_b=True,
    ),
    ("POST", "/v1/responses"): Case(
        Kind.OWN_TENANT,
        body=lambda w: {"model": "b-fast", "input": "hi", "previous_response_id": w.b_response_id},
        names_b=True,
    ),
    ("GET", "/v1/responses/{response_id}"): _b(role_refused=frozenset({"viewer"})),
    ("DELETE", "/v1/responses/{response_id}"): _b(role_refused=frozenset({"viewer"})),
    ("GET", "/v1/responses/{response_id}/input_items"): _b(role_refused=frozenset({"viewer"})),
    ("POST", "/v1/embeddings"): Case(
        Kind.OWN_TENANT, body=lambda w: {"model": w.b_alias, "input": "hi"}, names_b=True
    ),
    ("POST", "/v1/files"): Case(Kind.OWN_TENANT, multipart=True),
    ("GET", "/v1/files"): Case(Kind.OWN_TENANT),
    ("GET", "/v1/files/{file_id}"): _b(role_refused=frozenset({"viewer"})),
    ("GET", "/v1/files/{file_id}/content"): _b(role_refused=frozenset({"viewer"})),
    ("DELETE", "/v1/files/{file_id}"): _b(role_refused=frozenset({"viewer"})),
    ("POST", "/v1/files/uploads"): Case(
        Kind.OWN_TENANT, body=lambda w: {"filename": "big.jsonl", "purpose": "batch", "bytes": 10}
    ),
    ("POST", "/v1/files/uploads/{file_id}/complete"): _b(
        body=lambda w: {}, role_refused=frozenset({"viewer"})
    ),
    ("POST", "/v1/batches"): Case(
        Kind.OWN_TENANT,
        body=lambda w: {
            "input_file_id": w.b_file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
        names_b=True,
    ),
    ("GET", "/v1/batches"): Case(Kind.OWN_TENANT),
    ("GET", "/v1/batches/{batch_id}"): _b(role_refused=frozenset({"viewer"})),
    ("POST", "/v1/batches/{batch_id}/cancel"): _b(body=lambda w: {}, role_refused=frozenset({"viewer"})),
    ("POST", "/v1/fine_tuning/jobs"): Case(
        Kind.OWN_TENANT, body=lambda w: {"model": w.b_alias, "training_file": w.b_file_id}, names_b=True
    ),
    ("GET", "/v1/fine_tuning/jobs"): Case(Kind.OWN_TENANT),
    ("GET", "/v1/fine_tuning/jobs/{job_id}"): _b(role_refused=frozenset({"viewer"})),
    ("POST", "/v1/fine_tuning/jobs/{job_id}/cancel"): _b(
        body=lambda w: {}, role_refused=frozenset({"viewer"})
    ),
    ("GET", "/v1/fine_tuning/jobs/{job_id}/events"): _b(role_refused=frozenset({"viewer"}), volatile=True),
    ("POST", "/v1/fine_tuning/jobs/{job_id}/approve"): _b(
        body=lambda w: {"approved": True, "comment": "intruder"}, role_refused=ADMIN_ONLY
    ),
}

_PARAMETER = re.compile(r"\{(\w+)\}")


def parameters_of(path: str) -> list[str]:
    return _PARAMETER.findall(path)


def routes() -> set[tuple[str, str]]:
    """(METHOD, /path/{param}) of every route the three apps register."""
    from byom.api.admin import build_admin_app
    from byom.api.batches import build_batches_app
    from byom.api.fine_tuning import build_fine_tuning_app
    from byom.api.gateway import build_gateway_app

    # Each app's own description of its routes: public, where FastAPI's router internals change.
    return {
        (method.upper(), path)
        for build in (build_admin_app, build_gateway_app, build_fine_tuning_app, build_batches_app)
        for path, operations in build().openapi()["paths"].items()
        for method in operations
    }


def fill(path: str, values: Callable[[str], str]) -> str:
    return _PARAMETER.sub(lambda m: values(m.group(1)), path)


def uncovered(served: Iterable[tuple[str, str]]) -> list[str]:
    """What the matrix cannot call or judge: routes without an expectation, parameters without a
    value for tenant B, writes without a body."""
    problems = []
    for method, path in sorted(served):
        case = EXPECTATIONS.get((method, path))
        if case is None:
            problems.append(f"{method} {path}: no expectation in tests/isolation_matrix.py EXPECTATIONS")
            continue
        for name in parameters_of(path):
            if name not in PARAMETERS or name not in MISSING:
                problems.append(
                    f"{method} {path}: no value of tenant B for {{{name}}} in PARAMETERS / MISSING"
                )
        if (
            method in ("POST", "PUT", "PATCH")
            and case.body is None
            and not case.multipart
            and case.kind
            in (
                Kind.TENANT_B,
                Kind.OWN_TENANT,
            )
        ):
            problems.append(f"{method} {path}: a write without a request body in its Case")
        if case.kind is Kind.TENANT_B and not parameters_of(path):
            problems.append(f"{method} {path}: a TENANT_B route must name tenant B's resource in its path")
    return problems
