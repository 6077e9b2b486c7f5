from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import hypothesis
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from mindo.models import ApiKey, Organization
from templates_app.models import MessageTemplate, PhoneNumber, WhatsAppBusinessAccount
from tests import factories
from tests.live_server_gate import live_server_gate

# Hypothesis's timing checks (200 ms an example, slow data generation) fail on a busy machine and
# say nothing about the code: the properties are what the tests check.
hypothesis.settings.register_profile(
    "suite", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("suite")


@dataclass
class Tenant:
    """An organization with a key, a business account, a number and the welcome template."""

    organization: Organization
    api_key: ApiKey
    raw_key: str
    account: WhatsAppBusinessAccount
    number: PhoneNumber
    template: MessageTemplate
    client: APIClient


def make_tenant(name: str | None = None, *, phone_number_id: str | None = None) -> Tenant:
    organization = factories.make_organization(name)
    api_key, raw_key = factories.make_api_key(organization)
    account = factories.make_account(organization)
    number_fields = {"phone_number_id": phone_number_id} if phone_number_id else {}
    number = factories.make_number(account, **number_fields)
    template = factories.make_template(account)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return Tenant(organization, api_key, raw_key, account, number, template, client)


@pytest.fixture
def tenant(db: None) -> Tenant:
    return make_tenant("Mindo", phone_number_id="813497231850626")


@pytest.fixture
def other_tenant(db: None) -> Tenant:
    return make_tenant("Other")


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()


class TickingClock:
    """`timezone.now()` for a test: a fixed instant that moves one microsecond per reading.

    Two readings differ by how many readings lie between them, never by how long the machine
    took: a figure computed from "an hour ago" in the test and "now" in the view rounds the same
    way on a busy machine. Rows still get distinct, ordered timestamps.
    """

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        self.current += timedelta(microseconds=1)
        return self.current


@contextmanager
def clock_frozen(start: datetime | None = None) -> Iterator[TickingClock]:
    """`timezone.now()` reads a TickingClock from `start` (the real now by default) inside."""
    clock = TickingClock(start or timezone.now())
    with mock.patch.object(timezone, "now", clock):
        yield clock


@pytest.fixture
def frozen_now() -> Iterator[TickingClock]:
    with clock_frozen(datetime(2026, 1, 15, 12, 0, tzinfo=UTC)) as clock:
        yield clock


@pytest.fixture
def live_server(live_server: Any, transactional_db: None) -> Iterator[Any]:
    """pytest-django's live server (one for the session), closed to new requests at the end of
    each test and waited for until the ones in flight, and their after-answer work, are done:
    before the database is flushed for the next test."""
    gate = live_server_gate(live_server)
    gate.open()
    yield live_server
    gate.wait_until_idle(close=True)
