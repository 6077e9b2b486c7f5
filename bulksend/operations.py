"""What operators do to a send: cancel it, resume it after a halt."""

from __future__ import annotations

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
        cancelled = Message.objects.filter(bulk_send=send, status=MessageStatus.PENDING).update(
            status=MessageStatus.CANCELLED, next_attempt_at=None
        )
        BulkSend.objects.filter(pk=send.pk).update(
            pending_count=F("pending_count") - cancelled,
            cancelled_count=F("cancelled_count") + cancelled,
            status=BulkSendStatus.CANCELLED,
            completed_at=timezone.now(),
            status_reason="Cancelled by an operator.",
        )
    return cancelled


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
