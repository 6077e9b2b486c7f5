"""Django's PostgreSQL backend, with a health check that costs no round trip.

With CONN_HEALTH_CHECKS, Django checks a kept connection before the first query of each request
with `SELECT 1`: a round trip to PostgreSQL on every request, as much as the one query of a
send's status read. What the check is there for is a connection the server has ended while it
sat idle between requests (PostgreSQL restarted, the backend terminated, an idle timeout): the
server then writes its farewell (an error message, then the end of the stream) to the socket. So
the socket is looked at instead, without waiting: an idle connection has nothing to read, and
one with something to read is not trusted and is replaced.

The trade-off: a network that drops the connection silently leaves nothing to read, and the
request's first query then fails (answered 503, mindo.middleware) instead of the check hanging on
`SELECT 1` until the same TCP timeout; Django then closes the connection (it checks it for real
after an error), so the next request reconnects.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.postgresql import base, operations
from psycopg import pq


def idle_connection_is_sound(connection: Any) -> bool:
    """Whether a psycopg connection, idle outside a transaction, still looks open: not closed or
    broken on our side, and nothing from the server waiting on its socket (which, for an idle
    connection, is the server ending it)."""
    if connection.closed or connection.broken or connection.pgconn.status != pq.ConnStatus.OK:
        return False
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str:
        """Django reads the query a client-binding cursor sent; a `prepared_cursor` binds on
        the server, and its query is composed here as Django's debug log and test captures
        want it (the statement with its values)."""
        if isinstance(cursor, psycopg.ClientCursor):
            return str(super().last_executed_query(cursor, sql, params))
        try:
            return str(self.compose_sql(sql, params))
        except psycopg.Error:  # a value the client cannot quote: the statement as it is
            return sql


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    # Django's own method with the check replaced (the type stubs lack these attributes).
    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is None
            or self.pool  # type: ignore[attr-defined]
            or not self.health_check_enabled  # type: ignore[attr-defined]
            or self.health_check_done  # type: ignore[has-type]
        ):
            return
        if not idle_connection_is_sound(self.connection):
            self.close()
        self.health_check_done = True

    def prepared_cursor(self) -> Any:
        """A cursor that binds its parameters on the server, as Django's own cursor does not:
        psycopg then prepares a statement once it has run a few times on the connection
        (`prepare_threshold`), and PostgreSQL plans it once per connection instead of at every
        run. For the large statements of a hot path, whose planning costs as much as their run.

        Behind a pooler in transaction mode (DATABASE_POOLING) a prepared statement would live
        on one server connection and be missing on the next: Django's cursor then.
        """
        if settings.DATABASE_POOLING == "transaction":
            return self.cursor()
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            return self._prepare_cursor(psycopg.Cursor(self.connection))  # type: ignore[attr-defined]
