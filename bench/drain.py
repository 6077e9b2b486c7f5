"""How fast the delivery engine drains a send to the Meta sandbox, and how exactly it paces.

    .venv/bin/python bench/drain.py [--only throughput|pacing|phases] [--quick] [--rounds N]
        [--seconds S] [--configs 1x1,2x1,2x2] [--no-webhooks] [--save-records DIR]

--quick: one round of each measurement and a 15 s pacing run, for development. The default
(3 rounds, 60 s) takes about 8 minutes on 2 cores.

Targets: at least 1,000 messages/s end to end against the sandbox on a
2-core machine when the number's rate allows it; within 2% of the configured rate, and never
above it in any 1-second window, when it does not.

Everything runs as in production, as separate processes on 127.0.0.1: gunicorn (the API and the
webhook endpoint), `python -m meta_sandbox` (Meta, posting its status webhooks to gunicorn),
Celery workers (`celery -A mindo worker --pool prefork`) and beat (the reaper), on a database of
the bench's own (default `mindo_bench_drain`, created, migrated and provisioned with `manage.py
demo --json --org Bench`; its sends are emptied, so a name without "bench" is refused) and Redis
db 11 (broker, limiter and liveness keys; flushed at the start and at the end, db 0 is refused).

throughput (a)
    The number is made unlimited (portfolio tier TIER_UNLIMITED, 1,000/s, so the drain's batch
    is DELIVERY_BATCH_SIZE), the sandbox has no rate (--rate-per-number 0) and the workers run
    with DELIVERY_PACING=false. Each round accepts a send of --recipients (10,000) through
    POST /send-bulk/ and times it from the 202 to COMPLETED with sent_count == recipients (the
    database is polled every 100 ms; the end is the send's own `completed_at`). Worker
    configurations (--configs) are written CxW: C = `--concurrency` of the worker, W = drains
    on the send. The service publishes one wake-up per send, so W > 1 adds wake-ups from the
    bench, to show what a second process working on the same send would bring.
    In the same round, after the webhooks of the engine's send are settled: a bare aiohttp
    client (one keep-alive session, DELIVERY_CONCURRENCY requests in flight, bodies built and
    encoded before the clock starts) sends the same number of template messages straight to
    the same sandbox process: the HTTP ceiling on this machine, against which the engine's rate
    is given as a ratio. Its messages carry no callback data of ours, so their webhooks are kept
    as deferred statuses and never touch the engine's messages.
    A second table gives the CPU seconds per 1,000 messages of each process group (workers,
    gunicorn, sandbox, the bench database's PostgreSQL backends), read from /proc, and how many
    cores they kept busy on average: below 2, the drain waits rather than computes.

pacing (b)
    The number at 80/s (pacing on), the sandbox with no rate so it records whatever comes, two
    Celery workers (separate processes, --concurrency 1 each) draining two sends on that number
    at once, each big enough to last the whole run. After --seconds (60; --quick: 15) of
    sending, the sandbox's record (GET /_sandbox/messages, `received_at` of each request) gives
    the largest count in any sliding 1-second window (target <= 80) and the mean rate over the
    steady part, the first 2 s left out (target >= 78.4/s, 2% under 80). The limiter's own
    design rate is 80 / (1 + GUARD + TOLERANCE) = 79.1/s (messaging.ratelimit).
    To say why a window went over: how late requests reached the sandbox against the
    limiter's grid of permits (see `lateness`); the limiter's guard absorbs 8 ms of it, a
    process descheduled longer on a busy machine makes requests arrive bunched.
    --save-records DIR keeps each run's record for a closer look.

phases
    Where a drain's time goes: the same unlimited send drained in this process (no Celery, no
    pacing) with the drain's steps wrapped in timers: claim (one UPDATE ... SKIP LOCKED per
    batch), quota admission, building the bodies, the HTTP sends, settling (messaging.status's
    statement). The liveness mark is a heartbeat in a thread of its own, off the drain's path.

Every subprocess runs in its own process group and is stopped in `finally`; each round is bound
in time (--round-timeout) and the whole bench by --max-seconds. Nothing is asserted: the tables
print PASS or MISS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
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
    sandbox_register,
    sig3,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
ORG = "Bench"
TEMPLATE = "welcome_message"
SEND_BULK = "/api/v1/meta-templates/send-bulk/"
READY_PATH = "/api/v1/meta-templates/bulk-sends/?page_size=1"
WEBHOOK_PATH = "/webhooks/meta/"
GRAPH_VERSION = "v21.0"
TARGET_MESSAGES_PER_SECOND = 1_000
PACING_RATE = 80
PACING_TOLERANCE = 0.02  # the mean may be this far under the rate
PACING_WARMUP_SECONDS = 2.0  # left out of the mean: the drains start and claim their first batch
UNLIMITED_THROUGHPUT = 1_000  # the most a number may have (a database constraint)
POLL_SECONDS = 0.1
REQUEST_TIMEOUT = (5.0, 180.0)  # connect, read: a stuck server fails the run instead of hanging
FINAL_STATUSES = ("COMPLETED", "PARTIAL", "FAILED", "CANCELLED")
# Phone ranges (+54 9 11 then 8 digits) that never meet: engine, pacing send A and B, bare.
ENGINE_BASE, PACING_BASES, BARE_BASE = 30_000_000, (40_000_000, 50_000_000), 60_000_000


# --- formatting --------------------------------------------------------------------------------


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


# --- processes -----------------------------------------------------------------------------------

# The process groups this bench runs now, by name: what `cpu_used` attributes CPU time to.
RUNNING: dict[str, int] = {}


def exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process ended, without reaping it: until it is reaped its pid, and so its
    process group's id, cannot be given to anyone else, so killing the group stays safe."""
    if process.returncode is not None:
        return True
    return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process's group (a master and its children), SIGKILL it after `grace`."""
    if process.returncode is not None:
        return  # reaped already: its group id may be someone else's by now
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not exited(process) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Children may outlive their master (a prefork child still in its task): the group is
    # killed whatever the master did; the master, a zombie at most, still holds the group's id.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@contextlib.contextmanager
def process_group(
    name: str, args: list[str], env: dict[str, str], log_dir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Run `args` in a process group of its own, output to `log_dir/name.log`; always stop it."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        RUNNING[name] = process.pid
        try:
            yield process, log_path
        finally:
            del RUNNING[name]
            stop_process_group(process)


def log_tail(path: Path, size: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return path.read_bytes()[-size:].decode(errors="replace")
    return ""


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes],
    log: Path,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exited(process):
            sys.exit(f"{what} ended early:\n{log_tail(log)}")
        with contextlib.suppress(requests.RequestException, OSError):
            if ready():
                return
        time.sleep(0.2)
    sys.exit(f"{what} was not ready in {timeout:.0f} s:\n{log_tail(log)}")


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workers: int, api_key: str, log_dir: Path) -> Iterator[str]:
    port = free_port()
    args = [
        *(sys.executable, "-m", "gunicorn", "mindo.wsgi"),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync"),
        *("--timeout", "180", "--graceful-timeout", "5"),
    ]
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        response = requests.get(base + READY_PATH, headers={"X-API-Key": api_key}, timeout=5)
        if response.status_code != 200:
            sys.exit(f"gunicorn answered {response.status_code}: {response.text[:500]}")
        return True

    with process_group("gunicorn", args, env, log_dir) as (process, log):
        wait_until(ready, 60, "gunicorn", process, log)
        yield base


@contextlib.contextmanager
def sandbox(
    env: dict[str, str], webhook_url: str, log_dir: Path, phone_number_id: str
) -> Iterator[str]:
    """The Meta sandbox, unlimited (so it records whatever comes), no recipient made to fail
    (a `failed` webhook would turn a COMPLETED send PARTIAL), statuses posted to gunicorn; the
    bench organization's number and templates registered with it."""
    port = free_port()
    args = [
        *(sys.executable, "-m", "meta_sandbox", "--host", "127.0.0.1", "--port", str(port)),
        *("--webhook-url", webhook_url, "--rate-per-number", "0", "--fail-suffix", ""),
        *("--seed", "1", "--state-file", ""),
    ]
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return requests.get(f"{base}/_sandbox/stats", timeout=5).ok

    with process_group("sandbox", args, env, log_dir) as (process, log):
        wait_until(ready, 60, "the sandbox", process, log)
        sandbox_register(base, phone_number_id)
        yield base


@contextlib.contextmanager
def celery_beat(env: dict[str, str], log_dir: Path) -> Iterator[None]:
    """Beat, as in production: its reaper finishes a send whose last message was settled by a
    webhook after the drain ended (an unanswered request that Meta had accepted), and hands
    back expired leases. Without it such a send would stay PROCESSING."""
    args = [
        *(sys.executable, "-m", "celery", "-A", "mindo", "beat", "--loglevel", "INFO"),
        *("--schedule", str(log_dir / "celerybeat-schedule")),
    ]
    with process_group("beat", args, env, log_dir) as (process, log):
        # Beat logs "beat: Starting..." once it runs its schedule.
        wait_until(lambda: b"Starting..." in log.read_bytes(), 60, "beat", process, log)
        yield


def celery_ready(log: Path) -> bool:
    # Celery logs "<hostname> ready." once its consumer takes tasks.
    return b" ready." in log.read_bytes()


@contextlib.contextmanager
def celery_workers(
    env: dict[str, str], log_dir: Path, *, count: int, concurrency: int, pacing: bool
) -> Iterator[None]:
    """`count` Celery worker instances of `--concurrency` each, ready to take tasks."""
    worker_env = {**env, "DELIVERY_PACING": "true" if pacing else "false"}
    with contextlib.ExitStack() as stack:
        started = []
        for index in range(count):
            name = f"worker{index + 1}-c{concurrency}"
            args = [
                *(sys.executable, "-m", "celery", "-A", "mindo", "worker", "--pool", "prefork"),
                *("--concurrency", str(concurrency), "--loglevel", "INFO"),
                # Its own name so two instances on one host do not clash; no gossip, mingle or
                # heartbeat: nothing here needs them and they slow the start.
                *("--hostname", f"drainbench-{name}-{os.getpid()}@%h"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ]
            started.append(stack.enter_context(process_group(name, args, worker_env, log_dir)))
        for process, log in started:
            wait_until(functools.partial(celery_ready, log), 90, log.stem, process, log)
        yield


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


def max_in_one_second(times: list[float]) -> int:
    """The largest number of `times` in any window (t - 1 s, t]: the sandbox's own definition."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def cpu_used() -> dict[int, tuple[str, float]]:
    """By pid: the group name and CPU seconds used so far, for the live processes of each group
    this bench runs (the Celery workers as one) and the bench database's PostgreSQL backends."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        backends = {row[0] for row in cursor.fetchall()}
    names = {pgid: "workers" if n.startswith("worker") else n for n, pgid in RUNNING.items()}
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            # The command name may hold spaces or parentheses: the fields start after the last ")".
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        pid = int(entry.name)
        name = names.get(int(fields[2])) or ("postgres" if pid in backends else None)
        if name is not None:
            used[pid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return used


def cpu_between(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds by group between two samples, process by process: one that ended meanwhile
    is lost (its last share), one that started is counted whole."""
    spent: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        earlier = before.get(pid)
        start = earlier[1] if earlier is not None and earlier[0] == name else 0.0
        spent[name] = spent.get(name, 0.0) + seconds - start
    return spent


# --- the API's side ------------------------------------------------------------------------------


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


# --- (a) throughput ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    concurrency: int
    drains: int

    @property
    def label(self) -> str:
        return f"{self.concurrency}x{self.drains}"

    @classmethod
    def parse(cls, text: str) -> Config:
        concurrency, _, drains = text.strip().partition("x")
        config = cls(int(concurrency), int(drains or 1))
        if not 1 <= config.drains <= config.concurrency:
            sys.exit(f"--configs {text}: W drains need at least W worker processes")
        return config


@dataclass
class ThroughputRuns:
    engine: list[float] = field(default_factory=list)  # messages/s, 202 to COMPLETED
    drain: list[float] = field(default_factory=list)  # messages/s, started_at to completed_at
    pickup: list[float] = field(default_factory=list)  # seconds, 202 to started_at
    bare: list[float] = field(default_factory=list)  # requests/s, bare aiohttp
    # CPU seconds per 1,000 messages by process group, 202 to COMPLETED (the accept included).
    cpu: list[dict[str, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def bare_bodies(demo: Demo, size: int) -> list[bytes]:
    """The bodies the engine would build for this template, encoded once, before any clock."""
    from meta.template_message import template_message_body
    from templates_app.models import MessageTemplate
    from templates_app.shapes import template_shape

    template = MessageTemplate.objects.get(
        business_account__phone_numbers__phone_number_id=demo.phone_number_id,
        name=TEMPLATE,
        language=demo.language,
    )
    shape = template_shape(template)
    return [
        orjson.dumps(
            template_message_body(
                to_e164=f"+54911{BARE_BASE + i:08d}",
                template=shape,
                variables={"name": f"Cliente {i}", "code": f"C{i:06d}"},
                button_variables={"button_0": f"B-{i}"},
                # Names no message: the sandbox's webhooks for it are kept, never applied.
                callback_data=f"bench-bare:{i}",
            )
        )
        for i in range(size)
    ]


async def bare_send(
    meta: str, demo: Demo, bodies: list[bytes], concurrency: int
) -> tuple[float, int]:
    """Send every body with `concurrency` requests in flight; (seconds, 200 answers)."""
    import aiohttp

    from templates_app.models import PhoneNumber

    number = await PhoneNumber.objects.select_related("business_account").aget(
        phone_number_id=demo.phone_number_id
    )
    url = f"{meta}/{GRAPH_VERSION}/{demo.phone_number_id}/messages"
    headers = {
        "Authorization": f"Bearer {number.business_account.access_token}",
        "Content-Type": "application/json",
    }
    ok = 0
    connector = aiohttp.TCPConnector(limit=max(concurrency, 1))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Open the connections off the clock, as a drain's session has them after its first batch.
        async def warm() -> None:
            async with session.get(f"{meta}/_sandbox/stats") as response:
                await response.read()

        await asyncio.gather(*(warm() for _ in range(concurrency)))
        indexes = iter(range(len(bodies)))

        async def worker() -> None:
            nonlocal ok
            for index in indexes:
                async with session.post(url, data=bodies[index], headers=headers) as response:
                    await response.read()
                    ok += response.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, ok


def throughput_round(
    config: Config,
    runs: ThroughputRuns,
    *,
    web: str,
    meta: str,
    demo: Demo,
    body: bytes,
    bare: list[bytes],
    size: int,
    timeout: float,
) -> None:
    from django.conf import settings

    sends_reset()
    sandbox_reset(meta)
    cpu_before = cpu_used()
    with requests.Session() as session:
        bulk_send_id = accept(session, web, demo, body, size)
    accepted_at = time.time()
    for _ in range(config.drains - 1):
        wake_up(bulk_send_id)
    finished = wait_finished(bulk_send_id, timeout)
    cpu_after = cpu_used()
    if finished is None:
        runs.problems.append(
            f"{config.label}: not finished in {timeout:.0f} s: {send_state(bulk_send_id)}; "
            f"sandbox {sandbox_get(meta, 'stats')}"
        )
        sends_cancel_active()
        return
    stats = sandbox_get(meta, "stats")
    if finished.status != "COMPLETED" or finished.sent != size:
        runs.problems.append(
            f"{config.label}: {finished.status} with {finished.sent} sent, {finished.failed} "
            f"failed; sandbox {stats['accepted']} accepted, {stats['rejected_by_code']} refused"
        )
        return
    if stats["accepted"] != size or stats["rejected_by_code"]:
        runs.problems.append(
            f"{config.label}: sandbox {stats['accepted']} accepted, {stats['rejected_by_code']}"
        )
    from messaging.models import Message

    retried = Message.objects.filter(bulk_send_id=uuid.UUID(bulk_send_id), attempts__gt=1).count()
    if retried:
        runs.problems.append(f"{config.label}: {retried} messages needed more than one attempt")
    seconds = finished.completed_at - accepted_at
    spent = cpu_between(cpu_before, cpu_after)
    runs.cpu.append({name: used * 1000 / size for name, used in spent.items()})
    runs.engine.append(size / seconds)
    runs.drain.append(size / (finished.completed_at - finished.started_at))
    runs.pickup.append(finished.started_at - accepted_at)
    say(
        f"  {config.label}: {size / seconds:,.0f} messages/s (202 to COMPLETED {seconds:.2f} s, "
        f"started {finished.started_at - accepted_at:+.2f} s after the 202, sandbox accepted "
        f"{stats['accepted']:,})"
    )

    # The bare client, once the engine's webhooks are settled, against the same sandbox.
    webhooks_settle(meta)
    sandbox_reset(meta)
    elapsed, ok = asyncio.run(bare_send(meta, demo, bare, settings.DELIVERY_CONCURRENCY))
    if ok != len(bare):
        runs.problems.append(f"{config.label}: bare client got {ok} of {len(bare)} answers 200")
    runs.bare.append(len(bare) / elapsed)
    say(f"  bare aiohttp: {len(bare) / elapsed:,.0f} requests/s")
    webhooks_settle(meta)


def throughput(
    args: argparse.Namespace, env: dict[str, str], demo: Demo, web: str, meta: str, logs: Path
) -> dict[Config, ThroughputRuns]:
    number_configure(demo.phone_number_id, throughput=UNLIMITED_THROUGHPUT)
    body = send_body(demo, args.recipients, ENGINE_BASE)
    warm_body = send_body(demo, 200, ENGINE_BASE)
    bare = bare_bodies(demo, args.recipients)
    results: dict[Config, ThroughputRuns] = {}
    for config in args.configs:
        if time.monotonic() > args.deadline:
            say("--max-seconds reached: configurations skipped")
            break
        runs = results[config] = ThroughputRuns()
        say(f"(a) throughput, worker --concurrency {config.concurrency}, {config.drains} drain(s)")
        with celery_workers(env, logs, count=1, concurrency=config.concurrency, pacing=False):
            # Off the clock: small sends at once, one per pool process, so none starts cold.
            sends_reset()
            with requests.Session() as session:
                warm_ids = [
                    accept(session, web, demo, warm_body, 200) for _ in range(config.concurrency)
                ]
            for warm_id in warm_ids:
                wait_finished(warm_id, 60)
            webhooks_settle(meta)
            for _ in range(args.rounds):
                if time.monotonic() > args.deadline:
                    say("--max-seconds reached: fewer rounds")
                    break
                throughput_round(
                    config,
                    runs,
                    web=web,
                    meta=meta,
                    demo=demo,
                    body=body,
                    bare=bare,
                    size=args.recipients,
                    timeout=args.round_timeout,
                )
            sends_cancel_active()
    return results


def throughput_report(results: dict[Config, ThroughputRuns], size: int) -> None:
    from django.conf import settings

    print()
    print(
        f"(a) Throughput, rate unlimited: a send of {size:,} from its 202 to COMPLETED "
        f"(batch {settings.DELIVERY_BATCH_SIZE}, {settings.DELIVERY_CONCURRENCY} in flight); "
        "median of the runs"
    )
    rows = []
    for config, runs in results.items():
        if not runs.engine:
            continue
        engine = statistics.median(runs.engine)
        bare = statistics.median(runs.bare) if runs.bare else math.nan
        rows.append(
            [
                config.label,
                str(len(runs.engine)),
                sig3(engine),
                f"{sig3(min(runs.engine))}-{sig3(max(runs.engine))}",
                sig3(statistics.median(runs.drain)),
                sig3(statistics.median(runs.pickup)),
                sig3(bare),
                f"{engine / bare:.2f}" if runs.bare else "-",
                f">= {TARGET_MESSAGES_PER_SECOND:,}",
                "PASS" if engine >= TARGET_MESSAGES_PER_SECOND else "MISS",
            ]
        )
    if rows:
        print_table(
            [
                "CxW",
                "runs",
                "msg/s",
                "range",
                "msg/s in drain",
                "pickup s",
                "bare req/s",
                "engine/bare",
                "target",
                "result",
            ],
            rows,
        )
    print(
        "CxW: worker --concurrency C, W drains on the send (the service starts 1; more are extra "
        "wake-ups). msg/s: 202 to completed_at. in drain: started_at to completed_at. pickup: "
        "202 to started_at (negative: the drain started before the 202 reached the client). "
        "bare: aiohttp straight to the same sandbox, same concurrency."
    )
    print()
    print(
        "CPU seconds per 1,000 messages, 202 to COMPLETED (median; gunicorn: the accept and the "
        "webhooks; postgres: the bench database's backends)"
    )
    names = ["workers", "gunicorn", "sandbox", "postgres"]
    rows = []
    for config, runs in results.items():
        if not runs.cpu:
            continue
        medians = [statistics.median(cpu.get(name, 0.0) for cpu in runs.cpu) for name in names]
        total = sum(medians)
        # Cores busy on average: CPU per message times messages per second.
        cores = total / 1000 * statistics.median(runs.engine)
        rows.append([config.label, *(sig3(m) for m in medians), sig3(total), sig3(cores)])
    if rows:
        print_table(["CxW", *names, "total", "cores busy"], rows)
    for runs in results.values():
        for problem in runs.problems:
            print(f"problem: {problem}")


# --- (b) pacing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PacingRun:
    max_window: int
    over: int  # requests that closed a 1-s window holding more than the rate
    sandbox_max: int
    mean: float
    sent: int
    shares: tuple[int, int]
    late_p99: float  # seconds, see `lateness`
    late_max: float


def windows_over(times: list[float], rate: int) -> int:
    """How many requests closed a window (t - 1 s, t] holding more than `rate`."""
    over, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        over += end - start + 1 > rate
    return over


def lateness(times: list[float], interval: float) -> list[float]:
    """How late each request reached the sandbox, at least, against the limiter's grid.

    While the drains keep the limiter busy, permit i conforms at base + i * interval, and the
    base only moves later (when nobody asked for a while). So request i is late by at least
    (t_i - i * interval) - min over j >= i of (t_j - j * interval), give or take the limiter's
    tolerance. A spread above the limiter's guard is what lets a window exceed the rate: permits
    granted in time whose requests arrive bunched.
    """
    offsets = [moment - index * interval for index, moment in enumerate(times)]
    late: list[float] = [0.0] * len(offsets)
    floor = math.inf
    for index in range(len(offsets) - 1, -1, -1):
        floor = min(floor, offsets[index])
        late[index] = offsets[index] - floor
    return late


def pacing_round(
    *,
    web: str,
    meta: str,
    demo: Demo,
    bodies: list[bytes],
    size: int,
    seconds: float,
    save_to: Path | None,
) -> PacingRun | None:
    sends_reset()
    sandbox_reset(meta)
    with requests.Session() as session:
        for body in bodies:
            accept(session, web, demo, body, size)
    # The clock starts at the first message the sandbox accepts.
    deadline = time.monotonic() + 60
    while sandbox_get(meta, "stats")["accepted"] == 0:
        if time.monotonic() > deadline:
            say("  nothing reached the sandbox in 60 s")
            sends_cancel_active()
            return None
        time.sleep(0.05)
    time.sleep(seconds + 0.5)
    records = received_times(meta, demo.phone_number_id)
    stats = sandbox_get(meta, "stats")
    sends_cancel_active()
    if save_to is not None:
        save_to.write_bytes(orjson.dumps({"received": records, "stats": stats}))
        say(f"  the sandbox's record: {save_to}")
    times = [moment for moment, _ in records]
    first = times[0]
    end = first + seconds
    steady = [t for t in times if first + PACING_WARMUP_SECONDS <= t < end]
    mean = len(steady) / (seconds - PACING_WARMUP_SECONDS)
    # Which send each request belonged to, by its recipient's range: both drains must work.
    digit = {str(base)[0]: index for index, base in enumerate(PACING_BASES)}
    shares = [0, 0]
    for moment, to in records:
        if moment < end:
            shares[digit[to.lstrip("+")[5]]] += 1
    from messaging.ratelimit import GUARD_SECONDS, TOLERANCE_SECONDS

    late = sorted(lateness(steady, (1 + GUARD_SECONDS + TOLERANCE_SECONDS) / PACING_RATE))
    run = PacingRun(
        max_window=max_in_one_second(times),
        over=windows_over(times, PACING_RATE),
        sandbox_max=int(stats["max_sends_in_one_second"].get(demo.phone_number_id, 0)),
        mean=mean,
        sent=sum(1 for t in times if t < end),
        shares=(shares[0], shares[1]),
        late_p99=late[int(len(late) * 0.99)] if late else 0.0,
        late_max=late[-1] if late else 0.0,
    )
    say(
        f"  max in 1 s {run.max_window} ({run.over} requests closed a window above "
        f"{PACING_RATE}; sandbox's own count {run.sandbox_max}), mean {run.mean:.2f}/s, "
        f"{run.sent} sent in {seconds:g} s (send A {shares[0]}, B {shares[1]}), late by "
        f"p99 {run.late_p99 * 1000:.1f} ms, max {run.late_max * 1000:.1f} ms"
    )
    return run


def pacing(
    args: argparse.Namespace, env: dict[str, str], demo: Demo, web: str, meta: str, logs: Path
) -> list[PacingRun]:
    number_configure(demo.phone_number_id, throughput=PACING_RATE)
    # Each send could carry the whole rate alone, with a margin: neither runs out during the run.
    size = int(PACING_RATE * (args.seconds + 10))
    bodies = [send_body(demo, size, base) for base in PACING_BASES]
    runs: list[PacingRun] = []
    say(f"(b) pacing at {PACING_RATE}/s: 2 workers x --concurrency 1, 2 sends of {size:,}")
    with celery_workers(env, logs, count=2, concurrency=1, pacing=True):
        for number in range(1, args.rounds + 1):
            if time.monotonic() > args.deadline:
                say("--max-seconds reached: fewer rounds")
                break
            run = pacing_round(
                web=web,
                meta=meta,
                demo=demo,
                bodies=bodies,
                size=size,
                seconds=args.seconds,
                save_to=args.save_records / f"pacing-{number}.json" if args.save_records else None,
            )
            if run is not None:
                runs.append(run)
            webhooks_settle(meta)
    return runs


def pacing_report(runs: list[PacingRun], seconds: float) -> None:
    if not runs:
        return
    floor = PACING_RATE * (1 - PACING_TOLERANCE)
    worst = max(run.max_window for run in runs)
    mean = statistics.median(run.mean for run in runs)
    print()
    print(
        f"(b) Pacing at {PACING_RATE}/s, 2 workers on one number for {seconds:g} s, "
        f"{len(runs)} run(s): the sandbox's record of accepted requests"
    )
    print_table(
        ["measure", "runs", "value", "per run", "target", "result"],
        [
            [
                "largest count in a sliding 1-s window (worst run)",
                str(len(runs)),
                str(worst),
                ", ".join(str(run.max_window) for run in runs),
                f"<= {PACING_RATE}",
                "PASS" if worst <= PACING_RATE else "MISS",
            ],
            [
                "same, the sandbox's own count (worst run)",
                str(len(runs)),
                str(max(run.sandbox_max for run in runs)),
                ", ".join(str(run.sandbox_max) for run in runs),
                f"<= {PACING_RATE}",
                "PASS" if max(run.sandbox_max for run in runs) <= PACING_RATE else "MISS",
            ],
            [
                f"mean rate after the first {PACING_WARMUP_SECONDS:g} s (median), messages/s",
                str(len(runs)),
                f"{mean:.2f}",
                ", ".join(f"{run.mean:.2f}" for run in runs),
                f">= {floor:.1f}",
                "PASS" if mean >= floor else "MISS",
            ],
        ],
    )
    from messaging.ratelimit import GUARD_SECONDS

    print(
        "Shares of the two sends (A/B) per run: "
        + ", ".join(f"{run.shares[0]}/{run.shares[1]}" for run in runs)
    )
    print(
        "Requests that closed a window above the rate, per run: "
        + ", ".join(str(run.over) for run in runs)
    )
    print(
        "Lateness against the limiter's grid (at least; p99 / max per run, ms): "
        + ", ".join(f"{run.late_p99 * 1000:.1f} / {run.late_max * 1000:.1f}" for run in runs)
        + f". The limiter's guard absorbs {GUARD_SECONDS * 1000:g} ms."
    )


# --- phases, in this process ---------------------------------------------------------------------


class PhaseClock:
    """Accumulates the wall time of wrapped functions by phase name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        return timed

    def wrap_async(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        return timed


def phases_round(*, web: str, meta: str, demo: Demo, body: bytes, size: int) -> dict[str, Any]:
    from django.conf import settings

    from bulksend import drain

    sends_reset()
    sandbox_reset(meta)
    with requests.Session() as session:
        bulk_send_id = accept(session, web, demo, body, size)
    clock = PhaseClock()
    patches = {
        "messages_claim": ("claim (UPDATE ... SKIP LOCKED)", False),
        "messages_settle": ("settle (statuses_apply)", False),
        "bulk_send_start": ("start the send", False),
        "bulk_send_finish_if_done": ("finish the send", False),
    }
    originals: dict[tuple[Any, str], Any] = {}
    try:
        for attribute, (name, _) in patches.items():
            originals[(drain, attribute)] = getattr(drain, attribute)
            setattr(drain, attribute, clock.wrap(name, getattr(drain, attribute)))
        gate, sender = drain._QuotaGate, drain._Sender
        originals[(gate, "admit")] = gate.admit
        gate.admit = clock.wrap("quota admission", gate.admit)  # type: ignore[method-assign]
        originals[(sender, "_request")] = sender._request
        sender._request = clock.wrap("build bodies", sender._request)  # type: ignore[method-assign]
        originals[(sender, "send")] = sender.send
        sender.send = clock.wrap_async("send (bodies + HTTP)", sender.send)  # type: ignore[method-assign]
        # The drain in this process, as a worker runs it: unpaced, to the sandbox.
        settings.DELIVERY_PACING = False
        settings.META_GRAPH_URL = meta
        started = time.perf_counter()
        report = drain.bulk_send_drain(uuid.UUID(bulk_send_id), budget_seconds=300)
        total = time.perf_counter() - started
    finally:
        for (owner, attribute), original in originals.items():
            setattr(owner, attribute, original)
    clock.seconds["send (bodies + HTTP)"] -= clock.seconds.get("build bodies", 0.0)
    clock.seconds["HTTP (send_many)"] = clock.seconds.pop("send (bodies + HTTP)")
    clock.calls["HTTP (send_many)"] = clock.calls.pop("send (bodies + HTTP)")
    clock.seconds["other (transactions, results, loop)"] = total - sum(clock.seconds.values())
    finished = wait_finished(bulk_send_id, 30)
    webhooks_settle(meta)
    return {
        "total": total,
        "batches": report.batches,
        "outcomes": report.outcomes,
        "status": finished.status if finished else "not finished",
        "seconds": dict(clock.seconds),
    }


def phases(args: argparse.Namespace, demo: Demo, web: str, meta: str) -> list[dict[str, Any]]:
    number_configure(demo.phone_number_id, throughput=UNLIMITED_THROUGHPUT)
    body = send_body(demo, args.recipients, ENGINE_BASE)
    say(f"phases: {args.recipients:,} drained in this process, unpaced")
    rounds = []
    for _ in range(args.rounds):
        if time.monotonic() > args.deadline:
            break
        result = phases_round(web=web, meta=meta, demo=demo, body=body, size=args.recipients)
        say(
            f"  {args.recipients / result['total']:,.0f} messages/s in-process ({result['status']})"
        )
        rounds.append(result)
    return rounds


def phases_report(rounds: list[dict[str, Any]], size: int) -> None:
    if not rounds:
        return
    totals = [r["total"] for r in rounds]
    batches = rounds[0]["batches"] or 1
    total = statistics.median(totals)
    print()
    print(
        f"Phases of an in-process drain of {size:,} ({batches} batches), median of "
        f"{len(rounds)} run(s): {size / total:,.0f} messages/s, {total:.2f} s"
    )
    rows = []
    for name in rounds[0]["seconds"]:
        seconds = statistics.median(r["seconds"].get(name, 0.0) for r in rounds)
        rows.append(
            [
                name,
                sig3(seconds),
                sig3(seconds / batches * 1000),
                sig3(seconds / size * 1e6),
                f"{seconds / total:.0%}",
            ]
        )
    print_table(["phase", "seconds", "ms per batch", "us per message", "share"], rows)


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("throughput", "pacing", "phases"))
    parser.add_argument("--quick", action="store_true", help="one round each, pacing for 15 s")
    parser.add_argument("--rounds", type=int, default=None, help="runs per measurement (3)")
    parser.add_argument("--seconds", type=float, default=None, help="pacing run length (60)")
    parser.add_argument("--recipients", type=int, default=10_000, help="throughput send size")
    parser.add_argument(
        "--configs", default="1x1,2x1,2x2", help="throughput worker configurations, CxW by commas"
    )
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument(
        "--no-webhooks", action="store_true", help="the sandbox posts no status webhooks"
    )
    parser.add_argument(
        "--save-records",
        type=Path,
        help="a directory for each pacing run's record of (received_at, to), as JSON",
    )
    parser.add_argument("--round-timeout", type=float, default=180, help="seconds per round")
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop starting rounds")
    add_service_arguments(parser, database="mindo_bench_drain", redis_url=DEFAULT_REDIS_URL)
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (15.0 if args.quick else 60.0)
    if args.seconds <= PACING_WARMUP_SECONDS + 1:
        parser.error(f"--seconds must be above {PACING_WARMUP_SECONDS + 1:g}")
    args.configs = [Config.parse(text) for text in args.configs.split(",") if text.strip()]
    args.deadline = time.monotonic() + args.max_seconds
    if args.save_records:
        args.save_records.mkdir(parents=True, exist_ok=True)
    return args


def main() -> None:
    # A plain SIGTERM would end Python without its `finally` blocks, and leave the servers (in
    # their own sessions) running: turn it into an exit that unwinds.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args = parse_args()
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
    which = [args.only] if args.only else ["throughput", "pacing", "phases"]
    results: dict[Config, ThroughputRuns] = {}
    pacing_runs: list[PacingRun] = []
    phase_rounds: list[dict[str, Any]] = []
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
                    if "throughput" in which:
                        results = throughput(args, env, demo, web, meta, logs)
                    if "pacing" in which:
                        pacing_runs = pacing(args, env, demo, web, meta, logs)
                    if "phases" in which:
                        phase_rounds = phases(args, demo, web, meta)
    finally:
        with contextlib.suppress(Exception):
            sends_cancel_active()
        redis_flush(args.redis_url)
        say(f"flushed {args.redis_url}")
    if results:
        throughput_report(results, args.recipients)
    if pacing_runs:
        pacing_report(pacing_runs, args.seconds)
    if phase_rounds:
        phases_report(phase_rounds, args.recipients)


if __name__ == "__main__":
    main()
