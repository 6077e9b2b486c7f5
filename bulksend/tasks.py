"""Celery tasks: thin, idempotent wake-ups; the database says what is left to do."""

from __future__ import annotations

import uuid
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from bulksend.creation import DRAIN_TASK_NAME
from bulksend.drain import bulk_send_drain
from bulksend.reaper import bulk_sends_reap

# A retry due later than this is left to the reaper rather than to a delayed Celery message,
# which Redis would redeliver after its visibility timeout.
SHORT_WAIT = timedelta(seconds=60)


@shared_task(name=DRAIN_TASK_NAME, ignore_result=True)
def drain_bulk_send(bulk_send_id: str) -> None:
    report = bulk_send_drain(uuid.UUID(bulk_send_id))
    if report.halted:
        return
    if report.more_work:
        drain_bulk_send.apply_async(args=(bulk_send_id,))
    elif report.next_wake_at is not None and report.next_wake_at - timezone.now() < SHORT_WAIT:
        drain_bulk_send.apply_async(args=(bulk_send_id,), eta=report.next_wake_at)


@shared_task(name="bulksend.reap", ignore_result=True)
def reap() -> None:
    for bulk_send_id in bulk_sends_reap(now=timezone.now()):
        drain_bulk_send.apply_async(args=(bulk_send_id,))
