"""What the delivery engine's tests share: Meta stand-ins, sends, draining, waiting, recounting.

Its fixtures are named apart from their functions, so that a test module imports the function
(`from tests.delivery_support import sandbox_fixture`) and its tests ask for the fixture:
- `sandbox`: the Meta sandbox in a thread, `settings.META_GRAPH_URL` pointing at it, the accounts
  of the test database registered with it as `demo` registers its own (token, numbers and
  approved templates; `sandbox_publish` registers those a test adds later); no rate limit, no
  fail suffix and no webhooks unless a test turns them on (`sandbox.control("config", ...)`);
- `sandbox_process`: the same, as a `python -m meta_sandbox` process of its own;
- `webhook_url`: the live server's Meta webhook endpoint, for the sandbox to post statuses to;
- `scripted_meta`: a tiny Graph API that answers each send as the test says, with Meta's exact
  error bodies, for the codes the sandbox does not produce (131049, 368, a synchronous 131026);
- `webhook_hold`: a webhook endpoint that keeps what the sandbox posts until the test releases it;
- `delivery_redis`: no limiter or drain-liveness key left over from another test;
- `recording_limiter`: the drains' limiter, keeping the Redis time it granted each permit at.
The live server and the drains of other threads read the database from other connections: tests
that use the sandbox are transactional.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import orjson
import pytest
import redis
import requests
from aiohttp import web
from django.conf import settings
from django.db import connection, connections
from django.db.models import Count
from django.test import override_settings
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from bulksend.creation import DRAIN_TASK_NAME
from bulksend.drain import bulk_send_drain
from bulksend.liveness import ALIVE_KEY
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.stopping import STOP_KEY_PATTERN
from messaging.counters import counted_statuses, sql_in
from messaging.delivery import ClaimedMessage, messages_claim
from messaging.models import Message, message_id_from_callback_data
from messaging.ratelimit import KEY_PREFIX, Grant, RateLimiter
from meta_sandbox import SandboxThread
from templates_app.meta_publish import sandbox_catalog_publish
from templates_app.models import WhatsAppBusinessAccount
from tests.conftest import Tenant

SEND_BULK_URL = "/api/v1/meta-templates/send-bulk/"
WEBHOOK_PATH = "/webhooks/meta/"

# A positional template with a text header, and buttons of the two other kinds that take a value.
ORDER_COMPONENTS: list[dict[str, Any]] = [
    {"type": "HEADER", "format": "TEXT", "text": "Pedido {{1}}"},
    {"type": "BODY", "text": "Hola {{1}}, tu pedido llega el {{2}}."},
    {
        "type": "BUTTONS",
        "buttons": [
            {"type": "QUICK_REPLY", "text": "Gracias"},
            {"type": "COPY_CODE", "example": "SAVE10"},
        ],
    },
]


# --- recipients and sends ----------------------------------------------------------------------


def phone(n: int, prefix: str = "+54911500") -> str:
    """A valid Argentine mobile number, distinct for each `n` below 100,000."""
    return f"{prefix}{n:05d}"


def welcome_recipient(number: str, n: int = 0) -> dict[str, Any]:
    """A recipient of the conftest's `welcome_message` (named body, dynamic URL button)."""
    return {
        "phone": number,
        "variables": {"name": f"Cliente {n}", "code": f"C-{n}"},
        "button_variables": {"button_0": f"ref-{n}"},
    }


def welcome_recipients(count: int, *, start: int = 0, prefix: str = "+54911500") -> list[Any]:
    return [welcome_recipient(phone(n, prefix), n) for n in range(start, start + count)]


def send_bulk(
    tenant: Tenant,
    recipients: list[dict[str, Any]],
    *,
    template_name: str = "welcome_message",
    language: str = "es",
    client: APIClient | None = None,
) -> dict[str, Any]:
    """POST the send through the API as a client would; returns the 202's body."""
    response = (client or tenant.client).post(
        SEND_BULK_URL,
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": template_name,
            "language": language,
            "recipients": recipients,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    body: dict[str, Any] = response.json()
    return body


# --- draining ----------------------------------------------------------------------------------


def drain_to_completion(bulk_send_id: uuid.UUID | str, *, timeout: float = 120.0) -> BulkSend:
    """Drain as the workers would, again and again, until the send is no longer active.

    Between drains it sleeps until the earliest retry is due (at most a fifth of a second), as
    the drain task's own wake-ups would. Fails when the send is still active after `timeout`.
    """
    send_id = uuid.UUID(str(bulk_send_id))
    deadline = time.monotonic() + timeout
    while True:
        report = bulk_send_drain(send_id)
        bulk_send = BulkSend.objects.get(pk=send_id)
        if not bulk_send.is_active or report.halted:
            return bulk_send
        if time.monotonic() > deadline:
            raise AssertionError(
                f"Send {send_id} is still {bulk_send.status} with {bulk_send.pending_count} "
                f"pending after {timeout} s: {recount(send_id)}"
            )
        pause = 0.05
        if report.next_wake_at is not None:
            pause = report.next_wake_at.timestamp() - time.time()
        time.sleep(min(max(pause, 0.01), 0.2))


def in_threads(*work: Callable[[], Any], timeout: float = 60.0) -> list[Any]:
    """Run each callable in its own thread, all released at the same moment; their results.

    Each thread closes its database connections when done, and an exception in any of them is
    raised here.
    """
    barrier = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []

    def run(index: int, job: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[index] = job()
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(index, job), daemon=True)
        for index, job in enumerate(work)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish in time"
    if errors:
        raise errors[0]
    return results


def sessions_waiting_on_locks() -> int:
    """How many sessions of the test database wait for a lock (a row's, an advisory one)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        (waiting,) = cursor.fetchone()
    return int(waiting)


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `condition` until it returns something truthy, which is returned; fail after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


# --- counters ----------------------------------------------------------------------------------


def recount(bulk_send_id: uuid.UUID | str) -> dict[str, int]:
    """The send's counters recomputed from its messages with one GROUP BY, by the rule of
    messaging.counters (a cancelled send's `pending` messages are cancelled)."""
    by_status = {
        row["status"]: row["n"]
        for row in Message.objects.filter(bulk_send_id=bulk_send_id)
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    }
    cancelled = BulkSend.objects.filter(pk=bulk_send_id, status=BulkSendStatus.CANCELLED).exists()
    counted = counted_statuses(send_cancelled=cancelled)
    recounted = {"total_recipients": sum(by_status.values())}
    for name in ("pending", "sent", "delivered", "read", "failed", "cancelled"):
        recounted[f"{name}_count"] = sum(by_status.get(status, 0) for status in counted[name])
    return recounted


def claimable(bulk_send_id: uuid.UUID) -> list[ClaimedMessage]:
    """What a drain would claim of the send now (a stopped send's: nothing); claimed."""
    return messages_claim(
        bulk_send_id=bulk_send_id,
        limit=10,
        lease_seconds=60,
        now=timezone.now(),
    )


def _recount_sql(name: str) -> str:
    """The `name` counter recounted in SQL, for a send `b` cancelled or not."""
    statuses = {
        cancelled: sql_in(counted_statuses(send_cancelled=cancelled)[name])
        for cancelled in (False, True)
    }
    return (
        f"count(m.id) FILTER (WHERE CASE WHEN b.status = 'CANCELLED' THEN m.status IN "
        f"{statuses[True]} ELSE m.status IN {statuses[False]} END)"
    )


_COUNTER_NAMES = ("pending", "sent", "delivered", "read", "failed", "cancelled")
_SNAPSHOT_SQL = (
    "SELECT b.unique_recipients, "
    + ", ".join(f"b.{name}_count" for name in _COUNTER_NAMES)
    + ", count(m.id), "
    + ", ".join(_recount_sql(name) for name in _COUNTER_NAMES)
    + """
  FROM {sends} b LEFT JOIN {messages} m ON m.bulk_send_id = b.id
 WHERE b.id = %s
 GROUP BY b.id
"""
)


def assert_counters_exact(bulk_send: BulkSend) -> dict[str, int]:
    """The stored counters equal the recount; returns them.

    Both are read by one statement, so webhooks applied meanwhile cannot tell them apart.
    """
    names = list(recount(bulk_send.pk))
    sql = _SNAPSHOT_SQL.format(sends=BulkSend._meta.db_table, messages=Message._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, [bulk_send.pk])
        row = cursor.fetchone()
    stored = dict(zip(names, row[: len(names)], strict=True))
    recounted = dict(zip(names, row[len(names) :], strict=True))
    assert stored == recounted, f"stored {stored} != recounted {recounted}"
    bulk_send.refresh_from_db()
    return stored


# --- what Meta received ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """The sandbox's record of the messages it accepted."""

    messages: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]

    @property
    def by_message_id(self) -> dict[int, dict[str, Any]]:
        """The last accepted request per message of ours, by `biz_opaque_callback_data`."""
        return {
            int(message_id_from_callback_data(item["biz_opaque_callback_data"]) or 0): item
            for item in self.messages
        }

    def per_message(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for item in self.messages:
            key = int(message_id_from_callback_data(item["biz_opaque_callback_data"]) or 0)
            counts[key] = counts.get(key, 0) + 1
        return counts


class SandboxControl(Protocol):
    """A running sandbox, in this process or another: its `/_sandbox/...` calls."""

    def control(self, path: str, payload: Mapping[str, Any] | None = None) -> Any: ...


def received(sandbox: SandboxControl, phone_number_id: str | None = None) -> Received:
    path = "messages" if phone_number_id is None else f"messages?phone_number_id={phone_number_id}"
    listing = sandbox.control(path)
    return Received(listing["messages"], listing["duplicates"])


def max_in_one_second(moments: list[float]) -> int:
    """The most moments in any 1-second window (sliding, half-open)."""
    ordered = sorted(moments)
    most, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def permits_counted(outcome: str) -> int:
    """How many permits the pacers of this process have counted so far as `outcome`, as /metrics
    shows them: "forfeited" or "paid_late" (messaging.ratelimit.AsyncPacer)."""
    return int(REGISTRY.get_sample_value(f"mindo_limiter_permits_{outcome}_total") or 0)


def permits_forfeited() -> int:
    """How many permits the pacers of this process have forfeited so far (a worker that woke too
    late for its permit's slot, as a busy machine's may). Their slots stay reserved, so a test
    counts them beside its messages' permits."""
    return permits_counted("forfeited")


class RecordingLimiter(RateLimiter):
    """The number's limiter on Redis's clock, as the drain uses it, keeping the moment (Redis
    time, in seconds) it decided each permit at: the guarantee "never more than the rate in any
    second" holds on that clock however late a busy machine then uses the permit."""

    def __init__(self, client: redis.Redis) -> None:
        self._reading = threading.local()
        self._lock = threading.Lock()
        self.permits: list[float] = []
        super().__init__(client, clock=self._redis_time)

    def _redis_time(self) -> float:
        seconds, microseconds = self.redis.time()
        self._reading.seconds = seconds + microseconds / 1_000_000
        return float(self._reading.seconds)

    def acquire(self, key: str, rate: int, n: int = 1, *, stop_keys: Sequence[str] = ()) -> Grant:
        grant = super().acquire(key, rate, n, stop_keys=stop_keys)
        with self._lock:
            self.permits.extend([self._reading.seconds] * grant.granted)
        return grant

    def reserve(
        self,
        key: str,
        rate: int,
        n: int,
        *,
        horizon: float,
        push: float = 0.0,
        skips: Sequence[int] = (),
        stop_keys: Sequence[str] = (),
    ) -> Grant:
        """The pacer's reservations: each permit is kept at its slot, the moment (on Redis's
        clock) its request may leave."""
        grant = super().reserve(
            key, rate, n, horizon=horizon, push=push, skips=skips, stop_keys=stop_keys
        )
        start = self._reading.seconds + grant.first_slot
        with self._lock:
            self.permits.extend(start + i * grant.interval for i in range(grant.granted))
        return grant


# --- the broker's queue ------------------------------------------------------------------------

# Where Celery's Redis transport keeps the default queue.
QUEUE_KEY = "celery"


def queued_drains(client: redis.Redis) -> list[str]:
    """The send ids of the drain tasks waiting in the broker's queue."""
    ids = []
    for raw in client.lrange(QUEUE_KEY, 0, -1):
        envelope = orjson.loads(raw)
        if envelope["headers"]["task"] != DRAIN_TASK_NAME:
            continue
        args, _kwargs, _embed = orjson.loads(base64.b64decode(envelope["body"]))
        ids.append(args[0])
    return ids


# --- a Graph API with scripted answers ---------------------------------------------------------


Answer = tuple[int, dict[str, Any]]


def meta_error(
    http_status: int, code: int, message: str, details: str, *, subcode: int | None = None
) -> Answer:
    """An error answer exactly as Meta's Cloud API writes it."""
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details},
        "fbtrace_id": "AZ8rTjW3kDq1Fh0ZmdLx0Qe",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return http_status, {"error": error}


UNDELIVERABLE = meta_error(
    400, 131026, "(#131026) Message Undeliverable.", "Message Undeliverable."
)
ECOSYSTEM_HELD_BACK = meta_error(
    400,
    131049,
    "(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
    "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
)
ACCOUNT_BLOCKED = meta_error(
    400,
    368,
    "(#368) Temporarily blocked for policies violations",
    "The WhatsApp Business Account is temporarily blocked for policy violations.",
    subcode=1390008,
)


ScriptedAnswer = Callable[[int, dict[str, Any]], Answer | None | Awaitable[Answer | None]]


class ScriptedMeta:
    """`POST /{version}/{phone_number_id}/messages` answered by `answer(index, body)`: an
    (HTTP status, JSON) pair, or None to accept the message with a fresh wamid. `index` counts
    the requests from 0 in the order they arrive. `answer` may be replaced while it runs. An
    `answer` that returns an awaitable holds that request only (the others are answered
    meanwhile); one that blocks holds them all."""

    def __init__(self, answer: ScriptedAnswer | None = None):
        self.answer = answer or (lambda index, body: None)
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    def start(self) -> ScriptedMeta:
        self._thread.start()
        assert self._ready.wait(10), "the scripted Graph API did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def accepted_callbacks(self) -> list[str]:
        return [body["biz_opaque_callback_data"] for _, body in self.accepted]

    async def _messages(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        index = len(self.requests)
        self.requests.append(body)
        self.authorizations.append(request.headers.get("Authorization", ""))
        answer = self.answer(index, body)
        if inspect.isawaitable(answer):
            answer = await answer
        if answer is not None:
            status, document = answer
            return web.json_response(document, status=status)
        wamid = f"wamid.scripted.{uuid.uuid4().hex}"
        self.accepted.append((wamid, body))
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": wamid}],
            }
        )

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{version}/{phone_number_id}/messages", self._messages)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()


# --- webhooks held back ------------------------------------------------------------------------


class WebhookHold:
    """Receives the sandbox's signed webhooks and holds them until the test releases them to the
    service, so a test can look at the moment between Meta's acceptance and its `sent` status."""

    def __init__(self) -> None:
        self.posts: list[tuple[bytes, str]] = []
        self._lock = threading.Lock()
        hold = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with hold._lock:
                    hold.posts.append((body, self.headers.get("X-Hub-Signature-256", "")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{WEBHOOK_PATH}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def statuses(self) -> list[dict[str, Any]]:
        with self._lock:
            bodies = [body for body, _ in self.posts]
        return [
            status
            for body in bodies
            for entry in orjson.loads(body)["entry"]
            for change in entry["changes"]
            for status in change["value"].get("statuses", [])
        ]

    def release(self, url: str) -> None:
        """Post every held webhook, as signed by the sandbox, to `url`, in arrival order."""
        with self._lock:
            posts, self.posts = self.posts, []
        for body, signature in posts:
            response = requests.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
                timeout=10,
            )
            assert response.status_code == 200, response.text

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- processes of their own -------------------------------------------------------------------

PROCESS_START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` different free ports: each probe stays bound until all are chosen, so the kernel
    cannot hand one out twice (as `free_port` called again may)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def database_url() -> str:
    """The test database, as the workers' settings read it from DATABASE_URL."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{credentials}@{host}{port}/{quote(db['NAME'], safe='')}"


def process_env() -> dict[str, str]:
    """The environment of a worker or sandbox process: the test settings, database and Redis."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "TEST_REDIS_URL": settings.REDIS_URL,
    }


class SandboxProcess:
    """`python -m meta_sandbox` on a free port of 127.0.0.1, its catalog in memory; no webhooks
    until a test sets `webhook_url`. Its clock of arrivals, unlike a sandbox thread's, is not
    held up by a busy test process."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_dir / "sandbox.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "meta_sandbox"),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    *("--webhook-url", "", "--rate-per-number", "0"),
                    *("--delivered-after", "0.2", "--read-share", "0", "--fail-suffix", ""),
                    *("--seed", "7", "--state-file", ""),
                    *("--app-secret", settings.META_APP_SECRET),
                ],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def answering() -> bool:
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")
            try:
                return bool(self.control("stats"))
            except OSError:
                return False

        wait_for(answering, timeout=PROCESS_START_TIMEOUT, interval=0.1, what="the sandbox")

    def control(self, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        post = payload is not None
        request = urllib.request.Request(
            f"{self.url}/_sandbox/{path}",
            data=orjson.dumps(payload) if post else None,
            headers={"Content-Type": "application/json"},
            method="POST" if post else "GET",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


# --- fixtures ----------------------------------------------------------------------------------


def sandbox_publish(url: str) -> None:
    """Register every account of the test database with the sandbox at `url`, as Meta would
    know them: their tokens, numbers and approved templates."""
    with override_settings(META_GRAPH_URL=url):
        for account in WhatsAppBusinessAccount.objects.all():
            sandbox_catalog_publish(account)


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _forget_delivery_keys() -> None:
    client = redis_client()
    for pattern in (f"{KEY_PREFIX}*", ALIVE_KEY.format("*"), STOP_KEY_PATTERN):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(name="delivery_redis")
def delivery_redis_fixture() -> Iterator[redis.Redis]:
    """The test Redis database without limiter pauses or liveness marks of earlier tests."""
    _forget_delivery_keys()
    yield redis_client()
    _forget_delivery_keys()


@pytest.fixture(name="sandbox")
def sandbox_fixture(
    transactional_db: None, tenant: Tenant, delivery_redis: redis.Redis
) -> Iterator[SandboxThread]:
    """The Meta sandbox, knowing what the database holds when it starts (`sandbox_publish` again
    after adding templates or accounts); the service sends to it."""
    running = SandboxThread(
        rate_per_number=0,
        fail_suffix="",
        read_share=0.0,
        delivered_after=0.2,
        read_after=0.4,
        seed=7,
        app_secret=settings.META_APP_SECRET,
    ).start()
    try:
        sandbox_publish(running.url)
        with override_settings(META_GRAPH_URL=running.url):
            yield running
    finally:
        running.stop()


@pytest.fixture(name="webhook_url")
def webhook_url_fixture(live_server: Any) -> str:
    return f"{live_server.url}{WEBHOOK_PATH}"


@pytest.fixture(name="recording_limiter")
def recording_limiter_fixture(
    delivery_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> RecordingLimiter:
    """The limiter every drain of this process uses, recording when it granted each permit."""
    limiter = RecordingLimiter(delivery_redis)
    monkeypatch.setattr("bulksend.drain.get_rate_limiter", lambda: limiter)
    return limiter


@pytest.fixture(name="scripted_meta")
def scripted_meta_fixture(delivery_redis: redis.Redis) -> Iterator[ScriptedMeta]:
    meta = ScriptedMeta().start()
    try:
        with override_settings(META_GRAPH_URL=meta.url):
            yield meta
    finally:
        meta.stop()


@pytest.fixture(name="webhook_hold")
def webhook_hold_fixture() -> Iterator[WebhookHold]:
    hold = WebhookHold()
    try:
        yield hold
    finally:
        hold.close()


@pytest.fixture(name="sandbox_process")
def sandbox_process_fixture(
    transactional_db: None, tenant: Tenant, delivery_redis: redis.Redis, tmp_path: Path
) -> Iterator[SandboxProcess]:
    """The sandbox as a process of its own, knowing the tenant; the service sends to it."""
    running = SandboxProcess(process_env(), tmp_path)
    try:
        sandbox_publish(running.url)
        with override_settings(META_GRAPH_URL=running.url):
            yield running
    finally:
        running.stop()
