"""What operators do to a send: cancel what has not gone out, resume a send Meta halted; also
through the admin's actions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bulksend.conversion import cancelled_messages_convert
from bulksend.drain import bulk_send_drain
from bulksend.lifecycle import (
    batch_settle,
    bulk_send_cancel,
    bulk_send_finish_if_done,
    bulk_send_halt,
    bulk_send_resume,
)
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.reaper import bulk_sends_reap
from messaging.delivery import DeliveryResult, Settle
from messaging.models import Message, MessageStatus
from tests import factories
from tests.conftest import Tenant
from tests.delivery_support import (
    QUEUE_KEY,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    queued_drains,
)

CHANGELIST = reverse("admin:bulksend_bulksend_changelist")


def make_send(tenant: Tenant, statuses: dict[str, int], **fields: Any) -> BulkSend:
    fields.setdefault("status", BulkSendStatus.PROCESSING)
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template, **fields)
    for status, count in statuses.items():
        for _ in range(count):
            extra: dict[str, Any] = {}
            if status in ("sent", "delivered", "read"):
                extra["sent_at"] = timezone.now()
            if status == "sending":
                extra["lease_expires_at"] = timezone.now() + timedelta(seconds=60)
                extra["attempts"] = 1
            factories.make_message(bulk_send, status=status, **extra)
    return bulk_send


def make_halted_send(tenant: Tenant, *, sent: int = 0) -> BulkSend:
    bulk_send = make_send(tenant, {"sent": sent, "pending": 3})
    assert bulk_send_halt(bulk_send.pk, code="190", text="Invalid OAuth access token")
    bulk_send.refresh_from_db()
    return bulk_send


def test_cancelling_cancels_the_pending_messages_and_leaves_those_in_flight(
    tenant: Tenant,
) -> None:
    bulk_send = make_send(tenant, {"pending": 3, "sending": 1, "sent": 2, "failed": 1})

    cancelled = bulk_send_cancel(bulk_send=bulk_send)

    assert cancelled == 3
    bulk_send.refresh_from_db()
    assert bulk_send.status == BulkSendStatus.CANCELLED
    assert bulk_send.status_reason == "Cancelled by an operator."
    assert bulk_send.completed_at is not None
    # The rows are turned afterwards (bulksend.conversion); to a client they are cancelled now.
    messages = Message.objects.filter(bulk_send=bulk_send).select_related("bulk_send")
    assert sorted(message.public_status for message in messages) == ["cancelled"] * 3 + [
        "failed",
        "pending",
        "sent",
        "sent",
    ]
    counters_before = assert_counters_exact(bulk_send)
    assert cancelled_messages_convert(bulk_send.pk) == 3
    statuses = sorted(Message.objects.filter(bulk_send=bulk_send).values_list("status", flat=True))
    assert statuses == ["cancelled"] * 3 + ["failed", "sending", "sent", "sent"]
    assert (
        assert_counters_exact(bulk_send)
        == counters_before
        == {
            "total_recipients": 7,
            "pending_count": 1,
            "sent_count": 2,
            "delivered_count": 0,
            "read_count": 0,
            "failed_count": 1,
            "cancelled_count": 3,
        }
    )

    # The message in flight settles as Meta says; the counters stay exact.
    in_flight = Message.objects.get(bulk_send=bulk_send, status=MessageStatus.SENDING)
    batch_settle(
        [DeliveryResult(in_flight.pk, Settle.SENT, wamid="wamid.in-flight")], now=timezone.now()
    )
    assert assert_counters_exact(bulk_send)["sent_count"] == 3
    assert bulk_send.status == BulkSendStatus.CANCELLED


def test_a_cancelled_send_is_never_drained_again(tenant: Tenant, settings: Any) -> None:
    settings.META_GRAPH_URL = "http://127.0.0.1:9"  # nothing may be asked of Meta
    bulk_send = make_send(tenant, {"pending": 2})
    bulk_send_cancel(bulk_send=bulk_send)

    report = bulk_send_drain(bulk_send.pk)

    assert report.batches == 0
    assert set(Message.objects.filter(bulk_send=bulk_send).values_list("status", flat=True)) == {
        "pending"  # cancelled to a client: turned by the conversion, which has not run
    }
    assert assert_counters_exact(bulk_send)["cancelled_count"] == 2


@pytest.mark.parametrize(
    "status", [BulkSendStatus.COMPLETED, BulkSendStatus.PARTIAL, BulkSendStatus.FAILED]
)
def test_cancelling_a_finished_send_does_nothing(tenant: Tenant, status: str) -> None:
    bulk_send = make_send(
        tenant,
        {"sent": 1, "failed": 1},
        status=status,
        completed_at=timezone.now(),
    )

    assert bulk_send_cancel(bulk_send=bulk_send) == 0

    bulk_send.refresh_from_db()
    assert (bulk_send.status, bulk_send.status_reason) == (status, "")
    assert assert_counters_exact(bulk_send)["cancelled_count"] == 0


def test_cancelling_a_halted_send_gives_up_what_it_had_left(tenant: Tenant) -> None:
    bulk_send = make_halted_send(tenant, sent=2)

    assert bulk_send_cancel(bulk_send=bulk_send) == 3

    bulk_send.refresh_from_db()
    assert bulk_send.status == BulkSendStatus.CANCELLED
    counts = assert_counters_exact(bulk_send)
    assert (counts["sent_count"], counts["cancelled_count"], counts["pending_count"]) == (2, 3, 0)


@pytest.mark.parametrize("sent", [0, 2])
def test_resuming_a_halted_send_clears_its_reason_and_wakes_the_workers(
    tenant: Tenant,
    sent: int,
    delivery_redis: redis.Redis,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    delivery_redis.delete(QUEUE_KEY)
    bulk_send = make_halted_send(tenant, sent=sent)

    with django_capture_on_commit_callbacks(execute=True):
        assert bulk_send_resume(bulk_send=bulk_send) is True

    bulk_send.refresh_from_db()
    assert (bulk_send.status, bulk_send.status_reason) == (BulkSendStatus.PROCESSING, "")
    assert (bulk_send.halted_at, bulk_send.halt_reason) == (None, "")
    assert queued_drains(delivery_redis) == [str(bulk_send.pk)]
    assert assert_counters_exact(bulk_send)["pending_count"] == 3
    delivery_redis.delete(QUEUE_KEY)


@pytest.mark.parametrize(("sent", "status"), [(0, "FAILED"), (2, "PARTIAL")])
def test_halting_records_the_state_with_its_reason_and_time(
    tenant: Tenant, frozen_now: Any, sent: int, status: str
) -> None:
    bulk_send = make_send(tenant, {"sent": sent, "pending": 3})
    before = timezone.now()

    assert bulk_send_halt(bulk_send.pk, code="368", text="Temporarily blocked") is True
    halted_by = frozen_now.current
    assert bulk_send_halt(bulk_send.pk, code="368", text="Temporarily blocked") is False

    bulk_send.refresh_from_db()
    assert (bulk_send.status, bulk_send.completed_at) == (status, None)
    assert bulk_send.halted_at is not None
    assert before < bulk_send.halted_at <= halted_by
    assert bulk_send.is_halted
    assert bulk_send.halt_reason == bulk_send.status_reason
    assert "Meta error 368: Temporarily blocked" in bulk_send.halt_reason
    assert assert_counters_exact(bulk_send)["pending_count"] == 3


def test_a_halted_send_whose_last_message_settles_is_finished(tenant: Tenant) -> None:
    bulk_send = make_send(tenant, {"sent": 1, "sending": 1})
    in_flight = Message.objects.get(bulk_send=bulk_send, status=MessageStatus.SENDING)
    assert bulk_send_halt(bulk_send.pk, code="190", text="Invalid OAuth access token")

    batch_settle(
        [DeliveryResult(in_flight.pk, Settle.SENT, wamid="wamid.late")], now=timezone.now()
    )

    bulk_send.refresh_from_db()
    assert (bulk_send.status, bulk_send.completed_at is not None) == (
        BulkSendStatus.COMPLETED,
        True,
    )
    assert bulk_send_resume(bulk_send=bulk_send) is False


@pytest.mark.parametrize(
    ("statuses", "finished_as"),
    [
        ({"sent": 2}, BulkSendStatus.COMPLETED),
        ({"sent": 1, "failed": 1}, BulkSendStatus.PARTIAL),
        ({"failed": 2}, BulkSendStatus.FAILED),
    ],
)
def test_finishing_is_one_rule_and_happens_once(
    tenant: Tenant, frozen_now: Any, statuses: dict[str, int], finished_as: str
) -> None:
    bulk_send = make_send(tenant, statuses)
    before = timezone.now()

    assert bulk_send_finish_if_done(bulk_send.pk) is True
    finished_by = frozen_now.current
    assert bulk_send_finish_if_done(bulk_send.pk) is False

    bulk_send.refresh_from_db()
    assert bulk_send.status == finished_as
    assert bulk_send.completed_at is not None
    assert before < bulk_send.completed_at <= finished_by


def test_a_send_with_messages_pending_is_not_finished(tenant: Tenant) -> None:
    bulk_send = make_send(tenant, {"sent": 1, "sending": 1})

    assert bulk_send_finish_if_done(bulk_send.pk) is False

    bulk_send.refresh_from_db()
    assert (bulk_send.status, bulk_send.completed_at) == (BulkSendStatus.PROCESSING, None)


def test_the_last_settled_message_finishes_its_send_in_the_same_transaction(
    tenant: Tenant, frozen_now: Any
) -> None:
    bulk_send = make_send(tenant, {"sent": 1, "sending": 1})
    in_flight = Message.objects.get(bulk_send=bulk_send, status=MessageStatus.SENDING)

    now = timezone.now()
    counts = batch_settle(
        [DeliveryResult(in_flight.pk, Settle.FAILED, error_code="131026", error_message="x")],
        now=now,
    )

    assert counts == {"failed": 1}
    bulk_send.refresh_from_db()
    assert (bulk_send.status, bulk_send.completed_at) == (BulkSendStatus.PARTIAL, now)
    assert_counters_exact(bulk_send)


@pytest.mark.parametrize(
    ("status", "statuses", "reason"),
    [
        pytest.param(BulkSendStatus.QUEUED, {"pending": 2}, "", id="queued"),
        pytest.param(BulkSendStatus.PROCESSING, {"pending": 2}, "", id="processing"),
        pytest.param(BulkSendStatus.COMPLETED, {"sent": 2}, "", id="completed"),
        pytest.param(BulkSendStatus.FAILED, {"failed": 2}, "", id="all-failed"),
        pytest.param(
            BulkSendStatus.CANCELLED,
            {"cancelled": 2},
            "Cancelled by an operator.",
            id="cancelled",
        ),
    ],
)
def test_resuming_works_only_on_a_halted_send(
    tenant: Tenant, status: str, statuses: dict[str, int], reason: str
) -> None:
    finished = status not in (BulkSendStatus.QUEUED, BulkSendStatus.PROCESSING)
    bulk_send = make_send(
        tenant,
        statuses,
        status=status,
        status_reason=reason,
        completed_at=timezone.now() if finished else None,
    )

    assert bulk_send_resume(bulk_send=bulk_send) is False

    bulk_send.refresh_from_db()
    assert (bulk_send.status, bulk_send.status_reason) == (status, reason)


# --- the admin's actions ------------------------------------------------------------------------


def run_action(client: Client, action: str, *sends: BulkSend) -> Any:
    response = client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(send.pk) for send in sends]},
        follow=True,
    )
    assert response.status_code == 200
    return response


def test_an_operator_cancels_sends_from_the_admin(admin_client: Client, tenant: Tenant) -> None:
    first = make_send(tenant, {"pending": 2, "sent": 1})
    second = make_send(tenant, {"pending": 1}, status=BulkSendStatus.QUEUED)
    finished = make_send(tenant, {"sent": 1}, status=BulkSendStatus.COMPLETED)

    response = run_action(admin_client, "cancel_sends", first, second, finished)

    assert "Cancelled 3 pending messages." in response.content.decode()
    for bulk_send in (first, second, finished):
        bulk_send.refresh_from_db()
        assert_counters_exact(bulk_send)
    assert (first.status, second.status, finished.status) == (
        BulkSendStatus.CANCELLED,
        BulkSendStatus.CANCELLED,
        BulkSendStatus.COMPLETED,
    )


def test_an_operator_resumes_a_halted_send_from_the_admin(
    admin_client: Client,
    tenant: Tenant,
    delivery_redis: redis.Redis,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    delivery_redis.delete(QUEUE_KEY)
    halted = make_halted_send(tenant)
    running = make_send(tenant, {"pending": 1})

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "resume_sends", halted, running)

    assert "Resumed 1 sends." in response.content.decode()
    halted.refresh_from_db()
    assert (halted.status, halted.status_reason) == (BulkSendStatus.PROCESSING, "")
    assert queued_drains(delivery_redis) == [str(halted.pk)]
    delivery_redis.delete(QUEUE_KEY)


# --- a cancel while a drain holds messages -------------------------------------------------------


def cancel_through_the_admin(bulk_send: BulkSend) -> None:
    operator = Client()
    operator.force_login(User.objects.create_superuser("ops", "ops@example.com", "x"))
    response = operator.post(
        CHANGELIST, {"action": "cancel_sends", "_selected_action": [str(bulk_send.pk)]}
    )
    assert response.status_code == 302


def assert_ended_with_nothing_pending(bulk_send: BulkSend) -> dict[str, int]:
    bulk_send.refresh_from_db()
    assert bulk_send.status == BulkSendStatus.CANCELLED
    # Nothing pending to a client at once; no row either once the conversion the cancel (or the
    # reaper's sweep) woke has run.
    assert assert_counters_exact(bulk_send)["pending_count"] == 0
    cancelled_messages_convert(bulk_send.pk)
    assert not Message.objects.filter(
        bulk_send=bulk_send, status__in=(MessageStatus.PENDING, MessageStatus.SENDING)
    ).exists()
    return assert_counters_exact(bulk_send)


@pytest.mark.parametrize("outcome", [Settle.RETRY, Settle.RELEASE])
def test_messages_a_drain_sends_back_to_pending_after_a_cancel_are_cancelled(
    tenant: Tenant, outcome: Settle
) -> None:
    bulk_send = make_send(tenant, {"sending": 3, "pending": 2})
    in_flight = list(Message.objects.filter(bulk_send=bulk_send, status=MessageStatus.SENDING))

    cancel_through_the_admin(bulk_send)
    # The drain's batch settles after the cancel: Meta asked to retry, or it was never tried.
    now = timezone.now()
    batch_settle(
        [DeliveryResult(m.pk, outcome, retry_at=now) for m in in_flight[:2]]
        + [DeliveryResult(in_flight[2].pk, Settle.SENT, wamid="wamid.went-out")],
        now=now,
    )
    bulk_sends_reap(now=now)

    counts = assert_ended_with_nothing_pending(bulk_send)
    assert (counts["cancelled_count"], counts["sent_count"]) == (4, 1)


def test_messages_whose_lease_is_reaped_after_a_cancel_are_cancelled(
    tenant: Tenant, settings: Any
) -> None:
    bulk_send = make_send(tenant, {"sending": 4, "pending": 1})
    cancel_through_the_admin(bulk_send)

    # The drain died holding them: long after their lease, the reaper hands them back.
    bulk_sends_reap(now=timezone.now() + timedelta(days=2))

    counts = assert_ended_with_nothing_pending(bulk_send)
    assert counts["cancelled_count"] + counts["failed_count"] == 5


def test_a_drain_that_sees_the_cancel_cancels_what_its_batch_sent_back(tenant: Tenant) -> None:
    bulk_send = make_send(tenant, {"sending": 2})
    in_flight = list(Message.objects.filter(bulk_send=bulk_send))
    cancel_through_the_admin(bulk_send)
    now = timezone.now()
    batch_settle([DeliveryResult(m.pk, Settle.RETRY, retry_at=now) for m in in_flight], now=now)

    report = bulk_send_drain(bulk_send.pk)

    assert report.batches == 0
    assert assert_ended_with_nothing_pending(bulk_send)["cancelled_count"] == 2
