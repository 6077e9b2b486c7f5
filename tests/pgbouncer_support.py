"""PgBouncer in transaction mode in front of the test database, on a free port of its own.

Debian's pgbouncer (installed by `.ci/run`). It refuses to run as root, so as root it is started
with `-u postgres`, its files in a folder that user can read and write. It trusts every client
(as the machine's PostgreSQL does) and keeps few server connections, so that consecutive
transactions of one client often run on different server connections, as in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from django.db import connection

from tests.delivery_support import PROCESS_START_TIMEOUT, free_port, wait_for

PGBOUNCER_PATHS = ("/usr/sbin/pgbouncer",)


def pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    return next((path for path in PGBOUNCER_PATHS if os.access(path, os.X_OK)), None)


class PgBouncer:
    """`pgbouncer` in transaction mode forwarding every database to the test database's server."""

    def __init__(self, binary: str, *, pool_size: int = 2) -> None:
        db = connection.settings_dict
        self.user = db["USER"] or "postgres"
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mindo-pgbouncer-"))
        self.folder.chmod(0o777)  # its own user writes the log there
        (self.folder / "userlist.txt").write_text(f'"{self.user}" ""\n')
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.folder / 'userlist.txt'}",
                    "pool_mode = transaction",
                    f"default_pool_size = {pool_size}",
                    "max_client_conn = 200",
                    f"admin_users = {self.user}",
                    f"logfile = {self.folder / 'pgbouncer.log'}",
                    "",
                ]
            )
        )
        for path in self.folder.iterdir():
            path.chmod(0o644)
        as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [binary, *as_user, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._answering, timeout=PROCESS_START_TIMEOUT, interval=0.1, what="pgbouncer")

    def url(self, database: str | None = None) -> str:
        name = database or connection.settings_dict["NAME"]
        return f"postgres://{quote(self.user, safe='')}@127.0.0.1:{self.port}/{quote(name)}"

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _answering(self) -> bool:
        assert self.process.poll() is None, f"pgbouncer exited:\n{self.log()}"
        try:
            self.admin("SHOW VERSION")
        except psycopg.OperationalError:
            return False
        return True

    def admin(self, command: str) -> list[dict[str, Any]]:
        """A command of pgbouncer's admin console (SHOW POOLS, SHOW STATS...), its rows."""
        # The console speaks only the simple query protocol: a client-side-binding cursor.
        with (
            psycopg.connect(
                host="127.0.0.1",
                port=self.port,
                user=self.user,
                dbname="pgbouncer",
                autocommit=True,
                cursor_factory=psycopg.ClientCursor,
            ) as admin,
            admin.cursor() as cursor,
        ):
            cursor.execute(command)
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def stats(self, database: str | None = None) -> dict[str, Any]:
        name = database or connection.settings_dict["NAME"]
        rows = [row for row in self.admin("SHOW STATS") if row["database"] == name]
        assert rows, f"pgbouncer has no statistics for {name}"
        return rows[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)
