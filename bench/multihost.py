"""A bulk send drained from two worker hosts, and one of them cut off mid-send: the driver of
bench/multihost.sh, which builds the hosts (network namespaces on a bridge) and runs this in the
root namespace.

    sudo bench/multihost.sh [--recipients 100000] [--rate 1000] [--scenario a|b|both]
        [--lease-seconds 20] [--grace-seconds 15] [--reaper-seconds 2] [--cut-at 0.3]
        [--keep-database]

The hosts: `web` runs gunicorn (mindo.wsgi) and beat's part (the reaper, `bulksend.tasks.reap`,
every --reaper-seconds, as a loop of this script: nothing periodic the bench did not start); `w1`
and `w2` a Celery worker each (prefork, one child, DELIVERY_PACING on). In the root namespace,
on the bridge address: PgBouncer (session mode) in front of the machine's PostgreSQL, a
redis-server of the bench's own (broker, limiter, drain marks), and the Meta sandbox, unlimited
so that it records whatever comes, posting its status webhooks to the web host.

Scenario A: one send of --recipients to one number whose rate is --rate (throughput_per_second),
accepted through the web host, drained by both worker hosts at once (the service's wake-up and a
second one, as drain_unpaced.py does). From the sandbox's record of arrivals: the most in any
sliding 1-s window (target <= the rate), the mean rate after the first 2 s (target within 2% of
the rate), messages sent twice (0), lost (0: every recipient reached the sandbox and the send is
COMPLETED), the stored counters against a recount (exact), and what each worker host sent (from
its log's batch lines; what a cut host had in flight is not in its log).

Scenario B: the same, and once --cut-at of the recipients have reached the sandbox, the second
worker host's link is set down on the bridge side (its packets vanish; it is not told). The
other host finishes the send; the cut host's leases run out (--lease-seconds) and the reaper
gives its messages back on Meta's evidence (statuses of the number --grace-seconds past the
lease, none naming them), or Meta's `sent` webhook settles those it had taken. As soon as the
send is COMPLETED the link comes back up; the figures are read --after-up-seconds later at the
earliest, and one more row counts what reached the sandbox after the link was up (all of it
sent twice: a request the cut host's kernel still held, see meta.graph's TCP_USER_TIMEOUT).

Leases, grace and the reaper's interval are shorter than production's (120 s, 60 s, 10 s) so
that a cut host's messages come back while the other host still sends; the sandbox's `read`
statuses come --lease-seconds + --grace-seconds + 5 s after each message, so that the number's
webhooks go on past the last send, as real users' reads do. PgBouncer ends a transaction whose
client stopped talking after --idle-transaction-seconds: a host cut off inside a transaction
holds its row locks (the send's row among them) until its session ends.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.drain_processes import (  # noqa: E402
    READY_PATH,
    celery_ready,
    process_group,
    wait_until,
)
from bench.drain_support import (  # noqa: E402
    FINAL_STATUSES,
    ORG,
    PACING_BASES,
    accept,
    max_in_one_second,
    number_configure,
    sandbox_reset,
    send_body,
    sends_reset,
    wake_up,
)
from bench.support import (  # noqa: E402
    PRODUCTION_ENV,
    Demo,
    bench_database_from_args,
    database_drop,
    django_setup,
    print_table,
    provision,
    sandbox_register,
    sig3,
)

DEFAULT_DATABASE = "mindo_bench_multihost"
WEB_PORT = 8000
WARMUP_SECONDS = 2.0  # left out of the mean: the drains start and claim their first batch
RATE_TOLERANCE = 0.02
GAP_SECONDS = 2.0  # a pause this long ends the steady part (what comes after is the reclaim)
BATCH_LINE = re.compile(r"Send (?P<send>[0-9a-f-]{36}), number \S+: (?P<sent>\d+) sent,")
PGBOUNCER = "/usr/sbin/pgbouncer"


def say(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str
    link: str = ""  # the bridge's port of its veth pair: what a cut sets down

    @classmethod
    def parse(cls, text: str) -> Host:
        parts = text.split("=")
        if len(parts) not in (2, 3) or not all(parts):
            raise argparse.ArgumentTypeError(f"{text!r}: NAMESPACE=ADDRESS[=LINK]")
        return cls(*parts)

    def command(self, args: list[str]) -> list[str]:
        """`args` run inside this host's network namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]

    @property
    def name(self) -> str:
        return self.namespace.removeprefix("mh-")


def free_port_on(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def link_set(link: str, state: str) -> None:
    subprocess.run(["ip", "link", "set", link, state], check=True)


# --- the shared services, on the bridge address -------------------------------------------------


@contextlib.contextmanager
def pgbouncer(address: str, idle_transaction_seconds: int, logs: Path) -> Iterator[int]:
    """Debian's PgBouncer in session mode on `address`, forwarding every database to the
    machine's PostgreSQL on 127.0.0.1 (which trusts local clients, as PgBouncer here trusts
    its own). As root it runs as postgres (it refuses root), its files readable by that user."""
    port = free_port_on(address)
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir=logs))
    folder.chmod(0o777)  # its own user writes the log there
    (folder / "userlist.txt").write_text('"postgres" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                "* = host=127.0.0.1 port=5432",
                "[pgbouncer]",
                f"listen_addr = {address}",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {folder / 'userlist.txt'}",
                "pool_mode = session",
                "default_pool_size = 80",
                "max_client_conn = 400",
                f"idle_transaction_timeout = {idle_transaction_seconds}",
                f"logfile = {folder / 'pgbouncer.log'}",
                "",
            ]
        )
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    with process_group("pgbouncer", [PGBOUNCER, *as_user, str(config)], dict(os.environ), logs) as (
        process,
        log,
    ):

        def ready() -> bool:
            try:
                with psycopg.connect(
                    host=address, port=port, user="postgres", dbname="postgres", connect_timeout=5
                ):
                    return True
            except psycopg.OperationalError:
                return False

        wait_until(ready, 30, "pgbouncer", process, log)
        yield port


@contextlib.contextmanager
def redis_server(address: str, logs: Path) -> Iterator[int]:
    """A redis-server of the bench's own on `address`: nothing kept on disk."""
    import redis

    port = free_port_on(address)
    args = [
        *("redis-server", "--bind", address, "--port", str(port), "--save", ""),
        *("--appendonly", "no", "--protected-mode", "no", "--daemonize", "no"),
    ]
    with process_group("redis", args, dict(os.environ), logs) as (process, log):

        def ready() -> bool:
            client = redis.Redis(host=address, port=port, socket_timeout=2)
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
            finally:
                client.close()

        wait_until(ready, 30, "redis-server", process, log)
        yield port


@contextlib.contextmanager
def sandbox(
    env: dict[str, str], address: str, webhook_url: str, read_after: float, logs: Path
) -> Iterator[str]:
    """The Meta sandbox on the bridge address: unlimited (it records whatever comes), no
    recipient made to fail, statuses posted to the web host, reads `read_after` seconds late."""
    port = free_port_on(address)
    args = [
        *(sys.executable, "-m", "meta_sandbox", "--host", address, "--port", str(port)),
        *("--webhook-url", webhook_url, "--rate-per-number", "0", "--fail-suffix", ""),
        *("--read-after", str(read_after), "--seed", "1", "--state-file", ""),
    ]
    base = f"http://{address}:{port}"
    with process_group("sandbox", args, env, logs) as (process, log):
        wait_until(
            lambda: requests.get(f"{base}/_sandbox/stats", timeout=5).ok,
            60,
            "the sandbox",
            process,
            log,
        )
        yield base


@contextlib.contextmanager
def gunicorn(
    host: Host, env: dict[str, str], workers: int, api_key: str, logs: Path
) -> Iterator[str]:
    """gunicorn on the web host, as production runs it (`-c python:mindo.gunicorn_conf`)."""
    args = host.command(
        [
            *(sys.executable, "-m", "gunicorn", "-c", "python:mindo.gunicorn_conf", "mindo.wsgi"),
            *("--bind", f"{host.address}:{WEB_PORT}", "--workers", str(workers)),
            *("--worker-class", "sync", "--timeout", "300", "--graceful-timeout", "5"),
        ]
    )
    base = f"http://{host.address}:{WEB_PORT}"

    def ready() -> bool:
        response = requests.get(base + READY_PATH, headers={"X-API-Key": api_key}, timeout=5)
        if response.status_code != 200:
            sys.exit(f"gunicorn answered {response.status_code}: {response.text[:500]}")
        return True

    with process_group(f"gunicorn-{host.name}", args, env, logs) as (process, log):
        wait_until(ready, 90, "gunicorn", process, log)
        yield base


@contextlib.contextmanager
def celery_worker(host: Host, env: dict[str, str], logs: Path) -> Iterator[Path]:
    """A Celery worker on `host`, as tests/test_drain_workers.py starts them; yields its log."""
    name = f"worker-{host.name}"
    args = host.command(
        [
            *(sys.executable, "-m", "celery", "-A", "mindo", "worker", "--pool", "prefork"),
            *("--concurrency", "1", "-Q", "celery", "--loglevel", "INFO"),
            *("--hostname", f"multihost-{host.name}@{host.address}"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
    )
    with process_group(name, args, env, logs) as (process, log):
        wait_until(lambda: celery_ready(log), 120, name, process, log)
        yield log


@contextlib.contextmanager
def reaper(host: Host, env: dict[str, str], interval: float, logs: Path) -> Iterator[None]:
    """Beat's part on `host`: `bulksend.tasks.reap` every `interval` seconds (this script's
    `reaper` command); its wake-ups go through the broker like beat's."""
    args = host.command(
        [sys.executable, str(Path(__file__).resolve()), "reaper", "--interval", str(interval)]
    )
    with process_group(f"reaper-{host.name}", args, env, logs) as (process, log):
        wait_until(lambda: b"reaper running" in log.read_bytes(), 60, "the reaper", process, log)
        yield


def reaper_loop(interval: float) -> None:
    """`multihost.py reaper`: run the reaper task every `interval` seconds until killed."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")
    import django

    django.setup()
    from bulksend import tasks

    print("reaper running", flush=True)
    while True:
        started = time.monotonic()
        try:
            tasks.reap()
        except Exception as error:  # a failed run is printed; the next one tries again
            print(f"reaper: {error!r}", flush=True)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


# --- one scenario -------------------------------------------------------------------------------


@dataclass
class Cluster:
    demo: Demo
    web: str
    meta: str
    workers: list[tuple[Host, Path]]  # each worker host and its log
    logs: Path


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


def run_scenario(cluster: Cluster, args: argparse.Namespace, scenario: str) -> Outcome:
    demo, meta = cluster.demo, cluster.meta
    size, rate = args.recipients, args.rate
    say(
        f"scenario {scenario.upper()}: {size:,} recipients at {rate}/s from "
        f"{len(cluster.workers)} worker hosts"
    )
    sends_reset()
    sandbox_reset(meta)
    number_configure(demo.phone_number_id, throughput=rate)
    body = send_body(demo, size, PACING_BASES[0])
    started = time.monotonic()
    with requests.Session() as session:
        bulk_send_id = accept(session, cluster.web, demo, body, size)
    accept_seconds = time.monotonic() - started
    del body
    # The service's wake-up starts one drain; a second one puts the other host on the send too.
    for _ in cluster.workers[1:]:
        wake_up(bulk_send_id)
    say(f"  accepted {bulk_send_id} in {accept_seconds:.2f} s through the web host")

    notes: list[str] = []
    cut: Host | None = None
    if scenario == "b":
        cut = cluster.workers[-1][0]
        threshold = int(size * args.cut_at)
        deadline = time.monotonic() + args.timeout
        while sandbox_json(meta, "stats")["accepted"] < threshold:
            if time.monotonic() > deadline:
                sys.exit(
                    f"fewer than {threshold} messages reached the sandbox in {args.timeout:g} s"
                )
            time.sleep(0.05)
        link_set(cut.link, "down")
        cut_at = time.time()
        from messaging.models import Message, MessageStatus

        held = Message.objects.filter(
            bulk_send_id=uuid.UUID(bulk_send_id), status=MessageStatus.SENDING
        ).count()
        say(
            f"  cut {cut.name} off ({cut.link} down) at {threshold:,} arrivals; "
            f"{held} messages were claimed by a drain at that moment"
        )
        notes.append(
            f"{cut.name} cut off after {threshold:,} arrivals, {held} messages then held by drains"
        )

    timeout = args.timeout + size / rate * 2
    finished = wait_finished(bulk_send_id, timeout)
    if not finished:
        from bench.drain_support import send_state

        say(f"  not finished in {timeout:.0f} s: {send_state(bulk_send_id)}")
    status, _, _, completed_at = send_row(bulk_send_id)
    up_at: float | None = None
    if cut is not None:
        # Up as soon as the other host has finished: whatever the cut host's kernel still holds
        # for Meta would arrive now, while the connections it was written to are still open.
        link_set(cut.link, "up")
        up_at = time.time()
        say(f"  the send is {status} {up_at - cut_at:.1f} s after the cut; {cut.name}'s link is up")
    # Every status the sandbox owes (the reads come late) applied before the counters are read.
    if not webhooks_settle(meta, timeout=args.lease_seconds + args.grace_seconds + 120):
        notes.append("the sandbox still owed webhooks when the counters were read")
    if up_at is not None:
        time.sleep(max(0.0, up_at + args.after_up_seconds - time.time()))
    time.sleep(1.0)  # the web host applies a body right after answering it
    counters, retried = counters_snapshot(bulk_send_id)

    listing = sandbox_json(meta, f"messages?phone_number_id={demo.phone_number_id}")
    records = listing["messages"]
    recipients = Counter(m["to"] for m in records)
    duplicates = max(int(listing["duplicate_sends"]), sum(n - 1 for n in recipients.values()))
    sent_in_db = counters["sent_count"][1]
    lost = max(size - len(recipients), size - sent_in_db)
    arrivals = sorted(float(m["received_at"]) for m in records)
    # The paced stream: what came before the link was up again.
    times = [t for t in arrivals if up_at is None or t < up_at]
    mean, steady = steady_mean(times)
    stats = sandbox_json(meta, "stats")
    drain_seconds = (
        completed_at.timestamp() - times[0] if completed_at is not None and times else 0.0
    )
    outcome = Outcome(
        scenario=scenario,
        size=size,
        rate=rate,
        status=status,
        accept_seconds=accept_seconds,
        drain_seconds=drain_seconds,
        max_window=max_in_one_second(arrivals),
        sandbox_max=int(stats["max_sends_in_one_second"].get(demo.phone_number_id, 0)),
        mean=mean,
        steady=steady,
        duplicates=duplicates,
        lost=lost,
        counters=counters,
        per_host=sent_by_host(cluster.workers, bulk_send_id),
        retried=retried,
        notes=notes,
    )
    if up_at is not None:
        outcome.arrived_after_up = sum(1 for t in arrivals if t >= up_at)
        for to, count in recipients.items():
            if count > 1:
                moments = sorted(float(m["received_at"]) for m in records if m["to"] == to)
                offsets = ", ".join(f"{moment - cut_at:+.1f} s" for moment in moments)
                say(f"  {to} reached the sandbox {count} times: at {offsets} from the cut")
    return outcome


def report(outcome: Outcome) -> None:
    rate = outcome.rate
    floor, ceiling = rate * (1 - RATE_TOLERANCE), rate * (1 + RATE_TOLERANCE)
    exact = all(stored == recounted for stored, recounted in outcome.counters.values())
    per_host = ", ".join(f"{name} {count:,}" for name, count in outcome.per_host.items())
    unattributed = outcome.counters["sent_count"][1] - sum(outcome.per_host.values())

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    rows = [
        ["send's status", outcome.status, "COMPLETED", verdict(outcome.status == "COMPLETED")],
        [
            "largest count in a sliding 1-s window (the sandbox's record)",
            str(outcome.max_window),
            f"<= {rate}",
            verdict(outcome.max_window <= rate),
        ],
        [
            "same, the sandbox's own count",
            str(outcome.sandbox_max),
            f"<= {rate}",
            verdict(outcome.sandbox_max <= rate),
        ],
        [
            f"mean rate after the first {WARMUP_SECONDS:g} s ({outcome.steady:,} arrivals), msg/s",
            f"{outcome.mean:.1f}",
            f"{floor:g} to {ceiling:g}",
            verdict(floor <= outcome.mean <= ceiling),
        ],
        [
            "mean rate / the number's rate (baseline)",
            f"{outcome.mean / rate:.3f}",
            "0.98 to 1.02",
            "",
        ],
        ["messages sent twice", str(outcome.duplicates), "0", verdict(outcome.duplicates == 0)],
        ["messages lost", str(outcome.lost), "0", verdict(outcome.lost == 0)],
        [
            "counters stored = recounted",
            "exact" if exact else "differ",
            "exact",
            verdict(exact),
        ],
        [
            "sent per worker host (their batch lines)",
            per_host,
            "both > 0",
            verdict(all(outcome.per_host.values())),
        ],
        ["sent, in no batch line (a batch cut off in flight)", str(unattributed), "", ""],
        [
            "messages sent on a second attempt (given back by the reaper)",
            str(outcome.retried),
            "",
            "",
        ],
        [
            "accepting the send (POST send-bulk to the web host)",
            f"{sig3(outcome.accept_seconds)} s",
            "",
            "",
        ],
        ["first arrival to completed_at", f"{sig3(outcome.drain_seconds)} s", "", ""],
    ]
    if outcome.arrived_after_up is not None:
        rows.append(
            [
                "arrivals once the cut host's link was up again (all sent by then)",
                str(outcome.arrived_after_up),
                "0",
                verdict(outcome.arrived_after_up == 0),
            ]
        )
    print()
    title = {"a": "both worker hosts", "b": "one worker host cut off mid-send"}[outcome.scenario]
    print(
        f"Scenario {outcome.scenario.upper()}, {title}: {outcome.size:,} recipients to one "
        f"number at {rate}/s"
    )
    print_table(["measure", "value", "target", "result"], rows)
    if outcome.notes:
        print("; ".join(outcome.notes))
    differing = {k: v for k, v in outcome.counters.items() if v[0] != v[1]}
    if differing:
        print(f"counters (stored, recounted) that differ: {differing}")
    sys.stdout.flush()


# --- the command line ---------------------------------------------------------------------------


def parser_build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1_000, help="the number's messages/s (<= 1000)")
    parser.add_argument("--scenario", choices=("a", "b", "both"), default="both")
    parser.add_argument(
        "--cut-at", type=float, default=0.3, help="B: share of arrivals before the cut"
    )
    parser.add_argument("--lease-seconds", type=int, default=20, help="DELIVERY_LEASE_SECONDS")
    parser.add_argument(
        "--grace-seconds",
        type=int,
        default=15,
        help="DELIVERY_CALLBACK_GRACE_SECONDS (at least META_HTTP_TIMEOUT_SECONDS, 10)",
    )
    parser.add_argument("--reaper-seconds", type=float, default=2.0, help="the reaper's interval")
    parser.add_argument("--idle-transaction-seconds", type=int, default=10, help="PgBouncer's")
    parser.add_argument("--after-up-seconds", type=float, default=15.0)
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds, added to twice the send's"
    )
    parser.add_argument("--keep-database", action="store_true", help="do not drop it at the end")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DEFAULT_DATABASE}"
        ),
        help="the bench's own database, on the machine's PostgreSQL (the driver's connection)",
    )
    parser.add_argument("--bridge-address", required=True, help="(given by multihost.sh)")
    parser.add_argument("--web", type=Host.parse, required=True, help="(given by multihost.sh)")
    parser.add_argument(
        "--worker", type=Host.parse, action="append", required=True, help="(given by multihost.sh)"
    )
    return parser


def main() -> None:
    if sys.argv[1:2] == ["reaper"]:
        reaper_parser = argparse.ArgumentParser(prog="multihost.py reaper")
        reaper_parser.add_argument("--interval", type=float, default=2.0)
        reaper_loop(reaper_parser.parse_args(sys.argv[2:]).interval)
        return
    args = parser_build().parse_args()
    if not 1 <= args.rate <= 1_000:
        sys.exit("--rate: 1 to 1000 (a number's throughput_per_second)")
    if len(args.worker) < 2 or any(not host.link for host in args.worker):
        sys.exit("two --worker hosts, each with its link, are needed")
    if os.geteuid() != 0:
        sys.exit("run through bench/multihost.sh, as root")
    database = bench_database_from_args(args)
    scenarios = ["a", "b"] if args.scenario == "both" else [args.scenario]
    bridge = args.bridge_address
    logs = Path(tempfile.mkdtemp(prefix="mindo-multihost-"))
    logs.chmod(0o755)
    say(f"database {database}, {os.cpu_count()} CPUs, logs in {logs}")
    try:
        with contextlib.ExitStack() as stack:
            pg_port = stack.enter_context(pgbouncer(bridge, args.idle_transaction_seconds, logs))
            redis_port = stack.enter_context(redis_server(bridge, logs))
            redis_url = f"redis://{bridge}:{redis_port}/1"
            common = {
                **os.environ,
                **PRODUCTION_ENV,
                "DJANGO_SETTINGS_MODULE": "mindo.settings",
                "REDIS_URL": redis_url,
                "CELERY_BROKER_URL": redis_url,
                "DJANGO_ALLOWED_HOSTS": f"{args.web.address},127.0.0.1",
                "LOG_LEVEL": "WARNING",
                "BULK_SEND_MAX_RECIPIENTS": str(max(args.recipients, 100_000)),
                "DELIVERY_LEASE_SECONDS": str(args.lease_seconds),
                "DELIVERY_CALLBACK_GRACE_SECONDS": str(args.grace_seconds),
            }
            # The driver reaches PostgreSQL directly; the hosts through PgBouncer on the bridge.
            driver_env = {**common, "DATABASE_URL": args.database_url}
            hosts_env = {
                **common,
                "DATABASE_URL": f"postgres://postgres@{bridge}:{pg_port}/{database}",
            }
            say(f"PgBouncer {bridge}:{pg_port} (session mode), Redis {redis_url}")
            demo = provision(driver_env, ORG)
            django_setup(driver_env)
            web = stack.enter_context(
                gunicorn(args.web, hosts_env, args.web_workers, demo.api_key, logs)
            )
            read_after = args.lease_seconds + args.grace_seconds + 5
            meta = stack.enter_context(
                sandbox(driver_env, bridge, f"{web}/webhooks/meta/", read_after, logs)
            )
            sandbox_register(meta, demo.phone_number_id)
            worker_env = {
                **hosts_env,
                "META_GRAPH_URL": meta,
                "DELIVERY_PACING": "true",
                "CELERY_TASK_ALWAYS_EAGER": "false",
                "LOG_LEVEL": "INFO",  # readiness and the batch lines are read from the log
            }
            workers = [
                (host, stack.enter_context(celery_worker(host, worker_env, logs)))
                for host in args.worker
            ]
            stack.enter_context(
                reaper(args.web, {**hosts_env, "LOG_LEVEL": "INFO"}, args.reaper_seconds, logs)
            )
            say(
                f"web {web}, sandbox {meta}, workers on "
                + ", ".join(f"{host.name} {host.address}" for host, _ in workers)
                + f"; lease {args.lease_seconds} s, grace {args.grace_seconds} s, reaper every "
                f"{args.reaper_seconds:g} s"
            )
            cluster = Cluster(demo, web, meta, workers, logs)
            outcomes = [run_scenario(cluster, args, scenario) for scenario in scenarios]
            from bench.drain_support import sends_cancel_active

            sends_cancel_active()
    finally:
        for host in args.worker:  # a link left down by an interrupted scenario B
            with contextlib.suppress(subprocess.CalledProcessError):
                link_set(host.link, "up")
        if not args.keep_database:
            with contextlib.suppress(Exception):
                database_drop(args.database_url)
    for outcome in outcomes:
        report(outcome)
    say(f"logs: {logs}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # everything was stopped on the way out
        sys.exit("multihost.py: interrupted")
