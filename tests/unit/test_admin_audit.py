"""Admin actions in the audit trail: which requests are recorded, and what a record holds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from byom.api.admin_audit import admin_record, record_admin_action, route_template
from byom.governance.audit import AuditRecord


def _event(method: str, path: str, *, role: str = "admin", query: dict | None = None) -> dict[str, Any]:
    context = {"role": role, "key_id": "key_1", "tenant_id": "" if role == "platform_admin" else "tnt_a"}
    return {
        "httpMethod": method,
        "path": path,
        "queryStringParameters": query,
        "requestContext": {"requestId": "req-1", "authorizer": context},
    }


def _response(status: int = 200, body: Any = None) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body or {})}


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/admin/tenants", "/admin/tenants"),
        ("/admin/tenants/tnt_a", "/admin/tenants/{tenant_id}"),
        ("/admin/tenants/tnt_a/keys/key_2", "/admin/tenants/{tenant_id}/keys/{key_id}"),
        ("/admin/tenants/tnt_a/credentials/oai", "/admin/tenants/{tenant_id}/credentials/{name}"),
        ("/admin/tenants/tnt_a/models/ft:fast:x", "/admin/tenants/{tenant_id}/models/{alias}"),
        ("/admin/tenants/tnt_a/subjects/a%40b.c", "/admin/tenants/{tenant_id}/subjects/{user}"),
        ("/admin/tenants/tnt_a/policy", "/admin/tenants/{tenant_id}/policy"),
        ("/v1/fine_tuning/jobs/ftjob-1/approve", "/v1/fine_tuning/jobs/{job_id}/approve"),
    ],
)
def test_paths_are_recorded_as_their_route_templates(path: str, template: str) -> None:
    assert route_template(path)[0] == template


def test_a_write_is_recorded_with_its_actor_target_and_outcome() -> None:
    record = admin_record(_event("DELETE", "/admin/tenants/tnt_a/keys/key_2"), _response(200), lambda _t: 7)
    assert record is not None
    assert (record.kind, record.tenant_id, record.key_id) == ("admin", "tnt_a", "key_1")
    assert (record.action, record.target, record.status) == (
        "DELETE /admin/tenants/{tenant_id}/keys/{key_id}",
        "key_2",
        "200",
    )
    assert record.expires_at == record.created_at_ms // 1000 + 7 * 86_400


def test_a_refused_write_is_recorded_with_its_status() -> None:
    record = admin_record(_event("PUT", "/admin/tenants/tnt_a/policy"), _response(400), lambda _t: 90)
    assert record is not None and record.http_status == 400


def test_a_created_tenant_is_its_own_records_tenant() -> None:
    event = _event("POST", "/admin/tenants", role="platform_admin")
    record = admin_record(event, _response(201, {"id": "tnt_new"}), lambda _t: 90)
    assert record is not None
    assert (record.tenant_id, record.key_id) == ("tnt_new", "platform-admin")


def test_a_created_keys_id_is_the_target() -> None:
    record = admin_record(
        _event("POST", "/admin/tenants/tnt_a/keys"),
        _response(201, {"id": "key_9", "key": "byom-secret"}),
        lambda _t: 90,
    )
    assert record is not None and record.target == "key_9"
    assert "byom-secret" not in record.model_dump_json()


def test_reads_are_not_recorded_but_exports_and_content_reads_are() -> None:
    assert admin_record(_event("GET", "/admin/tenants/tnt_a/keys"), _response(), lambda _t: 90) is None
    export = admin_record(_event("GET", "/admin/tenants/tnt_a/subjects/jane"), _response(), lambda _t: 90)
    content = admin_record(
        _event("GET", "/admin/tenants/tnt_a/audit", query={"include_content": "true"}),
        _response(),
        lambda _t: 90,
    )
    assert export is not None and content is not None


def test_a_subjects_id_is_never_recorded() -> None:
    record = admin_record(
        _event("GET", "/admin/tenants/tnt_a/subjects/jane%40example.com"), _response(), lambda _t: 90
    )
    assert record is not None and record.target is None
    assert "jane" not in record.model_dump_json()


def test_an_erasure_is_left_to_record_itself() -> None:
    assert (
        admin_record(_event("DELETE", "/admin/tenants/tnt_a/subjects/jane"), _response(), lambda _t: 90)
        is None
    )


class Log:
    def __init__(self, fail: bool = False) -> None:
        self.records: list[AuditRecord] = []
        self.fail = fail

    def write(self, record: AuditRecord) -> None:
        if self.fail:
            raise RuntimeError("down")
        self.records.append(record)

    def transact_put(self, record: AuditRecord) -> dict[str, Any]:
        return {}


def test_only_the_named_actions_are_recorded_where_asked() -> None:
    log = Log()
    record_admin_action(log, _event("POST", "/v1/fine_tuning/jobs"), _response(201), actions=("/approve",))
    record_admin_action(
        log, _event("POST", "/v1/fine_tuning/jobs/j1/approve"), _response(200), actions=("/approve",)
    )
    assert [r.action for r in log.records] == ["POST /v1/fine_tuning/jobs/{job_id}/approve"]


def test_a_failing_audit_write_never_fails_the_answer() -> None:
    record_admin_action(Log(fail=True), _event("PUT", "/admin/tenants/tnt_a/policy"), _response())
