"""A key that authenticated is trusted by the process for API_KEY_CACHE_SECONDS, no longer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from mindo import api_keys
from mindo.api_keys import api_key_authenticate
from mindo.errors import ApiKeyExpiredError
from mindo.models import ApiKey, Membership
from tests import factories
from tests.conftest import Tenant

LIST_URL = "/api/v1/meta-templates/bulk-sends/"
CACHE_SECONDS = 5.0


class ManualClock:
    """The cache's clock, moved only by the test."""

    def __init__(self) -> None:
        self.current = 1_000.0

    def __call__(self) -> float:
        return self.current


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    manual = ManualClock()
    monkeypatch.setattr(api_keys, "cache_clock", manual)
    return manual


def revoke(tenant: Tenant) -> None:
    tenant.api_key.revoke()


def deactivate_user(tenant: Tenant) -> None:
    User.objects.filter(pk=tenant.api_key.user_id).update(is_active=False)


def remove_membership(tenant: Tenant) -> None:
    Membership.objects.filter(user_id=tenant.api_key.user_id).delete()


UNAUTHENTICATED = {"error": "Este endpoint requiere autenticacion con API Key (header X-API-Key)"}
EXPIRED = {"error": "API Key expirada"}


@override_settings(API_KEY_CACHE_SECONDS=CACHE_SECONDS)
@pytest.mark.parametrize(
    ("lose_key", "body"),
    [(revoke, EXPIRED), (deactivate_user, UNAUTHENTICATED), (remove_membership, UNAUTHENTICATED)],
)
def test_a_key_that_stops_working_is_refused_once_the_cache_time_has_passed(
    tenant: Tenant, clock: ManualClock, lose_key: Callable[[Tenant], None], body: dict[str, str]
) -> None:
    assert tenant.client.get(LIST_URL).status_code == 200
    lose_key(tenant)

    clock.current += CACHE_SECONDS - 0.01
    still_trusted = tenant.client.get(LIST_URL).status_code
    clock.current += 0.01
    refused = tenant.client.get(LIST_URL)

    assert still_trusted == 200
    assert refused.status_code == 401
    assert refused.json() == body


@override_settings(API_KEY_CACHE_SECONDS=0)
def test_without_a_cache_a_revoked_key_is_refused_on_the_next_request(
    tenant: Tenant, clock: ManualClock
) -> None:
    assert tenant.client.get(LIST_URL).status_code == 200
    tenant.api_key.revoke()

    assert tenant.client.get(LIST_URL).status_code == 401


@override_settings(API_KEY_CACHE_SECONDS=CACHE_SECONDS)
def test_a_trusted_key_costs_no_query(
    tenant: Tenant, clock: ManualClock, django_assert_num_queries: Any
) -> None:
    first = api_key_authenticate(tenant.raw_key)  # looks it up, and writes last_used_at

    clock.current += CACHE_SECONDS / 2
    with django_assert_num_queries(0):
        again = api_key_authenticate(tenant.raw_key)

    assert first == again == tenant.api_key
    assert again is not None
    assert again.organization == tenant.organization


@override_settings(API_KEY_CACHE_SECONDS=CACHE_SECONDS)
def test_a_key_is_looked_up_again_once_its_cache_time_has_passed(
    tenant: Tenant, clock: ManualClock, django_assert_num_queries: Any
) -> None:
    api_key_authenticate(tenant.raw_key)

    clock.current += CACHE_SECONDS
    with django_assert_num_queries(1):
        assert api_key_authenticate(tenant.raw_key) == tenant.api_key


@override_settings(API_KEY_CACHE_SECONDS=CACHE_SECONDS)
def test_an_unknown_key_is_not_remembered(tenant: Tenant, clock: ManualClock) -> None:
    unknown = api_keys.api_key_generate()

    assert api_key_authenticate(unknown) is None

    assert api_keys.api_key_hash(unknown) not in api_keys._checked_keys


@override_settings(API_KEY_CACHE_SECONDS=CACHE_SECONDS)
def test_the_cache_stays_within_its_bound(
    tenant: Tenant, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_keys, "_checked_keys", {})
    monkeypatch.setattr(api_keys, "CACHE_MAX_KEYS", 3)
    raw_keys = [factories.make_api_key(tenant.organization)[1] for _ in range(5)]

    for raw_key in raw_keys:
        assert api_key_authenticate(raw_key) is not None

    assert 0 < len(api_keys._checked_keys) <= 3
    assert api_keys.api_key_hash(raw_keys[-1]) in api_keys._checked_keys


@override_settings(API_KEY_CACHE_SECONDS=CACHE_SECONDS)
def test_another_key_of_the_organization_is_not_refused_with_a_revoked_one(
    tenant: Tenant, clock: ManualClock
) -> None:
    other, raw_other = factories.make_api_key(tenant.organization)
    assert api_key_authenticate(raw_other) == other
    tenant.api_key.revoke()

    clock.current += CACHE_SECONDS

    with pytest.raises(ApiKeyExpiredError):
        api_key_authenticate(tenant.raw_key)
    assert api_key_authenticate(raw_other) == other


@override_settings(API_KEY_CACHE_SECONDS=CACHE_SECONDS)
def test_a_key_revoked_through_api_keys_revoke_is_refused_at_once_by_this_process(
    tenant: Tenant, clock: ManualClock
) -> None:
    assert tenant.client.get(LIST_URL).status_code == 200

    revoked = api_keys.api_keys_revoke(ApiKey.objects.filter(pk=tenant.api_key.pk))

    assert revoked == 1
    assert tenant.client.get(LIST_URL).status_code == 401
