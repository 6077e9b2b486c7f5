"""A send cancelled or paused through the API while a real worker is in the middle of one of its
batches: the worker stops before its next request to Meta, and the sandbox (which records every
request it gets) receives nothing for the send after the API answered.

The moment is made, not sampled: the worker is stopped (SIGSTOP) once the sandbox holds part of a
batch and the rest of that batch is still to go; the cancel or pause is posted while it is stopped,
and the worker goes on once the database says the send changed, with the endpoint still waiting
for it. See tests/test_drain_workers.py for the workers and the sandbox process.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection, connections
from django.test import override_settings

from bulksend.creation import DRAIN_TASK_NAME
from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message, MessageStatus
from tests.conftest import Tenant
from tests.delivery_support import (
    PROCESS_START_TIMEOUT,
    SandboxProcess,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    received,
    sandbox_process_fixture,  # noqa: F401
    send_bulk,
    wait_for,
    webhook_url_fixture,  # noqa: F401
    welcome_recipients,
)
from tests.test_drain_workers import (
    CeleryWorker,
    StartWorker,
    assert_each_sent_exactly_once,
    reap_until_finished,
    start_worker_fixture,  # noqa: F401  (fixture)
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

RECIPIENTS = 200
RATE = 20
BATCH = RATE * 2  # a drain's batch at this rate (bulksend.drain: twice the number's rate)
# Requests a stopped worker may have on their way to the sandbox without it having recorded them.
MARGIN = 5
# Leases that outlast the worker's stop by far: the endpoint waits for the claimed messages to
# settle rather than for their leases to end (a dead worker's are the reaper's).
LEASE_SECONDS = 60


def stop_in_the_middle_of_a_batch(
    worker: CeleryWorker, sandbox: SandboxProcess, bulk_send_id: str
) -> None:
    """Stop the worker once part of a batch is with Meta and at least MARGIN of it is not.

    Claims take a send's pending messages in id order, a batch at a time: the batch of a message
    is its place in that order divided by BATCH. Until the moment comes the worker goes on.
    """
    messages = Message.objects.filter(bulk_send_id=uuid.UUID(bulk_send_id)).order_by("id")
    ids = list(messages.values_list("pk", flat=True))
    batch_of = {message_id: index // BATCH for index, message_id in enumerate(ids)}

    def stopped_mid_batch() -> bool:
        worker.pause()
        handed_over = set(received(sandbox).by_message_id)
        # Not in the middle of a transaction either (a settle, a claim): the send's row it may
        # hold locked would keep the cancel from committing until the worker goes on.
        if handed_over and not transactions_open():
            current = max(batch_of[message_id] for message_id in handed_over)
            in_batch = [m for m, batch in batch_of.items() if batch == current]
            if len([m for m in in_batch if m not in handed_over]) >= MARGIN:
                return True
        worker.resume()
        return False

    wait_for(
        stopped_mid_batch,
        timeout=PROCESS_START_TIMEOUT,
        interval=0.05,
        what="the worker to be in the middle of a batch",
    )


def transactions_open() -> int:
    """Transactions open on the test database, this connection's aside."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        )
        (count,) = cursor.fetchone()
    return int(count)


def post_while_stopped(
    tenant: Tenant, worker: CeleryWorker, bulk_send_id: str, action: str
) -> dict[str, Any]:
    """POST the action while the worker is stopped; let the worker go on once the send changed
    (the endpoint then waits for it); return the answer's body."""
    answers: list[Any] = []

    def post() -> None:
        try:
            answers.append(
                tenant.client.post(f"/api/v1/meta-templates/bulk-sends/{bulk_send_id}/{action}/")
            )
        finally:
            connections.close_all()

    thread = threading.Thread(target=post)
    sends = BulkSend.objects.filter(pk=bulk_send_id)
    changed = (
        sends.filter(status=BulkSendStatus.CANCELLED)
        if action == "cancel"
        else sends.filter(paused_at__isnull=False)
    )
    # The settings are the process's: the endpoint's thread reads them while this one waits.
    with override_settings(DELIVERY_LEASE_SECONDS=LEASE_SECONDS):
        thread.start()
        try:
            wait_for(changed.exists, timeout=PROCESS_START_TIMEOUT, what=f"the {action} to commit")
        finally:
            worker.resume()
            thread.join(timeout=PROCESS_START_TIMEOUT)
    assert not thread.is_alive()
    [response] = answers
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def wait_for_the_drain_to_end(worker: CeleryWorker) -> None:
    wait_for(
        lambda: f"Task {DRAIN_TASK_NAME}[" in worker.log() and " succeeded in " in worker.log(),
        timeout=PROCESS_START_TIMEOUT,
        what="the worker's drain to end",
    )


def start(
    tenant: Tenant, sandbox: SandboxProcess, webhook_url: str, start_worker: StartWorker
) -> tuple[CeleryWorker, str]:
    sandbox.control("config", {"webhook_url": webhook_url})
    tenant.number.throughput_per_second = RATE
    tenant.number.save()
    worker = start_worker(
        "worker", DELIVERY_DRAIN_SECONDS="120", DELIVERY_LEASE_SECONDS=str(LEASE_SECONDS)
    )
    worker.wait_ready()
    accepted = send_bulk(tenant, welcome_recipients(RECIPIENTS))
    bulk_send_id = str(accepted["bulk_send_id"])
    stop_in_the_middle_of_a_batch(worker, sandbox, bulk_send_id)
    return worker, bulk_send_id


def test_a_send_cancelled_mid_batch_sends_nothing_after_the_answer(
    tenant: Tenant, sandbox_process: SandboxProcess, webhook_url: str, start_worker: StartWorker
) -> None:
    worker, bulk_send_id = start(tenant, sandbox_process, webhook_url, start_worker)

    body = post_while_stopped(tenant, worker, bulk_send_id, "cancel")
    at_the_answer = len(received(sandbox_process).messages)
    wait_for_the_drain_to_end(worker)

    assert body["status"] == "CANCELLED"
    assert len(received(sandbox_process).messages) == at_the_answer
    # The worker stopped in the middle of its batch, before its next request.
    assert "is set: no permit" in worker.log(), worker.log()
    bulk_send = BulkSend.objects.get(pk=bulk_send_id)
    counts = assert_counters_exact(bulk_send)
    assert counts["pending_count"] == 0
    assert counts["cancelled_count"] == RECIPIENTS - at_the_answer
    assert counts["sent_count"] == at_the_answer
    assert_each_sent_exactly_once_or_cancelled(sandbox_process, bulk_send)
    # Meta's webhooks for what it took still land, and the counters follow them.
    wait_for(
        lambda: BulkSend.objects.get(pk=bulk_send_id).delivered_count == at_the_answer,
        timeout=60,
        what="the messages Meta took to be delivered",
    )
    assert assert_counters_exact(bulk_send)["delivered_count"] == at_the_answer
    # Cancelling again answers the same.
    again = tenant.client.post(f"/api/v1/meta-templates/bulk-sends/{bulk_send_id}/cancel/")
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["sent_count"]) == ("CANCELLED", at_the_answer)


def assert_each_sent_exactly_once_or_cancelled(
    sandbox: SandboxProcess, bulk_send: BulkSend
) -> None:
    record = received(sandbox)
    assert record.duplicates == []
    rows = {
        pk: (status, wamid)
        for pk, status, wamid in Message.objects.filter(bulk_send=bulk_send).values_list(
            "pk", "status", "wamid"
        )
    }
    taken = {pk: item["wamid"] for pk, item in record.by_message_id.items()}
    kept = {pk: wamid for pk, (status, wamid) in rows.items() if status != MessageStatus.CANCELLED}
    # Compared whole, so that a failure names every message on either side, with its row.
    assert taken == kept, {pk: rows.get(pk) for pk in taken.keys() ^ kept.keys()}


def test_a_send_paused_mid_batch_sends_nothing_until_resumed(
    tenant: Tenant, sandbox_process: SandboxProcess, webhook_url: str, start_worker: StartWorker
) -> None:
    worker, bulk_send_id = start(tenant, sandbox_process, webhook_url, start_worker)

    body = post_while_stopped(tenant, worker, bulk_send_id, "pause")
    at_the_answer = len(received(sandbox_process).messages)
    wait_for_the_drain_to_end(worker)

    assert (body["status"], body["status_reason"]) == ("PROCESSING", "paused")
    assert "paused_at" in body
    assert len(received(sandbox_process).messages) == at_the_answer
    assert "is set: no permit" in worker.log(), worker.log()
    paused = BulkSend.objects.get(pk=bulk_send_id)
    counts = assert_counters_exact(paused)
    assert counts["pending_count"] == RECIPIENTS - at_the_answer
    assert not Message.objects.filter(
        bulk_send_id=uuid.UUID(bulk_send_id), status=MessageStatus.SENDING
    ).exists()

    resumed = tenant.client.post(f"/api/v1/meta-templates/bulk-sends/{bulk_send_id}/resume/")

    assert resumed.status_code == 200
    assert "paused_at" not in resumed.json()
    bulk_send = reap_until_finished(bulk_send_id, timeout=180)
    assert bulk_send.status == BulkSendStatus.COMPLETED, worker.log()
    assert_each_sent_exactly_once(sandbox_process, bulk_send)
    assert assert_counters_exact(bulk_send)["sent_count"] == RECIPIENTS
