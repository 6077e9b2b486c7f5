"""How long accepting a bulk send takes, through the real HTTP stack.

    .venv/bin/python bench/accept_send.py [--sizes 10000,100000] [--rounds N]

Targets (DESIGN.md, "Speed"): 10,000 recipients answered in under 1 s, 100,000 in under 5 s.

1. Prepare a dedicated database (`DATABASE_URL`, default `mindo_bench`): create, migrate, and
   provision an organization with `manage.py demo --json --org Bench`. The bench empties that
   database's sends and messages first, so it refuses a database whose name lacks "bench".
2. Start gunicorn (sync workers, 127.0.0.1, a free port) on that database, with Celery's broker
   on Redis db 14 so the wake-ups it publishes never reach a development worker.
3. Build every request body once, with orjson, before any clock starts.
4. Warm every worker up, then time POST /send-bulk/ of N unique Argentine mobiles with the
   `welcome_message` variables and its URL button, several rounds per size. Each answer must be
   a 202 with `unique_recipients == N`. Between rounds (off the clock) the previous sends are
   cancelled, so each round meets the same quota state instead of a growing backlog.
5. Baseline: the same bodies posted with the same client to a stdlib server that only reads the
   body and answers 202: the cost of moving the bytes over HTTP on this machine.
6. Phases (in this process, same database): authentication, parsing, validation, creation
   (template check, deduplication, COPY, quota, commit) and the response.
7. Always: stop gunicorn and the baseline server, and empty the Celery queue of Redis db 14
   (the bench's own: no worker consumes it; db 0 is refused).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.support import (  # noqa: E402
    PRODUCTION_ENV,
    Demo,
    add_service_arguments,
    django_setup,
    free_port,
    print_table,
    provision,
    sig3,
    stop_process_group,
)

TARGET_SECONDS = {10_000: 1.0, 100_000: 5.0}
SEND_BULK = "/api/v1/meta-templates/send-bulk/"
READY_PATH = "/api/v1/meta-templates/bulk-sends/?page_size=1"
TEMPLATE = "welcome_message"
CELERY_QUEUE = "celery"  # Celery's default queue: a Redis list of JSON messages
REQUEST_TIMEOUT = (5.0, 180.0)  # connect, read: a stuck server fails the run instead of hanging


# --- formatting --------------------------------------------------------------------------------


# --- setup ---------------------------------------------------------------------------------------


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


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workers: int, log_dir: Path) -> Iterator[tuple[str, Path]]:
    """Run gunicorn in its own process group; yield its base URL and access log; always stop it."""
    port = free_port()
    access_log = log_dir / "access.log"
    error_log = log_dir / "error.log"
    # %(D)s is the time gunicorn spent on the request (microseconds), body read included.
    args = [
        *(sys.executable, "-m", "gunicorn", "mindo.wsgi"),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync"),
        *("--timeout", "180", "--graceful-timeout", "5"),
        *("--access-logfile", str(access_log), "--access-logformat", "%(s)s %(D)s"),
        *("--error-logfile", str(error_log)),
    ]
    process = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", access_log
    finally:
        stop_process_group(process)
        if process.returncode not in (0, -signal.SIGTERM):
            print(f"gunicorn ended with {process.returncode}; its log: {error_log}")


def wait_ready(base: str, api_key: str, log_dir: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            response = requests.get(base + READY_PATH, headers={"X-API-Key": api_key}, timeout=5)
            if response.status_code == 200:
                return
            sys.exit(f"gunicorn answered {response.status_code}: {response.text[:500]}")
        time.sleep(0.2)
    sys.exit(f"gunicorn was not ready in {timeout:.0f} s; see {log_dir / 'error.log'}")


# --- the requests --------------------------------------------------------------------------------


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


@dataclass
class Timings:
    service: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)


class AccessLog:
    """Reads gunicorn's request times as they are appended to its access log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def next_202(self, timeout: float = 3.0) -> float | None:
        # The line is written just after the response is sent, so it may trail it a little.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                chunk = log.read()
            lines = chunk.split(b"\n")
            complete = lines[:-1]
            self.offset += sum(len(line) + 1 for line in complete)
            for line in complete:
                status_code, _, micros = line.decode().partition(" ")
                if status_code == "202":
                    return int(micros) / 1e6
            time.sleep(0.02)
        return None


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
            barrier.wait(timeout=30)
            accept(session, base, demo.api_key, body, 100)

    threads = [threading.Thread(target=one) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=200)


# --- baseline: moving the bytes ------------------------------------------------------------------


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


def baseline(
    bodies: dict[int, bytes], rounds: dict[int, int], api_key: str
) -> dict[int, list[float]]:
    times: dict[int, list[float]] = {}
    with sink_server() as base, requests.Session() as session:
        for size, body in bodies.items():
            post(session, base + SEND_BULK, api_key, body)  # warm-up
            times[size] = []
            for _ in range(rounds[size]):
                started = time.perf_counter()
                response = post(session, base + SEND_BULK, api_key, body)
                times[size].append(time.perf_counter() - started)
                response.raise_for_status()
    return times


# --- phases, in this process ---------------------------------------------------------------------


def timed(phases: dict[str, float], name: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = step()
    phases[name] = time.perf_counter() - started
    return result


def phases_for(demo: Demo, body: bytes) -> dict[str, float]:
    """Each step the send-bulk view takes, timed apart (on one send; the view's own path)."""
    from rest_framework.renderers import JSONRenderer

    from bulksend.creation import bulk_send_create
    from bulksend.serializers import SendBulkAcceptedSerializer, SendBulkRequestSerializer
    from mindo.api_keys import api_key_authenticate

    phases: dict[str, float] = {}
    api_key = timed(phases, "authenticate", lambda: api_key_authenticate(demo.api_key))
    data = timed(phases, "parse JSON", lambda: orjson.loads(body))
    serializer = SendBulkRequestSerializer(data=data)
    if not timed(phases, "validate shape and phones", serializer.is_valid):
        sys.exit(f"phases: the body is invalid: {str(serializer.errors)[:2000]}")
    valid = serializer.validated_data
    accepted = timed(
        phases,
        "create (template, dedup, COPY, quota, commit)",
        lambda: bulk_send_create(
            organization=api_key.organization,
            created_by=api_key.user,
            phone_number_id=valid["phone_number_id"],
            template_name=valid["template_name"],
            language=valid["language"],
            recipients=valid["recipients"],
        ),
    )
    timed(
        phases,
        "serialize response",
        lambda: JSONRenderer().render(SendBulkAcceptedSerializer(accepted).data),
    )
    return phases


# --- cleanup ------------------------------------------------------------------------------------


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


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="recipients per send, by commas")
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed rounds per size (default 5 up to 10k, 3)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (2-3)")
    parser.add_argument("--org", default="Bench", help="organization provisioned by `demo`")
    parser.add_argument("--no-phases", action="store_true", help="skip the in-process phases")
    parser.add_argument("--max-seconds", type=float, default=1200, help="stop starting rounds")
    add_service_arguments(parser, database="mindo_bench")
    return parser.parse_args()


def main() -> None:
    # A plain SIGTERM would end Python without its `finally` blocks, and leave gunicorn (in its
    # own session) running: turn it into an exit that unwinds.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    rounds = {size: args.rounds or (5 if size <= 10_000 else 3) for size in sizes}
    deadline = time.monotonic() + args.max_seconds
    database = urlsplit(args.database_url).path.lstrip("/")
    if "bench" not in database:
        sys.exit(f"refusing to empty the sends of database {database!r}: name one with 'bench'")
    if urlsplit(args.redis_url).path.strip("/") in ("", "0"):
        sys.exit("refusing to empty the queue of Redis db 0 (development's): name another db")
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.redis_url,
        **PRODUCTION_ENV,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    print(f"database {database}, broker {args.redis_url}, {args.workers} gunicorn sync workers")
    demo = provision(env, args.org)
    django_setup(env)
    sends_reset()
    # Built once, before any clock starts: the client must not be what is measured.
    bodies = {size: body_for(demo, size) for size in sizes}
    timings = {size: Timings() for size in sizes}
    phases: dict[int, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as log_dir:
            with gunicorn(env, args.workers, Path(log_dir)) as (base, access_log_path):
                wait_ready(base, demo.api_key, Path(log_dir))
                warm_workers(base, demo, args.workers)
                access_log = AccessLog(access_log_path)
                with requests.Session() as session:
                    for size in sizes:
                        accept(session, base, demo.api_key, bodies[size], size)  # warm-up
                        for _ in range(rounds[size]):
                            if time.monotonic() > deadline:
                                print(f"--max-seconds reached: {size} ran fewer rounds")
                                break
                            sends_cancel_active()
                            access_log.next_202(timeout=0)  # skip what came before
                            elapsed = accept(session, base, demo.api_key, bodies[size], size)
                            timings[size].service.append(elapsed)
                            server = access_log.next_202()
                            if server is not None:
                                timings[size].server.append(server)
            for size, times in baseline(bodies, rounds, demo.api_key).items():
                timings[size].baseline = times
            if not args.no_phases:
                for size in sizes:
                    sends_cancel_active()
                    phases[size] = phases_for(demo, bodies[size])
    finally:
        print(f"emptied the queue of {args.redis_url} ({queue_clear(args.redis_url)} wake-ups)")
    report(sizes, bodies, timings, phases)


def report(
    sizes: list[int],
    bodies: dict[int, bytes],
    timings: dict[int, Timings],
    phases: dict[int, dict[str, float]],
) -> None:
    print()
    print("Accepting a send: POST /send-bulk/ through gunicorn, seconds per request")
    rows = []
    for size in sizes:
        service = timings[size].service
        if not service:
            continue
        median = statistics.median(service)
        target = TARGET_SECONDS.get(size)
        server = timings[size].server
        rows.append(
            [
                f"{size:,}",
                str(len(service)),
                sig3(median),
                sig3(min(service)),
                sig3(max(service)),
                sig3(size / median),
                sig3(statistics.median(server)) if server else "-",
                f"< {target:g} s" if target else "-",
                ("PASS" if median < target else "MISS") if target else "-",
            ]
        )
    headers = ["size", "runs", "median", "min", "max", "recipients/s", "in gunicorn"]
    print_table([*headers, "target", "result"], rows)
    print()
    print("Baseline: the same body to a stdlib server that only reads it and answers 202")
    rows = []
    for size in sizes:
        base, service = timings[size].baseline, timings[size].service
        if not base or not service:
            continue
        rows.append(
            [
                f"{size:,}",
                sig3(len(bodies[size]) / 1e6),
                str(len(base)),
                sig3(statistics.median(base)),
                sig3(statistics.median(service) / statistics.median(base)),
            ]
        )
    print_table(["size", "body MB", "runs", "median", "service/baseline"], rows)
    for size, steps in phases.items():
        print()
        print(f"Phases of one {size:,} send, in-process (seconds, share of their sum)")
        total = sum(steps.values())
        print_table(
            ["phase", "seconds", "share"],
            [[name, sig3(s), f"{s / total:.0%}"] for name, s in steps.items()],
        )


if __name__ == "__main__":
    main()
