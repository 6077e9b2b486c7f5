"""GET /healthz and /readyz: probes for load balancers, no API key, JSON naming what is down."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client, override_settings

from mindo import health
from tests.delivery_support import free_port
from tests.redis_server import PrivateRedis, private_redis_fixture  # noqa: F401  (fixture)

# How long a test waits for /readyz before calling it hung: far beyond the probes' timeouts (a few
# seconds), so only a probe without a timeout can reach it, however busy the machine.
HUNG_AFTER_SECONDS = 120


@pytest.fixture
def silent_server() -> Iterator[int]:
    """The port of a server that takes connections and never says a word: the kernel completes
    each handshake into the listening socket's backlog, and nothing ever reads or answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def readyz_answer(client: Client) -> Any:
    """GET /readyz from another thread, so that a probe without a timeout fails the test instead
    of hanging it."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(client.get, "/readyz").result(timeout=HUNG_AFTER_SECONDS)


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


@pytest.mark.parametrize("silent_one", ["database", "redis"])
def test_readyz_answers_503_naming_a_dependency_that_accepts_and_never_answers(
    probe_client: Client,
    db: None,
    monkeypatch: pytest.MonkeyPatch,
    silent_server: int,
    silent_one: str,
) -> None:
    if silent_one == "database":
        default = connections["default"]
        silent: BaseDatabaseWrapper = type(default)(
            {**default.settings_dict, "HOST": "127.0.0.1", "PORT": str(silent_server)}, "silent"
        )
        monkeypatch.setattr(health, "_database", lambda: silent)
    else:
        monkeypatch.setattr(settings, "REDIS_URL", f"redis://127.0.0.1:{silent_server}/0")

    response = readyz_answer(probe_client)

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "ok", silent_one: "down"},
    }


def test_readyz_closes_the_connection_it_opened(
    probe_client: Client, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[BaseDatabaseWrapper] = []
    probe_connection = health._probe_connection

    def recorded() -> BaseDatabaseWrapper:
        opened.append(probe_connection())
        return opened[-1]

    monkeypatch.setattr(health, "_probe_connection", recorded)

    for _ in range(3):
        assert probe_client.get("/readyz").status_code == 200

    assert len(opened) == 3
    assert [wrapper.connection for wrapper in opened] == [None, None, None]
