"""The per-message costs a capacity model needs, measured in one run: CPU seconds of each role
(web, workers, the PostgreSQL backends serving each, Redis) per message accepted, per message
sent, per status webhook applied and per single send; bytes per message on disk; WAL bytes.

    .venv/bin/python bench/capacity.py [--messages 20000] [--singles 500] [--peak-factor 4]

Everything runs as production does, as separate processes on 127.0.0.1, on the bench's own
database (`mindo_bench_capacity`; a name without "bench" is refused): gunicorn (`mindo.wsgi` with
`mindo.gunicorn_conf`, as `./dev up` runs it), one Celery worker (`--concurrency`, unpaced), the
Meta sandbox posting no webhooks (the bench posts the statuses itself, so that sending and
applying are measured apart), and a Redis of the bench's own (a `redis-server` on a free port, no
persistence: its CPU is the bench's alone). No beat: nothing wakes a send but the bench.

CPU time (user + system, /proc/<pid>/stat) is read every 0.2 s while a phase runs, so a process
that starts or ends within it counts (an ending one at most 0.2 s short): gunicorn's master and
workers, the Celery worker and its pool, Redis, and this database's PostgreSQL backends,
attributed by their `application_name` (each role connects with its own, set in its
DATABASE_URL) to the role they serve; autovacuum and other backends of this database count as
"postgres other". The server's shared processes (WAL writer, checkpointer, background writer)
serve every database and are not counted. CPU time is far less sensitive to a busy machine than
wall time, though not immune (caches, frequency): the run prints the load average and, before
and after the phases, the CPU per request of a bare WSGI app in gunicorn doing one INSERT through
psycopg, and every cost divided by it.

Phases, in order, each on the same gunicorn and Redis:
1. baseline: `--baseline-requests` sequential POSTs to the bare app.
2. accept: one `POST send-bulk/` of `--messages` recipients (no worker runs yet).
3. send: a worker drains it to the sandbox unpaced (the number at 1,000/s, its portfolio
   unlimited), from the bench's wake-up to COMPLETED with every message sent.
4. webhooks: one `delivered` status per message, signed as Meta signs, one status per POST from
   `--clients` client processes, until every stored body is applied.
5. single sends: `--singles` sequential `POST send/` (the sandbox answers at once).
6. the baseline again.
WAL bytes per unit are pg_current_wal_lsn() after minus before: the server's, all databases.
The run measures what the server wrote while nothing of the bench ran and prints that rate times
each phase's length beside it. Where the bench may read the server's WAL files (a local server,
run as root or as its owner), pg_waldump also gives the bench database's own share: the records
naming its relations, full-page images included, and their transactions' commits. The model
uses that share when there is one.

Then bytes per message on disk (the messages table and its indexes, as bench/reads.py prints)
and the model: for a few workloads, the cores of each role at peak and the disk per day. The
assumptions are options and are printed with it.

Smoke run: `--messages 2000 --singles 100 --baseline-requests 300`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.drain_processes import (  # noqa: E402
    RUNNING,
    celery_workers,
    process_group,
    sandbox,
    wait_until,
)
from bench.drain_support import (  # noqa: E402
    ENGINE_BASE,
    UNLIMITED_THROUGHPUT,
    accept,
    number_configure,
    send_body,
    wait_finished,
    wake_up,
)
from bench.reads_support import disk_bytes_per_message  # noqa: E402
from bench.single_send import send_body as single_send_body  # noqa: E402
from bench.support import (  # noqa: E402
    PRODUCTION_ENV,
    Demo,
    add_service_arguments,
    baseline_connection,
    bench_database_from_args,
    database_drop,
    django_setup,
    free_port,
    print_table,
    provision,
    sig3,
)
from bench.webhooks_support import Server, all_applied, fire  # noqa: E402

ORG = "Capacity Bench"
SEND = "/api/v1/meta-templates/send/"
WEBHOOK_PATH = "/webhooks/meta/"
READY_PATH = "/api/v1/meta-templates/bulk-sends/?page_size=1"
SAMPLE_SECONDS = 0.2
WARM_SENDS, WARM_SIZE = 3, 200  # off the clock: every gunicorn worker and the pool warmed up
# Phones of the warm-up sends: never the engine's (ENGINE_BASE) nor single_send's (+5491170...).
WARM_BASE = 90_000_000
# Each role's PostgreSQL connections carry its name, so its backends are told apart.
ROLES = {"web": "capacity-web", "worker": "capacity-worker", "baseline": "capacity-baseline"}
# The bench's process groups (drain_processes.RUNNING) by role; the sandbox is Meta's, not counted.
GROUP_ROLES = {"gunicorn": "web", "baseline": "baseline", "worker": "worker", "redis": "redis"}
PER_NUMBER_RATES = (80, 1_000)  # Meta's throughput levels, messages/s per number
SECONDS_PER_DAY = 86_400


def say(message: str) -> None:
    print(message, flush=True)


# --- CPU accounting ------------------------------------------------------------------------------


def role_url(database_url: str, role: str) -> str:
    return f"{database_url}{'&' if '?' in database_url else '?'}application_name={ROLES[role]}"


def process_cpu(pid: int) -> tuple[int, float] | None:
    """(process group, CPU seconds used so far) of a process; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces or parentheses: the fields start after the last ")".
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """CPU seconds by role while a phase runs: every process of the bench's groups (RUNNING, by
    group name) and every backend of the bench database, sampled every SAMPLE_SECONDS from a
    thread of its own, each process from its first sample (0 when it started meanwhile) to its
    last."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url.replace("postgres://", "postgresql://", 1)
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def roles_by_pid(self, connection: psycopg.Connection[Any]) -> dict[int, str]:
        by_application = {name: role for role, name in ROLES.items()}
        rows = connection.execute(
            "SELECT pid, application_name, backend_type FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        roles = {}
        for pid, application, backend_type in rows:
            if application in by_application:
                roles[pid] = f"postgres {by_application[application]}"
            elif backend_type != "client backend":
                roles[pid] = "postgres other"  # autovacuum of this database's tables
            # A client backend without a role's name is this bench's own: not counted.
        return roles

    def sample(self, connection: psycopg.Connection[Any], *, initial: bool) -> None:
        roles = self.roles_by_pid(connection)
        groups = {
            pgid: GROUP_ROLES.get(name.split("-")[0].rstrip("0123456789"))
            for name, pgid in RUNNING.items()
        }
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            found = process_cpu(pid)
            if found is None:
                continue
            group, seconds = found
            role = roles.get(pid) or groups.get(group)
            if role is None:
                continue
            if pid not in self.first:
                self.first[pid] = seconds if initial else 0.0
            self.last[pid] = (role, seconds)

    def run(self, connection: psycopg.Connection[Any]) -> None:
        while not self.stopping.wait(SAMPLE_SECONDS):
            self.sample(connection, initial=False)

    def __enter__(self) -> CpuSampler:
        connection = psycopg.connect(self.database_url, autocommit=True)
        self.sample(connection, initial=True)
        self.thread = threading.Thread(target=self._loop, args=(connection,), daemon=True)
        self.thread.start()
        return self

    def _loop(self, connection: psycopg.Connection[Any]) -> None:
        with connection:
            self.run(connection)
            self.sample(connection, initial=False)

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def by_role(self) -> dict[str, float]:
        spent: dict[str, float] = {}
        for pid, (role, seconds) in self.last.items():
            spent[role] = spent.get(role, 0.0) + seconds - self.first[pid]
        return spent


def wal_lsn(connection: psycopg.Connection[Any]) -> tuple[int, str]:
    """The server's current WAL position, in bytes and as PostgreSQL spells it."""
    row = connection.execute(
        "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, pg_current_wal_lsn()::text"
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


WALDUMP_RECORD = re.compile(r"len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+)")
WALDUMP_DATABASE = re.compile(r"rel \d+/(\d+)/|\bdb (\d+)\b|base/(\d+)/")


def waldump_of(connection: psycopg.Connection[Any]) -> list[str] | None:
    """The pg_waldump command reading this server's WAL, when the bench runs beside the server
    and may read its files (a local server, as root or its owner); else None."""
    row = connection.execute(
        "SELECT current_setting('data_directory'), current_setting('server_version_num')"
    ).fetchone()
    assert row is not None
    wal_dir = Path(str(row[0]), "pg_wal")
    major = int(row[1]) // 10_000
    waldump = shutil.which("pg_waldump") or f"/usr/lib/postgresql/{major}/bin/pg_waldump"
    if not (os.access(wal_dir, os.R_OK | os.X_OK) and os.access(waldump, os.X_OK)):
        return None
    return [waldump, "--path", str(wal_dir)]


def database_wal_bytes(waldump: list[str], start: str, end: str, database_oid: int) -> int | None:
    """The WAL between two positions written for one database: the records naming one of its
    relations (their full-page images included), and the records of the same transactions that
    name none (commits). None when pg_waldump could not read the range."""
    result = subprocess.run(
        [*waldump, "--start", start, "--end", end],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if not result.stdout:
        return None
    ours, undecided, transactions = 0, [], set()
    for line in result.stdout.splitlines():
        record = WALDUMP_RECORD.search(line)
        if record is None:
            continue
        size, transaction = int(record[1]), int(record[2])
        database = WALDUMP_DATABASE.search(line)
        if database is None:
            undecided.append((transaction, size))
        elif int(next(group for group in database.groups() if group)) == database_oid:
            ours += size
            transactions.add(transaction)
    return ours + sum(size for transaction, size in undecided if transaction in transactions - {0})


@dataclass
class Phase:
    """One measured phase: `units` things done, the CPU seconds by role, the WAL written."""

    name: str
    units: int
    seconds: float
    cpu: dict[str, float]
    wal_bytes: int  # the server's, whoever wrote it
    database_wal_bytes: int | None  # the bench database's (pg_waldump), when it could be read

    def ms_per_unit(self, role: str) -> float:
        return self.cpu.get(role, 0.0) * 1000 / self.units

    @property
    def ms_total(self) -> float:
        return sum(self.cpu.values()) * 1000 / self.units


@contextlib.contextmanager
def measured(name: str, units: int, database_url: str, phases: list[Phase]) -> Iterator[None]:
    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as connection:
        connection.autocommit = True
        before = wal_lsn(connection)
        started = time.monotonic()
        with CpuSampler(database_url) as sampler:
            yield
        seconds = time.monotonic() - started
        after = wal_lsn(connection)
        waldump = waldump_of(connection)
        row = connection.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
    own = None if waldump is None else database_wal_bytes(waldump, before[1], after[1], row[0])
    phases.append(Phase(name, units, seconds, sampler.by_role(), after[0] - before[0], own))
    say(f"  {name}: {units:,} in {seconds:.2f} s, CPU {sig3(phases[-1].ms_total)} ms each")


def idle_wal_per_second(database_url: str, seconds: float = 3.0) -> float:
    """WAL the server writes while nothing of the bench runs: other databases' work."""
    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as connection:
        connection.autocommit = True
        before = wal_lsn(connection)[0]
        time.sleep(seconds)
        return (wal_lsn(connection)[0] - before) / seconds


# --- processes -----------------------------------------------------------------------------------


@contextlib.contextmanager
def private_redis(logs: Path) -> Iterator[str]:
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server is not installed: the bench runs a Redis of its own")
    port = free_port()
    args = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    args += ["no", "--daemonize", "no"]
    with process_group("redis", args, dict(os.environ), logs) as (process, log):
        import redis

        client = redis.Redis(port=port, socket_timeout=5)
        wait_until(lambda: bool(client.ping()), 30, "redis", process, log)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def web_server(
    name: str, app: str, env: dict[str, str], workers: int, logs: Path, ready_path: str
) -> Iterator[str]:
    """gunicorn serving `app` with the production hooks (mindo.gunicorn_conf), once it answers."""
    port = free_port()
    args = [
        *(sys.executable, "-m", "gunicorn", app, "-c", "python:mindo.gunicorn_conf"),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync"),
        *("--timeout", "180", "--graceful-timeout", "5"),
    ]
    base = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": env.get("BENCH_API_KEY", "")}
    with process_group(name, args, env, logs) as (process, log):
        wait_until(
            lambda: requests.get(base + ready_path, headers=headers, timeout=5).ok,
            120,
            name,
            process,
            log,
        )
        yield base


def baseline_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """One request's least work with a write: read the body, one INSERT in autocommit, 200."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    if environ["REQUEST_METHOD"] == "POST":
        baseline_connection().execute(
            "INSERT INTO bench_capacity_baseline (body) VALUES (%s)", [body.decode()]
        )
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def post_sequentially(
    base: str, path: str, bodies: Iterable[bytes], headers: dict[str, str]
) -> int:
    """POST each body on one kept-alive connection; how many were answered 2xx."""
    address = urlsplit(base)
    connection = http.client.HTTPConnection(str(address.hostname), address.port, timeout=60)
    ok = 0
    try:
        for body in bodies:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            ok += 200 <= response.status < 300
    finally:
        connection.close()
    return ok


# --- the phases ----------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    env: dict[str, str]
    demo: Demo
    logs: Path
    phases: list[Phase] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def baseline_phase(run: Run, label: str) -> None:
    env = {**run.env, "DATABASE_URL": role_url(run.args.database_url, "baseline")}
    count = run.args.baseline_requests
    bodies = [f'{{"n": {n}}}'.encode() for n in range(count)]
    headers = {"Content-Type": "application/json"}
    with web_server(
        "baseline", "bench.capacity:baseline_app", env, run.args.web_workers, run.logs, "/"
    ) as base:
        post_sequentially(base, "/", bodies[: min(count, 100)], headers)  # warm, off the clock
        with measured(label, count, run.args.database_url, run.phases):
            ok = post_sequentially(base, "/", bodies, headers)
    if ok != count:
        run.problems.append(f"{label}: {ok} of {count} answered 200")


def delivered_bodies(run: Run, bulk_send_ids: list[str]) -> list[tuple[bytes, str]]:
    """A signed `delivered` status for each sent message of these sends."""
    from messaging.models import Message
    from templates_app.models import PhoneNumber
    from tests import meta_payloads as meta

    number = PhoneNumber.objects.select_related("business_account").get(
        phone_number_id=run.demo.phone_number_id
    )
    messages = Message.objects.filter(
        status="sent", wamid__isnull=False, bulk_send_id__in=[uuid.UUID(i) for i in bulk_send_ids]
    )
    bodies = []
    for wamid, phone in messages.values_list("wamid", "recipient_phone").iterator():
        status = meta.status(str(wamid), "delivered", meta.T0 + 60, recipient_id=str(phone)[1:])
        body = meta.encode(
            meta.statuses_notification(
                status,
                waba_id=number.business_account.waba_id,
                phone_number_id=run.demo.phone_number_id,
            )
        )
        bodies.append((body, meta.signature(body, PRODUCTION_ENV["META_APP_SECRET"])))
    return bodies


def service_phases(run: Run, web: str) -> None:
    from bulksend.models import BulkSend
    from messaging.models import Message

    args, demo = run.args, run.demo
    api = {"X-API-Key": demo.api_key, "Content-Type": "application/json"}
    number_configure(demo.phone_number_id, throughput=UNLIMITED_THROUGHPUT)
    body = send_body(demo, args.messages, ENGINE_BASE)
    # Off the clock: a few small sends, so every gunicorn worker has answered one.
    with requests.Session() as session:
        warm_ids = [
            accept(
                session, web, demo, send_body(demo, WARM_SIZE, WARM_BASE + n * WARM_SIZE), WARM_SIZE
            )
            for n in range(WARM_SENDS)
        ]
        with measured("accept", args.messages, args.database_url, run.phases):
            bulk_send_id = accept(session, web, demo, body, args.messages)
    # The wake-ups wait in the broker for a worker; dropped, so that the worker's start is not
    # in the send's figure: the bench wakes the sends itself once the worker is ready.
    import redis

    redis.Redis.from_url(run.env["REDIS_URL"]).flushdb()
    worker_env = {**run.env, "DATABASE_URL": role_url(args.database_url, "worker")}
    with celery_workers(worker_env, run.logs, count=1, concurrency=args.concurrency, pacing=False):
        for warm_id in warm_ids:
            wake_up(warm_id)
        for warm_id in warm_ids:
            wait_finished(warm_id, 120)
        with measured("send", args.messages, args.database_url, run.phases):
            wake_up(bulk_send_id)
            finished = wait_finished(bulk_send_id, args.round_timeout)
        if finished is None or finished.status != "COMPLETED" or finished.sent != args.messages:
            run.problems.append(f"send: not COMPLETED with every message sent: {finished}")

        address = urlsplit(web)
        server = Server(str(address.hostname), int(address.port or 80), 0)
        fire(server, delivered_bodies(run, warm_ids), args.clients)
        all_applied(timeout=120)
        bodies = delivered_bodies(run, [bulk_send_id])
        with measured("webhook", len(bodies), args.database_url, run.phases):
            fire(server, bodies, args.clients)
            all_applied(timeout=args.round_timeout)
        delivered = Message.objects.filter(
            bulk_send_id=uuid.UUID(bulk_send_id), status="delivered"
        ).count()
        if delivered != len(bodies) or len(bodies) != args.messages:
            run.problems.append(f"webhooks: {delivered} delivered of {len(bodies)} posted")

        singles = [single_send_body(demo, n) for n in range(args.singles + 20)]
        post_sequentially(web, SEND, singles[:20], api)  # warm, off the clock
        with measured("single send", args.singles, args.database_url, run.phases):
            ok = post_sequentially(web, SEND, singles[20:], api)
        if ok != args.singles:
            run.problems.append(f"single sends: {ok} of {args.singles} answered 2xx")
    counters = BulkSend.objects.filter(pk=bulk_send_id).values("sent_count", "delivered_count")
    say(f"  the send's counters: {counters.get()}")


# --- the report ----------------------------------------------------------------------------------

COLUMNS = [
    ("web", "web"),
    ("postgres web", "pg (web)"),
    ("worker", "workers"),
    ("postgres worker", "pg (workers)"),
    ("postgres other", "pg (autovacuum)"),
    ("redis", "redis"),
]


def costs_report(run: Run, baseline_ms: float, idle_wal: float) -> None:
    say("")
    say("CPU ms per unit by role, total / the baseline's, WAL bytes per unit")
    rows = []
    for phase in run.phases:
        roles = {role: phase.ms_per_unit(role) for role, _ in COLUMNS}
        roles["web"] += phase.ms_per_unit("baseline")
        roles["postgres web"] += phase.ms_per_unit("postgres baseline")
        rows.append(
            [
                phase.name,
                f"{phase.units:,}",
                sig3(phase.seconds),
                *(sig3(roles[role]) for role, _ in COLUMNS),
                sig3(phase.ms_total),
                f"{phase.ms_total / baseline_ms:.2f}",
                f"{phase.wal_bytes / phase.units:,.0f}",
                f"{idle_wal * phase.seconds / phase.units:,.0f}",
                "-"
                if phase.database_wal_bytes is None
                else f"{phase.database_wal_bytes / phase.units:,.0f}",
            ]
        )
    headers = ["unit", "count", "seconds", *(label for _, label in COLUMNS), "total ms"]
    print_table([*headers, "/ baseline", "WAL B", "others' (est.)", "this database's"], rows)
    say(
        "baseline: a bare WSGI app in gunicorn, one INSERT through psycopg per POST (its "
        "gunicorn under 'web', its backend under 'pg (web)'); '/ baseline' divides by the mean "
        "of its two runs. WAL B: the server's WAL over the phase per unit, whoever wrote it; "
        "others' (est.): the server's idle WAL rate times the phase's length, per unit; this "
        "database's: pg_waldump's records of the bench database's relations and their "
        "transactions ('-': the server's WAL files could not be read from here)"
    )


def bytes_per_row(table: str) -> float:
    """A table's heap, TOAST and indexes over its rows."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
        count, size = cursor.fetchone()
    return float(size) / max(int(count), 1)


def disk_report() -> tuple[float, float]:
    """Bytes per message (the messages table and its indexes) and per kept webhook body."""
    from webhooks.models import WebhookEvent

    say("")
    say("Bytes per message on disk (every message of the run, in its final state, not vacuumed)")
    disk = disk_bytes_per_message()
    print_table(["relation", "bytes/message"], [[name, f"{size:,.0f}"] for name, size in disk])
    per_body = bytes_per_row(WebhookEvent._meta.db_table)
    say(f"a kept webhook body of one status, with its indexes: {per_body:,.0f} B")
    return disk[-1][1], per_body


def phase_named(run: Run, name: str) -> Phase:
    return next(phase for phase in run.phases if phase.name == name)


def model_report(run: Run, disk_per_message: float, per_body: float) -> None:
    """Cores at peak, disk per day and the per-number rate for a few workloads, from the
    measured costs and the assumptions given as options."""
    from django.conf import settings

    args = run.args
    accept_, send, webhook = (phase_named(run, n) for n in ("accept", "send", "webhook"))
    statuses = args.webhooks_per_message

    def ms(role: str) -> float:
        per_status = webhook.ms_per_unit(role)
        return accept_.ms_per_unit(role) + send.ms_per_unit(role) + statuses * per_status

    per_message = {
        "web": ms("web"),
        "workers": ms("worker"),
        "postgres": sum(ms(role) for role in ("postgres web", "postgres worker", "postgres other")),
        "redis": ms("redis"),
    }

    def wal_of(phase: Phase) -> float:
        own = phase.database_wal_bytes
        return (phase.wal_bytes if own is None else own) / phase.units

    wal = wal_of(accept_) + wal_of(send) + statuses * wal_of(webhook)
    bodies_kept = statuses * per_body * settings.WEBHOOK_EVENT_RETENTION_DAYS
    say("")
    say(
        f"The model. Assumed: per message one accept (send-bulk), one send and {statuses} status "
        f"webhooks; the peak rate {args.peak_factor} x the day's mean; messages kept "
        f"{args.retention_days} days, webhook bodies {settings.WEBHOOK_EVENT_RETENTION_DAYS} days "
        "(WEBHOOK_EVENT_RETENTION_DAYS). Measured, CPU ms per message: "
        + ", ".join(f"{role} {sig3(value)}" for role, value in per_message.items())
        + f"; disk {disk_per_message:,.0f} B per message, {per_body:,.0f} B per kept body; "
        f"WAL {wal:,.0f} B per message"
    )
    rows = []
    for millions, numbers in args.workloads:
        per_day = millions * 1_000_000
        peak = per_day / SECONDS_PER_DAY * args.peak_factor
        hours = [per_day / numbers / rate / 3600 for rate in PER_NUMBER_RATES]
        kept = per_day * (disk_per_message * args.retention_days + bodies_kept)
        rows.append(
            [
                f"{sig3(millions)}M/day on {numbers} numbers",
                sig3(peak),
                *(sig3(peak * value / 1000) for value in per_message.values()),
                f"{sig3(per_day * disk_per_message / 1e9)} GB",
                f"{sig3(per_day * wal / 1e9)} GB",
                f"{sig3(kept / 1e12)} TB",
                sig3(peak / numbers),
                f"{sig3(hours[0])} h / {sig3(hours[1])} h",
            ]
        )
    headers = ["workload", "peak msg/s", *(f"{role} cores" for role in per_message)]
    headers += [
        "messages/day",
        "WAL/day",
        "kept",
        "peak/number msg/s",
        "a number's day at 80, 1,000/s",
    ]
    print_table(headers, rows)
    say(
        "cores: CPU per message x the peak rate, busy cores only (no headroom; PostgreSQL's "
        "shared WAL writer, checkpointer and background writer not counted). messages/day: the "
        "messages table and its indexes. kept: messages for the retention plus webhook bodies "
        "for theirs. a number's day: hours its share of the day takes at Meta's rate"
    )


# --- the command line ----------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="the bulk send's size")
    parser.add_argument("--singles", type=int, default=500, help="sequential single sends")
    parser.add_argument("--baseline-requests", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=4, help="webhook client processes")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--concurrency", type=int, default=1, help="the Celery worker's")
    parser.add_argument("--round-timeout", type=float, default=600, help="seconds per phase")
    parser.add_argument("--peak-factor", type=float, default=4.0, help="model: peak / mean")
    parser.add_argument(
        "--webhooks-per-message", type=float, default=2.5, help="model: statuses per message"
    )
    parser.add_argument("--retention-days", type=int, default=90, help="model: days kept")
    parser.add_argument(
        "--workloads",
        default="1:5,10:50,50:20,50:200",
        help="model: millions of messages a day and numbers, M:N by commas",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database")
    add_service_arguments(
        parser, database="mindo_bench_capacity", database_variable="BENCH_CAPACITY_DATABASE_URL"
    )
    args = parser.parse_args()
    args.workloads = [
        (float(millions), int(numbers))
        for millions, _, numbers in (text.partition(":") for text in args.workloads.split(","))
    ]
    return args


def main() -> None:
    args = parse_args()
    database = bench_database_from_args(args)
    say(f"database {database}, {os.cpu_count()} CPUs, load average {os.getloadavg()} at the start")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-capacity-") as log_dir:
            logs = Path(log_dir)
            with private_redis(logs) as redis_url:
                run_all(args, logs, redis_url)
    finally:
        if args.keep:
            say(f"kept database {database}")
        else:
            database_drop(args.database_url)


def run_all(args: argparse.Namespace, logs: Path, redis_url: str) -> None:
    env = {
        **os.environ,
        **PRODUCTION_ENV,
        "DJANGO_SETTINGS_MODULE": "mindo.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
    }
    demo = provision(env, ORG)
    django_setup(env)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_capacity_baseline "
            "(id bigserial PRIMARY KEY, body text)"
        )
    idle_wal = idle_wal_per_second(args.database_url)
    say(f"WAL written by the server while the bench was idle: {idle_wal:,.0f} B/s")
    run = Run(args, env, demo, logs)
    baseline_phase(run, "baseline")
    # The sandbox posts no webhooks (the bench posts them), so it starts first: the web server
    # calls it for single sends.
    with sandbox(env, "", logs, demo.phone_number_id) as meta:
        run.env = {**env, "META_GRAPH_URL": meta}
        web_env = {
            **run.env,
            "DATABASE_URL": role_url(args.database_url, "web"),
            "BENCH_API_KEY": demo.api_key,
            # A single send is its own throttle class (60 a minute by default): not measured here.
            "API_THROTTLE_SINGLE_RATE": "1000000/min",
            "API_THROTTLE_SEND_RATE": "1000000/min",
            "API_THROTTLE_READ_RATE": "1000000/min",
        }
        with web_server(
            "gunicorn", "mindo.wsgi", web_env, args.web_workers, logs, READY_PATH
        ) as web:
            service_phases(run, web)
    baseline_phase(run, "baseline again")
    baselines = [p.ms_total for p in run.phases if p.name.startswith("baseline")]
    baseline_ms = sum(baselines) / len(baselines)
    costs_report(run, baseline_ms, idle_wal)
    model_report(run, *disk_report())
    say("")
    say(f"load average {os.getloadavg()} at the end; idle WAL of the server {idle_wal:,.0f} B/s")
    for problem in run.problems:
        say(f"problem: {problem}")
    if math.isnan(baseline_ms):
        say("problem: no baseline")


if __name__ == "__main__":
    main()
