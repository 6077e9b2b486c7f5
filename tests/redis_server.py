"""A redis-server of a test's own, on a free port, that the test stops and starts again.

Outage tests need a Redis they may take away; the shared one (the developer's and the other
tests') is never touched. The server keeps nothing on disk, so a restart comes back empty, as a
Redis without persistence does after a crash.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.delivery_support import PROCESS_START_TIMEOUT, free_port, wait_for


class PrivateRedis:
    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("redis-server is not installed: the outage tests start one of their own")
        self.executable = executable
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_dir / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        """Start the server (again, on the same port) and return once it answers."""
        assert self.process is None, "the private Redis is already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.executable, *self.server_options()],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._answers, timeout=PROCESS_START_TIMEOUT, interval=0.05, what="redis")
        return self

    def server_options(self) -> list[str]:
        return [
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        ]

    def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.log_path.read_text(errors="replace")
        client = self.client()
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server, as a crash would: no goodbye to its clients, nothing kept."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)


@pytest.fixture(name="private_redis")
def private_redis_fixture(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
