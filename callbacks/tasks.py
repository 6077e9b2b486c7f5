"""Celery tasks of the callbacks queue: thin wake-ups of a delivery run."""

from __future__ import annotations

from celery import shared_task

from callbacks.delivery import callbacks_deliver

DELIVER_TASK_NAME = "callbacks.deliver"
QUEUE = "callbacks"


@shared_task(name=DELIVER_TASK_NAME, ignore_result=True, queue=QUEUE)
def deliver_callbacks() -> None:
    callbacks_deliver()
