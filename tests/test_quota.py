"""The portfolio's 24 h quota in `quota_info` and the send's `estimated_time_minutes`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from bulksend.models import BulkSend, BulkSendStatus
from bulksend.quota import estimate_minutes
from messaging.models import MessageStatus
from templates_app.models import MessageTemplate, PhoneNumber
from tests import factories
from tests.conftest import Tenant

URL = "/api/v1/meta-templates/send-bulk/"

# Earlier messages are dated "hours ago" by the test and the window is computed from "now" by the
# view: on the wall clock, a pause between the two moved the estimate across a rounding step.
pytestmark = pytest.mark.usefixtures("frozen_now")


def phones(count: int, start: int = 0) -> list[str]:
    return [f"+54911{20_000_000 + start + n:08d}" for n in range(count)]


def plain_template(tenant: Tenant) -> MessageTemplate:
    """A template without variables, so that large sends stay small requests."""
    return factories.make_template(
        tenant.account, name="plain_notice", components=[{"type": "BODY", "text": "Hola!"}]
    )


def send_to(tenant: Tenant, to: list[str], number: PhoneNumber | None = None) -> dict[str, Any]:
    body = {
        "phone_number_id": (number or tenant.number).phone_number_id,
        "template_name": "plain_notice",
        "recipients": [{"phone": phone} for phone in to],
    }
    response = tenant.client.post(URL, body, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def set_tier(tenant: Tenant, tier: str) -> None:
    tenant.account.messaging_limit_tier = tier
    tenant.account.save()
    tenant.number.messaging_limit_tier = tier
    tenant.number.save()


def messaged(
    number: PhoneNumber,
    template: MessageTemplate,
    to: list[str],
    *,
    hours_ago: float = 1,
    send_status: str = BulkSendStatus.COMPLETED,
) -> BulkSend:
    """An earlier send whose messages to `to` went out `hours_ago`."""
    bulk_send = factories.make_bulk_send(number, template, status=send_status)
    sent_at = timezone.now() - timedelta(hours=hours_ago)
    for phone in to:
        factories.make_message(bulk_send, phone=phone, status=MessageStatus.SENT, sent_at=sent_at)
    return bulk_send


def waiting(
    number: PhoneNumber,
    template: MessageTemplate,
    to: list[str],
    *,
    send_status: str = BulkSendStatus.QUEUED,
    message_status: str = MessageStatus.PENDING,
) -> BulkSend:
    """An earlier send whose messages to `to` have not gone out."""
    bulk_send = factories.make_bulk_send(number, template, status=send_status)
    for phone in to:
        factories.make_message(bulk_send, phone=phone, status=message_status)
    return bulk_send


@pytest.fixture
def plain(tenant: Tenant) -> MessageTemplate:
    return plain_template(tenant)


# --- quota_info -------------------------------------------------------------------------------


@pytest.mark.usefixtures("plain")
def test_it_reports_the_spec_figures_for_a_fresh_1000_tier(tenant: Tenant) -> None:
    assert send_to(tenant, phones(3))["quota_info"] == {
        "can_send": True,
        "quota_needed": 3,
        "quota_available": 997,
        "quota_total": 1000,
        "tier": "TIER_1000",
    }


def test_it_counts_recipients_messaged_in_the_last_24_hours(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    messaged(tenant.number, plain, phones(5, start=100), hours_ago=1)
    messaged(tenant.number, plain, phones(2, start=200), hours_ago=23.9)

    quota = send_to(tenant, phones(3))["quota_info"]

    assert (quota["quota_needed"], quota["quota_available"]) == (3, 1000 - 7 - 3)


def test_it_ignores_messages_sent_more_than_24_hours_ago(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    messaged(tenant.number, plain, phones(5, start=100), hours_ago=24.1)
    messaged(tenant.number, plain, phones(5, start=200), hours_ago=72)

    quota = send_to(tenant, phones(3))["quota_info"]

    assert (quota["quota_needed"], quota["quota_available"]) == (3, 997)


def test_it_counts_a_recipient_messaged_many_times_once(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    for hours_ago in (1, 2, 3):
        messaged(tenant.number, plain, ["+5491130000000"], hours_ago=hours_ago)

    quota = send_to(tenant, phones(3))["quota_info"]

    assert quota["quota_available"] == 1000 - 1 - 3


def test_it_needs_no_quota_for_recipients_already_messaged_in_the_window(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    to = phones(3)
    messaged(tenant.number, plain, to[:2], hours_ago=5)

    quota = send_to(tenant, to)["quota_info"]

    assert quota == {
        "can_send": True,
        "quota_needed": 1,
        "quota_available": 1000 - 2 - 1,
        "quota_total": 1000,
        "tier": "TIER_1000",
    }


def test_it_counts_a_send_once_per_unique_recipient(tenant: Tenant, plain: MessageTemplate) -> None:
    to = phones(3)

    quota = send_to(tenant, [*to, *to, to[0]])["quota_info"]

    assert (quota["quota_needed"], quota["quota_available"]) == (3, 997)


def test_it_shares_the_window_between_the_numbers_of_a_portfolio(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    second_number = factories.make_number(tenant.account)
    messaged(second_number, plain, phones(4, start=100))

    quota = send_to(tenant, phones(3))["quota_info"]

    assert quota["quota_available"] == 1000 - 4 - 3


def test_it_holds_quota_for_unsent_messages_of_other_active_sends_of_the_portfolio(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    second_number = factories.make_number(tenant.account)
    waiting(second_number, plain, phones(4, start=100), send_status=BulkSendStatus.QUEUED)
    waiting(
        tenant.number,
        plain,
        phones(2, start=200),
        send_status=BulkSendStatus.PROCESSING,
        message_status=MessageStatus.SENDING,
    )

    quota = send_to(tenant, phones(3))["quota_info"]

    assert (quota["quota_needed"], quota["quota_available"]) == (3, 1000 - 6 - 3)


def test_it_needs_no_quota_for_a_recipient_another_active_send_will_message(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    to = phones(3)
    waiting(tenant.number, plain, to[:1])

    quota = send_to(tenant, to)["quota_info"]

    assert (quota["quota_needed"], quota["quota_available"]) == (2, 1000 - 1 - 2)


def test_it_holds_no_quota_for_sends_that_are_over(tenant: Tenant, plain: MessageTemplate) -> None:
    waiting(
        tenant.number,
        plain,
        phones(4, start=100),
        send_status=BulkSendStatus.CANCELLED,
        message_status=MessageStatus.CANCELLED,
    )
    failed = factories.make_bulk_send(tenant.number, plain, status=BulkSendStatus.FAILED)
    factories.make_message(failed, phone="+5491140000000", status=MessageStatus.FAILED)

    quota = send_to(tenant, phones(3))["quota_info"]

    assert quota["quota_available"] == 997


def test_it_ignores_other_business_accounts(
    tenant: Tenant, other_tenant: Tenant, plain: MessageTemplate
) -> None:
    sibling_account = factories.make_account(tenant.organization)
    sibling_number = factories.make_number(sibling_account)
    sibling_template = factories.make_template(sibling_account)
    messaged(sibling_number, sibling_template, phones(5, start=100))
    waiting(sibling_number, sibling_template, phones(5, start=200))
    messaged(other_tenant.number, other_tenant.template, phones(5, start=300))

    quota = send_to(tenant, phones(3))["quota_info"]

    assert quota["quota_available"] == 997


def test_it_cannot_send_when_the_send_exceeds_the_room_left(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    set_tier(tenant, "TIER_50")
    messaged(tenant.number, plain, phones(49, start=100))

    body = send_to(tenant, phones(3))

    assert body["quota_info"] == {
        "can_send": False,
        "quota_needed": 3,
        "quota_available": 0,
        "quota_total": 50,
        "tier": "TIER_50",
    }
    # Accepted all the same: the rest waits for the window to free room.
    bulk_send = BulkSend.objects.get(pk=body["bulk_send_id"])
    assert bulk_send.status == BulkSendStatus.QUEUED
    assert bulk_send.pending_count == 3


def test_it_can_send_when_the_send_fills_the_room_exactly(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    set_tier(tenant, "TIER_50")
    messaged(tenant.number, plain, phones(47, start=100))

    quota = send_to(tenant, phones(3))["quota_info"]

    assert (quota["can_send"], quota["quota_available"]) == (True, 0)


@pytest.mark.usefixtures("plain")
def test_it_has_no_quota_figures_on_an_unlimited_tier(tenant: Tenant) -> None:
    set_tier(tenant, "TIER_UNLIMITED")

    assert send_to(tenant, phones(3))["quota_info"] == {
        "can_send": True,
        "quota_needed": 3,
        "quota_available": None,
        "quota_total": None,
        "tier": "TIER_UNLIMITED",
    }


@pytest.mark.usefixtures("plain")
@pytest.mark.parametrize(
    ("tier", "total"),
    [("TIER_250", 250), ("TIER_1K", 1000), ("TIER_2K", 2000), ("TIER_10K", 10_000)],
)
def test_it_reads_the_quota_total_from_the_tier(tenant: Tenant, tier: str, total: int) -> None:
    set_tier(tenant, tier)

    quota = send_to(tenant, phones(3))["quota_info"]

    assert (quota["quota_total"], quota["quota_available"], quota["tier"]) == (
        total,
        total - 3,
        tier,
    )


# --- estimated_time_minutes -------------------------------------------------------------------


@pytest.mark.usefixtures("plain")
def test_it_estimates_a_small_send_at_a_hundredth_of_a_minute(tenant: Tenant) -> None:
    assert send_to(tenant, phones(3))["estimated_time_minutes"] == 0.01


@pytest.mark.usefixtures("plain")
def test_it_paces_ten_thousand_recipients_at_the_numbers_80_per_second(tenant: Tenant) -> None:
    set_tier(tenant, "TIER_UNLIMITED")

    body = send_to(tenant, phones(10_000))

    # 10,000 / 80 = 125 s = 2.083 minutes, rounded up to a hundredth.
    assert body["estimated_time_minutes"] == 2.09
    assert body["quota_info"]["can_send"] is True


@pytest.mark.usefixtures("plain")
def test_it_paces_ten_thousand_recipients_at_1000_per_second(tenant: Tenant) -> None:
    set_tier(tenant, "TIER_UNLIMITED")
    tenant.number.throughput_per_second = 1000
    tenant.number.save()

    assert send_to(tenant, phones(10_000))["estimated_time_minutes"] == 0.17


@pytest.mark.usefixtures("plain")
def test_the_estimate_grows_with_the_recipients(tenant: Tenant) -> None:
    set_tier(tenant, "TIER_UNLIMITED")
    number = factories.make_number(tenant.account, throughput_per_second=10)

    estimates = [
        send_to(tenant, phones(count, start=1000 * i), number)["estimated_time_minutes"]
        for i, count in enumerate([10, 200, 900])
    ]

    # Each send also waits for the ones before it on the same number.
    assert estimates == [0.02, 0.35, 1.85]


def test_it_counts_the_earlier_active_sends_on_the_same_number(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    # Counters only: the messages of the earlier sends need not exist for the pacing.
    factories.make_bulk_send(
        tenant.number,
        plain,
        status=BulkSendStatus.PROCESSING,
        unique_recipients=4797,
        pending_count=4797,
    )

    # (4,797 ahead + 3) / 80 per second = 60 s.
    assert send_to(tenant, phones(3))["estimated_time_minutes"] == 1.0


def test_it_ignores_sends_that_are_over_or_on_other_numbers(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    other_number = factories.make_number(tenant.account)
    factories.make_bulk_send(
        other_number,
        plain,
        status=BulkSendStatus.QUEUED,
        unique_recipients=9600,
        pending_count=9600,
    )
    factories.make_bulk_send(
        tenant.number,
        plain,
        status=BulkSendStatus.CANCELLED,
        unique_recipients=9600,
        cancelled_count=9600,
    )

    assert send_to(tenant, phones(3))["estimated_time_minutes"] == 0.01


def test_it_waits_for_the_window_to_free_room_when_it_cannot_send(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    set_tier(tenant, "TIER_50")
    messaged(tenant.number, plain, phones(50, start=100), hours_ago=1)

    body = send_to(tenant, phones(3))

    assert body["quota_info"]["can_send"] is False
    # The oldest places in the window free up 23 h from now; then 3 at 80 per second (0.04 s).
    assert body["estimated_time_minutes"] == 1380.01


def test_it_waits_for_the_oldest_places_that_free_enough_room(
    tenant: Tenant, plain: MessageTemplate
) -> None:
    set_tier(tenant, "TIER_50")
    messaged(tenant.number, plain, phones(1, start=100), hours_ago=20)
    messaged(tenant.number, plain, phones(49, start=200), hours_ago=2)

    # Two places are needed: the one freed in 4 h is not enough, the next comes in 22 h.
    body = send_to(tenant, phones(2))

    assert body["estimated_time_minutes"] == 1320.01


@pytest.mark.usefixtures("plain")
def test_it_waits_a_window_per_tier_beyond_the_first_when_the_send_is_larger(
    tenant: Tenant,
) -> None:
    set_tier(tenant, "TIER_50")

    body = send_to(tenant, phones(120))

    assert body["quota_info"] == {
        "can_send": False,
        "quota_needed": 120,
        "quota_available": 0,
        "quota_total": 50,
        "tier": "TIER_50",
    }
    # 50 now, 50 in 24 h, the last 20 in 48 h.
    assert 48 * 60 <= body["estimated_time_minutes"] <= 48 * 60 + 1


def test_estimate_minutes_rounds_up_to_a_hundredth_of_a_minute() -> None:
    now = timezone.now()

    assert estimate_minutes(pending=10_000, ahead=0, rate_per_second=80, now=now) == 2.09
    assert estimate_minutes(pending=10_000, ahead=0, rate_per_second=1000, now=now) == 0.17
    assert estimate_minutes(pending=4800, ahead=0, rate_per_second=80, now=now) == 1.0
    assert estimate_minutes(pending=4801, ahead=0, rate_per_second=80, now=now) == 1.01
    assert estimate_minutes(pending=1, ahead=0, rate_per_second=1000, now=now) == 0.01


def test_estimate_minutes_is_zero_when_nothing_is_pending() -> None:
    assert estimate_minutes(pending=0, ahead=500, rate_per_second=80, now=timezone.now()) == 0.0


def test_estimate_minutes_adds_what_is_queued_ahead() -> None:
    now = timezone.now()

    assert estimate_minutes(pending=2400, ahead=2400, rate_per_second=80, now=now) == 1.0


def test_estimate_minutes_waits_for_the_window_then_sends_the_overflow() -> None:
    now = timezone.now()

    minutes = estimate_minutes(
        pending=800,
        ahead=0,
        rate_per_second=80,
        overflow=480,
        room_frees_at=now + timedelta(hours=2),
        now=now,
    )

    # 2 h of waiting, then 480 messages at 80 per second (6 s).
    assert minutes == 120.1
