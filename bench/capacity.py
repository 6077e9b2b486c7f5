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
import math
import os
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.capacity_support import (  # noqa: E402
    Phase,
    Run,
    baseline_phase,
    baseline_table_create,
    bytes_per_row,
    delivered_bodies,
    idle_wal_per_second,
    measured,
    post_sequentially,
    private_redis,
    role_url,
    web_server,
)
from bench.drain_processes import READY_PATH, celery_workers, sandbox  # noqa: E402
from bench.drain_support import (  # noqa: E402
    ENGINE_BASE,
    UNLIMITED_THROUGHPUT,
    accept,
    number_configure,
    say,
    send_body,
    wait_finished,
    wake_up,
)
from bench.reads_support import disk_bytes_per_message  # noqa: E402
from bench.single_send import send_body as single_send_body  # noqa: E402
from bench.support import (  # noqa: E402
    add_service_arguments,
    bench_database_from_args,
    bench_env,
    database_drop,
    django_setup,
    print_table,
    provision,
    sig3,
)
from bench.webhooks_support import Server, all_applied, fire  # noqa: E402

ORG = "Capacity Bench"
SEND = "/api/v1/meta-templates/send/"
WARM_SENDS, WARM_SIZE = 3, 200  # off the clock: every gunicorn worker and the pool warmed up
# Phones of the warm-up sends: never the engine's (ENGINE_BASE) nor single_send's (+5491170...).
WARM_BASE = 90_000_000
PER_NUMBER_RATES = (80, 1_000)  # Meta's throughput levels, messages/s per number
SECONDS_PER_DAY = 86_400


# --- the phases ----------------------------------------------------------------------------------


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


def model_report(run: Run, disk_per_message: float, per_body: float) -> None:
    """Cores at peak, disk per day and the per-number rate for a few workloads, from the
    measured costs and the assumptions given as options."""
    from django.conf import settings

    args = run.args
    accept_, send, webhook = (run.phase_named(n) for n in ("accept", "send", "webhook"))
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
        **bench_env(args.database_url, redis_url),
        "DJANGO_SETTINGS_MODULE": "mindo.settings",
        "PYTHONWARNINGS": "ignore",
    }
    demo = provision(env, ORG)
    django_setup(env)
    baseline_table_create()
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
