"""Where one single-status webhook's time goes: signature, parsing, each SQL statement, the
commit, and Django's request handling, in this process, one at a time, on fresh wamids.

    .venv/bin/python bench/webhooks_phases.py

On the webhook benches' database (bench/webhooks_support.py); microseconds per webhook.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.support import print_table, sig3  # noqa: E402
from bench.webhooks_support import (  # noqa: E402
    APP_SECRET,
    DEFAULT_DATABASE_URL,
    WEBHOOK_PATH,
    Provisioner,
    database_prepare,
    delivered_bodies,
    server_environment,
)

PROFILE_CALLS = 1_000


class StatementClock:
    """Times every SQL statement (through Django's execute wrapper) and every commit."""

    LABELS = {
        "WITH ev": "SQL: the status UPDATE (one CTE statement)",
        "SELECT id FROM": "SQL: lock the send row (SELECT ... FOR UPDATE)",
        "UPDATE bulksend": "SQL: counters UPDATE",
        "INSERT INTO": "SQL: WebhookEvent INSERT",
    }

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, *args)
        finally:
            text = sql.lstrip()
            label = next((v for k, v in self.LABELS.items() if text.startswith(k)), None)
            self.seconds[label or "SQL: " + " ".join(text.split()[:2])] += (
                time.perf_counter() - began
            )

    @contextlib.contextmanager
    def commits(self, connection: Any) -> Iterator[None]:
        raw = connection.connection
        commit = raw.commit

        def timed_commit() -> None:
            began = time.perf_counter()
            try:
                commit()
            finally:
                self.seconds["COMMIT (WAL flush)"] += time.perf_counter() - began

        raw.commit = timed_commit
        try:
            yield
        finally:
            del raw.commit


def mean_us(work: Callable[[Any], Any], inputs: list[Any]) -> float:
    began = time.perf_counter()
    for item in inputs:
        work(item)
    return (time.perf_counter() - began) / len(inputs) * 1e6


def phases(provisioner: Provisioner) -> list[list[str]]:
    """Where one single-status webhook's time goes, each phase on fresh wamids."""
    import orjson
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    from meta.signature import signature_is_valid
    from meta.webhook_payload import payload_read
    from webhooks.processing import webhook_process

    send = provisioner.send(PROFILE_CALLS * 3)
    signed = [
        delivered_bodies(send.wamids[n * PROFILE_CALLS : (n + 1) * PROFILE_CALLS]) for n in range(3)
    ]
    handler = WSGIHandler()

    def through_django(pair: tuple[bytes, str]) -> None:
        body, signature = pair
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": WEBHOOK_PATH,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_X_HUB_SIGNATURE_256": signature,
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
        }
        response = handler(environ, lambda status, headers: None)
        b"".join(response)
        response.close()

    for pair in signed[0][:100]:  # warm caches and the connection up
        webhook_process(pair[0])
    clock = StatementClock()
    connection.ensure_connection()
    with connection.execute_wrapper(clock), clock.commits(connection):
        process = mean_us(lambda p: webhook_process(p[0]), signed[0][100:])
    calls = len(signed[0]) - 100
    rows = [
        [label, sig3(seconds / calls * 1e6)] for label, seconds in sorted(clock.seconds.items())
    ]
    python = process - sum(clock.seconds.values()) / calls * 1e6
    rows += [
        [
            "signature check (HMAC-SHA256)",
            sig3(mean_us(lambda p: signature_is_valid(p[0], p[1], APP_SECRET), signed[1])),
        ],
        [
            "parse (orjson + payload_read)",
            sig3(mean_us(lambda p: payload_read(orjson.loads(p[0])), signed[1])),
        ],
        ["Python around the SQL in webhook_process", sig3(python)],
        ["= webhook_process", sig3(process)],
    ]
    wsgi = mean_us(through_django, signed[1] + signed[2])
    rows += [
        ["Django request handling (middleware, health check)", sig3(wsgi - process)],
        ["= whole request through Django's WSGI handler", sig3(wsgi)],
    ]
    return rows


def main() -> None:
    import os

    database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    if "bench" not in urlsplit(database_url).path:
        sys.exit(f"DATABASE_URL must name a *bench* database, got {database_url}")
    database_prepare(server_environment(database_url))
    provisioner = Provisioner()
    provisioner.reset()
    try:
        rows = phases(provisioner)
    finally:
        provisioner.reset()
    print("One single-status webhook, in this process, one at a time: microseconds")
    print_table(["phase", "us"], rows)


if __name__ == "__main__":
    main()
