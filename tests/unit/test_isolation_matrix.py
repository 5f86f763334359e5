"""The isolation matrix covers every route the apps serve (no local stack needed)."""

from __future__ import annotations

from tests.isolation_matrix import EXPECTATIONS, Kind, routes, uncovered


def test_every_served_route_has_an_expectation_and_tenant_b_values_for_its_parameters() -> None:
    assert uncovered(routes()) == []


def test_the_routes_of_every_apps_routers_are_served_routes() -> None:
    served = routes()

    # One route of each app: each registers its routes on routers it includes.
    assert {("GET", "/admin/tenants"), ("POST", "/v1/chat/completions"), ("POST", "/v1/files")} <= served


def test_a_new_route_without_an_entry_fails_the_coverage_check() -> None:
    problems = uncovered({("GET", "/v1/widgets/{widget_id}")})

    assert problems == [
        "GET /v1/widgets/{widget_id}: no expectation in tests/isolation_matrix.py EXPECTATIONS"
    ]


def test_a_new_path_parameter_without_a_value_of_tenant_b_fails_the_coverage_check() -> None:
    EXPECTATIONS[("GET", "/admin/tenants/{tenant_id}/widgets/{widget_id}")] = EXPECTATIONS[
        ("GET", "/admin/tenants/{tenant_id}")
    ]
    try:
        problems = uncovered({("GET", "/admin/tenants/{tenant_id}/widgets/{widget_id}")})
    finally:
        del EXPECTATIONS[("GET", "/admin/tenants/{tenant_id}/widgets/{widget_id}")]

    assert problems == [
        "GET /admin/tenants/{tenant_id}/widgets/{widget_id}: "
        "no value of tenant B for {widget_id} in PARAMETERS / MISSING"
    ]


def test_the_governance_routes_are_expected_to_be_tenant_b_404s() -> None:
    governance = [
        ("PUT", "/admin/tenants/{tenant_id}/policy"),
        ("GET", "/admin/tenants/{tenant_id}/policy"),
        ("GET", "/admin/tenants/{tenant_id}/audit"),
        ("GET", "/admin/tenants/{tenant_id}/subjects/{user}"),
        ("DELETE", "/admin/tenants/{tenant_id}/subjects/{user}"),
    ]

    assert {EXPECTATIONS[route].kind for route in governance} == {Kind.TENANT_B}
    assert uncovered(governance) == []
