from __future__ import annotations

from celery import shared_task
from django.conf import settings

from webhooks.processing import webhook_events_apply_pending
from webhooks.retention import deferred_statuses_purge, webhook_events_purge


@shared_task(name="webhooks.purge_events", ignore_result=True)
def purge_webhook_events() -> int:
    """Kept bodies past their retention, and statuses that never found their message."""
    return webhook_events_purge(
        older_than_days=settings.WEBHOOK_EVENT_RETENTION_DAYS
    ) + deferred_statuses_purge(older_than_hours=settings.DEFERRED_STATUS_RETENTION_HOURS)


@shared_task(name="webhooks.apply_pending", ignore_result=True)
def apply_pending_webhooks() -> int:
    """The backstop: bodies whose answering process died before applying them."""
    return webhook_events_apply_pending()
