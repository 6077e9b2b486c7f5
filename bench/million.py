"""A million recipients in one send: accepted through gunicorn, then drained unpaced.

    .venv/bin/python bench/million.py [--recipients 1000000] [--concurrency 2] [--webhooks]

(a) Accept: a JSON body of --recipients unique recipients (the template's two variables and its
button, as bench/drain_support.py builds them) POSTed to send-bulk/ on gunicorn with ONE sync
worker, timed to the 202; the worker's resident memory sampled from /proc every 50 ms during the
request (its peak printed, and the kernel's own high-water mark, VmHWM). Baseline in the same run:
a bare psycopg COPY of the same rows into a scratch table (TEMP, dropped at the end). Targets: 1M
accepted in under 30 s, the worker's peak under 500 MB.

(b) Drain: the same send from its 202 to COMPLETED with real Celery workers (one instance of
--concurrency processes, DELIVERY_PACING=false), the number unlimited (TIER_UNLIMITED, 1,000/s),
the sandbox with no rate: msg/s end to end, and the workers' memory (the sum over the instance's
processes) when the drain starts, at half the send and at its end. Baseline: the bare aiohttp
client of bench/drain_unpaced.py to the same sandbox, over at most 100,000 messages. Targets:
over 3,000 msg/s, the workers' memory flat. The sandbox posts no status webhooks unless
--webhooks (one sync web worker would receive them all).

Nothing is asserted; the tables print PASS or MISS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench import drain_processes, drain_support  # noqa: E402
from bench.drain_processes import RUNNING, celery_workers  # noqa: E402
from bench.drain_support import (  # noqa: E402
    ENGINE_BASE,
    TEMPLATE,
    UNLIMITED_THROUGHPUT,
    accept,
    add_arguments,
    number_configure,
    sandbox_get,
    sandbox_reset,
    say,
    send_state,
    sends_reset,
    services,
    wait_finished,
)
from bench.drain_unpaced import bare_bodies, bare_send  # noqa: E402
from bench.support import Demo, baseline_connection, print_table, sig3  # noqa: E402

TARGET_ACCEPT_SECONDS = 30.0
TARGET_PEAK_MB = 500.0
TARGET_DRAIN_RATE = 3_000
BARE_MAX = 100_000
SAMPLE_SECONDS = 0.05
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def recipient(i: int) -> dict[str, object]:
    return {
        "phone": f"+54911{ENGINE_BASE + i:08d}",
        "variables": {"name": f"Cliente {i}", "code": f"C{i:06d}"},
        "button_variables": {"button_0": f"B-{i}"},
    }


def million_body(demo: Demo, size: int) -> bytes:
    """The send's JSON, its recipients encoded one by one (never all as dicts at once)."""
    head = orjson.dumps(
        {"phone_number_id": demo.phone_number_id, "template_name": TEMPLATE, "language": "es"}
    )
    items = b",".join(orjson.dumps(recipient(i)) for i in range(size))
    return head[:-1] + b',"recipients":[' + items + b"]}"


# --- /proc -------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    # The command name may hold spaces or parentheses: the fields start after the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def group_pids(pgid: int) -> Iterator[tuple[int, int]]:
    """(pid, parent pid) of the live processes of a process group."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == pgid:
            yield int(entry.name), int(fields[1])


def rss_mb(pid: int) -> float:
    return int(_stat_fields(pid)[21]) * PAGE_BYTES / MB


def high_water_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def gunicorn_worker() -> int:
    """The one sync worker: the gunicorn group's process whose parent is the master."""
    pgid = RUNNING["gunicorn"]
    workers = [pid for pid, parent in group_pids(pgid) if parent == pgid]
    if len(workers) != 1:
        sys.exit(f"expected one gunicorn worker, found {workers}")
    return workers[0]


def workers_rss_mb() -> float:
    """The Celery instance's memory: the sum over its processes (the parent and its pool)."""
    pgids = [pgid for name, pgid in RUNNING.items() if name.startswith("worker")]
    return sum(rss_mb(pid) for pgid in pgids for pid, _ in group_pids(pgid))


class PeakSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_SECONDS):
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:  # the worker died: the request's answer says why
                return


# --- (a) accept --------------------------------------------------------------------------------


def bare_copy_seconds(demo: Demo, size: int) -> float:
    """A bare COPY of the send's rows (as bulksend.creation writes them) into a scratch table."""
    rows = (
        (
            str(uuid.uuid4()),
            1,
            f"+54911{ENGINE_BASE + i:08d}",
            None,
            orjson.dumps({"name": f"Cliente {i}", "code": f"C{i:06d}"}).decode(),
            orjson.dumps({"button_0": f"B-{i}"}).decode(),
        )
        for i in range(size)
    )
    connection = baseline_connection()  # autocommit, the bench's database
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE million_copy (bulk_send_id uuid, business_account_id bigint, "
            "recipient_phone text, recipient_user_id text, variables jsonb, "
            "button_variables jsonb)"
        )
        started = time.perf_counter()
        with cursor.copy("COPY million_copy FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        seconds = time.perf_counter() - started
        cursor.execute("DROP TABLE million_copy")
    return seconds


def accept_measured(web: str, demo: Demo, body: bytes, size: int) -> tuple[str, float, dict]:
    worker = gunicorn_worker()
    before = rss_mb(worker)
    sampler = PeakSampler(worker)
    sampler.start()
    started = time.perf_counter()
    with requests.Session() as session:
        bulk_send_id = accept(session, web, demo, body, size)
    seconds = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    memory = {
        "before": before,
        "peak": max(sampler.peak, rss_mb(worker)),
        "hwm": high_water_mb(worker),
    }
    return bulk_send_id, seconds, memory


# --- (b) drain ---------------------------------------------------------------------------------


def drain_measured(bulk_send_id: str, size: int, timeout: float) -> tuple[float, list[float]]:
    """msg/s from the 202 to completed_at, and the workers' memory at start, half and end."""
    from bulksend.models import BulkSend

    accepted_at = time.time()
    memory = [workers_rss_mb()]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = BulkSend.objects.filter(pk=bulk_send_id).values_list("sent_count", flat=True).get()
        if sent >= size // 2:
            memory.append(workers_rss_mb())
            break
        time.sleep(0.2)
    finished = wait_finished(bulk_send_id, max(deadline - time.monotonic(), 1))
    memory.append(workers_rss_mb())
    if finished is None or finished.status != "COMPLETED" or finished.sent != size:
        sys.exit(f"the send did not complete: {finished} {send_state(bulk_send_id)}")
    return size / (finished.completed_at - accepted_at), memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000, help="the send's size")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--webhooks", action="store_true", help="the sandbox posts statuses")
    parser.add_argument("--accept-only", action="store_true", help="(a) only, no drain")
    parser.add_argument(
        "--web-timeout", type=int, default=900, help="gunicorn's worker timeout, seconds"
    )
    add_arguments(parser)
    parser.set_defaults(web_workers=1, round_timeout=1200)
    args = parser.parse_args()
    args.no_webhooks = not args.webhooks
    drain_processes.GUNICORN_TIMEOUT_SECONDS = args.web_timeout
    drain_support.REQUEST_TIMEOUT = (10.0, float(args.web_timeout))
    size = args.recipients
    with services(args) as run:
        from django.conf import settings

        number_configure(run.demo.phone_number_id, throughput=UNLIMITED_THROUGHPUT)
        sends_reset()
        body = million_body(run.demo, size)
        say(f"body: {len(body) / MB:,.1f} MiB, {size:,} recipients")
        copy_seconds = bare_copy_seconds(run.demo, size)
        say(f"bare COPY of {size:,} rows: {copy_seconds:.2f} s")
        bulk_send_id, accept_seconds, memory = accept_measured(run.web, run.demo, body, size)
        del body
        say(f"accepted in {accept_seconds:.2f} s, worker peak {memory['peak']:.0f} MB")
        if args.accept_only:
            accept_report(size, accept_seconds, copy_seconds, memory)
            return
        with celery_workers(run.env, run.logs, count=1, concurrency=args.concurrency, pacing=False):
            rate, drain_memory = drain_measured(bulk_send_id, size, args.round_timeout)
        say(f"drained at {rate:,.0f} msg/s")
        bare = bare_bodies(run.demo, min(size, BARE_MAX))
        sandbox_reset(run.meta)
        elapsed, ok = asyncio.run(
            bare_send(run.meta, run.demo, bare, settings.DELIVERY_CONCURRENCY)
        )
        stats = sandbox_get(run.meta, "stats")
    accept_report(size, accept_seconds, copy_seconds, memory)
    drain_report(args.concurrency, rate, drain_memory, ok / elapsed, ok)
    print(f"sandbox after the bare run: {stats.get('accepted')} accepted; load {os.getloadavg()}")


def accept_report(size: int, accept_seconds: float, copy_seconds: float, memory: dict) -> None:
    accept_pass = accept_seconds < TARGET_ACCEPT_SECONDS * size / 1_000_000
    print()
    print(f"(a) Accepting {size:,} recipients through gunicorn (one sync worker)")
    print_table(
        ["202 in", "bare COPY", "ratio", "worker MB before", "peak", "VmHWM", "target", "result"],
        [
            [
                f"{sig3(accept_seconds)} s",
                f"{sig3(copy_seconds)} s",
                f"{accept_seconds / copy_seconds:.1f}x",
                f"{memory['before']:.0f}",
                f"{memory['peak']:.0f}",
                f"{memory['hwm']:.0f}",
                f"< {TARGET_ACCEPT_SECONDS * size / 1_000_000:.0f} s, < {TARGET_PEAK_MB:.0f} MB",
                "PASS" if accept_pass and memory["peak"] < TARGET_PEAK_MB else "MISS",
            ]
        ],
    )
    print(f"load {os.getloadavg()}")


def drain_report(
    concurrency: int, rate: float, drain_memory: list[float], bare_rate: float, ok: int
) -> None:
    print(f"\n(b) Draining it unpaced (--concurrency {concurrency}), 202 to completed_at")
    print_table(
        ["msg/s", "bare aiohttp req/s", "ratio", "workers MB start/half/end", "target", "result"],
        [
            [
                sig3(rate),
                f"{sig3(bare_rate)} ({ok:,} sent)",
                f"{rate / bare_rate:.2f}",
                "/".join(f"{mb:.0f}" for mb in drain_memory),
                f"> {TARGET_DRAIN_RATE:,}/s, flat",
                "PASS" if rate > TARGET_DRAIN_RATE else "MISS",
            ]
        ],
    )


if __name__ == "__main__":
    main()
