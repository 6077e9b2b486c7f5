"""What bench/capacity.py measures with: CPU seconds by role sampled from /proc while a phase
runs, the WAL written (the server's and, through pg_waldump, the bench database's own), a Redis
and gunicorn of the bench's own, the baseline WSGI app (gunicorn imports it as
bench.capacity_support:baseline_app) and its phase, and the signed webhook bodies it posts."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import shutil
import subprocess
import sys
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

from bench.drain_processes import RUNNING, process_group, wait_until
from bench.drain_support import say
from bench.support import PRODUCTION_ENV, Demo, baseline_connection, free_port, sig3

SAMPLE_SECONDS = 0.2
# Each role's PostgreSQL connections carry its name, so its backends are told apart.
ROLES = {"web": "capacity-web", "worker": "capacity-worker", "baseline": "capacity-baseline"}
# The bench's process groups (drain_processes.RUNNING) by role; the sandbox is Meta's, not counted.
GROUP_ROLES = {"gunicorn": "web", "baseline": "baseline", "worker": "worker", "redis": "redis"}


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


def baseline_table_create() -> None:
    """The table the baseline app writes to, in the bench database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_capacity_baseline "
            "(id bigserial PRIMARY KEY, body text)"
        )


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


# --- the phases' common parts --------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    env: dict[str, str]
    demo: Demo
    logs: Path
    phases: list[Phase] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def phase_named(self, name: str) -> Phase:
        return next(phase for phase in self.phases if phase.name == name)


def baseline_phase(run: Run, label: str) -> None:
    env = {**run.env, "DATABASE_URL": role_url(run.args.database_url, "baseline")}
    count = run.args.baseline_requests
    bodies = [f'{{"n": {n}}}'.encode() for n in range(count)]
    headers = {"Content-Type": "application/json"}
    with web_server(
        "baseline", "bench.capacity_support:baseline_app", env, run.args.web_workers, run.logs, "/"
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


def bytes_per_row(table: str) -> float:
    """A table's heap, TOAST and indexes over its rows."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
        count, size = cursor.fetchone()
    return float(size) / max(int(count), 1)
