"""What Celery beat runs every few seconds so that nothing accepted is ever left behind.

1. Messages whose worker's lease ran out go back to `pending` once Meta's webhooks show it did
   not take them, or end as `unknown_outcome` when no evidence comes
   (bulksend.lifecycle.sends_leases_reap).
2. Every active send with due messages and no live drain gets a wake-up: a lost task, a worker
   killed mid-batch, a retry whose time has come.
3. A send with nothing left pending is finished, in case its last drain died before doing it.
4. A cancelled send's messages that came back to `pending` after the cancel are cancelled.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db.models import Q

from bulksend.lifecycle import bulk_send_finish_if_done, cancelled_sends_sweep, sends_leases_reap
from bulksend.liveness import drain_is_alive
from bulksend.models import ACTIVE_STATUSES, BulkSend
from messaging.models import Message, MessageStatus


def bulk_sends_reap(*, now: datetime) -> list[str]:
    """Return the ids of the sends that need a wake-up now."""
    sends_leases_reap(
        grace_seconds=settings.DELIVERY_CALLBACK_GRACE_SECONDS,
        max_attempts=settings.DELIVERY_MAX_ATTEMPTS,
        now=now,
        unknown_after_seconds=settings.DELIVERY_UNKNOWN_AFTER_SECONDS,
        resend_unknown=settings.DELIVERY_RESEND_UNKNOWN,
    )
    cancelled_sends_sweep()
    active = BulkSend.objects.filter(status__in=ACTIVE_STATUSES)
    for bulk_send_id in active.filter(pending_count=0).values_list("pk", flat=True):
        bulk_send_finish_if_done(bulk_send_id)
    due = (
        Message.objects.filter(bulk_send__status__in=ACTIVE_STATUSES, status=MessageStatus.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .values_list("bulk_send_id", flat=True)
        .distinct()
    )
    # With Redis away a send counts as not drained: waking a second drain of it is safe (claims
    # skip what another drain holds), leaving it without one is not.
    return [str(bulk_send_id) for bulk_send_id in due if not drain_is_alive(bulk_send_id)]
