"""The 24 h messaging limit as Meta counts it since October 2025: only recipients reached outside
their customer-service window with the sending number take a place. A window opens when the
person writes to the number (an inbound message) and stays open 24 h.

The clock is frozen (`frozen_now`, which moves a microsecond per reading): "exactly 24 h ago"
read by the test is a little more than 24 h before the view's "now", so the window is closed.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from bulksend.admission import QuotaGate
from bulksend.models import BulkSendStatus
from bulksend.quota import window_usage
from messaging.delivery import ClaimedMessage
from messaging.models import MessageStatus
from templates_app.models import MessageTemplate
from tests import factories
from tests.conftest import Tenant, TickingClock
from tests.delivery_support import (
    ScriptedMeta,
    delivery_redis_fixture,  # noqa: F401
    scripted_meta_fixture,  # noqa: F401
)
from tests.test_quota import messaged, phones, plain_template, send_to, set_tier, waiting
from tests.test_send_message import PHONE, post

# The contract's `quota_info` keys (send-bulk's 202 example): the window adds none.
QUOTA_INFO_KEYS = {"can_send", "quota_needed", "quota_available", "quota_total", "tier"}
JUST_OPEN = timedelta(hours=24) - timedelta(seconds=1)
JUST_CLOSED = timedelta(hours=24)


@pytest.fixture
def plain(tenant: Tenant) -> MessageTemplate:
    return plain_template(tenant)


def wrote(tenant: Tenant, clock: TickingClock, phone: str, ago: timedelta) -> None:
    factories.make_inbound(tenant.number, phone=phone, sent_at=clock.current - ago)


# --- at acceptance ----------------------------------------------------------------------------


@pytest.mark.usefixtures("plain")
@pytest.mark.parametrize(
    ("wrote_ago", "needed"),
    [(JUST_OPEN, 2), (JUST_CLOSED, 3)],
    ids=["wrote 23:59:59 ago: window open, no quota", "wrote 24 h ago: window closed"],
)
def test_a_recipient_who_wrote_within_24_hours_needs_no_quota(
    tenant: Tenant, frozen_now: TickingClock, wrote_ago: timedelta, needed: int
) -> None:
    to = phones(3)
    wrote(tenant, frozen_now, to[0], wrote_ago)

    quota = send_to(tenant, to)["quota_info"]

    assert set(quota) == QUOTA_INFO_KEYS  # the contract's shape, nothing added
    assert (quota["quota_needed"], quota["quota_available"]) == (needed, 1000 - needed)


@pytest.mark.usefixtures("plain")
def test_a_window_with_another_number_of_the_portfolio_does_not_free_this_one(
    tenant: Tenant, frozen_now: TickingClock
) -> None:
    other = factories.make_number(tenant.account)
    to = phones(2)
    factories.make_inbound(other, phone=to[0], sent_at=frozen_now.current - timedelta(hours=1))

    quota = send_to(tenant, to)["quota_info"]

    assert quota["quota_needed"] == 2


def test_a_full_window_still_admits_recipients_whose_window_is_open(
    tenant: Tenant, plain: MessageTemplate, frozen_now: TickingClock
) -> None:
    set_tier(tenant, "TIER_250")
    messaged(tenant.number, plain, phones(250, start=1000), hours_ago=2)
    to = phones(3)
    for phone in to:
        wrote(tenant, frozen_now, phone, timedelta(hours=3))

    quota = send_to(tenant, to)["quota_info"]

    assert quota == {
        "can_send": True,
        "quota_needed": 0,
        "quota_available": 0,
        "quota_total": 250,
        "tier": "TIER_250",
    }


def test_a_message_sent_inside_the_window_holds_no_place_after_the_window_closes(
    tenant: Tenant, plain: MessageTemplate, frozen_now: TickingClock
) -> None:
    # Both were sent 2 h ago; the first recipient had written 23 h before that, so their window
    # was open then (and has closed since), the second's had closed a second before.
    free, counted = phones(2, start=500)
    wrote(tenant, frozen_now, free, timedelta(hours=2) + JUST_OPEN)
    wrote(tenant, frozen_now, counted, timedelta(hours=2) + JUST_CLOSED + timedelta(seconds=1))
    messaged(tenant.number, plain, [free, counted], hours_ago=2)

    quota = send_to(tenant, phones(1))["quota_info"]

    assert (quota["quota_needed"], quota["quota_available"]) == (1, 1000 - 1 - 1)
    assert window_usage(tenant.account, frozen_now()).held == 2  # this send's 1 and `counted`


def test_a_message_sent_before_the_person_wrote_keeps_its_place(
    tenant: Tenant, plain: MessageTemplate, frozen_now: TickingClock
) -> None:
    # Sent 3 h ago outside any window; they wrote back an hour ago. Meta counted the send.
    (to,) = phones(1, start=600)
    messaged(tenant.number, plain, [to], hours_ago=3)
    wrote(tenant, frozen_now, to, timedelta(hours=1))

    assert window_usage(tenant.account, frozen_now()).held == 1


def test_waiting_recipients_of_other_sends_with_an_open_window_hold_no_place(
    tenant: Tenant, plain: MessageTemplate, frozen_now: TickingClock
) -> None:
    open_window, closed_window = phones(2, start=700)
    waiting(tenant.number, plain, [open_window, closed_window], send_status=BulkSendStatus.QUEUED)
    wrote(tenant, frozen_now, open_window, JUST_OPEN)
    wrote(tenant, frozen_now, closed_window, JUST_CLOSED)

    quota = send_to(tenant, phones(1))["quota_info"]

    assert quota["quota_available"] == 1000 - 1 - 1


@pytest.mark.usefixtures("plain")
def test_the_business_accounts_figures_leave_free_messages_out(
    tenant: Tenant, frozen_now: TickingClock
) -> None:
    free, counted = phones(2, start=800)
    wrote(tenant, frozen_now, free, timedelta(hours=2))
    earlier = factories.make_bulk_send(tenant.number, tenant.template)
    for phone in (free, counted):
        factories.make_message(
            earlier, phone=phone, status=MessageStatus.SENT, sent_at=frozen_now.current
        )

    response = tenant.client.get("/api/v1/business-accounts/")

    quota = response.json()["businessAccounts"][0]["phoneNumbers"][0]["quota"]
    assert (quota["uniqueNumbersSent24h"], quota["remaining"]) == (1, 999)


# --- when a message is about to go out (the drain's and the single send's gate) ---------------


def claimed(tenant: Tenant, to: list[str]) -> list[ClaimedMessage]:
    send = factories.make_bulk_send(tenant.number, tenant.template)
    rows = [factories.make_message(send, phone=phone, status=MessageStatus.SENDING) for phone in to]
    return [ClaimedMessage(row.pk, row.recipient_phone, {}, {}, 1) for row in rows]


def test_the_gate_admits_a_recipient_with_an_open_window_when_the_window_is_full(
    tenant: Tenant, plain: MessageTemplate, frozen_now: TickingClock
) -> None:
    set_tier(tenant, "TIER_50")
    messaged(tenant.number, plain, phones(50, start=1000), hours_ago=1)
    just_open, just_closed, never = phones(3)
    wrote(tenant, frozen_now, just_open, JUST_OPEN)
    wrote(tenant, frozen_now, just_closed, JUST_CLOSED)
    batch = claimed(tenant, [just_open, just_closed, never])

    admitted, held_back = QuotaGate(tenant.number).split(batch, frozen_now())

    assert [m.recipient_phone for m in admitted] == [just_open]
    assert [m.recipient_phone for m in held_back] == [just_closed, never]


def test_the_gate_spends_no_room_on_open_windows(
    tenant: Tenant, plain: MessageTemplate, frozen_now: TickingClock
) -> None:
    # 48 places taken by sent messages and one by a message in flight outside a window: 1 left.
    set_tier(tenant, "TIER_50")
    messaged(tenant.number, plain, phones(48, start=1000), hours_ago=1)
    claimed(tenant, phones(1, start=2000))
    to = phones(5)
    for phone in to[:3]:
        wrote(tenant, frozen_now, phone, timedelta(minutes=5))

    admitted, held_back = QuotaGate(tenant.number).split(claimed(tenant, to), frozen_now())

    assert [m.recipient_phone for m in admitted] == to[:4]
    assert [m.recipient_phone for m in held_back] == [to[4]]


def test_a_single_send_to_a_recipient_with_an_open_window_goes_out_when_the_window_is_full(
    tenant: Tenant, scripted_meta: ScriptedMeta, frozen_now: TickingClock
) -> None:
    fill_to_limit(tenant, frozen_now)
    wrote(tenant, frozen_now, PHONE, timedelta(hours=23))

    response = post(tenant)

    assert response.status_code == 200, response.content
    assert len(scripted_meta.requests) == 1


def test_a_single_send_whose_window_closed_24_hours_ago_gets_the_429(
    tenant: Tenant, scripted_meta: ScriptedMeta, frozen_now: TickingClock
) -> None:
    fill_to_limit(tenant, frozen_now)
    wrote(tenant, frozen_now, PHONE, JUST_CLOSED)

    response = post(tenant)

    assert response.status_code == 429
    assert scripted_meta.requests == []


def fill_to_limit(tenant: Tenant, clock: TickingClock) -> None:
    set_tier(tenant, "TIER_2")
    earlier = factories.make_bulk_send(tenant.number, tenant.template)
    for phone in ("+5491100000001", "+5491100000002"):
        factories.make_message(
            earlier,
            phone=phone,
            status=MessageStatus.SENT,
            sent_at=clock.current - timedelta(hours=2),
        )
