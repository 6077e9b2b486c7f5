"""What Celery beat runs every few seconds so that nothing accepted is ever left behind.

1. Messages whose worker's lease ran out go back to `pending` once Meta's webhooks show it did
   not take them, or end as `unknown_outcome` when no evidence comes
   (bulksend.lifecycle.sends_leases_reap).
2. Every active send (not paused) with due messages and no live drain gets a wake-up: a lost
   task, a worker killed mid-batch, a retry whose time has come.
3. A send with nothing left pending is finished, in case its last drain died before doing it.
4. A cancelled send's messages that came back to `pending` after the cancel are cancelled.

It logs one line a run: at DEBUG when it found nothing to do (most runs), at INFO otherwise.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db.models import Q

from bulksend.lifecycle import bulk_send_finish_if_done, cancelled_sends_sweep, sends_leases_reap
from bulksend.liveness import drain_is_alive
from bulksend.models import ACTIVE_STATUSES, BulkSend
from messaging.models import Message, MessagePhase, MessageStatus

logger = logging.getLogger(__name__)


def bulk_sends_reap(*, now: datetime) -> list[str]:
    """Return the ids of the sends that need a wake-up now."""
    sends_with_messages_back = sends_leases_reap(
        grace_seconds=settings.DELIVERY_CALLBACK_GRACE_SECONDS,
        max_attempts=settings.DELIVERY_MAX_ATTEMPTS,
        now=now,
        unknown_after_seconds=settings.DELIVERY_UNKNOWN_AFTER_SECONDS,
        resend_unknown=settings.DELIVERY_RESEND_UNKNOWN,
    )
    cancelled = cancelled_sends_sweep()
    active = BulkSend.objects.filter(status__in=ACTIVE_STATUSES)
    finished = sum(
        bulk_send_finish_if_done(bulk_send_id)
        for bulk_send_id in active.filter(pending_count=0).values_list("pk", flat=True)
    )
    due = (
        Message.objects.filter(
            bulk_send__status__in=ACTIVE_STATUSES,
            bulk_send__paused_at__isnull=True,
            phase=MessagePhase.OPEN,
            status=MessageStatus.PENDING,
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .values_list("bulk_send_id", flat=True)
        .distinct()
    )
    # With Redis away a send counts as not drained: waking a second drain of it is safe (claims
    # skip what another drain holds), leaving it without one is not.
    woken = [str(bulk_send_id) for bulk_send_id in due if not drain_is_alive(bulk_send_id)]
    did = {
        "sends_with_messages_back": len(sends_with_messages_back),
        "messages_cancelled": cancelled,
        "sends_finished": finished,
        "sends_to_wake": len(woken),
    }
    logger.log(
        logging.INFO if any(did.values()) else logging.DEBUG,
        "Reaper: %s",
        ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in did.items()),
        extra=did,
    )
    return woken
