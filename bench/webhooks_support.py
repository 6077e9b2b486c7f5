"""What the webhook benches share: their database and provisioning, signed bodies shaped as
Meta sends them, gunicorn with a webhook's readiness check, the client processes that post, and
the CPU that gunicorn and PostgreSQL use meanwhile (read from /proc)."""

from __future__ import annotations

import contextlib
import http.client
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.support import (
    PRODUCTION_ENV,
    ROOT,
    django_setup,
    free_port,
    run_command,
    stop_process_group,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/mindo_bench_webhooks"
APP_SECRET = "bench-webhooks-app-secret-0123456789abcdef"
VERIFY_TOKEN = "bench-webhooks-verify-token"
WEBHOOK_PATH = "/webhooks/meta/"
WARMUP_POSTS = 400
LOAD_TIME_LIMIT = 90.0  # seconds: a stuck server fails the run instead of hanging
# gunicorn's workers import Django before they answer: on a busy machine that takes a while.
READY_TIMEOUT = 180.0
CONFIGURATIONS = {
    "sync-4": ["--workers", "4"],
    "sync-8": ["--workers", "8"],
    "gthread-4x4": ["--workers", "4", "--worker-class", "gthread", "--threads", "4"],
    "gthread-2x4": ["--workers", "2", "--worker-class", "gthread", "--threads", "4"],
}
# Not the service's settings: what a configuration does when the status statement is prepared
# once per connection and planned generically, instead of planned on every request.
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


def database_prepare(env: dict[str, str]) -> None:
    """Create and migrate the bench database, and use it from this process too."""
    run_command([sys.executable, "-m", "mindo.dbcreate"], env)
    run_command([sys.executable, "manage.py", "migrate", "--noinput"], env)
    warnings.simplefilter("ignore")  # a missing static directory is no news here
    django_setup(env)


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
                unique_recipients=count,
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
    """Wait until every stored body has been applied (they are applied after the answer).

    A body stored within BUSY_APPLIER_SECONDS of its process finding the applier's lock taken is
    left to the holder's next batch, and to beat's applier when the holder had just finished
    (webhooks.fast_path). Beat does not run here: the bench runs that task on beat's schedule
    while it waits, and says when it applied anything.
    """
    from django.conf import settings

    from webhooks.models import WebhookEvent
    from webhooks.tasks import apply_pending_webhooks

    period = float(settings.CELERY_BEAT_SCHEDULE["apply-webhook-events"]["schedule"])
    deadline = time.monotonic() + timeout
    beat_at = time.monotonic() + period
    while WebhookEvent.objects.filter(processed_at__isnull=True).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"stored bodies still not applied after {timeout} s")
        if time.monotonic() >= beat_at:
            beat_at += period
            if applied := apply_pending_webhooks():
                print(f"  ({applied} bodies left for beat, applied on its schedule)")
            continue
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
def gunicorn(
    env: dict[str, str], options: list[str], *, what_if: bool = False, app: str = "mindo.wsgi"
) -> Iterator[Server]:
    """Run gunicorn serving `app` in its own process group, once it answers; always stop it."""
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
            *(sys.executable, "-m", "gunicorn", app),
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
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"gunicorn ended with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                if response.status == 200 and response.read() == b"ok":
                    return
            finally:
                connection.close()
        time.sleep(0.2)
    sys.exit(f"gunicorn was not ready in {READY_TIMEOUT:.0f} s:\n{log.read_text()}")


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
    host: str, port: int, bodies: list[tuple[bytes, str]], start: Any, ready: Any, results: Any
) -> None:
    """Post `bodies` one after the other on one connection (reopened when the server closes it)."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    statuses: dict[int, int] = {}
    answered = errors = 0
    cpu_before = sum(os.times()[:2])
    ready.put(True)
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
    start, ready, results = context.Event(), context.Queue(), context.Queue()
    processes = [
        context.Process(
            target=client_run,
            args=(server.host, server.port, bodies[n::clients], start, ready, results),
            daemon=True,
        )
        for n in range(clients)
    ]
    for process in processes:
        process.start()
    for _ in processes:  # every client imported and holding its bodies before the clock starts
        ready.get(timeout=READY_TIMEOUT)
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
