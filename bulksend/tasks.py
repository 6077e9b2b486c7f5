"""Celery tasks: thin, idempotent wake-ups; the database says what is left to do."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import redis
from celery import shared_task
from django.utils import timezone
from kombu.exceptions import OperationalError

from bulksend.conversion import CONVERT_TASK_NAME, cancelled_messages_convert
from bulksend.creation import DRAIN_TASK_NAME
from bulksend.drain import bulk_send_drain
from bulksend.lifecycle import bulk_send_cancel_leftovers
from bulksend.reaper import bulk_sends_reap
from bulksend.schedule import SHORT_WAIT

logger = logging.getLogger(__name__)


# A retry due later than SHORT_WAIT is left to the reaper rather than to a delayed Celery message,
# which Redis would redeliver after its visibility timeout.
@shared_task(name=DRAIN_TASK_NAME, ignore_result=True)
def drain_bulk_send(bulk_send_id: str) -> None:
    report = bulk_send_drain(uuid.UUID(bulk_send_id))
    if report.halted:
        return
    if report.more_work:
        _wake(bulk_send_id)
    elif report.next_wake_at is not None and report.next_wake_at - timezone.now() < SHORT_WAIT:
        _wake(bulk_send_id, eta=report.next_wake_at)


@shared_task(name=CONVERT_TASK_NAME, ignore_result=True)
def convert_cancelled_messages(bulk_send_id: str) -> None:
    """Turn a cancelled send's pending rows (bulksend.conversion), then recount its counters
    under its lock, for whatever raced with its cancel."""
    send_id = uuid.UUID(bulk_send_id)
    cancelled_messages_convert(send_id)
    bulk_send_cancel_leftovers(send_id)


@shared_task(name="bulksend.reap", ignore_result=True)
def reap() -> None:
    for bulk_send_id in bulk_sends_reap(now=timezone.now()):
        _wake(bulk_send_id)


def _wake(bulk_send_id: str, *, eta: datetime | None = None) -> None:
    """Publish a drain of the send; with the broker away, log it and go on.

    A lost wake-up loses nothing: the reaper wakes every send with due messages and no live
    drain once the broker is back.
    """
    try:
        if eta is None:
            drain_bulk_send.apply_async(args=(bulk_send_id,))
        else:
            drain_bulk_send.apply_async(args=(bulk_send_id,), eta=eta)
    except (OperationalError, redis.RedisError) as error:
        logger.warning("Cannot wake send %s, the reaper will: %s", bulk_send_id, error)
