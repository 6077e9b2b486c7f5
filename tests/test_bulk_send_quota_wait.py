"""The status endpoint says when a send waits for the portfolio's 24 h quota window, and until
when: its `status_reason`, computed when read."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from bulksend.drain import bulk_send_drain
from bulksend.models import BulkSend, BulkSendStatus
from meta_sandbox import SandboxThread
from tests import factories
from tests.conftest import Tenant, TickingClock
from tests.delivery_support import (
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    phone,
    sandbox_fixture,  # noqa: F401
    send_bulk,
    welcome_recipients,
)
from tests.spec_shapes import DETAIL_KEYS

WINDOW = timedelta(hours=24)


def status_of(tenant: Tenant, bulk_send_id: str) -> dict[str, Any]:
    response = tenant.client.get(f"/api/v1/meta-templates/bulk-sends/{bulk_send_id}/")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def fill_window(tenant: Tenant, *, tier: str, recipients: int, sent_at: datetime) -> None:
    """The portfolio on `tier`, having messaged `recipients` others at `sent_at`."""
    tenant.account.messaging_limit_tier = tier
    tenant.account.save()
    earlier = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.COMPLETED
    )
    for n in range(recipients):
        factories.make_message(
            earlier, phone=phone(n, "+54911600"), status="sent", sent_at=sent_at, wamid=f"w-{n}"
        )


def waiting_reason(recipients: int, until: datetime) -> str:
    iso = until.isoformat().replace("+00:00", "Z")
    return (
        f"Waiting for the messaging quota: {recipients} recipients do not fit the portfolio's "
        f"24 h window of unique recipients and wait until {iso}."
    )


def send_three_beyond_room(tenant: Tenant) -> tuple[dict[str, Any], datetime]:
    """A send of 5 to a 50 tier that messaged 48 others an hour ago: the 202's body, and the
    moment the window has room for the 3 that do not fit (the 3rd oldest place frees up)."""
    an_hour_ago = timezone.now() - timedelta(hours=1)
    fill_window(tenant, tier="TIER_50", recipients=48, sent_at=an_hour_ago)
    return send_bulk(tenant, welcome_recipients(5)), an_hour_ago + WINDOW


@pytest.mark.django_db
def test_a_send_beyond_the_room_left_says_how_many_wait_and_until_when(
    tenant: Tenant, frozen_now: TickingClock
) -> None:
    accepted, room_at = send_three_beyond_room(tenant)

    body = status_of(tenant, accepted["bulk_send_id"])

    assert accepted["quota_info"]["can_send"] is False
    assert body["status"] == "QUEUED"
    assert body["status_reason"] == waiting_reason(3, room_at)
    assert set(body) == {*DETAIL_KEYS, "status_reason"}


@pytest.mark.django_db
def test_the_reason_is_gone_once_the_window_has_room(
    tenant: Tenant, frozen_now: TickingClock
) -> None:
    accepted, room_at = send_three_beyond_room(tenant)

    frozen_now.current = room_at
    body = status_of(tenant, accepted["bulk_send_id"])

    assert "status_reason" not in body
    assert set(body) == set(DETAIL_KEYS)


@pytest.mark.django_db
def test_a_send_that_fits_the_window_has_no_reason(
    tenant: Tenant, frozen_now: TickingClock
) -> None:
    fill_window(tenant, tier="TIER_50", recipients=45, sent_at=timezone.now())

    accepted = send_bulk(tenant, welcome_recipients(5))

    assert accepted["quota_info"]["can_send"] is True
    assert "status_reason" not in status_of(tenant, accepted["bulk_send_id"])


@pytest.mark.django_db
def test_a_send_stopped_while_waiting_gives_the_reason_it_stopped(
    tenant: Tenant, frozen_now: TickingClock
) -> None:
    accepted, _ = send_three_beyond_room(tenant)
    BulkSend.objects.filter(pk=accepted["bulk_send_id"]).update(
        status=BulkSendStatus.PARTIAL, status_reason="Halted: Meta error 190: token expired."
    )

    body = status_of(tenant, accepted["bulk_send_id"])

    assert body["status_reason"] == "Halted: Meta error 190: token expired."


# The drain and the view read one clock that moves only as it is read.
@pytest.mark.usefixtures("frozen_now")
@pytest.mark.django_db(transaction=True)
def test_a_drained_send_holding_only_waiting_recipients_says_it_waits(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    an_hour_ago = timezone.now() - timedelta(hours=1)
    fill_window(tenant, tier="TIER_50", recipients=40, sent_at=an_hour_ago)
    accepted = send_bulk(tenant, welcome_recipients(15))

    bulk_send_drain(accepted["bulk_send_id"])
    body = status_of(tenant, accepted["bulk_send_id"])

    # 10 fitted and went out; 5 wait until the 5th oldest place of the window frees up.
    assert (body["status"], body["sent_count"], body["pending_count"]) == ("PROCESSING", 10, 5)
    assert body["status_reason"] == waiting_reason(5, an_hour_ago + WINDOW)
