"""What the accepting benches share: the request bodies, posting them, gunicorn's own request
times, the stdlib sink that is their baseline, and cleaning up after them."""

from __future__ import annotations

import contextlib
import http.server
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import requests

from bench.support import TEMPLATE, Demo, bench_env

SEND_BULK = "/api/v1/meta-templates/send-bulk/"
READY_PATH = "/api/v1/meta-templates/bulk-sends/?page_size=1"
CELERY_QUEUE = "celery"  # Celery's default queue: a Redis list of JSON messages
REQUEST_TIMEOUT = (10.0, 300.0)  # connect, read: a stuck server fails the run instead of hanging
# Generous on purpose: on a machine shared with other work, gunicorn's workers may take a minute
# to import Django, and a readiness probe may wait that long for its answer.
READY_TIMEOUT = 180.0
READY_PROBE_TIMEOUT = 30.0
# gunicorn writes a request's access-log line just after its answer: this long at most.
ACCESS_LOG_TIMEOUT = 30.0


def sends_reset() -> None:
    """Start from an empty send history: every run then measures the same thing."""
    from django.db import connection

    from bulksend.models import BulkSend
    from messaging.models import Message

    tables = f"{Message._meta.db_table}, {BulkSend._meta.db_table}"
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} CASCADE")


def sends_cancel_active() -> None:
    """Take earlier rounds' sends out of the quota and the queue ahead, as if they were done."""
    from bulksend.models import ACTIVE_STATUSES, BulkSend, BulkSendStatus

    BulkSend.objects.filter(status__in=ACTIVE_STATUSES).update(status=BulkSendStatus.CANCELLED)


def wait_ready(base: str, api_key: str, log_dir: Path, timeout: float = READY_TIMEOUT) -> None:
    """Until gunicorn answers a read with 200: refused connections and slow answers are waited
    out (a busy machine), any other answer ends the run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError, requests.Timeout):
            response = requests.get(
                base + READY_PATH, headers={"X-API-Key": api_key}, timeout=READY_PROBE_TIMEOUT
            )
            if response.status_code == 200:
                return
            sys.exit(f"gunicorn answered {response.status_code}: {response.text[:500]}")
        time.sleep(0.2)
    sys.exit(f"gunicorn was not ready in {timeout:.0f} s; see the logs in {log_dir}")


def recipients(size: int) -> list[dict[str, Any]]:
    """`size` unique Buenos Aires mobiles (+54 9 11, then 8 digits not starting with 0 or 1)."""
    return [
        {
            "phone": f"+54911{20_000_000 + i:08d}",
            "variables": {"name": f"Cliente {i}", "code": f"C{i:06d}"},
            "button_variables": {"button_0": f"B-{i}"},
        }
        for i in range(size)
    ]


def body_for(demo: Demo, size: int) -> bytes:
    return orjson.dumps(
        {
            "phone_number_id": demo.phone_number_id,
            "template_name": TEMPLATE,
            "language": demo.language,
            "recipients": recipients(size),
        }
    )


class AccessLog:
    """Reads gunicorn's request times (`--access-logformat "%(s)s %(D)s"`) as they are appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def next_202(self, timeout: float = ACCESS_LOG_TIMEOUT) -> float | None:
        deadline = time.monotonic() + timeout
        while True:
            chunk = self.path.read_bytes()[self.offset :] if self.path.exists() else b""
            complete = chunk.split(b"\n")[:-1]
            self.offset += sum(len(line) + 1 for line in complete)
            for line in complete:
                status_code, _, micros = line.decode().partition(" ")
                if status_code == "202":
                    return int(micros) / 1e6
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)


def post(session: requests.Session, url: str, api_key: str, body: bytes) -> requests.Response:
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    return session.post(url, data=body, headers=headers, timeout=REQUEST_TIMEOUT)


def accept(session: requests.Session, base: str, api_key: str, body: bytes, size: int) -> float:
    """POST one send; return the seconds it took. Exits on a wrong answer."""
    started = time.perf_counter()
    response = post(session, base + SEND_BULK, api_key, body)
    elapsed = time.perf_counter() - started
    if response.status_code != 202:
        sys.exit(f"send-bulk of {size} answered {response.status_code}: {response.text[:2000]}")
    answer = response.json()
    if answer["unique_recipients"] != size or answer["total_recipients"] != size:
        sys.exit(f"send-bulk of {size} counted {answer['unique_recipients']} unique recipients")
    return elapsed


def warm_workers(base: str, demo: Demo, workers: int) -> None:
    """One small send per worker at once: sync workers take one request each, so all warm up."""
    body = body_for(demo, 100)
    barrier = threading.Barrier(workers)

    def one() -> None:
        with requests.Session() as session:
            barrier.wait(timeout=READY_TIMEOUT)
            accept(session, base, demo.api_key, body, 100)

    threads = [threading.Thread(target=one) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class SinkHandler(http.server.BaseHTTPRequestHandler):
    """Reads the whole body and answers 202: no parsing, no database."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the client asks
    # Headers and body go out in two writes; with Nagle on, the second waits for a delayed ACK
    # (40 ms on Linux) and the baseline would measure that instead of the transfer.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        remaining = int(self.headers.get("Content-Length", "0"))
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)
        answer = b'{"status": "queued"}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request would only add noise to the report


@contextlib.contextmanager
def sink_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SinkHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def sink_post_seconds(session: requests.Session, base: str, api_key: str, body: bytes) -> float:
    """One POST of `body` to the sink: the cost of moving its bytes over HTTP on this machine."""
    started = time.perf_counter()
    response = post(session, base + SEND_BULK, api_key, body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def queue_clear(redis_url: str) -> int:
    """Empty the Celery queue of the bench's own Redis database: no worker will ever take those
    wake-ups, and their sends are gone at the next run. Returns how many there were."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        # The cast: redis-py types its sync and asyncio clients' answers as one union.
        waiting = cast(int, client.llen(CELERY_QUEUE))
        client.delete(CELERY_QUEUE)
        return waiting
    finally:
        client.close()


def service_env(database_url: str, redis_url: str) -> dict[str, str]:
    """bench_env, after refusing a database or Redis database the benches must not empty."""
    database = urlsplit(database_url).path.lstrip("/")
    if "bench" not in database:
        sys.exit(f"refusing to empty the sends of database {database!r}: name one with 'bench'")
    if urlsplit(redis_url).path.strip("/") in ("", "0"):
        sys.exit("refusing to empty the queue of Redis db 0 (development's): name another db")
    return bench_env(database_url, redis_url)
