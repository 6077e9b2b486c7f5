"""The production web server, gunicorn, on a free port, serving the test database.

Django's development server (and so `live_server`) reads what is left of every body before it
closes a connection and does not decode chunked uploads; gunicorn does neither, so what a client
sees of a body's handling is tested against gunicorn itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from django.conf import settings

from tests.delivery_support import free_port, process_env, wait_for

START_TIMEOUT_SECONDS = 60.0


class GunicornProcess:
    """`gunicorn mindo.wsgi` with one sync worker (the default worker class) and `extra_env`."""

    def __init__(self, log_dir: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = log_dir / "gunicorn.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "gunicorn", "mindo.wsgi"),
                    *("--bind", f"127.0.0.1:{self.port}", "--workers", "1"),
                    *("--timeout", "120", "--log-level", "info"),
                ],
                cwd=settings.BASE_DIR,
                env={**process_env(), **(extra_env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._answering, timeout=START_TIMEOUT_SECONDS, interval=0.1, what="gunicorn")

    def _answering(self) -> bool:
        assert self.process.poll() is None, self.log_path.read_text(errors="replace")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
