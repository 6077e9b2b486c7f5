"""GET /healthz and /readyz: probes for load balancers, no API key, JSON naming what is down."""

from __future__ import annotations

import pytest
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client, override_settings

from mindo import health
from tests.delivery_support import free_port
from tests.redis_server import PrivateRedis, private_redis_fixture  # noqa: F401  (fixture)


@pytest.fixture
def probe_client() -> Client:
    # Orchestrators probe a process by its IP address, which DJANGO_ALLOWED_HOSTS does not list.
    return Client(HTTP_HOST="10.11.12.13:8000")


def test_healthz_answers_ok_without_a_key_or_a_listed_host(probe_client: Client) -> None:
    response = probe_client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_ok_naming_the_database_and_redis(probe_client: Client, db: None) -> None:
    response = probe_client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_answers_503_naming_redis_while_redis_is_down(
    probe_client: Client, private_redis: PrivateRedis, db: None
) -> None:
    with override_settings(REDIS_URL=private_redis.url):
        assert probe_client.get("/readyz").status_code == 200

        private_redis.stop()
        response = probe_client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "down"},
    }


def test_readyz_answers_503_naming_the_database_while_it_cannot_be_reached(
    probe_client: Client, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = connections["default"]
    # The same database settings on a port where nothing listens: a real failed connection.
    unreachable: BaseDatabaseWrapper = type(default)(
        {**default.settings_dict, "HOST": "127.0.0.1", "PORT": str(free_port())}, "unreachable"
    )
    monkeypatch.setattr(health, "_database", lambda: unreachable)
    try:
        response = probe_client.get("/readyz")
    finally:
        unreachable.close()

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "down", "redis": "ok"},
    }
