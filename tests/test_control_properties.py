"""Counters stay exact, and a cancel stays a cancel, over any order of pauses, resumes, cancels,
claims, settles and Meta's webhooks (hypothesis draws the order; each step is what a drain or a
webhook does through bulksend.lifecycle). The same with real workers, for one order at a time, is
tests/test_control_workers.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend.conversion import cancelled_messages_convert
from bulksend.lifecycle import (
    batch_settle,
    bulk_send_cancel,
    bulk_send_cancel_leftovers,
    bulk_send_finish_if_done,
    bulk_send_pause,
    bulk_send_unpause,
    sends_statuses_apply,
)
from bulksend.models import BulkSend, BulkSendStatus
from messaging.delivery import DeliveryResult, Settle, messages_claim
from messaging.models import Message, MessageStatus, public_status_of
from messaging.status import StatusEvent
from mindo.errors import ConflictError
from tests.conftest import Tenant
from tests.delivery_support import (
    assert_counters_exact,
    claimable,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
)
from tests.test_lifecycle import make_send
from tests.test_webhook_properties import rolled_back

pytestmark = pytest.mark.usefixtures("delivery_redis")

STEPS = ("pause", "resume", "cancel", "claim", "settle", "deliver", "convert")
OUTCOMES = (Settle.SENT, Settle.FAILED, Settle.RELEASE, Settle.UNCERTAIN)


@pytest.mark.django_db
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=14), data=st.data())
def test_counters_stay_exact_and_a_cancel_stays_a_cancel(
    tenant: Tenant, steps: list[str], data: st.DataObject
) -> None:
    with rolled_back():
        bulk_send = make_send(tenant, {"pending": 6})
        claimed: list[int] = []
        wamids: list[str] = []
        cancelled_ids: set[int] = set()
        for step in steps:
            send = BulkSend.objects.get(pk=bulk_send.pk)
            if step in ("pause", "resume", "cancel"):
                change: Callable[..., object] = {
                    "pause": bulk_send_pause,
                    "resume": bulk_send_unpause,
                    "cancel": bulk_send_cancel,
                }[step]
                try:
                    change(bulk_send=send)
                except ConflictError:
                    # Refused only for a send that is over (or, for a pause, cancelled).
                    assert send.completed_at is not None or send.status == "CANCELLED"
            elif step == "claim":
                # A drain hands a batch over only while the send runs, not paused.
                if send.status == BulkSendStatus.PROCESSING and send.paused_at is None:
                    batch = messages_claim(
                        bulk_send_id=send.pk,
                        limit=data.draw(st.integers(1, 3)),
                        lease_seconds=60,
                        now=timezone.now(),
                    )
                    claimed += [message.id for message in batch]
            elif step == "settle" and claimed:
                now = timezone.now()
                results = []
                for message_id in claimed:
                    outcome = data.draw(st.sampled_from(OUTCOMES))
                    wamid = f"wamid.P{message_id}" if outcome == Settle.SENT else None
                    results.append(
                        DeliveryResult(message_id, outcome, wamid=wamid, error_code="131026")
                    )
                    if wamid:
                        wamids.append(wamid)
                claimed = []
                batch_settle(results, now=now)
                # What the drain does after a batch of a send cancelled meanwhile.
                bulk_send_cancel_leftovers(bulk_send.pk)
                bulk_send_finish_if_done(bulk_send.pk)
            elif step == "convert":
                # The conversion's task, one batch of two rows at a time: cut short anywhere.
                cancelled_messages_convert(bulk_send.pk, batch=2, max_batches=1)
            elif step == "deliver" and wamids:
                wamid = data.draw(st.sampled_from(wamids))
                moment = timezone.now() + timedelta(seconds=1)
                sends_statuses_apply([StatusEvent(wamid, MessageStatus.DELIVERED, moment)])

            after = BulkSend.objects.get(pk=bulk_send.pk)
            assert_counters_exact(after)
            messages = Message.objects.filter(bulk_send=bulk_send)
            # Cancelled to a client: a cancelled send's `pending` messages are, rows turned or not.
            now_cancelled = {
                pk
                for pk, status in messages.values_list("pk", "status")
                if public_status_of(status, send_cancelled=after.is_cancelled) == "cancelled"
            }
            assert cancelled_ids <= now_cancelled  # a cancelled message never goes out
            cancelled_ids = now_cancelled
            if after.paused_at is not None:
                assert after.status in (BulkSendStatus.QUEUED, BulkSendStatus.PROCESSING)
                assert after.status_reason == "paused"
            if after.status == BulkSendStatus.CANCELLED:
                # Nothing waits to go out: only what Meta may have (in flight) is not settled,
                # and no drain claims a pending row whose conversion has not come yet.
                assert after.pending_count == messages.filter(status=MessageStatus.SENDING).count()
                assert not claimable(after.pk)
                assert after.paused_at is None
