"""The readings of a finished send of bench/multihost.py: its counters against a recount from
the messages, the sandbox's record of arrivals and their steady rate, and what each worker host
sent from its log's batch lines."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests

from bench.drain_support import FINAL_STATUSES
from bench.multihost_cluster import Host

WARMUP_SECONDS = 2.0  # left out of the mean: the drains start and claim their first batch
GAP_SECONDS = 2.0  # a pause this long ends the steady part (what comes after is the reclaim)
BATCH_LINE = re.compile(r"Send (?P<send>[0-9a-f-]{36}), number \S+: (?P<sent>\d+) sent,")


@dataclass
class Outcome:
    scenario: str
    size: int
    rate: int
    status: str
    accept_seconds: float
    drain_seconds: float  # first arrival to the send's completed_at
    max_window: int
    sandbox_max: int
    mean: float
    steady: int  # arrivals in the steady part the mean is taken over
    duplicates: int
    lost: int
    counters: dict[str, tuple[int, int]]  # name: (stored, recounted)
    per_host: dict[str, int]
    retried: int  # messages sent on a second attempt (given back by the reaper, sent again)
    notes: list[str] = field(default_factory=list)
    arrived_after_up: int | None = None  # B: arrivals once the cut host's link was up again


COUNTERS = (
    "total_recipients",
    "pending_count",
    "sent_count",
    "delivered_count",
    "read_count",
    "failed_count",
    "cancelled_count",
)


# The stored counters and their recount from the messages, in one statement (one snapshot).
SNAPSHOT_SQL = """
SELECT b.unique_recipients, b.pending_count, b.sent_count, b.delivered_count, b.read_count,
       b.failed_count, b.cancelled_count,
       count(m.id),
       count(m.id) FILTER (WHERE m.status IN ('pending', 'sending')),
       count(m.id) FILTER (WHERE m.status IN ('sent', 'delivered', 'read')),
       count(m.id) FILTER (WHERE m.status IN ('delivered', 'read')),
       count(m.id) FILTER (WHERE m.status = 'read'),
       count(m.id) FILTER (WHERE m.status = 'failed'),
       count(m.id) FILTER (WHERE m.status = 'cancelled'),
       count(m.id) FILTER (WHERE m.attempts >= 2)
  FROM bulksend_bulksend b LEFT JOIN messaging_message m ON m.bulk_send_id = b.id
 WHERE b.id = %s
 GROUP BY b.id
"""


def counters_snapshot(bulk_send_id: str) -> tuple[dict[str, tuple[int, int]], int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(SNAPSHOT_SQL, [bulk_send_id])
        row = cursor.fetchone()
    width = len(COUNTERS)
    pairs = {name: (row[i], row[width + i]) for i, name in enumerate(COUNTERS)}
    return pairs, int(row[2 * width])


def sandbox_json(meta: str, path: str) -> Any:
    response = requests.get(f"{meta}/_sandbox/{path}", timeout=300)
    response.raise_for_status()
    return orjson.loads(response.content)


def webhooks_settle(meta: str, timeout: float) -> bool:
    """Wait until the sandbox has posted every status it owes (the reads come late)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sandbox_json(meta, "stats")["pending_webhooks"] == 0:
            return True
        time.sleep(0.5)
    return False


def send_row(bulk_send_id: str) -> tuple[str, int, Any, Any]:
    from bulksend.models import BulkSend

    fields = ("status", "pending_count", "started_at", "completed_at")
    status, pending, started_at, completed_at = (
        BulkSend.objects.filter(pk=bulk_send_id).values_list(*fields).get()
    )
    return status, pending, started_at, completed_at


def wait_finished(bulk_send_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, pending, _, completed_at = send_row(bulk_send_id)
        if status in FINAL_STATUSES and pending == 0 and completed_at is not None:
            return True
        time.sleep(0.2)
    return False


def sent_by_host(workers: list[tuple[Host, Path]], bulk_send_id: str) -> dict[str, int]:
    """Messages each worker host's drains reported sent, from their batch lines."""
    sent: dict[str, int] = {}
    for host, log in workers:
        total = 0
        for match in BATCH_LINE.finditer(log.read_text(errors="replace")):
            if match["send"] == bulk_send_id:
                total += int(match["sent"])
        sent[host.name] = total
    return sent


def steady_mean(times: list[float]) -> tuple[float, int]:
    """The mean rate after the first WARMUP_SECONDS, up to the first pause of GAP_SECONDS (what
    a reclaim sends later is not the paced stream), and how many arrivals it is over."""
    if len(times) < 2:
        return 0.0, len(times)
    end = times[-1]
    for before, after in itertools.pairwise(times):
        if after - before > GAP_SECONDS:
            end = before
            break
    start = times[0] + WARMUP_SECONDS
    if end - start < 1.0:  # too short for a steady part: the whole span
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9), len(times)
    steady = [t for t in times if start <= t <= end]
    return (len(steady) - 1) / (steady[-1] - steady[0]), len(steady)
