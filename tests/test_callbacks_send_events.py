"""`bulk_send.status` callbacks: each change of a send's status (start, finish, halt, resume,
cancel), recorded by the lifecycle in the same transaction, with the counters of that moment;
and `message.status` for the messages the drain hands to Meta."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from bulksend.lifecycle import (
    batch_settle,
    bulk_send_cancel,
    bulk_send_halt,
    bulk_send_resume,
    bulk_send_start,
    sends_statuses_apply,
)
from bulksend.models import BulkSend, BulkSendStatus
from callbacks.models import CallbackEvent, WebhookEndpoint
from callbacks.signing import secret_generate
from messaging.delivery import DeliveryResult, Settle
from messaging.models import MessageStatus
from messaging.status import StatusEvent
from tests import factories
from tests import meta_payloads as meta
from tests.conftest import Tenant


@pytest.fixture
def endpoint(tenant: Tenant) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        organization=tenant.organization,
        url="http://127.0.0.1:9899/hook",
        events=["bulk_send.status", "message.status"],
        secret=secret_generate(),
    )


def send_events() -> list[dict[str, Any]]:
    return [
        event.body
        for event in CallbackEvent.objects.filter(type="bulk_send.status").order_by("created_at")
    ]


def transitions() -> list[tuple[str | None, str]]:
    return [(body["previous_status"], body["status"]) for body in send_events()]


@pytest.mark.usefixtures("endpoint")
def test_start_halt_resume_and_cancel_each_make_an_event(tenant: Tenant) -> None:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    factories.make_message(bulk_send)

    assert bulk_send_start(bulk_send.pk)
    assert bulk_send_start(bulk_send.pk)  # already PROCESSING: no second event
    assert bulk_send_halt(bulk_send.pk, code="190", text="token expired")
    bulk_send.refresh_from_db()
    assert bulk_send_resume(bulk_send=bulk_send)
    assert bulk_send_cancel(bulk_send=bulk_send) == 1

    assert transitions() == [
        ("QUEUED", "PROCESSING"),
        ("PROCESSING", "FAILED"),
        ("FAILED", "PROCESSING"),
        ("PROCESSING", "CANCELLED"),
    ]
    halted, cancelled = send_events()[1], send_events()[3]
    assert halted["halted"] is True
    assert "190" in halted["status_reason"]
    assert cancelled["cancelled_count"] == 1
    assert cancelled["pending_count"] == 0
    assert cancelled["completed_at"] is not None


@pytest.mark.usefixtures("endpoint")
def test_the_last_status_finishes_the_send_with_its_final_counters(tenant: Tenant) -> None:
    bulk_send, messages = meta.send_with_messages(tenant.number, tenant.template, 2)
    # Still in flight: one message; settle it as sent by Meta, then a failure comes for another.
    factories.make_message(bulk_send, status=MessageStatus.SENDING)
    BulkSend.objects.filter(pk=bulk_send.pk).update(status=BulkSendStatus.PROCESSING)
    pending = bulk_send.messages.get(status=MessageStatus.SENDING)

    batch_settle(
        [DeliveryResult(message_id=pending.pk, outcome=Settle.SENT, wamid=meta.new_wamid())],
        now=timezone.now(),
    )
    [finished] = send_events()
    assert (finished["previous_status"], finished["status"]) == ("PROCESSING", "COMPLETED")
    assert (finished["sent_count"], finished["pending_count"]) == (3, 0)

    with_failure = StatusEvent(
        wamid=messages[0].wamid or "", status="failed", occurred_at=meta.at(meta.T0 + 5)
    )
    sends_statuses_apply([with_failure])

    assert transitions()[-1] == ("COMPLETED", "PARTIAL")
    assert send_events()[-1]["failed_count"] == 1
    drained = CallbackEvent.objects.filter(type="message.status", body__message_id=pending.pk)
    assert [(e.body["previous_status"], e.body["status"]) for e in drained] == [("sending", "sent")]


def test_no_endpoint_no_event(tenant: Tenant) -> None:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    factories.make_message(bulk_send)

    bulk_send_start(bulk_send.pk)
    bulk_send_cancel(bulk_send=bulk_send)

    assert not CallbackEvent.objects.exists()
