"""The reaper beat runs: expired leases back after the grace, wake-ups for sends nobody drains,
sends finished whose last drain died, and a wake-up for a send whose own was lost."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis
from django.test import override_settings
from django.utils import timezone

from bulksend import tasks
from bulksend.liveness import drain_alive_mark
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.reaper import bulk_sends_reap
from messaging.models import Message, MessageStatus, WebhookProgress
from tests import factories
from tests.conftest import Tenant
from tests.delivery_support import (
    QUEUE_KEY,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    queued_drains,
)

pytestmark = pytest.mark.usefixtures("delivery_redis")


def make_send(tenant: Tenant, **fields: Any) -> BulkSend:
    fields.setdefault("status", BulkSendStatus.PROCESSING)
    return factories.make_bulk_send(tenant.number, tenant.template, **fields)


@override_settings(DELIVERY_CALLBACK_GRACE_SECONDS=30)
def test_an_expired_lease_goes_back_to_pending_only_after_the_grace(tenant: Tenant) -> None:
    now = timezone.now()
    # Meta's webhooks for the number have come well past both leases: the evidence that what
    # is still unsettled after the grace was not taken.
    WebhookProgress.objects.create(
        phone_number_id=tenant.number.phone_number_id, latest_status_at=now + timedelta(hours=1)
    )
    bulk_send = make_send(tenant)
    expired = factories.make_message(
        bulk_send,
        status=MessageStatus.SENDING,
        lease_expires_at=now - timedelta(seconds=1),
        attempts=1,
    )
    held = factories.make_message(
        bulk_send,
        status=MessageStatus.SENDING,
        lease_expires_at=now + timedelta(seconds=60),
        attempts=1,
    )

    bulk_sends_reap(now=now)
    expired.refresh_from_db()
    assert expired.status == MessageStatus.SENDING

    woken = bulk_sends_reap(now=now + timedelta(seconds=31))

    expired.refresh_from_db()
    held.refresh_from_db()
    assert (expired.status, expired.lease_expires_at, expired.attempts) == (
        MessageStatus.PENDING,
        None,
        1,
    )
    assert held.status == MessageStatus.SENDING
    assert woken == [str(bulk_send.pk)]
    # Sending and pending are both pending to clients: no counter moves.
    assert assert_counters_exact(bulk_send)["pending_count"] == 2


def test_it_wakes_an_active_send_with_due_messages_only_when_no_drain_is_alive(
    tenant: Tenant,
) -> None:
    now = timezone.now()
    orphan = make_send(tenant)
    factories.make_message(orphan)
    drained = make_send(tenant)
    factories.make_message(drained)
    drain_alive_mark(drained.pk)
    later = make_send(tenant)
    factories.make_message(later, next_attempt_at=now + timedelta(minutes=5))
    due_retry = make_send(tenant)
    factories.make_message(due_retry, next_attempt_at=now - timedelta(seconds=1))
    halted = make_send(
        tenant, status=BulkSendStatus.FAILED, status_reason="Halted: 190", halted_at=now
    )
    factories.make_message(halted)

    woken = bulk_sends_reap(now=now)

    assert sorted(woken) == sorted([str(orphan.pk), str(due_retry.pk)])


def test_it_finishes_a_processing_send_with_nothing_pending(tenant: Tenant) -> None:
    all_sent = make_send(tenant)
    factories.make_message(all_sent, status=MessageStatus.SENT, sent_at=timezone.now())
    factories.make_message(all_sent, status=MessageStatus.READ, sent_at=timezone.now())
    some_failed = make_send(tenant)
    factories.make_message(some_failed, status=MessageStatus.DELIVERED, sent_at=timezone.now())
    factories.make_message(some_failed, status=MessageStatus.FAILED, error_code="131026")
    still_sending = make_send(tenant)
    factories.make_message(still_sending, status=MessageStatus.SENT, sent_at=timezone.now())
    factories.make_message(
        still_sending,
        status=MessageStatus.SENDING,
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )

    woken = bulk_sends_reap(now=timezone.now())

    for bulk_send in (all_sent, some_failed, still_sending):
        bulk_send.refresh_from_db()
    assert (all_sent.status, some_failed.status, still_sending.status) == (
        BulkSendStatus.COMPLETED,
        BulkSendStatus.PARTIAL,
        BulkSendStatus.PROCESSING,
    )
    assert all_sent.completed_at is not None
    assert some_failed.completed_at is not None
    assert still_sending.completed_at is None
    assert woken == []


def test_a_queued_send_whose_wake_up_was_lost_gets_one(
    tenant: Tenant, delivery_redis: redis.Redis
) -> None:
    delivery_redis.delete(QUEUE_KEY)
    lost = make_send(tenant, status=BulkSendStatus.QUEUED)
    factories.make_message(lost)
    factories.make_message(lost)
    alive = make_send(tenant)
    factories.make_message(alive)
    drain_alive_mark(alive.pk)

    tasks.reap()

    assert queued_drains(delivery_redis) == [str(lost.pk)]
    # A wake-up starts nothing by itself: the send waits, intact, for a worker.
    lost.refresh_from_db()
    assert lost.status == BulkSendStatus.QUEUED
    assert Message.objects.filter(bulk_send=lost, status=MessageStatus.PENDING).count() == 2
    delivery_redis.delete(QUEUE_KEY)
