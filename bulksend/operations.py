"""What operators do to a send: cancel it, resume it after a halt."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from bulksend.creation import bulk_send_enqueue
from bulksend.models import ACTIVE_STATUSES, BulkSend, BulkSendStatus
from messaging.models import Message, MessageStatus

CANCELLABLE = (*ACTIVE_STATUSES, BulkSendStatus.FAILED, BulkSendStatus.PARTIAL)


def bulk_send_cancel(*, bulk_send: BulkSend) -> int:
    """Cancel what has not gone out yet; returns how many messages were cancelled.

    Only `pending` messages are cancelled: one a worker holds (`sending`) may already be with
    Meta, so it settles as Meta says. A halted send (FAILED or PARTIAL with messages left) can be
    cancelled too, to give up on what it had left.
    """
    with transaction.atomic():
        send = BulkSend.objects.select_for_update().get(pk=bulk_send.pk)
        if send.status not in CANCELLABLE or (
            send.status not in ACTIVE_STATUSES and send.pending_count == 0
        ):
            return 0
        cancelled = _pending_cancel(send.pk)
        BulkSend.objects.filter(pk=send.pk).update(
            status=BulkSendStatus.CANCELLED,
            completed_at=timezone.now(),
            status_reason="Cancelled by an operator.",
        )
    return cancelled


def _pending_cancel(bulk_send_id: uuid.UUID) -> int:
    """Cancel the send's `pending` messages, counters by delta; the caller holds the send's lock."""
    cancelled = Message.objects.filter(
        bulk_send_id=bulk_send_id, status=MessageStatus.PENDING
    ).update(status=MessageStatus.CANCELLED, next_attempt_at=None)
    if cancelled:
        BulkSend.objects.filter(pk=bulk_send_id).update(
            pending_count=F("pending_count") - cancelled,
            cancelled_count=F("cancelled_count") + cancelled,
        )
    return cancelled


def bulk_send_cancel_leftovers(bulk_send_id: uuid.UUID) -> int:
    """Cancel what came back to `pending` in a send cancelled meanwhile; returns how many.

    A message in flight when its send was cancelled settles afterwards: sent as Meta says, but a
    retry, a released message or a reaped lease goes back to `pending`, where no drain will look
    for it (drains stop at a cancelled send). It is cancelled here, so a cancelled send ends
    with nothing pending. Called by the drain that saw the cancel and by the reaper.
    """
    with transaction.atomic():
        locked = BulkSend.objects.select_for_update().filter(
            pk=bulk_send_id, status=BulkSendStatus.CANCELLED
        )
        if not locked.exists():
            return 0
        return _pending_cancel(bulk_send_id)


def cancelled_sends_sweep() -> int:
    """`bulk_send_cancel_leftovers` for every cancelled send that still counts messages pending
    (in flight ones included: their settling may bring them back); returns how many."""
    cancelled_with_pending = BulkSend.objects.filter(
        status=BulkSendStatus.CANCELLED, pending_count__gt=0
    ).values_list("pk", flat=True)
    return sum(bulk_send_cancel_leftovers(bulk_send_id) for bulk_send_id in cancelled_with_pending)


def bulk_send_resume(*, bulk_send: BulkSend) -> bool:
    """Resume a send halted by Meta (a token fixed, an account unblocked): back to PROCESSING
    with its reason cleared, and a wake-up for the workers. False when there is nothing to do."""
    resumed = (
        BulkSend.objects.filter(
            pk=bulk_send.pk,
            status__in=(BulkSendStatus.FAILED, BulkSendStatus.PARTIAL),
            completed_at__isnull=True,
            pending_count__gt=0,
        )
        .exclude(status_reason="")
        .update(status=BulkSendStatus.PROCESSING, status_reason="")
    )
    if resumed:
        transaction.on_commit(lambda: bulk_send_enqueue(bulk_send))
    return bool(resumed)
