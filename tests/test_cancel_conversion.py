"""A cancel answers once the send is cancelled; its pending rows are turned afterwards
(bulksend.conversion). Meanwhile every read shows them cancelled and the counters are exact; the
conversion is idempotent and resumes where a dead worker left it; a retry of a send still
converting takes exactly the recipients it would take once converted."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.utils import timezone

from bulksend.conversion import CONVERT_BATCH, cancelled_messages_convert
from bulksend.lifecycle import batch_settle, bulk_send_cancel_leftovers
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.retry import RetryScope, bulk_send_retry
from messaging.delivery import DeliveryResult, Settle
from messaging.lookup import message_get_by_wamid
from messaging.models import Message, MessageStatus, callback_data_for
from tests import factories
from tests.conftest import Tenant
from tests.delivery_support import (
    assert_counters_exact,
    claimable,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
)
from tests.test_lifecycle import make_send

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("delivery_redis")]

API = "/api/v1/meta-templates/bulk-sends"
PENDING = 20_000


def pending_send(tenant: Tenant, count: int, **fields: Any) -> BulkSend:
    """A running send of `count` pending messages, written in bulk (exact counters)."""
    fields.setdefault("status", BulkSendStatus.PROCESSING)
    bulk_send = factories.make_bulk_send(
        tenant.number, tenant.template, unique_recipients=count, pending_count=count, **fields
    )
    Message.objects.bulk_create(
        (
            Message(
                bulk_send=bulk_send,
                business_account_id=tenant.number.business_account_id,
                recipient_phone=f"+54911{index:08d}",
                variables={"name": f"Cliente {index}"},
            )
            for index in range(count)
        ),
        batch_size=5_000,
    )
    return bulk_send


def stored(bulk_send: BulkSend, status: str) -> int:
    return Message.objects.filter(bulk_send=bulk_send, status=status).count()


def export_statuses(tenant: Tenant, bulk_send: BulkSend, query: str = "") -> list[str]:
    response = tenant.client.get(f"{API}/{bulk_send.pk}/messages/export/{query}")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    return [row["status"] for row in csv.DictReader(io.StringIO(text, newline=""))]


def test_a_cancel_of_20k_pending_answers_exact_before_any_row_is_turned(tenant: Tenant) -> None:
    bulk_send = pending_send(tenant, PENDING)

    response = tenant.client.post(f"{API}/{bulk_send.pk}/cancel/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["pending_count"]) == ("CANCELLED", 0)
    assert stored(bulk_send, MessageStatus.PENDING) == PENDING  # no row turned yet
    assert assert_counters_exact(bulk_send)["cancelled_count"] == PENDING
    # Every read shows them cancelled meanwhile.
    detail = tenant.client.get(f"{API}/{bulk_send.pk}/").json()
    assert (detail["status"], detail["pending_count"]) == ("CANCELLED", 0)
    page = tenant.client.get(f"{API}/{bulk_send.pk}/messages/?status=cancelled").json()
    assert page["count"] == PENDING
    assert {item["status"] for item in page["results"]} == {"cancelled"}
    unfiltered = tenant.client.get(f"{API}/{bulk_send.pk}/messages/").json()
    assert {item["status"] for item in unfiltered["results"]} == {"cancelled"}
    none_pending = tenant.client.get(f"{API}/{bulk_send.pk}/messages/?status=pending").json()
    assert (none_pending["count"], none_pending["results"]) == (0, [])
    assert export_statuses(tenant, bulk_send, "?status=pending") == []
    assert export_statuses(tenant, bulk_send, "?status=cancelled") == ["cancelled"] * PENDING
    first = Message.objects.filter(bulk_send=bulk_send).order_by("id").first()
    assert first is not None
    looked_up = message_get_by_wamid(
        organization=tenant.organization, wamid=callback_data_for(first.pk)
    )
    assert looked_up.message.public_status == "cancelled"
    # No drain claims them.
    assert not claimable(bulk_send.pk)

    # The task the cancel woke, run here: rows turned, counters unchanged and exact.
    assert cancelled_messages_convert(bulk_send.pk) == PENDING
    assert stored(bulk_send, MessageStatus.PENDING) == 0
    assert assert_counters_exact(bulk_send)["cancelled_count"] == PENDING
    assert export_statuses(tenant, bulk_send) == ["cancelled"] * PENDING


def test_the_conversion_is_idempotent_and_resumes_after_a_worker_died(tenant: Tenant) -> None:
    count = 2 * CONVERT_BATCH + 123
    bulk_send = pending_send(tenant, count)
    assert tenant.client.post(f"{API}/{bulk_send.pk}/cancel/").status_code == 200

    # A worker that dies after its first batch: that batch is committed, the rest waits.
    assert cancelled_messages_convert(bulk_send.pk, max_batches=1) == CONVERT_BATCH
    assert stored(bulk_send, MessageStatus.CANCELLED) == CONVERT_BATCH
    assert assert_counters_exact(bulk_send)["cancelled_count"] == count
    # Run again (the reaper's sweep wakes it): it takes the rest, then there is nothing to do.
    assert cancelled_messages_convert(bulk_send.pk) == count - CONVERT_BATCH
    assert cancelled_messages_convert(bulk_send.pk) == 0
    assert bulk_send_cancel_leftovers(bulk_send.pk) == 0
    assert stored(bulk_send, MessageStatus.CANCELLED) == count
    assert assert_counters_exact(bulk_send)["cancelled_count"] == count


def test_the_conversion_leaves_a_send_that_is_not_cancelled_alone(tenant: Tenant) -> None:
    bulk_send = pending_send(tenant, 10)

    assert cancelled_messages_convert(bulk_send.pk) == 0
    assert stored(bulk_send, MessageStatus.PENDING) == 10


def test_what_a_drain_gives_back_after_the_cancel_is_counted_once(tenant: Tenant) -> None:
    bulk_send = make_send(tenant, {"pending": 3, "sending": 2})
    in_flight = list(Message.objects.filter(bulk_send=bulk_send, status=MessageStatus.SENDING))
    assert tenant.client.post(f"{API}/{bulk_send.pk}/cancel/").status_code == 200
    assert assert_counters_exact(bulk_send)["pending_count"] == 2

    batch_settle([DeliveryResult(m.pk, Settle.RELEASE) for m in in_flight], now=timezone.now())
    # The drain that gave them back recounts; again changes nothing (never counted twice).
    assert bulk_send_cancel_leftovers(bulk_send.pk) == 2
    assert bulk_send_cancel_leftovers(bulk_send.pk) == 0
    assert assert_counters_exact(bulk_send)["cancelled_count"] == 5
    assert cancelled_messages_convert(bulk_send.pk) == 5
    assert assert_counters_exact(bulk_send)["cancelled_count"] == 5


@pytest.mark.parametrize(
    ("scope", "expected"),
    [(RetryScope.PENDING, {"pending", "cancelled"}), (RetryScope.ALL_UNSENT, None)],
)
def test_a_retry_of_a_send_still_converting_takes_exactly_its_unsent(
    tenant: Tenant, scope: RetryScope, expected: set[str] | None
) -> None:
    bulk_send = make_send(tenant, {"pending": 4, "sent": 2, "failed": 2, "sending": 1})
    phones = {
        status: set(
            Message.objects.filter(bulk_send=bulk_send, status=status).values_list(
                "recipient_phone", flat=True
            )
        )
        for status in ("pending", "sent", "failed", "sending")
    }
    assert tenant.client.post(f"{API}/{bulk_send.pk}/cancel/").status_code == 200
    # Half the rows turned: the retry must not tell turned ones from those still pending.
    cancelled_messages_convert(bulk_send.pk, batch=2, max_batches=1)
    assert stored(bulk_send, MessageStatus.PENDING) == 2

    retry = bulk_send_retry(bulk_send=bulk_send, created_by=None, scope=scope).accepted.bulk_send

    taken = set(Message.objects.filter(bulk_send=retry).values_list("recipient_phone", flat=True))
    wanted = phones["pending"] | (phones["failed"] if expected is None else set())
    assert taken == wanted  # never what went out, never what is in flight
    assert assert_counters_exact(retry)["pending_count"] == len(wanted)


def cancelled_retry_still_converting(tenant: Tenant) -> tuple[BulkSend, BulkSend]:
    """A finished send of 3 failed messages, and its retry of them, cancelled, its rows still
    stored `pending`."""
    source = make_send(tenant, {"failed": 3})
    source.status = BulkSendStatus.PARTIAL
    source.completed_at = timezone.now()
    source.save()
    first = bulk_send_retry(bulk_send=source, created_by=None, scope=RetryScope.FAILED)
    retried = first.accepted.bulk_send
    assert tenant.client.post(f"{API}/{retried.pk}/cancel/").status_code == 200
    assert stored(retried, MessageStatus.PENDING) == 3  # cancelled, rows not turned yet
    return source, retried


def test_a_cancelled_retry_still_converting_does_not_hold_back_its_recipients(
    tenant: Tenant,
) -> None:
    _, retried = cancelled_retry_still_converting(tenant)

    again = bulk_send_retry(bulk_send=retried, created_by=None, scope=RetryScope.PENDING)

    assert again.accepted.bulk_send.unique_recipients == 3


def test_a_cancelled_retry_still_converting_lets_its_source_be_retried_again(
    tenant: Tenant,
) -> None:
    source, _ = cancelled_retry_still_converting(tenant)

    # The same recipients, whose rows in the cancelled retry still read `pending` when stored.
    again = bulk_send_retry(bulk_send=source, created_by=None, scope=RetryScope.FAILED)

    assert again.created
    assert again.accepted.bulk_send.unique_recipients == 3
