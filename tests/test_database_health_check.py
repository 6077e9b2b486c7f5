"""A kept database connection is checked before each request without a round trip
(mindo.postgresql): a sound one is used as it is, one the server ended is replaced."""

from __future__ import annotations

import select
import tempfile
from pathlib import Path

import psycopg
import pytest
from django.db import close_old_connections, connection

pytestmark = pytest.mark.django_db(transaction=True)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return int(pid)


def _admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def test_a_sound_connection_is_kept_and_checked_without_a_query() -> None:
    pid = _backend_pid()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "wire.log"
        with trace.open("w") as out:
            pgconn.trace(out.fileno())
            try:
                close_old_connections()  # a request ends and the next one starts
                assert _backend_pid() == pid
            finally:
                pgconn.untrace()
        wire = trace.read_text()
    # What the client wrote to PostgreSQL (libpq's trace: "F" lines): the request's own
    # statement, and no `SELECT 1` before it.
    statements = [
        line.split("\t", 4)[4].strip()
        for line in wire.splitlines()
        if line.split("\t")[1:2] == ["F"] and line.split("\t")[3] in ("Query", "Parse")
    ]
    assert statements == ['"SELECT pg_backend_pid()"']


def test_a_connection_the_server_ended_between_requests_is_replaced() -> None:
    pid = _backend_pid()
    with _admin_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    # The server's farewell reaches the socket: wait for it (not for a time).
    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN)
    assert poller.poll(30_000), "PostgreSQL did not end the connection"

    close_old_connections()  # the next request starts
    new_pid = _backend_pid()  # its first query works, on a new connection

    assert new_pid != pid


def test_the_service_uses_the_backend_with_the_socket_check() -> None:
    assert connection.settings_dict["ENGINE"] == "mindo.postgresql"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
