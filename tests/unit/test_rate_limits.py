"""Requests per minute through usage plans: the per-minute mapping and the admin logic that keeps
a tenant's plan and its keys' API Gateway API keys in step with its keys."""

import pytest
from byom.domain import CreateKey, CreateTenant
from byom.errors import NotFound
from byom.governance.policy import PutPolicy, RateLimits
from byom.governance.rate_limits import Throttle, throttle_for
from byom.logic import admin
from byom.logic.access import Principal

from tests.unit.fakes import (
    FakeCredentials,
    FakeKeys,
    FakeModels,
    FakePolicies,
    FakeSecrets,
    FakeTenants,
    FakeUsagePlans,
)

PLATFORM = Principal(key_id="platform-admin", role="platform_admin")


class FailingKeys(FakeKeys):
    def create(self, key) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("simulated DynamoDB outage")


@pytest.fixture
def plans() -> FakeUsagePlans:
    return FakeUsagePlans()


@pytest.fixture
def store(plans: FakeUsagePlans) -> admin.AdminStore:
    return admin.AdminStore(
        tenants=FakeTenants(),
        keys=FakeKeys(),
        credentials=FakeCredentials(),
        models=FakeModels(),
        secrets=FakeSecrets(),
        usage_plans=plans,
        policies=FakePolicies(),
    )


@pytest.fixture
def tenant_id(store: admin.AdminStore) -> str:
    return admin.create_tenant(store, PLATFORM, CreateTenant(name="acme")).id


def _limit(store: admin.AdminStore, tenant_id: str, limits: RateLimits) -> None:
    """The tenant's policy with these rate limits, put as the platform admin puts it."""
    admin.put_policy(store, PLATFORM, tenant_id, PutPolicy(rate_limits=limits))


def _key(store: admin.AdminStore, tenant_id: str, name: str = "ci"):  # type: ignore[no-untyped-def]
    key, _ = admin.create_key(store, PLATFORM, tenant_id, CreateKey(name=name, role="developer"))
    return key


# The per-minute mapping


def test_the_sustained_rate_is_the_limit_spread_over_a_minute() -> None:
    throttle = throttle_for(120)

    assert throttle is not None
    assert throttle.rate_per_second == 2.0


def test_the_burst_is_ten_seconds_worth_of_the_rate() -> None:
    assert throttle_for(60) == Throttle(rate_per_second=1.0, burst=10)
    assert throttle_for(12) == Throttle(rate_per_second=0.2, burst=2)


def test_a_limit_under_six_per_minute_still_allows_one_request_at_once() -> None:
    throttle = throttle_for(1)

    assert throttle is not None
    assert throttle.burst == 1
    assert throttle.rate_per_second == pytest.approx(1 / 60)


def test_no_more_than_a_sixth_over_the_limit_fits_in_any_minute() -> None:
    for rpm in (1, 7, 60, 1000, 1_000_000):
        throttle = throttle_for(rpm)
        assert throttle is not None
        most_in_a_minute = throttle.burst + throttle.rate_per_second * 60
        assert most_in_a_minute <= rpm * (1 + 1 / 6) + 1


def test_no_limit_means_no_throttle_of_the_plans_own() -> None:
    assert throttle_for(None) is None


# Keys


def test_the_first_key_creates_the_tenants_plan_and_puts_its_api_key_in_it(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    key = _key(store, tenant_id)

    plan_id = store.tenants.get(tenant_id).usage_plan_id
    assert plan_id is not None
    assert plans.plans[plan_id] is None
    assert plans.keys[key.usage_key_id] == plan_id
    assert store.keys.get(tenant_id, key.id).usage_key == plans.values[key.usage_key_id]


def test_every_key_of_a_tenant_shares_its_one_plan(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    first, second = _key(store, tenant_id, "a"), _key(store, tenant_id, "b")

    assert len(plans.plans) == 1
    assert plans.keys[first.usage_key_id] == plans.keys[second.usage_key_id]


def test_the_usage_key_is_not_in_the_public_view(store: admin.AdminStore, tenant_id: str) -> None:
    key = _key(store, tenant_id)

    public = key.public()
    assert "usage_key" not in public
    assert "usage_key_id" not in public
    assert key.usage_key not in str(public)


def test_a_key_that_cannot_be_stored_leaves_no_api_key_behind(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    store.keys = FailingKeys()

    with pytest.raises(RuntimeError):
        _key(store, tenant_id)

    assert plans.keys == {}


def test_no_key_is_stored_when_its_api_key_cannot_be_created(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    plans.fail_next_key = True

    with pytest.raises(RuntimeError):
        _key(store, tenant_id)

    assert store.keys.list(tenant_id) == []


def test_a_revoked_key_loses_its_api_key(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    key = _key(store, tenant_id)

    admin.revoke_key(store, PLATFORM, tenant_id, key.id)

    assert key.usage_key_id not in plans.keys


def test_a_deleted_tenant_leaves_no_plan_and_no_api_key(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    _key(store, tenant_id, "a")
    _key(store, tenant_id, "b")

    admin.delete_tenant(store, PLATFORM, tenant_id)

    assert plans.plans == {}
    assert plans.keys == {}


def test_keys_get_no_api_key_where_no_usage_plans_are_managed(
    tenant_id: str, store: admin.AdminStore
) -> None:
    store.usage_plans = None

    key = _key(store, tenant_id)

    assert key.usage_key is None


# rate limits set by a policy


def test_a_limit_creates_the_plan_with_its_throttle_before_any_key(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    _limit(store, tenant_id, RateLimits(requests_per_minute=60))

    plan_id = store.tenants.get(tenant_id).usage_plan_id
    assert plans.plans[plan_id] == Throttle(rate_per_second=1.0, burst=10)


def test_keys_created_after_a_limit_join_the_limited_plan(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    _limit(store, tenant_id, RateLimits(requests_per_minute=60))

    key = _key(store, tenant_id)

    assert plans.plans[plans.keys[key.usage_key_id]] == throttle_for(60)


def test_a_changed_limit_updates_the_existing_plan(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    key = _key(store, tenant_id)

    _limit(store, tenant_id, RateLimits(requests_per_minute=6))

    assert len(plans.plans) == 1
    assert plans.plans[plans.keys[key.usage_key_id]] == throttle_for(6)


def test_clearing_the_limit_leaves_the_plan_to_the_stage_default(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    _limit(store, tenant_id, RateLimits(requests_per_minute=6))

    _limit(store, tenant_id, RateLimits())

    assert plans.plans[store.tenants.get(tenant_id).usage_plan_id] is None


def test_no_limit_for_a_tenant_without_a_plan_creates_none(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    _limit(store, tenant_id, RateLimits(tokens_per_minute=1000))

    assert plans.plans == {}


def test_limits_of_an_unknown_tenant_are_not_found(store: admin.AdminStore) -> None:
    with pytest.raises(NotFound):
        _limit(store, "tnt_missing", RateLimits(requests_per_minute=60))


def test_of_two_plans_created_at_once_the_one_recorded_first_is_kept(
    store: admin.AdminStore, plans: FakeUsagePlans, tenant_id: str
) -> None:
    stale = store.tenants.get(tenant_id)  # read before another call recorded a plan
    _limit(store, tenant_id, RateLimits(requests_per_minute=60))
    recorded = store.tenants.get(tenant_id).usage_plan_id

    kept = admin._usage_plan(store, plans, stale)

    assert kept == recorded
    assert list(plans.plans) == [recorded]
