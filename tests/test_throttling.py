"""Requests per API key: a 429 with `Retry-After` past the budget, per key and per scope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from bulksend.models import BulkSend
from mindo import throttling
from tests.conftest import Tenant
from tests.delivery_support import free_port
from tests.test_authentication import SEND_BODY

LIST_URL = "/api/v1/meta-templates/bulk-sends/"
SEND_URL = "/api/v1/meta-templates/send-bulk/"
# 15 s into a minute, so a minute's window has 45 s left.
FROZEN_NOW = 1_800_000_015.0


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fixed clock, and no counts left from an earlier run under the same key ids."""
    monkeypatch.setattr(throttling, "now", lambda: FROZEN_NOW)
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"{throttling.KEY_PREFIX}*"):
        client.delete(key)
    yield
    for key in client.scan_iter(f"{throttling.KEY_PREFIX}*"):
        client.delete(key)


def assert_throttled(response: Any, seconds: int) -> None:
    assert response.status_code == 429, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == str(seconds)
    assert response.json() == {
        "error": f"Demasiadas solicitudes. Intente nuevamente en {seconds} segundos."
    }


@override_settings(API_THROTTLE_READ_RATE="2/min")
def test_a_key_past_its_read_rate_gets_429_with_retry_after(tenant: Tenant) -> None:
    assert [tenant.client.get(LIST_URL).status_code for _ in range(2)] == [200, 200]

    assert_throttled(tenant.client.get(LIST_URL), seconds=45)


@override_settings(API_THROTTLE_READ_RATE="2/min")
def test_another_key_is_not_throttled_by_the_first(tenant: Tenant, other_tenant: Tenant) -> None:
    for _ in range(3):
        tenant.client.get(LIST_URL)

    assert other_tenant.client.get(LIST_URL).status_code == 200
    assert tenant.client.get(LIST_URL).status_code == 429


@override_settings(API_THROTTLE_READ_RATE="2/min")
def test_a_throttled_key_reads_again_in_the_next_window(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        tenant.client.get(LIST_URL)

    monkeypatch.setattr(throttling, "now", lambda: FROZEN_NOW + 45)

    assert tenant.client.get(LIST_URL).status_code == 200


@override_settings(API_THROTTLE_SEND_RATE="1/hour", API_THROTTLE_READ_RATE="5/min")
def test_sends_have_their_own_budget_apart_from_reads(tenant: Tenant) -> None:
    assert tenant.client.post(SEND_URL, SEND_BODY, format="json").status_code == 202

    # 15 s into an hour leaves 3,585 s of it.
    assert_throttled(tenant.client.post(SEND_URL, SEND_BODY, format="json"), seconds=3585)
    assert BulkSend.objects.count() == 1
    assert tenant.client.get(LIST_URL).status_code == 200


def test_a_request_without_a_key_is_answered_401_not_throttled(tenant: Tenant) -> None:
    with override_settings(API_THROTTLE_READ_RATE="1/min"):
        tenant.client.get(LIST_URL)
        tenant.client.get(LIST_URL)
        tenant.client.credentials()
        response = tenant.client.get(LIST_URL)

    assert response.status_code == 401


def test_throttling_lets_requests_through_while_redis_is_unreachable(tenant: Tenant) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"

    with override_settings(REDIS_URL=nowhere, API_THROTTLE_READ_RATE="1/min"):
        statuses = [tenant.client.get(LIST_URL).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
