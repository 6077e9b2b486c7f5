"""Scheduled sends through the API: `send_at` and `send_window` on send-bulk (bulksend.schedule).

A scheduled send is QUEUED with its messages due later; nothing wakes it before then but the
reaper, which finds it once its first message is due (so a lost wake-up, a restarted worker or
Redis change nothing), and no drain starts it or sends for it before its time. Time is frozen
and moved by the tests; the wake-ups are driven explicitly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from django.utils import timezone

from bulksend.drain import bulk_send_drain
from bulksend.lifecycle import bulk_send_cancel
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.reaper import bulk_sends_reap
from bulksend.schedule import (
    SEND_AT_NO_OFFSET,
    SEND_AT_PAST,
    SEND_AT_TOO_FAR,
    SEND_WINDOW_EMPTY,
    SEND_WINDOW_SHAPE,
)
from messaging.models import Message, MessageStatus
from meta_sandbox import SandboxThread
from tests.conftest import Tenant, TickingClock, clock_frozen
from tests.delivery_support import (
    SEND_BULK_URL,
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    queued_drains,
    received,
    sandbox_fixture,  # noqa: F401
    welcome_recipients,
)
from tests.spec_shapes import DETAIL_KEYS

# 09:00 in Buenos Aires, 07:00 in New York, 04:00 in Los Angeles.
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ARGENTINA = "+54911500"
NEW_YORK = "+121255"  # + five digits: 212-55x-xxxx
MEXICO = "+5255123"  # 06:00 in Mexico City
DAY = {"start": "09:00", "end": "20:00"}


def post(tenant: Tenant, recipients: list[dict[str, Any]], **fields: Any) -> Any:
    return tenant.client.post(
        SEND_BULK_URL,
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": "welcome_message",
            "recipients": recipients,
            **fields,
        },
        format="json",
    )


def accepted(tenant: Tenant, recipients: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    response = post(tenant, recipients, **fields)
    assert response.status_code == 202, response.content
    body: dict[str, Any] = response.json()
    return body


def status_of(tenant: Tenant, bulk_send_id: str) -> dict[str, Any]:
    response = tenant.client.get(f"/api/v1/meta-templates/bulk-sends/{bulk_send_id}/")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def clock() -> Any:
    with clock_frozen(START) as frozen:
        yield frozen


# --- validation ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"send_at": "2026-01-15T13:00:00"}, {"send_at": [SEND_AT_NO_OFFSET]}),
        ({"send_at": "2026-01-15T08:59:00-03:00"}, {"send_at": [SEND_AT_PAST]}),
        ({"send_at": "2026-02-15T12:00:00Z"}, {"send_at": [SEND_AT_TOO_FAR]}),
        ({"send_window": {"start": "9", "end": "20:00"}}, {"send_window": [SEND_WINDOW_SHAPE]}),
        ({"send_window": {"start": "20:00", "end": "20:00"}}, {"send_window": [SEND_WINDOW_EMPTY]}),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field_and_nothing_is_stored(
    tenant: Tenant, clock: TickingClock, fields: dict[str, Any], errors: dict[str, Any]
) -> None:
    response = post(tenant, welcome_recipients(2), **fields)

    assert response.status_code == 400
    assert response.json() == errors
    assert BulkSend.objects.count() == 0
    assert Message.objects.count() == 0


# --- send_at ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_scheduled_send_is_queued_with_its_messages_due_at_send_at_and_no_wake_up(
    tenant: Tenant, clock: TickingClock, delivery_redis: redis.Redis
) -> None:
    send_at = START + timedelta(hours=1)
    unscheduled = accepted(tenant, welcome_recipients(3, start=10))
    delivery_redis.delete("celery")

    body = accepted(tenant, welcome_recipients(3), send_at="2026-01-15T10:00:00-03:00")

    # Counts from send_at: an hour, then the same minutes as the same send now.
    assert body["status"] == "queued"
    assert 60 < body["estimated_time_minutes"] <= 60 + unscheduled["estimated_time_minutes"] + 0.02
    messages = Message.objects.filter(bulk_send_id=body["bulk_send_id"])
    assert {m.next_attempt_at for m in messages} == {send_at}
    assert queued_drains(delivery_redis) == []  # the reaper wakes it when it is due
    status = status_of(tenant, body["bulk_send_id"])
    assert status["status"] == "QUEUED"
    assert status["send_at"] == iso(send_at)
    assert status["status_reason"] == f"Scheduled: nothing goes out before {iso(send_at)}."
    assert status["estimated_time_minutes"] == body["estimated_time_minutes"]
    assert set(status) == {*DETAIL_KEYS, "send_at", "status_reason"}


@pytest.mark.django_db
def test_an_unscheduled_send_shows_no_schedule(tenant: Tenant, clock: TickingClock) -> None:
    body = accepted(tenant, welcome_recipients(2))

    assert set(status_of(tenant, body["bulk_send_id"])) == set(DETAIL_KEYS)


@pytest.mark.django_db
def test_send_at_is_a_query_parameter_of_a_csv_send(tenant: Tenant, clock: TickingClock) -> None:
    query = urlencode(
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": "welcome_message",
            "send_at": "2026-01-16T12:00:00Z",
        }
    )
    csv = "phone,name,code,button_0\n+5491112345678,Juan,ABC,X\n"

    response = tenant.client.generic(
        "POST", f"{SEND_BULK_URL}?{query}", csv.encode(), content_type="text/csv"
    )
    refused = tenant.client.generic(
        "POST",
        f"{SEND_BULK_URL}?{query.replace('2026-01-16', '2026-01-14')}",
        csv.encode(),
        content_type="text/csv",
    )

    assert response.status_code == 202, response.content
    bulk_send = BulkSend.objects.get(pk=response.json()["bulk_send_id"])
    assert bulk_send.send_at == START + timedelta(days=1)
    assert refused.status_code == 400
    assert refused.json() == {"send_at": [SEND_AT_PAST]}


@pytest.mark.django_db
def test_send_window_is_a_query_parameter_of_a_csv_send(
    tenant: Tenant, clock: TickingClock
) -> None:
    base = {"phone_number_id": tenant.number.phone_number_id, "template_name": "welcome_message"}
    csv = b"phone,name,code,button_0\n+5491112345678,Juan,ABC,X\n"

    def post(window: str) -> Any:
        query = urlencode({**base, "send_window": window})
        return tenant.client.generic(
            "POST", f"{SEND_BULK_URL}?{query}", csv, content_type="text/csv"
        )

    response = post("22:00-06:00")
    refused = post("22:00")

    assert response.status_code == 202, response.content
    bulk_send = BulkSend.objects.get(pk=response.json()["bulk_send_id"])
    assert (f"{bulk_send.send_window_start:%H:%M}", f"{bulk_send.send_window_end:%H:%M}") == (
        "22:00",
        "06:00",
    )
    assert status_of(tenant, str(bulk_send.pk))["send_window"] == {"start": "22:00", "end": "06:00"}
    assert refused.status_code == 400
    assert refused.json() == {"send_window": [SEND_WINDOW_SHAPE]}


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_send_starts_at_send_at_and_not_before(
    tenant: Tenant, sandbox: SandboxThread, delivery_redis: redis.Redis
) -> None:
    with clock_frozen(START) as clock:
        body = accepted(tenant, welcome_recipients(5), send_at=iso(START + timedelta(hours=1)))
        send_id = body["bulk_send_id"]
        # No task waits in the broker for it: Redis and the workers may restart meanwhile.
        # (Earlier tests' wake-ups may be there: only this send's matter.)
        assert send_id not in queued_drains(delivery_redis)
        delivery_redis.delete("celery")

        # Before its time: the reaper does not wake it, and a drain woken anyway (a stray task,
        # a resume) neither starts it nor sends anything.
        clock.current = START + timedelta(minutes=59)
        assert bulk_sends_reap(now=timezone.now()) == []
        bulk_send_drain(send_id)
        bulk_send = BulkSend.objects.get(pk=send_id)
        assert (bulk_send.status, bulk_send.started_at) == (BulkSendStatus.QUEUED, None)
        assert received(sandbox).messages == []

        # Its time: the reaper finds it (whatever became of the broker meanwhile), and it goes.
        clock.current = START + timedelta(hours=1)
        assert bulk_sends_reap(now=timezone.now()) == [send_id]
        bulk_send_drain(send_id)

    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert bulk_send.started_at is not None
    assert bulk_send.started_at >= START + timedelta(hours=1)
    assert len(received(sandbox).messages) == 5
    assert assert_counters_exact(bulk_send)["sent_count"] == 5


@pytest.mark.django_db
def test_a_scheduled_send_can_be_cancelled_before_it_starts(
    tenant: Tenant, clock: TickingClock
) -> None:
    body = accepted(tenant, welcome_recipients(4), send_at=iso(START + timedelta(days=2)))
    bulk_send = BulkSend.objects.get(pk=body["bulk_send_id"])

    assert bulk_send_cancel(bulk_send=bulk_send) == 4

    bulk_send.refresh_from_db()
    assert bulk_send.status == BulkSendStatus.CANCELLED
    assert assert_counters_exact(bulk_send)["cancelled_count"] == 4
    clock.current = START + timedelta(days=3)
    assert bulk_sends_reap(now=timezone.now()) == []


# --- send_window -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_recipients_outside_their_window_wait_for_its_opening_and_the_status_says_so(
    tenant: Tenant, clock: TickingClock
) -> None:
    recipients = welcome_recipients(2, prefix=ARGENTINA) + welcome_recipients(2, prefix=NEW_YORK)

    body = accepted(tenant, recipients, send_window=DAY)

    due = dict(
        Message.objects.filter(bulk_send_id=body["bulk_send_id"]).values_list(
            "recipient_phone", "next_attempt_at"
        )
    )
    nine_in_new_york = START + timedelta(hours=2)
    assert due == {
        f"{ARGENTINA}00000": None,
        f"{ARGENTINA}00001": None,
        f"{NEW_YORK}00000": nine_in_new_york,
        f"{NEW_YORK}00001": nine_in_new_york,
    }
    assert 120 <= body["estimated_time_minutes"] < 121
    status = status_of(tenant, body["bulk_send_id"])
    assert status["send_window"] == DAY
    assert status["status_reason"] == (
        "Quiet hours: messages go out from 09:00 to 20:00 in each recipient's local time; those "
        f"outside it wait for their window, the last of which opens at {iso(nine_in_new_york)}."
    )
    assert 119 < status["estimated_time_minutes"] <= 120


@pytest.mark.django_db(transaction=True)
def test_a_drain_sends_only_inside_each_recipients_window(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    # Mexico City, 06:00: not New York, whose numbers the welcome template (MARKETING) may not
    # reach at all (bulksend.screening).
    recipients = welcome_recipients(3, prefix=ARGENTINA) + welcome_recipients(2, prefix=MEXICO)
    with clock_frozen(START) as clock:
        body = accepted(tenant, recipients, send_window={"start": "09:00", "end": "17:00"})
        send_id = body["bulk_send_id"]
        # Mexico's recipients were made due now (as a long wait for the quota would leave
        # them): the drain finds them outside their window and gives them back until 09:00.
        Message.objects.filter(recipient_phone__startswith=MEXICO).update(next_attempt_at=None)

        report = bulk_send_drain(send_id)

        assert sorted(m["to"] for m in received(sandbox).messages) == [
            f"{ARGENTINA[1:]}0000{n}" for n in range(3)
        ]
        waiting = Message.objects.filter(recipient_phone__startswith=MEXICO)
        assert {(m.status, m.attempts, m.next_attempt_at) for m in waiting} == {
            (MessageStatus.PENDING, 0, START + timedelta(hours=3))
        }
        assert report.next_wake_at == START + timedelta(hours=3)
        assert BulkSend.objects.get(pk=send_id).status == BulkSendStatus.PROCESSING

        # 09:00 in Mexico City opens theirs.
        clock.current = START + timedelta(hours=3)
        assert bulk_sends_reap(now=timezone.now()) == [send_id]
        bulk_send_drain(send_id)

    bulk_send = BulkSend.objects.get(pk=send_id)
    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert len(received(sandbox).messages) == 5
    assert assert_counters_exact(bulk_send)["sent_count"] == 5


@pytest.mark.django_db
def test_send_at_with_a_window_counts_openings_from_send_at(
    tenant: Tenant, clock: TickingClock, delivery_redis: redis.Redis
) -> None:
    """Sent at 23:00 Buenos Aires time with a 22:00-06:00 window: Argentina goes at send_at,
    New York (21:00) waits for its 22:00."""
    delivery_redis.delete("celery")
    send_at = START + timedelta(hours=14)
    recipients = welcome_recipients(1, prefix=ARGENTINA) + welcome_recipients(1, prefix=NEW_YORK)

    body = accepted(
        tenant, recipients, send_at=iso(send_at), send_window={"start": "22:00", "end": "06:00"}
    )

    due = dict(
        Message.objects.filter(bulk_send_id=body["bulk_send_id"]).values_list(
            "recipient_phone", "next_attempt_at"
        )
    )
    assert due == {f"{ARGENTINA}00000": send_at, f"{NEW_YORK}00000": send_at + timedelta(hours=1)}
    assert queued_drains(delivery_redis) == []
    assert 15 * 60 <= body["estimated_time_minutes"] < 15 * 60 + 1
