"""Beat's housekeeping of the webhook's tables: at DEBUG when there was nothing to do, at INFO
with what was done otherwise, so an operator's log shows work rather than a clock ticking."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from webhooks.partitions import partitions_ensure
from webhooks.processing import webhook_events_apply_pending
from webhooks.retention import deferred_statuses_purge, webhook_events_purge

logger = logging.getLogger(__name__)


@shared_task(name="webhooks.purge_events", ignore_result=True)
def purge_webhook_events() -> int:
    """Kept bodies past their retention, and statuses that never found their message."""
    bodies = webhook_events_purge(older_than_days=settings.WEBHOOK_EVENT_RETENTION_DAYS)
    statuses = deferred_statuses_purge(older_than_hours=settings.DEFERRED_STATUS_RETENTION_HOURS)
    logger.log(
        logging.INFO if bodies or statuses else logging.DEBUG,
        "Purged %d webhook bodies older than %d days and %d unmatched statuses older than %d h",
        bodies,
        settings.WEBHOOK_EVENT_RETENTION_DAYS,
        statuses,
        settings.DEFERRED_STATUS_RETENTION_HOURS,
        extra={"webhook_bodies": bodies, "deferred_statuses": statuses},
    )
    return bodies + statuses


@shared_task(name="webhooks.apply_pending", ignore_result=True)
def apply_pending_webhooks() -> int:
    """The backstop: bodies whose answering process died before applying them."""
    applied = webhook_events_apply_pending()
    logger.log(
        logging.INFO if applied else logging.DEBUG,
        "Applied %d webhook bodies left unapplied",
        applied,
        extra={"webhook_bodies": applied},
    )
    return applied


@shared_task(name="webhooks.ensure_partitions", ignore_result=True)
def ensure_webhook_partitions() -> int:
    """The bodies' daily partitions of the days ahead, created before any body needs them."""
    created = partitions_ensure()
    logger.log(
        logging.INFO if created else logging.DEBUG,
        "Created %d webhook body partitions",
        len(created),
        extra={"partitions": created},
    )
    return len(created)
