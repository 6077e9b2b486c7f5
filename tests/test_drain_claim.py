"""The claim takes messages only of a send that runs, not paused, whoever calls it: a queued,
halted, finished or cancelled send, or a paused one, gives up none of its `pending` messages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from bulksend.models import BulkSend, BulkSendStatus
from messaging.delivery import SEND_RUNNING_STATUS, messages_claim
from messaging.models import Message, MessageStatus
from tests import factories
from tests.conftest import Tenant

pytestmark = pytest.mark.django_db


def send_with_pending(tenant: Tenant, count: int, **fields: Any) -> BulkSend:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template, **fields)
    for _ in range(count):
        factories.make_message(bulk_send)
    return bulk_send


def claim(bulk_send: BulkSend) -> list[int]:
    claimed = messages_claim(
        bulk_send_id=bulk_send.pk, limit=10, lease_seconds=60, now=timezone.now()
    )
    return [message.id for message in claimed]


def test_the_running_status_the_claim_names_is_the_sends_own() -> None:
    assert SEND_RUNNING_STATUS == BulkSendStatus.PROCESSING


def test_a_running_send_gives_up_its_pending_messages_oldest_first(tenant: Tenant) -> None:
    bulk_send = send_with_pending(tenant, 3, status=BulkSendStatus.PROCESSING)

    claimed = claim(bulk_send)

    expected = list(Message.objects.filter(bulk_send=bulk_send).order_by("id").values_list("id"))
    assert claimed == [message_id for (message_id,) in expected]
    assert set(Message.objects.filter(bulk_send=bulk_send).values_list("status", "attempts")) == {
        (MessageStatus.SENDING, 1)
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"status": BulkSendStatus.QUEUED},
        {"status": BulkSendStatus.CANCELLED},
        {"status": BulkSendStatus.COMPLETED},
        {"status": BulkSendStatus.PARTIAL, "halted_at": timezone.now()},
        {"status": BulkSendStatus.FAILED, "halted_at": timezone.now()},
        {"status": BulkSendStatus.PROCESSING, "paused_at": timezone.now()},
    ],
    ids=["queued", "cancelled", "completed", "halted-partial", "halted-failed", "paused"],
)
def test_a_send_that_does_not_run_gives_up_nothing(tenant: Tenant, fields: dict[str, Any]) -> None:
    bulk_send = send_with_pending(tenant, 3, **fields)

    assert claim(bulk_send) == []

    assert set(
        Message.objects.filter(bulk_send=bulk_send).values_list(
            "status", "attempts", "lease_expires_at"
        )
    ) == {(MessageStatus.PENDING, 0, None)}


def test_a_resumed_send_gives_them_up_again(tenant: Tenant) -> None:
    bulk_send = send_with_pending(
        tenant, 2, status=BulkSendStatus.PROCESSING, paused_at=timezone.now() - timedelta(1)
    )
    assert claim(bulk_send) == []

    BulkSend.objects.filter(pk=bulk_send.pk).update(paused_at=None)

    assert len(claim(bulk_send)) == 2
