"""What the drain benches share: the bench's services, its database and the sandbox's record,
sends through the API, and the command line every one of them takes.

Every bench runs as production does, as separate processes on 127.0.0.1: gunicorn (the API and the
webhook endpoint), the Meta sandbox (posting its status webhooks to gunicorn), Celery beat (the
reaper) and, where a bench needs them, Celery workers; on a database of the bench's own (created,
migrated and provisioned with `manage.py demo --json --org Bench`; its sends are emptied, so a
name without "bench" is refused) and a Redis db of its own (broker, limiter and liveness keys;
flushed at the start and at the end, db 0 is refused).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests

from bench.drain_processes import celery_beat, gunicorn, sandbox
from bench.support import PRODUCTION_ENV, Demo, add_service_arguments, django_setup, provision
from meta.graph_version import GRAPH_VERSION as GRAPH_VERSION  # drain_bare imports it

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
DEFAULT_DATABASE = "mindo_bench_drain"
ORG = "Bench"
TEMPLATE = "welcome_message"
SEND_BULK = "/api/v1/meta-templates/send-bulk/"
WEBHOOK_PATH = "/webhooks/meta/"
UNLIMITED_THROUGHPUT = 1_000  # the most a number may have (a database constraint)
POLL_SECONDS = 0.1
REQUEST_TIMEOUT = (5.0, 180.0)  # connect, read: a stuck server fails the run instead of hanging
FINAL_STATUSES = ("COMPLETED", "PARTIAL", "FAILED", "CANCELLED")
# Phone ranges (+54 9 11 then 8 digits) that never meet: engine, pacing send A and B, bare.
ENGINE_BASE, PACING_BASES, BARE_BASE = 30_000_000, (40_000_000, 50_000_000), 60_000_000


def say(message: str) -> None:
    print(message, flush=True)


# --- setup ---------------------------------------------------------------------------------------


def number_configure(phone_number_id: str, *, throughput: int) -> None:
    """Unlimited portfolio (no quota in the way) and the number's rate for this measurement."""
    from meta.limits import TIER_UNLIMITED
    from templates_app.models import PhoneNumber, WhatsAppBusinessAccount

    number = PhoneNumber.objects.get(phone_number_id=phone_number_id)
    WhatsAppBusinessAccount.objects.filter(pk=number.business_account_id).update(
        messaging_limit_tier=TIER_UNLIMITED
    )
    PhoneNumber.objects.filter(pk=number.pk).update(throughput_per_second=throughput)


def sends_reset() -> None:
    """Empty what earlier rounds left, so each round meets the same tables."""
    from django.db import connection

    from bulksend.models import BulkSend
    from messaging.models import DeferredStatus, Message
    from webhooks.models import WebhookEvent

    name = connection.settings_dict["NAME"]
    if "bench" not in name:
        sys.exit(f"refusing to empty {name!r}: the bench only empties a *bench* database")
    tables = ", ".join(m._meta.db_table for m in (Message, BulkSend, DeferredStatus, WebhookEvent))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} CASCADE")


def sends_cancel_active() -> None:
    from bulksend.lifecycle import bulk_send_cancel
    from bulksend.models import ACTIVE_STATUSES, BulkSend

    for bulk_send in BulkSend.objects.filter(status__in=ACTIVE_STATUSES):
        bulk_send_cancel(bulk_send=bulk_send)


def redis_flush(redis_url: str) -> None:
    """The bench's Redis db holds only its own broker queue, limiter and liveness keys."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


# --- the sandbox's side --------------------------------------------------------------------------


def sandbox_get(base: str, path: str) -> Any:
    response = requests.get(f"{base}/_sandbox/{path}", timeout=60)
    response.raise_for_status()
    return orjson.loads(response.content)


def sandbox_reset(base: str) -> None:
    requests.post(f"{base}/_sandbox/reset", timeout=30).raise_for_status()


def webhooks_settle(base: str, timeout: float = 60) -> None:
    """Wait until the sandbox has posted every status it owes, so the next measurement does not
    share the machine with the previous one's webhooks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sandbox_get(base, "stats")["pending_webhooks"] == 0:
            return
        time.sleep(0.25)
    say(f"  (webhooks still pending after {timeout:.0f} s)")


def received_times(base: str, phone_number_id: str) -> list[tuple[float, str]]:
    listing = sandbox_get(base, f"messages?phone_number_id={phone_number_id}")
    return sorted((m["received_at"], m["to"]) for m in listing["messages"])


# --- the API's side ------------------------------------------------------------------------------


def max_in_one_second(times: list[float]) -> int:
    """The largest number of `times` in any window (t - 1 s, t]: the sandbox's own definition."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def send_body(demo: Demo, size: int, base: int) -> bytes:
    """A send of `size` unique Buenos Aires mobiles with the template's variables and button."""
    recipients = [
        {
            "phone": f"+54911{base + i:08d}",
            "variables": {"name": f"Cliente {i}", "code": f"C{i:06d}"},
            "button_variables": {"button_0": f"B-{i}"},
        }
        for i in range(size)
    ]
    return orjson.dumps(
        {
            "phone_number_id": demo.phone_number_id,
            "template_name": TEMPLATE,
            "language": demo.language,
            "recipients": recipients,
        }
    )


def accept(session: requests.Session, base: str, demo: Demo, body: bytes, size: int) -> str:
    """POST one send; return its id. Exits on a wrong answer."""
    headers = {"X-API-Key": demo.api_key, "Content-Type": "application/json"}
    response = session.post(base + SEND_BULK, data=body, headers=headers, timeout=REQUEST_TIMEOUT)
    if response.status_code != 202:
        sys.exit(f"send-bulk of {size} answered {response.status_code}: {response.text[:2000]}")
    answer = response.json()
    if answer["unique_recipients"] != size:
        sys.exit(f"send-bulk of {size} counted {answer['unique_recipients']} unique recipients")
    return str(answer["bulk_send_id"])


def wake_up(bulk_send_id: str) -> None:
    """One more drain on the send, as a second wake-up from the service would start."""
    from bulksend.creation import DRAIN_TASK_NAME
    from mindo.celery import app

    app.send_task(DRAIN_TASK_NAME, args=[bulk_send_id])


@dataclass(frozen=True)
class Finished:
    status: str
    sent: int
    failed: int
    started_at: float  # epoch seconds, as the worker stamped them
    completed_at: float


def wait_finished(bulk_send_id: str, timeout: float) -> Finished | None:
    """Poll the send every 100 ms until it is final with its counters settled."""
    from bulksend.models import BulkSend

    deadline = time.monotonic() + timeout
    fields = ("status", "sent_count", "failed_count", "pending_count", "started_at", "completed_at")
    while time.monotonic() < deadline:
        status, sent, failed, pending, started_at, completed_at = (
            BulkSend.objects.filter(pk=bulk_send_id).values_list(*fields).get()
        )
        if status in FINAL_STATUSES and pending == 0 and completed_at is not None:
            return Finished(status, sent, failed, started_at.timestamp(), completed_at.timestamp())
        time.sleep(POLL_SECONDS)
    return None


def send_state(bulk_send_id: str) -> str:
    """The send's status and counters, and its messages by status: why it has not finished."""
    from django.db.models import Count

    from bulksend.models import BulkSend
    from messaging.models import Message

    send_id = uuid.UUID(bulk_send_id)
    send = BulkSend.objects.values(
        "status", "status_reason", "sent_count", "failed_count", "pending_count"
    ).get(pk=send_id)
    by_status = dict(
        Message.objects.filter(bulk_send_id=send_id)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    errors = dict(
        Message.objects.filter(bulk_send_id=send_id, error_code__isnull=False)
        .values_list("error_code")
        .annotate(n=Count("id"))
        .values_list("error_code", "n")
    )
    return f"send {send}, messages {by_status}, errors {errors}"


# --- the command line and the services ---------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """What every drain bench takes: its database and Redis, gunicorn's workers, time bounds."""
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument(
        "--no-webhooks", action="store_true", help="the sandbox posts no status webhooks"
    )
    parser.add_argument("--round-timeout", type=float, default=180, help="seconds per round")
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop starting rounds")
    add_service_arguments(parser, database=DEFAULT_DATABASE, redis_url=DEFAULT_REDIS_URL)


@dataclass(frozen=True)
class Services:
    env: dict[str, str]  # the environment of the bench's processes, META_GRAPH_URL included
    demo: Demo
    web: str  # gunicorn's base URL
    meta: str  # the sandbox's base URL
    logs: Path
    deadline: float  # time.monotonic() after which no round starts


@contextlib.contextmanager
def services(args: argparse.Namespace) -> Iterator[Services]:
    """Provision the bench's database, start gunicorn, the sandbox and beat; stop them after,
    cancel what is left and flush the bench's Redis db."""
    # A plain SIGTERM would end Python without its `finally` blocks, and leave the servers (in
    # their own sessions) running: turn it into an exit that unwinds.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    database = urlsplit(args.database_url).path.lstrip("/")
    if "bench" not in database:
        sys.exit(f"refusing to empty the sends of database {database!r}: name one with 'bench'")
    if urlsplit(args.redis_url).path.strip("/") in ("", "0"):
        sys.exit("refusing to flush Redis db 0 (development's): name another db")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mindo.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.redis_url,
        **PRODUCTION_ENV,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    say(f"database {database}, Redis {args.redis_url}, {os.cpu_count()} CPUs")
    demo = provision(env, ORG)
    django_setup(env)
    redis_flush(args.redis_url)
    deadline = time.monotonic() + args.max_seconds
    try:
        with tempfile.TemporaryDirectory(prefix="bench-drain-") as log_dir:
            logs = Path(log_dir)
            with gunicorn(env, args.web_workers, demo.api_key, logs) as web:
                webhook_url = "" if args.no_webhooks else web + WEBHOOK_PATH
                with (
                    sandbox(env, webhook_url, logs, demo.phone_number_id) as meta,
                    celery_beat(env, logs),
                ):
                    # Workers send to the sandbox: one setting away from the real Graph API.
                    env["META_GRAPH_URL"] = meta
                    yield Services(env, demo, web, meta, logs, deadline)
    finally:
        with contextlib.suppress(Exception):
            sends_cancel_active()
        redis_flush(args.redis_url)
        say(f"flushed {args.redis_url}")
