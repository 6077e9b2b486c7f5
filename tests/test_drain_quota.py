"""The portfolio's moving 24 h window of unique recipients, as the drain enforces it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from bulksend.drain import bulk_send_drain
from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message, MessageStatus
from meta_sandbox import SandboxThread
from tests import factories
from tests.conftest import Tenant
from tests.delivery_support import (
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    in_threads,
    phone,
    received,
    sandbox_fixture,  # noqa: F401
    send_bulk,
    welcome_recipient,
    welcome_recipients,
)

pytestmark = pytest.mark.django_db(transaction=True)

WINDOW = timedelta(hours=24)
WINDOW_PREFIX = "+54911600"


def fill_window(tenant: Tenant, *, recipients: int, sent_at: datetime) -> list[str]:
    """`recipients` other recipients the portfolio messaged at `sent_at`, by an earlier send."""
    earlier = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.COMPLETED
    )
    phones = [phone(n, WINDOW_PREFIX) for n in range(recipients)]
    for number in phones:
        factories.make_message(
            earlier, phone=number, status=MessageStatus.SENT, sent_at=sent_at, wamid=f"w-{number}"
        )
    return phones


def recipients_in_window(tenant: Tenant) -> int:
    since = timezone.now() - WINDOW
    return (
        Message.objects.filter(business_account=tenant.account, sent_at__gte=since)
        .values("recipient_phone")
        .distinct()
        .count()
    )


def set_tier(tenant: Tenant, tier: str) -> None:
    tenant.account.messaging_limit_tier = tier
    tenant.account.save()


# "An hour ago" in the test and "now" in the view and the drain are readings of one clock that
# moves only as it is read: a pause between them cannot move the estimate below 23 h.
@pytest.mark.usefixtures("frozen_now")
def test_a_send_larger_than_the_room_left_sends_what_fits_and_waits_for_the_window(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    set_tier(tenant, "TIER_50")
    an_hour_ago = timezone.now() - timedelta(hours=1)
    in_window = fill_window(tenant, recipients=30, sent_at=an_hour_ago)
    # 5 recipients already messaged (free) and 30 new ones, of which 20 fit.
    recipients = [welcome_recipient(number, n) for n, number in enumerate(in_window[:5])]
    recipients += welcome_recipients(30, start=100)

    accepted = send_bulk(tenant, recipients)
    report = bulk_send_drain(accepted["bulk_send_id"])

    assert accepted["quota_info"] == {
        "can_send": False,
        "quota_needed": 30,
        "quota_available": 0,
        "quota_total": 50,
        "tier": "TIER_50",
    }
    # Its estimate waits for the window too.
    assert accepted["estimated_time_minutes"] >= 23 * 60
    sent_to = {m["to"] for m in received(sandbox).messages}
    assert len(sent_to) == 25
    assert {number.lstrip("+") for number in in_window[:5]} <= sent_to
    assert recipients_in_window(tenant) == 50
    waiting = Message.objects.filter(bulk_send=accepted["bulk_send_id"], status="pending")
    assert waiting.count() == 10
    for message in waiting:
        assert message.next_attempt_at == an_hour_ago + WINDOW
        assert message.attempts == 0
    assert report.next_wake_at == an_hour_ago + WINDOW
    bulk_send = BulkSend.objects.get(pk=accepted["bulk_send_id"])
    assert bulk_send.status == BulkSendStatus.PROCESSING
    counts = assert_counters_exact(bulk_send)
    assert (counts["sent_count"], counts["pending_count"]) == (25, 10)
    # Nothing more goes out before the window frees room.
    assert bulk_send_drain(bulk_send.pk).batches == 0
    assert len(received(sandbox).messages) == 25


@pytest.mark.usefixtures("frozen_now")
def test_put_back_recipients_wait_for_the_first_place_that_really_frees(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    # The window is full: 49 recipients messaged two hours ago, and one messaged three hours ago
    # and again an hour ago, whose place stays held until 23 h from now.
    set_tier(tenant, "TIER_50")
    now = timezone.now()
    fill_window(tenant, recipients=49, sent_at=now - timedelta(hours=2))
    again = phone(900, WINDOW_PREFIX)
    for hours_ago in (3, 1):
        earlier = factories.make_bulk_send(
            tenant.number, tenant.template, status=BulkSendStatus.COMPLETED
        )
        factories.make_message(
            earlier,
            phone=again,
            status=MessageStatus.SENT,
            sent_at=now - timedelta(hours=hours_ago),
            wamid=f"w-again-{hours_ago}",
        )

    accepted = send_bulk(tenant, welcome_recipients(3, start=700))
    report = bulk_send_drain(accepted["bulk_send_id"])

    assert received(sandbox).messages == []
    waiting = Message.objects.filter(bulk_send=accepted["bulk_send_id"], status="pending")
    assert [m.next_attempt_at for m in waiting] == [now - timedelta(hours=2) + WINDOW] * 3
    assert report.next_wake_at == now - timedelta(hours=2) + WINDOW


def test_two_drains_at_once_never_spend_more_than_the_room_left(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    set_tier(tenant, "TIER_50")
    fill_window(tenant, recipients=30, sent_at=timezone.now() - timedelta(hours=1))
    sends = []
    for start in (200, 300):
        bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
        for n in range(start, start + 20):
            recipient = welcome_recipient(phone(n), n)
            factories.make_message(
                bulk_send,
                phone=recipient["phone"],
                variables=recipient["variables"],
                button_variables=recipient["button_variables"],
            )
        sends.append(bulk_send)

    reports = in_threads(*(lambda s=s: bulk_send_drain(s.pk) for s in sends))

    assert sum(report.outcomes.get("sent", 0) for report in reports) == 20
    assert len(received(sandbox).messages) == 20
    assert recipients_in_window(tenant) == 50
    pending = Message.objects.filter(bulk_send__in=sends, status=MessageStatus.PENDING)
    assert pending.count() == 20
    for bulk_send in sends:
        assert_counters_exact(bulk_send)


def test_an_unlimited_portfolio_sends_everything_whatever_its_window_holds(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    set_tier(tenant, "TIER_UNLIMITED")
    fill_window(tenant, recipients=60, sent_at=timezone.now() - timedelta(hours=1))

    accepted = send_bulk(tenant, welcome_recipients(40))
    bulk_send = drain_to_completion(accepted["bulk_send_id"])

    assert accepted["quota_info"]["can_send"] is True
    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert len(received(sandbox).messages) == 40
    assert assert_counters_exact(bulk_send)["sent_count"] == 40
    per_status = (
        Message.objects.filter(bulk_send=bulk_send).values("status").annotate(n=Count("id"))
    )
    assert list(per_status) == [{"status": "sent", "n": 40}]
