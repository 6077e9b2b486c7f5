"""Statuses applied at the same time by several processes, threads and HTTP requests keep every
counter exact: the guarded UPDATE and the counter deltas see each other's commits."""

from __future__ import annotations

import http.client
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from django.db import connection, connections, transaction

from bulksend.lifecycle import sends_statuses_apply
from bulksend.models import BulkSend
from messaging.models import DeferredStatus, Message, MessageStatus
from messaging.status import StatusEvent
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.live_server_gate import live_server_gate
from webhooks.models import WebhookEvent
from webhooks.processing import webhook_events_apply_pending, webhook_process

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 200
WORKERS = 3
BATCH = 5
TIMEOUT = 60

# Runs in each worker process: reads its bodies, says it is ready, waits for "go", then applies
# them, every other batch through the whole webhook processing, the rest through
# sends_statuses_apply.
WORKER = """
import sys

import django

django.setup()

from bulksend.lifecycle import sends_statuses_apply
from meta.webhook_payload import payload_read
from webhooks.processing import status_events, webhook_process
import orjson

bodies = orjson.loads(sys.stdin.readline())
print("ready", flush=True)
sys.stdin.readline()
for number, body in enumerate(bodies):
    if number % 2:
        webhook_process(body.encode())
    else:
        sends_statuses_apply(status_events(payload_read(orjson.loads(body))))
print("done", flush=True)
"""

pytestmark = pytest.mark.django_db(transaction=True)


def meta_history(messages: list[Message]) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Every message delivered, half of them read too: the statuses and each message's end."""
    statuses, final = [], {}
    for number, message in enumerate(messages):
        assert message.wamid is not None
        statuses.append(meta.status(message.wamid, "delivered", meta.T0 + 10))
        final[message.pk] = MessageStatus.DELIVERED
        if number % 2 == 0:
            statuses.append(meta.status(message.wamid, "read", meta.T0 + 20))
            final[message.pk] = MessageStatus.READ
    return statuses, final


def shares(statuses: list[dict[str, Any]], parts: int, seed: int) -> list[list[dict[str, Any]]]:
    """Deal the statuses out in turn, then give each part a quarter of the others' as duplicates,
    each part shuffled its own way."""
    rng = random.Random(seed)
    dealt = [statuses[part::parts] for part in range(parts)]
    for part in range(parts):
        others = [s for other, share in enumerate(dealt) if other != part for s in share]
        dealt[part] = dealt[part] + rng.sample(others, len(others) // 4)
        rng.shuffle(dealt[part])
    return dealt


def bodies_of(share: list[dict[str, Any]]) -> list[bytes]:
    return [
        meta.encode(meta.statuses_notification(*share[start : start + BATCH]))
        for start in range(0, len(share), BATCH)
    ]


def assert_every_message_at_its_end(bulk_send: BulkSend, final: dict[int, str]) -> None:
    statuses = dict(Message.objects.filter(bulk_send=bulk_send).values_list("id", "status"))
    assert statuses == final
    counters = meta.assert_counters_exact(bulk_send)
    assert counters["delivered_count"] == MESSAGES
    assert counters["read_count"] == MESSAGES // 2


def worker_environment() -> dict[str, str]:
    """The test database, not the one the settings name: the workers must see this test's rows."""
    settings = connection.settings_dict
    user, host, port = settings["USER"], settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}",
        "PYTHONPATH": str(ROOT),
    }


def run_together(script: str, bodies: list[list[bytes]], env: dict[str, str] | None = None) -> None:
    """Run `script` in a process per list of `bodies` (its stdin's first line, as JSON): each
    reads them and says "ready"; once all are ready, "go" starts them together, so that their
    batches really overlap. Fails the test when one fails or outlasts TIMEOUT."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or worker_environment(),
            cwd=ROOT,
            text=True,
        )
        for _ in bodies
    ]
    try:
        for worker, share in zip(workers, bodies, strict=True):
            assert worker.stdin is not None
            worker.stdin.write(orjson.dumps([body.decode() for body in share]).decode())
            worker.stdin.write("\n")
            worker.stdin.flush()
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.close()
        for worker in workers:
            worker.wait(timeout=TIMEOUT)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    errors = [worker.stderr.read() for worker in workers if worker.stderr is not None]
    assert [worker.returncode for worker in workers] == [0] * len(workers), errors


@pytest.fixture
def crowded_send(tenant: Tenant) -> tuple[BulkSend, list[Message]]:
    return meta.send_with_messages(tenant.number, tenant.template, MESSAGES)


def test_processes_applying_interleaved_statuses_keep_the_counters_exact(
    crowded_send: tuple[BulkSend, list[Message]],
) -> None:
    bulk_send, messages = crowded_send
    statuses, final = meta_history(messages)
    run_together(WORKER, [bodies_of(share) for share in shares(statuses, WORKERS, seed=7)])
    assert_every_message_at_its_end(bulk_send, final)
    assert not DeferredStatus.objects.exists()


def test_concurrent_signed_posts_through_the_server_keep_the_counters_exact(
    crowded_send: tuple[BulkSend, list[Message]], live_server: Any
) -> None:
    bulk_send, messages = crowded_send
    statuses, final = meta_history(messages)
    address = urlsplit(live_server.url)

    def post_all(bodies: list[bytes]) -> list[int]:
        answers = []
        server = http.client.HTTPConnection(address.hostname, address.port, timeout=TIMEOUT)
        try:
            for body in bodies:
                headers = {
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": meta.signature(body),
                }
                server.request("POST", meta.WEBHOOK_PATH, body=body, headers=headers)
                response = server.getresponse()
                response.read()
                answers.append(response.status)
        finally:
            server.close()
        return answers

    shared = shares(statuses, 2, seed=11)
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(post_all, [bodies_of(share) for share in shared]))
    # Each body is applied after its answer: wait until the server has done so. A body whose
    # applier found the lock taken just as the other finished is beat's: apply it as beat would.
    live_server_gate(live_server).wait_until_idle()
    webhook_events_apply_pending(wait=True)

    assert {status for part in answers for status in part} == {200}
    assert_every_message_at_its_end(bulk_send, final)
    assert WebhookEvent.objects.count() == sum(len(part) for part in answers)


# --- recording a wamid while its first status arrives --------------------------------------------


class OnItsOwnConnection(threading.Thread):
    """Runs `work` on a database connection of its own, as a concurrent request or worker would."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.backend_pid: int | None = None
        self.connected = threading.Event()
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            connection.ensure_connection()
            self.backend_pid = connection.connection.info.backend_pid
            self.connected.set()
            self.work()
        finally:
            self.finished.set()
            connections.close_all()

    def finished_or_blocked(self) -> None:
        """Wait until it is done or waits for a lock (row or advisory) held elsewhere: either
        way it went as far as it can for now."""
        self.connected.wait(timeout=TIMEOUT)
        for _ in range(TIMEOUT * 100):
            if self.finished.wait(timeout=0.01):
                return
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                    [self.backend_pid],
                )
                row = cursor.fetchone()
            if row and row[0] == "Lock":
                return

    def finish(self) -> None:
        self.join(timeout=TIMEOUT)
        assert self.finished.is_set()


def record(message: Message, wamid: str) -> None:
    """The sender records Meta's answer the way `messaging.delivery` does: a `sent` event found
    by our message id, which also applies what was kept for the wamid."""
    recorded = sends_statuses_apply(
        [StatusEvent(wamid, "sent", meta.at(meta.T0), message_ref=message.pk)]
    )
    assert recorded.messages_changed >= 1


def race_recording_against_a_status(message: Message, status: dict[str, Any]) -> None:
    """The sender records the wamid; before it commits, Meta's status for that wamid arrives
    and is processed as far as it can go."""
    body = meta.encode(meta.statuses_notification(status))
    webhook = OnItsOwnConnection(lambda: webhook_process(body))
    with transaction.atomic():
        record(message, status["id"])
        webhook.start()
        webhook.finished_or_blocked()
    webhook.finish()


def race_keeping_a_status_against_recording(message: Message, status: dict[str, Any]) -> None:
    """Meta's status is kept as unknown; before that commits, the sender records the wamid."""
    body = meta.encode(meta.statuses_notification(status))
    kept, release = threading.Event(), threading.Event()

    def keep_and_hold() -> None:
        with transaction.atomic():
            assert webhook_process(body).deferred == 1
            kept.set()
            release.wait(timeout=TIMEOUT)

    webhook = OnItsOwnConnection(keep_and_hold)
    webhook.start()
    assert kept.wait(timeout=TIMEOUT)
    sender = OnItsOwnConnection(lambda: record(message, status["id"]))
    sender.start()
    sender.finished_or_blocked()
    release.set()
    webhook.finish()
    sender.finish()


def sending_message(tenant: Tenant) -> tuple[BulkSend, Message]:
    bulk_send, [message] = meta.send_with_messages(
        tenant.number, tenant.template, 1, status=MessageStatus.SENDING
    )
    return bulk_send, message


def test_a_status_arriving_while_its_wamid_is_being_recorded_is_not_stranded(
    tenant: Tenant,
) -> None:
    bulk_send, message = sending_message(tenant)

    # Without callback data, only the wamid can find the message.
    race_recording_against_a_status(
        message, meta.status(meta.new_wamid(), "delivered", meta.T0 + 5)
    )

    message.refresh_from_db()
    assert (message.status, message.delivered_at) == ("delivered", meta.at(meta.T0 + 5))
    assert not DeferredStatus.objects.exists()
    assert meta.assert_counters_exact(bulk_send)["delivered_count"] == 1


def test_a_status_kept_while_its_wamid_is_being_recorded_is_applied_by_the_recording(
    tenant: Tenant,
) -> None:
    bulk_send, message = sending_message(tenant)

    race_keeping_a_status_against_recording(
        message, meta.status(meta.new_wamid(), "read", meta.T0 + 5)
    )

    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.read_at) == (
        "read",
        meta.at(meta.T0 + 5),
        meta.at(meta.T0 + 5),
    )
    assert not DeferredStatus.objects.exists()
    counters = meta.assert_counters_exact(bulk_send)
    assert (counters["pending_count"], counters["read_count"]) == (0, 1)


def test_a_status_with_callback_data_arriving_while_its_wamid_is_being_recorded_applies(
    tenant: Tenant,
) -> None:
    bulk_send, message = sending_message(tenant)

    race_recording_against_a_status(
        message,
        meta.status(meta.new_wamid(), "delivered", meta.T0 + 5, message_id=message.pk),
    )

    message.refresh_from_db()
    assert (message.status, message.delivered_at) == ("delivered", meta.at(meta.T0 + 5))
    assert not DeferredStatus.objects.exists()
    counters = meta.assert_counters_exact(bulk_send)
    assert (counters["pending_count"], counters["sent_count"], counters["delivered_count"]) == (
        0,
        1,
        1,
    )
