"""The drain checks the service window again when it sends: a recipient whose window with the
sending number is open goes out however full the portfolio's 24 h window is, and one whose
window closed after the send was accepted waits for room like any other."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bulksend.drain import bulk_send_drain
from bulksend.models import BulkSend
from messaging.models import Message, MessageStatus
from meta_sandbox import SandboxThread
from tests import factories
from tests.conftest import Tenant, TickingClock
from tests.delivery_support import (
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    received,
    sandbox_fixture,  # noqa: F401
    send_bulk,
    welcome_recipients,
)
from tests.test_drain_quota import fill_window, set_tier

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("frozen_now")]


def test_recipients_with_an_open_window_go_out_when_the_portfolio_window_is_full(
    tenant: Tenant, sandbox: SandboxThread, frozen_now: TickingClock
) -> None:
    set_tier(tenant, "TIER_50")
    fill_window(tenant, recipients=50, sent_at=frozen_now.current - timedelta(hours=1))
    recipients = welcome_recipients(3)
    for recipient in recipients[:2]:
        factories.make_inbound(
            tenant.number, phone=recipient["phone"], sent_at=frozen_now.current - timedelta(hours=5)
        )

    accepted = send_bulk(tenant, recipients)
    bulk_send_drain(accepted["bulk_send_id"])

    assert accepted["quota_info"]["quota_needed"] == 1
    sent_to = sorted(m["to"] for m in received(sandbox).messages)
    assert sent_to == sorted(r["phone"].lstrip("+") for r in recipients[:2])
    waiting = Message.objects.get(bulk_send=accepted["bulk_send_id"], status=MessageStatus.PENDING)
    assert waiting.recipient_phone == recipients[2]["phone"]
    assert_counters_exact(BulkSend.objects.get(pk=accepted["bulk_send_id"]))


def test_a_window_that_closed_after_acceptance_makes_its_recipient_wait(
    tenant: Tenant, sandbox: SandboxThread, frozen_now: TickingClock
) -> None:
    set_tier(tenant, "TIER_50")
    window_filled_at = frozen_now.current - timedelta(hours=1)
    fill_window(tenant, recipients=50, sent_at=window_filled_at)
    (recipient,) = welcome_recipients(1, start=40)
    wrote_at = frozen_now.current - timedelta(hours=23)
    factories.make_inbound(tenant.number, phone=recipient["phone"], sent_at=wrote_at)

    accepted = send_bulk(tenant, [recipient])
    frozen_now.current = wrote_at + timedelta(hours=24)  # the drain runs as the window closes
    report = bulk_send_drain(accepted["bulk_send_id"])

    assert accepted["quota_info"]["quota_needed"] == 0
    assert received(sandbox).messages == []
    message = Message.objects.get(bulk_send=accepted["bulk_send_id"])
    assert message.status == MessageStatus.PENDING
    # It waits for the first place of the portfolio's window to free up.
    assert report.next_wake_at == window_filled_at + timedelta(hours=24)
