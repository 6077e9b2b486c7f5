"""The service behind PgBouncer in transaction mode (DATABASE_POOLING=transaction): a client's
consecutive transactions run on whichever server connection is free, so nothing may rely on a
session. The drain (a real Celery worker), the web server and the webhook applier run through
it, with fewer server connections than clients, and keep every counter exact.

The webhook applier is the one piece that held a session lock across transactions; behind the
pooler it takes its lock per batch transaction (webhooks.processing). With the session lock these
tests fail: the lock is taken on one server connection and released on another, so it stays held
and the waiting appliers never get it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.test import override_settings

from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import DeferredStatus, Message, MessageStatus
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.delivery_support import (
    SandboxProcess,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    sandbox_process_fixture,  # noqa: F401
    send_bulk,
    wait_for,
    welcome_recipients,
)
from tests.gunicorn_support import GunicornProcess
from tests.pgbouncer_support import PgBouncer, pgbouncer_binary
from tests.test_drain_workers import (
    StartWorker,
    assert_each_sent_exactly_once,
    reap_until_finished,
    start_worker_fixture,  # noqa: F401  (fixture)
)
from tests.test_webhook_concurrency import (
    assert_every_message_at_its_end,
    bodies_of,
    meta_history,
    run_together,
    shares,
    worker_environment,
)
from webhooks.models import WebhookEvent
from webhooks.processing import APPLIER_LOCK, STATUS_SLICE, webhook_events_apply_pending
from webhooks.processing import webhook_store as store

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = 200
APPLIERS = 3
TIMEOUT = 120

# Each process stores its bodies and applies what waits as the endpoint does after answering
# (trying the lock, leaving the bodies to its holder when taken), all processes at once; at the
# end it waits for its turn once, as beat would, so that no body is left to beat.
APPLIER = """
import sys

import django

django.setup()

import orjson
from webhooks.processing import webhook_events_apply_pending, webhook_store

bodies = orjson.loads(sys.stdin.readline())
print("ready", flush=True)
sys.stdin.readline()
for body in bodies:
    webhook_store(body.encode())
    webhook_events_apply_pending()
webhook_events_apply_pending(wait=True)
print("done", flush=True)
"""


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    binary = pgbouncer_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is not installed: .ci/run installs Debian's pgbouncer")
        pytest.skip("pgbouncer is not installed (Debian's pgbouncer; .ci/run installs it)")
    bouncer = PgBouncer(binary, pool_size=2)
    try:
        yield bouncer
    finally:
        bouncer.stop()


def pooled_env(bouncer: PgBouncer, base: dict[str, str]) -> dict[str, str]:
    return {**base, "DATABASE_URL": bouncer.url(), "DATABASE_POOLING": "transaction"}


def test_appliers_in_several_processes_through_pgbouncer_keep_the_counters_exact(
    tenant: Tenant, pgbouncer: PgBouncer
) -> None:
    bulk_send, messages = meta.send_with_messages(tenant.number, tenant.template, MESSAGES)
    statuses, final = meta_history(messages)
    run_together(
        APPLIER,
        [bodies_of(share) for share in shares(statuses, APPLIERS, seed=5)],
        pooled_env(pgbouncer, worker_environment()),
    )

    assert not WebhookEvent.objects.filter(processed_at__isnull=True).exists()
    assert_every_message_at_its_end(bulk_send, final)
    assert not DeferredStatus.objects.exists()
    # Through the pooler indeed, in more transactions than it has server connections.
    assert pgbouncer.stats()["total_xact_count"] > MESSAGES


def test_a_worker_and_the_web_server_through_pgbouncer_drain_a_send_to_completed(
    tenant: Tenant,
    pgbouncer: PgBouncer,
    sandbox_process: SandboxProcess,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    web = GunicornProcess(
        tmp_path, extra_env={"DATABASE_URL": pgbouncer.url(), "DATABASE_POOLING": "transaction"}
    )
    try:
        sandbox_process.control(
            "config", {"webhook_url": f"http://127.0.0.1:{web.port}{meta.WEBHOOK_PATH}"}
        )
        tenant.number.throughput_per_second = 100
        tenant.number.save()
        worker = start_worker(
            "pooled", DATABASE_URL=pgbouncer.url(), DATABASE_POOLING="transaction"
        )
        worker.wait_ready()

        accepted = send_bulk(tenant, welcome_recipients(300))
        bulk_send = reap_until_finished(accepted["bulk_send_id"], timeout=180)

        assert bulk_send.status == BulkSendStatus.COMPLETED, worker.log()
        assert_each_sent_exactly_once(sandbox_process, bulk_send)
        wait_for(
            lambda: BulkSend.objects.get(pk=bulk_send.pk).delivered_count == 300,
            timeout=TIMEOUT,
            what="every delivered status to be applied by the web server",
        )
        assert assert_counters_exact(bulk_send)["delivered_count"] == 300
        assert pgbouncer.stats()["total_xact_count"] > 300
    finally:
        web.stop()


class LockHolder(threading.Thread):
    """Holds the applier's transaction lock on a connection of its own until released, as
    another applier mid-batch does."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.held = threading.Event()
        self.release = threading.Event()
        self.settings = connection.settings_dict

    def run(self) -> None:
        with psycopg.connect(
            host=self.settings["HOST"] or "127.0.0.1",
            port=self.settings["PORT"] or 5432,
            user=self.settings["USER"],
            dbname=self.settings["NAME"],
        ) as other:
            other.execute("SELECT pg_advisory_xact_lock(%s)", [APPLIER_LOCK])
            self.held.set()
            self.release.wait(TIMEOUT)
            other.rollback()


@override_settings(DATABASE_POOLING="transaction")
def test_the_pooled_applier_leaves_the_bodies_to_the_lock_holder_then_applies_them(
    tenant: Tenant,
) -> None:
    bulk_send, messages = meta.send_with_messages(tenant.number, tenant.template, 3)
    for message in messages:
        assert message.wamid is not None
        store(
            meta.encode(
                meta.statuses_notification(meta.status(message.wamid, "delivered", meta.T0 + 5))
            )
        )
    holder = LockHolder()
    holder.start()
    assert holder.held.wait(TIMEOUT)
    try:
        assert webhook_events_apply_pending() == 0
        assert WebhookEvent.objects.filter(processed_at__isnull=True).count() == 3
    finally:
        holder.release.set()
        holder.join(TIMEOUT)

    assert webhook_events_apply_pending() == 3
    assert meta.assert_counters_exact(bulk_send)["delivered_count"] == 3


@override_settings(DATABASE_POOLING="transaction")
def test_the_pooled_applier_applies_a_body_larger_than_a_slice_slice_by_slice(
    tenant: Tenant,
) -> None:
    count = STATUS_SLICE + 5
    bulk_send, messages = meta.send_with_messages(tenant.number, tenant.template, count)
    small = meta.statuses_notification(meta.status(str(messages[0].wamid), "read", meta.T0 + 9))
    large = meta.statuses_notification(
        *(meta.status(str(message.wamid), "delivered", meta.T0 + 5) for message in messages)
    )
    for body in (small, large, small):
        store(meta.encode(body))

    assert webhook_events_apply_pending() == 3

    assert not WebhookEvent.objects.filter(processed_at__isnull=True).exists()
    assert not WebhookEvent.objects.exclude(error="").exists()
    counters = meta.assert_counters_exact(bulk_send)
    assert counters["delivered_count"] == count
    assert counters["read_count"] == 1
    assert Message.objects.get(pk=messages[0].pk).status == MessageStatus.READ
