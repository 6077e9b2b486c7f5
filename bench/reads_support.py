"""What bench/reads.py and the benches built on it share: filling the tables with COPY, the
bytes per message on disk, the baseline WSGI app (gunicorn imports it as
bench.reads_support:baseline_app), and timing GETs against it."""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
import requests

from bench.support import TEMPLATE, Demo, baseline_connection, rows_copy

API = "/api/v1/meta-templates"
PAGE_SIZE = 20
FIRST_TARGET_MS = 10.0
DEEP_TARGET_MS = 100.0
REQUEST_TIMEOUT = (5.0, 60.0)
# Out of every 100 messages of a send: a send half way through, as after a day of traffic.
STATUS_MIX = (("pending", 3), ("failed", 2), ("sent", 25), ("delivered", 40), ("read", 30))


# --- filling the tables --------------------------------------------------------------------------


def status_of(index: int) -> str:
    slot = index % 100
    for name, share in STATUS_MIX:
        if slot < share:
            return name
        slot -= share
    raise AssertionError("STATUS_MIX must add up to 100")


def message_rows(send_index: int, per_send: int, send_id: str, account_id: int) -> Iterator[tuple]:
    from django.utils import timezone

    sent_at = timezone.now() - timedelta(hours=30)  # out of the quota window: it is not measured
    delivered_at, read_at = sent_at + timedelta(seconds=5), sent_at + timedelta(minutes=3)
    for i in range(per_send):
        status = status_of(i)
        reached = ("sent", "delivered", "read")
        wamid = f"wamid.BENCH{send_index:03d}{i:07d}" if status in reached else None
        yield (
            send_id,
            account_id,
            # Unique up to 80 million messages: Argentine mobiles of 8 digits after +54 911.
            f"+54911{20_000_000 + (send_index * per_send + i) % 80_000_000:08d}",
            orjson.dumps({"name": f"Cliente {i}", "code": f"C{i:06d}"}).decode(),
            orjson.dumps({"button_0": f"B-{i}"}).decode(),
            status,
            wamid,
            sent_at if status in reached else None,
            delivered_at if status in ("delivered", "read") else None,
            read_at if status == "read" else None,
            sent_at if status == "failed" else None,
            "131026" if status == "failed" else None,
            "Message undeliverable" if status == "failed" else None,
        )


MESSAGE_COLUMNS = (
    "bulk_send_id, business_account_id, recipient_phone, variables, button_variables, status, "
    "wamid, sent_at, delivered_at, read_at, failed_at, error_code, error_message"
)


def counters(count: int) -> dict[str, int]:
    """The sends' counters, exactly what `status_of` gives `count` messages."""
    by_status = {name: 0 for name, _ in STATUS_MIX}
    for i in range(count):
        by_status[status_of(i)] += 1
    return {
        "submitted_recipients": count,
        "unique_recipients": count,
        "pending_count": by_status["pending"],
        "sent_count": by_status["sent"] + by_status["delivered"] + by_status["read"],
        "delivered_count": by_status["delivered"] + by_status["read"],
        "read_count": by_status["read"],
        "failed_count": by_status["failed"],
        "cancelled_count": 0,
    }


def fill(demos: list[tuple[str, Demo]], sends: int, per_send: int) -> list[str]:
    """The sends, dealt out to the organizations of `demos` in turn, filled unless a kept
    database already holds exactly this fill; returns the ids of the first organization's."""
    from django.db import connection, transaction
    from django.utils import timezone

    from bulksend.models import BulkSend, BulkSendStatus
    from messaging.models import Message
    from templates_app.models import MessageTemplate, PhoneNumber

    measured_org = demos[0][0]
    existing = BulkSend.objects.all()
    if existing.count() == sends and all(s.unique_recipients == per_send for s in existing):
        print(f"reusing the {sends} sends of {per_send:,} messages of the kept database")
        return [
            str(pk)
            for pk in existing.filter(organization__name=measured_org).values_list("pk", flat=True)
        ]
    assets = []
    for _, demo in demos:
        number = PhoneNumber.objects.select_related("business_account__organization").get(
            phone_number_id=demo.phone_number_id
        )
        template = MessageTemplate.objects.get(
            name=TEMPLATE, language=demo.language, business_account=number.business_account
        )
        assets.append((number, template))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Message._meta.db_table}, {BulkSend._meta.db_table} CASCADE")
    started = time.monotonic()
    now = timezone.now()
    ids = []
    for send_index in range(sends):
        number, template = assets[send_index % len(assets)]
        with transaction.atomic():
            # Active with messages still pending: the status endpoint computes its estimate.
            bulk_send = BulkSend.objects.create(
                organization=number.business_account.organization,
                phone_number=number,
                template=template,
                status=BulkSendStatus.PROCESSING,
                **counters(per_send),
            )
            # Over the last 30 days, so that the sends list's date filters have work to do.
            BulkSend.objects.filter(pk=bulk_send.pk).update(
                created_at=now - timedelta(days=send_index % 30, minutes=send_index)
            )
            rows = message_rows(send_index, per_send, str(bulk_send.pk), number.business_account_id)
            rows_copy(Message._meta.db_table, MESSAGE_COLUMNS, rows)
        if send_index % len(assets) == 0:
            ids.append(str(bulk_send.pk))
        if sends <= 20 or (send_index + 1) % (sends // 20) == 0:
            print(
                f"  send {send_index + 1}/{sends} filled ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Message._meta.db_table}, {BulkSend._meta.db_table}")
    return ids


def disk_bytes_per_message() -> list[tuple[str, float]]:
    """(relation, bytes per message) of the messages table (heap and TOAST) and of each of its
    indexes, and their total."""
    from django.db import connection

    from messaging.models import Message

    table = Message._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM " + table)
        count = max(int(cursor.fetchone()[0]), 1)
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = %s::regclass ORDER BY 2 DESC",
            [table],
        )
        indexes = cursor.fetchall()
        cursor.execute("SELECT pg_table_size(%s::regclass), pg_total_relation_size(%s::regclass)",
                       [table, table])  # fmt: skip
        heap, total = cursor.fetchone()
    return [
        (f"{table} (heap and TOAST)", heap / count),
        *((name, size / count) for name, size in indexes),
        ("total", total / count),
    ]


def middle_message_id(send_id: str, per_send: int) -> int:
    from messaging.models import Message

    ids = (
        Message.objects.filter(bulk_send_id=uuid.UUID(send_id))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return int(ids[per_send // 2])


# --- the baseline app (gunicorn imports this module as bench.reads_support:baseline_app) ---------


def baseline_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """One message by primary key with psycopg, as JSON: no framework, one round trip."""
    message_id = int(environ.get("QUERY_STRING", "id=0").partition("=")[2] or 0)
    row = (
        baseline_connection()
        .execute(
            "SELECT id, recipient_phone, status, wamid, variables FROM messaging_message "
            "WHERE id = %s",
            [message_id],
        )
        .fetchone()
    )
    body = orjson.dumps(
        {"id": row[0], "recipient_phone": row[1], "status": row[2], "wamid": row[3], "v": row[4]}
        if row
        else {}
    )
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


# --- serving and timing --------------------------------------------------------------------------


def wait_ok(session: requests.Session, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            response = session.get(url, timeout=REQUEST_TIMEOUT)
            if response.status_code == 200:
                return
            sys.exit(f"GET {url} answered {response.status_code}: {response.text[:500]}")
        time.sleep(0.2)
    sys.exit(f"no answer from {url} in {timeout:.0f} s")


@dataclass
class Timed:
    """Milliseconds of one read's GETs, and of the baseline's GETs made between them."""

    read: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)


def get_ms(session: requests.Session, url: str) -> float:
    started = time.perf_counter()
    response = session.get(url, timeout=REQUEST_TIMEOUT)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        sys.exit(f"GET {url} answered {response.status_code}: {response.text[:500]}")
    return elapsed


def time_reads(
    service: tuple[requests.Session, str],
    baseline: tuple[requests.Session, str],
    paths: list[tuple[str, str]],
    count: int,
) -> dict[str, Timed]:
    """`count` sequential GETs of each path, each followed by one GET of the baseline: on a
    shared machine the load changes by the minute, and both then see the same load."""
    (session, base), (baseline_session, baseline_url) = service, baseline
    results: dict[str, Timed] = {}
    for name, path in paths:
        for _ in range(5):  # untimed: the first answers fill caches
            get_ms(session, base + path)
        timed = results[name] = Timed()
        for _ in range(count):
            timed.read.append(get_ms(session, base + path))
            timed.baseline.append(get_ms(baseline_session, baseline_url))
        median, baseline_median = statistics.median(timed.read), statistics.median(timed.baseline)
        print(f"  {name}: median {median:.1f} ms, baseline {baseline_median:.1f} ms", flush=True)
    return results


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[98]


def endpoints(
    send_id: str, per_send: int, wamid: str, template_id: int, contact_phone: str
) -> list[tuple[str, str, float]]:
    """(name, path, p99 target in ms) of every read timed."""
    from django.utils import timezone

    messages = f"{API}/bulk-sends/{send_id}/messages/"
    last_page = -(-per_send // PAGE_SIZE)
    deep = min(1000, last_page)
    delivered = counters(per_send)["delivered_count"] - counters(per_send)["read_count"]
    last_delivered = max(-(-delivered // PAGE_SIZE), 1)
    deep_delivered = min(1000, last_delivered)
    two_weeks_ago = (timezone.now() - timedelta(days=14)).date().isoformat()
    sends = f"{API}/bulk-sends/"
    return [
        ("status", f"{API}/bulk-sends/{send_id}/", FIRST_TARGET_MS),
        ("sends list", sends, FIRST_TARGET_MS),
        ("sends list ?status=PROCESSING", f"{sends}?status=PROCESSING", FIRST_TARGET_MS),
        ("sends list ?template=", f"{sends}?template={template_id}", FIRST_TARGET_MS),
        ("sends list ?created_after=", f"{sends}?created_after={two_weeks_ago}", FIRST_TARGET_MS),
        ("sends list ?created_before=", f"{sends}?created_before={two_weeks_ago}", FIRST_TARGET_MS),
        ("messages, page 1", messages, FIRST_TARGET_MS),
        ("messages ?status=pending, page 1", f"{messages}?status=pending", FIRST_TARGET_MS),
        (f"messages, page {deep:,}", f"{messages}?page={deep}", DEEP_TARGET_MS),
        (f"messages, last page ({last_page:,})", f"{messages}?page={last_page}", DEEP_TARGET_MS),
        (
            f"messages ?status=delivered, page {deep_delivered:,}",
            f"{messages}?status=delivered&page={deep_delivered}",
            DEEP_TARGET_MS,
        ),
        (
            f"messages ?status=delivered, last page ({last_delivered:,})",
            f"{messages}?status=delivered&page={last_delivered}",
            DEEP_TARGET_MS,
        ),
        ("message by wamid", f"{API}/messages/{wamid}/", FIRST_TARGET_MS),
        ("contact-lookup", f"/api/v1/contact-lookup/?phone={contact_phone}", FIRST_TARGET_MS),
    ]


def measured_reads(
    send_ids: list[str], per_send: int, contact_phone: str
) -> tuple[list[tuple[str, str, float]], str]:
    """The reads of the middle send of `send_ids` (`endpoints`), and the baseline's path."""
    from bulksend.models import BulkSend
    from messaging.models import Message

    measured = send_ids[len(send_ids) // 2]
    wamids = Message.objects.filter(bulk_send_id=uuid.UUID(measured), wamid__isnull=False)
    wamid = str(wamids.values_list("wamid", flat=True)[per_send // 4])
    template_id = BulkSend.objects.get(pk=measured).template_id
    reads = endpoints(measured, per_send, wamid, template_id, contact_phone)
    return reads, f"/?id={middle_message_id(measured, per_send)}"
