"""How fast Meta's status webhooks are applied, through gunicorn on this machine.

    .venv/bin/python bench/webhooks.py [--posts 10000] [--clients 8] [--big-runs 5]

Targets (DESIGN.md, "Speed"): at least 1,000 single-status webhook POSTs/s applied; one POST
carrying 1,000 statuses answered in under 1 s.

1. Prepare a dedicated database (`DATABASE_URL`, default `mindo_bench_webhooks`): create and
   migrate it. The bench empties its sends, messages, kept webhooks and deferred statuses, so it
   refuses a database whose name lacks "bench".
2. For each gunicorn configuration, start gunicorn on 127.0.0.1 and a free port with a known
   app secret, and provision a COMPLETED send whose messages are all `sent` with wamids (COPY,
   counters set to match).
3. Build and sign every body before any clock starts: each POST is one `delivered` status for
   a distinct wamid, shaped as Meta sends it (tests/meta_payloads.py).
4. Warm every worker up, then fire the POSTs from several client processes, one connection
   each (kept alive when the server allows it), all released at once; stop at the count or at
   the time limit. Check in the database how many messages became `delivered` and that the
   send's counters equal a GROUP BY recount. The CPU used meanwhile by gunicorn and by
   PostgreSQL is read from /proc, so the cost of one POST is known on each side.
5. The best configuration again with the statuses spread over several sends: the difference
   is what serializing on one send's counter row costs.
6. With the best configuration: POST bodies of 1,000 statuses on fresh wamids, several runs,
   the median.
7. Phases, in this process on the same database: where one single-status webhook's time goes
   (signature, parsing, each SQL statement, the commit, Django's request handling).
8. Always stop gunicorn.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.support import (  # noqa: E402
    PRODUCTION_ENV,
    free_port,
    print_table,
    sig3,
    stop_process_group,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/mindo_bench_webhooks"
APP_SECRET = "bench-webhooks-app-secret-0123456789abcdef"
VERIFY_TOKEN = "bench-webhooks-verify-token"
WEBHOOK_PATH = "/webhooks/meta/"
TARGET_POSTS_PER_SECOND = 1_000
BIG_POST_STATUSES = 1_000
TARGET_BIG_POST_SECONDS = 1.0
WARMUP_POSTS = 400
PROFILE_CALLS = 1_000
SPREAD_SENDS = 8
LOAD_TIME_LIMIT = 90.0  # seconds: a stuck server fails the run instead of hanging it
CONFIGURATIONS = {
    "sync-4": ["--workers", "4"],
    "sync-8": ["--workers", "8"],
    "gthread-4x4": ["--workers", "4", "--worker-class", "gthread", "--threads", "4"],
    "gthread-2x4": ["--workers", "2", "--worker-class", "gthread", "--threads", "4"],
}
DEFAULT_CONFIGURATIONS = "sync-4,sync-8,gthread-4x4"
# Not the service's settings: what the best configuration does when the status statement is
# prepared once per connection and planned generically, instead of planned on every request.
WHAT_IF_MODULE = "webhook_bench_what_if"
WHAT_IF_SETTINGS = """
from mindo.settings import *  # noqa: F403

DATABASES["default"]["OPTIONS"] = {  # noqa: F405
    **DATABASES["default"].get("OPTIONS", {}),  # noqa: F405
    "server_side_binding": True,
    "prepare_threshold": 2,
    "options": "-c plan_cache_mode=force_generic_plan",
}
"""


# --- formatting --------------------------------------------------------------------------------


# --- the database ------------------------------------------------------------------------------


def server_environment(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "mindo.settings",
        **PRODUCTION_ENV,
        "META_APP_SECRET": APP_SECRET,
        "META_VERIFY_TOKEN": VERIFY_TOKEN,
        "LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",  # a missing static directory is no news here
    }


def run_command(args: list[str], env: dict[str, str], timeout: float = 300) -> None:
    done = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def database_prepare(env: dict[str, str]) -> None:
    run_command([sys.executable, "-m", "mindo.dbcreate"], env)
    run_command([sys.executable, "manage.py", "migrate", "--noinput"], env)


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    import warnings

    import django

    warnings.simplefilter("ignore")
    django.setup()


@dataclass
class Send:
    id: str
    wamids: list[str]


class Provisioner:
    """One organization, account, number and template; sends of `sent` messages on demand."""

    def __init__(self) -> None:
        from mindo.models import Organization
        from templates_app.models import PhoneNumber, WhatsAppBusinessAccount
        from tests import factories

        self.organization, _ = Organization.objects.get_or_create(name="Webhook Bench")
        self.account, _ = WhatsAppBusinessAccount.objects.get_or_create(
            waba_id="bench-webhooks-waba", defaults={"organization": self.organization}
        )
        number = PhoneNumber.objects.filter(business_account=self.account).first()
        self.number = number or factories.make_number(self.account, phone_number_id=BENCH_NUMBER_ID)
        template = self.account.templates.filter(name="welcome_message").first()
        self.template = template or factories.make_template(self.account)

    def reset(self) -> None:
        """Empty what earlier runs left: sends and messages, kept bodies, kept statuses."""
        from django.db import connection

        from bulksend.models import BulkSend
        from messaging.models import DeferredStatus, Message
        from webhooks.models import WebhookEvent

        name = connection.settings_dict["NAME"]
        if "bench" not in name:
            sys.exit(f"refusing to empty {name!r}: the bench only empties a *bench* database")
        tables = (Message, WebhookEvent, DeferredStatus)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE " + ", ".join(model._meta.db_table for model in tables))
        BulkSend.objects.filter(organization=self.organization).delete()

    def send(self, count: int) -> Send:
        """A COMPLETED send of `count` messages, all `sent` with a wamid, counters to match."""
        from django.db import connection, transaction
        from django.utils import timezone

        from bulksend.models import BulkSend, BulkSendStatus
        from messaging.models import Message
        from tests import meta_payloads as meta

        wamids = [meta.new_wamid() for _ in range(count)]
        now = timezone.now()
        columns = "bulk_send_id, business_account_id, recipient_phone, status, wamid, sent_at"
        with transaction.atomic():
            bulk_send = BulkSend.objects.create(
                organization=self.organization,
                phone_number=self.number,
                template=self.template,
                status=BulkSendStatus.COMPLETED,
                submitted_recipients=count,
                total_recipients=count,
                sent_count=count,
                started_at=now,
                completed_at=now,
            )
            with (
                connection.cursor() as cursor,
                cursor.copy(f"COPY {Message._meta.db_table} ({columns}) FROM STDIN") as copy,
            ):
                for n, wamid in enumerate(wamids):
                    copy.write_row(
                        (bulk_send.pk, self.account.pk, f"+549111{n:07d}", "sent", wamid, now)
                    )
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Message._meta.db_table}")
        return Send(str(bulk_send.pk), wamids)


def all_applied(timeout: float) -> None:
    """Wait until every stored body has been applied (they are applied after the answer)."""
    from webhooks.models import WebhookEvent

    deadline = time.monotonic() + timeout
    while WebhookEvent.objects.filter(processed_at__isnull=True).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"stored bodies still not applied after {timeout} s")
        time.sleep(0.01)


def sends_check(sends: list[Send]) -> tuple[int, bool]:
    """How many messages of `sends` are delivered (or further), and whether every send's
    counters equal a recount."""
    from bulksend.models import BulkSend
    from tests import meta_payloads as meta

    delivered, exact = 0, True
    for bulk_send in BulkSend.objects.filter(pk__in=[send.id for send in sends]):
        counters = meta.stored_counters(bulk_send)
        delivered += counters["delivered_count"]
        exact = exact and counters == meta.recount(bulk_send)
    return delivered, exact


# The bench's own number: a status changes only messages of the number it names.
BENCH_NUMBER_ID = "bench-webhooks-number"


def delivered_bodies(wamids: list[str], per_body: int = 1) -> list[tuple[bytes, str]]:
    """Signed bodies of `delivered` statuses, `per_body` wamids each, shaped as Meta sends them."""
    from tests import meta_payloads as meta

    bodies = []
    for start in range(0, len(wamids), per_body):
        statuses = [
            meta.status(wamid, "delivered", meta.T0 + 60, recipient_id=f"549111{n:07d}")
            for n, wamid in enumerate(wamids[start : start + per_body], start)
        ]
        body = meta.encode(meta.statuses_notification(*statuses, phone_number_id=BENCH_NUMBER_ID))
        bodies.append((body, meta.signature(body, APP_SECRET)))
    return bodies


# --- gunicorn ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    pid: int


@contextlib.contextmanager
def gunicorn(env: dict[str, str], options: list[str], *, what_if: bool = False) -> Iterator[Server]:
    """Run gunicorn in its own process group; always stop it."""
    port = free_port()
    with tempfile.TemporaryDirectory() as log_dir:
        log = Path(log_dir) / "gunicorn.log"
        if what_if:
            (Path(log_dir) / f"{WHAT_IF_MODULE}.py").write_text(WHAT_IF_SETTINGS)
            env = {
                **env,
                "DJANGO_SETTINGS_MODULE": WHAT_IF_MODULE,
                "PYTHONPATH": os.pathsep.join([log_dir, str(ROOT)]),
            }
        args = [
            *(sys.executable, "-m", "gunicorn", "mindo.wsgi"),
            *("--bind", f"127.0.0.1:{port}", "--timeout", "60", "--error-logfile", str(log)),
            *options,
        ]
        process = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)
        try:
            wait_ready(port, process, log)
            yield Server("127.0.0.1", port, process.pid)
        finally:
            if process.poll() is not None:
                tail = "\n".join(log.read_text().splitlines()[-30:])
                print(f"gunicorn ended early with {process.returncode}:\n{tail}", file=sys.stderr)
            stop_process_group(process)


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    path = f"{WEBHOOK_PATH}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=ok"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"gunicorn ended with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                if response.status == 200 and response.read() == b"ok":
                    return
            finally:
                connection.close()
        time.sleep(0.2)
    sys.exit(f"gunicorn was not ready in 30 s:\n{log.read_text()}")


# --- CPU accounting ----------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command, parent pid, CPU seconds used) of a process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    command = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return command, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _serves_another_database(pid: int, database: str) -> bool:
    """A PostgreSQL backend of another database (other users of the server): not ours to count.
    Background processes (WAL writer, checkpointer...) work for every database and count."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True
    is_backend = "(" in title or "[local]" in title
    return is_backend and f" {database} " not in title


def cpu_used(server: Server) -> dict[str, float]:
    """CPU seconds used so far by gunicorn (master and workers) and by PostgreSQL for the bench
    database (its backends and the shared background processes)."""
    from django.db import connection

    database = connection.settings_dict["NAME"]
    used = {"gunicorn": 0.0, "postgres": 0.0}
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is None:
            continue
        command, parent, seconds = stat
        if server.pid in (int(entry.name), parent):
            used["gunicorn"] += seconds
        elif command == "postgres" and not _serves_another_database(int(entry.name), database):
            used["postgres"] += seconds
    return used


# --- the load generator ------------------------------------------------------------------------


@dataclass
class ClientResult:
    answered: int
    statuses: dict[int, int]
    errors: int
    finished_at: float
    cpu_seconds: float


def client_run(
    host: str, port: int, bodies: list[tuple[bytes, str]], start: Any, results: Any
) -> None:
    """Post `bodies` one after the other on one connection (reopened when the server closes it)."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    statuses: dict[int, int] = {}
    answered = errors = 0
    cpu_before = sum(os.times()[:2])
    start.wait()
    deadline = time.monotonic() + LOAD_TIME_LIMIT
    for body, signature in bodies:
        if time.monotonic() > deadline:
            break
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        try:
            connection.request("POST", WEBHOOK_PATH, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            continue
        answered += 1
        statuses[response.status] = statuses.get(response.status, 0) + 1
    finished_at = time.monotonic()
    connection.close()
    results.put(
        ClientResult(answered, statuses, errors, finished_at, sum(os.times()[:2]) - cpu_before)
    )


def fire(
    server: Server, bodies: list[tuple[bytes, str]], clients: int
) -> tuple[float, list[ClientResult], dict[str, float]]:
    """All client processes released at once: the wall time, what each saw, the server's CPU."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [
        context.Process(
            target=client_run,
            args=(server.host, server.port, bodies[n::clients], start, results),
            daemon=True,
        )
        for n in range(clients)
    ]
    for process in processes:
        process.start()
    time.sleep(1.0)  # every client imported and holding its bodies before the clock starts
    cpu_before = cpu_used(server)
    began = time.monotonic()
    start.set()
    collected = [results.get(timeout=LOAD_TIME_LIMIT + 30) for _ in processes]
    cpu_after = cpu_used(server)
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    cpu = {side: cpu_after[side] - cpu_before[side] for side in cpu_before}
    return max(r.finished_at for r in collected) - began, collected, cpu


@dataclass
class LoadRun:
    configuration: str
    what_if: bool
    sends: int
    posts: int
    answered: int
    ok: int
    failures: dict[str, int]
    seconds: float
    delivered: int
    counters_exact: bool
    client_cpu: float
    server_cpu: dict[str, float]

    @property
    def posts_per_second(self) -> float:
        return self.answered / self.seconds

    @property
    def applied_per_second(self) -> float:
        return self.delivered / self.seconds

    @property
    def passed(self) -> bool:
        return (
            self.applied_per_second >= TARGET_POSTS_PER_SECOND
            and self.counters_exact
            and self.delivered == self.posts == self.ok
        )

    def cpu_ms_per_post(self, side: str) -> float:
        return self.server_cpu[side] / max(self.answered, 1) * 1000

    @property
    def cpu_ceiling(self) -> float:
        """POSTs/s this machine's cores could serve at this CPU cost per POST, clients included."""
        clients = self.client_cpu / max(self.answered, 1) * 1000
        per_post = self.cpu_ms_per_post("gunicorn") + self.cpu_ms_per_post("postgres") + clients
        return (os.cpu_count() or 1) * 1000 / per_post if per_post > 0 else math.inf


def failures_of(results: list[ClientResult]) -> dict[str, int]:
    """Answers other than 200, by status, and requests that got no answer."""
    failures: dict[str, int] = defaultdict(int)
    for result in results:
        for status, count in result.statuses.items():
            if status != 200:
                failures[str(status)] += count
        if result.errors:
            failures["no answer"] += result.errors
    return dict(failures)


def load_run(
    name: str,
    env: dict[str, str],
    provisioner: Provisioner,
    args: Any,
    *,
    sends: int = 1,
    what_if: bool = False,
) -> LoadRun:
    per_send = (args.posts + WARMUP_POSTS) // sends + 1
    provisioned = [provisioner.send(per_send) for _ in range(sends)]
    # Interleaved across sends, so consecutive POSTs touch different counter rows.
    wamids = [w for row in zip(*(s.wamids for s in provisioned), strict=True) for w in row]
    warmup = delivered_bodies(wamids[:WARMUP_POSTS])
    bodies = delivered_bodies(wamids[WARMUP_POSTS : WARMUP_POSTS + args.posts])
    with gunicorn(env, CONFIGURATIONS[name], what_if=what_if) as server:
        fire(server, warmup, args.clients)
        all_applied(timeout=60)
        began = time.monotonic()
        posting_seconds, results, cpu = fire(server, bodies, args.clients)
        # Bodies are applied after the answers: the clock stops when the last one is applied.
        all_applied(timeout=120)
        seconds = max(time.monotonic() - began, posting_seconds)
    delivered, exact = sends_check(provisioned)
    return LoadRun(
        configuration=name,
        what_if=what_if,
        sends=sends,
        posts=len(bodies),
        answered=sum(r.answered for r in results),
        ok=sum(r.statuses.get(200, 0) for r in results),
        failures=failures_of(results),
        seconds=seconds,
        delivered=delivered - len(warmup),
        counters_exact=exact,
        client_cpu=sum(r.cpu_seconds for r in results),
        server_cpu=cpu,
    )


def big_posts(
    name: str, env: dict[str, str], provisioner: Provisioner, args: Any
) -> list[tuple[float, int, int]]:
    """(seconds, HTTP status, statuses applied) of each POST of BIG_POST_STATUSES statuses."""
    send = provisioner.send(WARMUP_POSTS + BIG_POST_STATUSES * args.big_runs)
    warmup = delivered_bodies(send.wamids[:WARMUP_POSTS])
    bodies = delivered_bodies(send.wamids[WARMUP_POSTS:], per_body=BIG_POST_STATUSES)
    timings = []
    with gunicorn(env, CONFIGURATIONS[name]) as server:
        fire(server, warmup, args.clients)  # every worker has served before the clock
        all_applied(timeout=60)
        connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
        try:
            for body, signature in bodies:
                delivered_before = sends_check([send])[0]
                headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
                began = time.monotonic()
                connection.request("POST", WEBHOOK_PATH, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                all_applied(timeout=30)  # applied after the answer: timed until it is
                seconds = time.monotonic() - began
                applied = sends_check([send])[0] - delivered_before
                timings.append((seconds, response.status, applied))
        finally:
            connection.close()
    return timings


# --- phases, in this process -------------------------------------------------------------------


class StatementClock:
    """Times every SQL statement (through Django's execute wrapper) and every commit."""

    LABELS = {
        "WITH ev": "SQL: the status UPDATE (one CTE statement)",
        "SELECT id FROM": "SQL: lock the send row (SELECT ... FOR UPDATE)",
        "UPDATE bulksend": "SQL: counters UPDATE",
        "INSERT INTO": "SQL: WebhookEvent INSERT",
    }

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, *args)
        finally:
            text = sql.lstrip()
            label = next((v for k, v in self.LABELS.items() if text.startswith(k)), None)
            self.seconds[label or "SQL: " + " ".join(text.split()[:2])] += (
                time.perf_counter() - began
            )

    @contextlib.contextmanager
    def commits(self, connection: Any) -> Iterator[None]:
        raw = connection.connection
        commit = raw.commit

        def timed_commit() -> None:
            began = time.perf_counter()
            try:
                commit()
            finally:
                self.seconds["COMMIT (WAL flush)"] += time.perf_counter() - began

        raw.commit = timed_commit
        try:
            yield
        finally:
            del raw.commit


def mean_us(work: Callable[[Any], Any], inputs: list[Any]) -> float:
    began = time.perf_counter()
    for item in inputs:
        work(item)
    return (time.perf_counter() - began) / len(inputs) * 1e6


def phases(provisioner: Provisioner) -> list[list[str]]:
    """Where one single-status webhook's time goes, each phase on fresh wamids."""
    import orjson
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    from meta.signature import signature_is_valid
    from meta.webhook_payload import payload_read
    from webhooks.processing import webhook_process

    send = provisioner.send(PROFILE_CALLS * 3)
    signed = [
        delivered_bodies(send.wamids[n * PROFILE_CALLS : (n + 1) * PROFILE_CALLS]) for n in range(3)
    ]
    handler = WSGIHandler()

    def through_django(pair: tuple[bytes, str]) -> None:
        body, signature = pair
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": WEBHOOK_PATH,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_X_HUB_SIGNATURE_256": signature,
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
        }
        response = handler(environ, lambda status, headers: None)
        b"".join(response)
        response.close()

    for pair in signed[0][:100]:  # warm caches and the connection up
        webhook_process(pair[0])
    clock = StatementClock()
    connection.ensure_connection()
    with connection.execute_wrapper(clock), clock.commits(connection):
        process = mean_us(lambda p: webhook_process(p[0]), signed[0][100:])
    calls = len(signed[0]) - 100
    rows = [
        [label, sig3(seconds / calls * 1e6)] for label, seconds in sorted(clock.seconds.items())
    ]
    python = process - sum(clock.seconds.values()) / calls * 1e6
    rows += [
        [
            "signature check (HMAC-SHA256)",
            sig3(mean_us(lambda p: signature_is_valid(p[0], p[1], APP_SECRET), signed[1])),
        ],
        [
            "parse (orjson + payload_read)",
            sig3(mean_us(lambda p: payload_read(orjson.loads(p[0])), signed[1])),
        ],
        ["Python around the SQL in webhook_process", sig3(python)],
        ["= webhook_process", sig3(process)],
    ]
    wsgi = mean_us(through_django, signed[1] + signed[2])
    rows += [
        ["Django request handling (middleware, health check)", sig3(wsgi - process)],
        ["= whole request through Django's WSGI handler", sig3(wsgi)],
    ]
    return rows


# --- main --------------------------------------------------------------------------------------


def load_row(run: LoadRun) -> list[str]:
    return [
        run.configuration + (" (what-if)" if run.what_if else ""),
        str(run.sends),
        f"{run.posts:,}",
        f"{run.ok:,}",
        ", ".join(f"{k}: {v:,}" for k, v in run.failures.items()) or "none",
        sig3(run.seconds),
        sig3(run.posts_per_second),
        sig3(run.applied_per_second),
        "exact" if run.counters_exact else "WRONG",
        sig3(run.cpu_ms_per_post("gunicorn")),
        sig3(run.cpu_ms_per_post("postgres")),
        f"{sig3(run.client_cpu / run.seconds * 100)}%",
        sig3(run.cpu_ceiling),
        "" if run.what_if else "PASS" if run.passed else "MISS",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=10_000, help="single-status POSTs per run")
    parser.add_argument("--clients", type=int, default=8, help="client processes posting at once")
    parser.add_argument("--big-runs", type=int, default=5, help="timed 1,000-status POSTs")
    parser.add_argument(
        "--configurations",
        default=DEFAULT_CONFIGURATIONS,
        help=f"gunicorn configurations to try, comma separated, of: {', '.join(CONFIGURATIONS)}",
    )
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    if "bench" not in urlsplit(database_url).path:
        sys.exit(f"DATABASE_URL must name a *bench* database, got {database_url}")
    env = server_environment(database_url)
    print(
        f"database {urlsplit(database_url).path.lstrip('/')}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} before the run"
    )
    database_prepare(env)
    django_setup(env)
    provisioner = Provisioner()

    runs = []
    for name in args.configurations.split(","):
        provisioner.reset()
        runs.append(load_run(name, env, provisioner, args))
        print(f"  {name}: {sig3(runs[-1].posts_per_second)} POSTs/s answered", flush=True)
    best = max(runs, key=lambda run: run.applied_per_second).configuration
    provisioner.reset()
    runs.append(load_run(best, env, provisioner, args, sends=SPREAD_SENDS))
    print(f"  {best} over {SPREAD_SENDS} sends: {sig3(runs[-1].posts_per_second)} POSTs/s")
    provisioner.reset()
    runs.append(load_run(best, env, provisioner, args, what_if=True))
    print(f"  {best}, what-if: {sig3(runs[-1].posts_per_second)} POSTs/s", flush=True)
    provisioner.reset()
    timings = big_posts(best, env, provisioner, args)
    provisioner.reset()
    phase_rows = phases(provisioner)
    provisioner.reset()

    print()
    print(
        f"(a) single-status POSTs from {args.clients} client processes; "
        f"target >= {TARGET_POSTS_PER_SECOND:,}/s applied"
    )
    print_table(
        [
            "gunicorn",
            "sends",
            "posts",
            "200s",
            "other answers",
            "seconds",
            "POSTs/s",
            "applied/s",
            "counters",
            "gunicorn CPU ms/POST",
            "postgres CPU ms/POST",
            "clients CPU",
            "CPU-bound max/s",
            "verdict",
        ],
        [load_row(run) for run in runs],
    )
    print()
    seconds = [t for t, _, _ in timings]
    applied = all(status == 200 and n == BIG_POST_STATUSES for _, status, n in timings)
    median = statistics.median(seconds)
    print(
        f"(b) one POST of {BIG_POST_STATUSES:,} statuses ({best}); "
        f"target < {TARGET_BIG_POST_SECONDS:g} s"
    )
    print_table(
        ["runs", "median s", "min s", "max s", "all applied", "verdict"],
        [
            [
                str(len(seconds)),
                sig3(median),
                sig3(min(seconds)),
                sig3(max(seconds)),
                "yes" if applied else "NO",
                "PASS" if median < TARGET_BIG_POST_SECONDS and applied else "MISS",
            ]
        ],
    )
    print()
    print("(c) one single-status webhook, in this process, one at a time: microseconds")
    print_table(["phase", "us"], phase_rows)
    print()
    print(
        f"load average {os.getloadavg()[0]:.2f} after the run; what-if: {WHAT_IF_SETTINGS.strip()}"
    )


if __name__ == "__main__":
    main()
