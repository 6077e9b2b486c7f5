"""What the webhook keeps is kept for a while, then purged by beat (and by a command)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Model, QuerySet
from django.utils import timezone

from messaging.models import DeferredStatus
from webhooks.models import WebhookEvent

# Deleting in slices keeps each statement short, so purging a busy day never blocks inserts long.
PURGE_SLICE = 5_000


def _purge_before(rows: QuerySet[Model], cutoff: datetime) -> int:
    deleted = 0
    while True:
        ids = list(rows.filter(received_at__lt=cutoff).values_list("pk", flat=True)[:PURGE_SLICE])
        if not ids:
            return deleted
        deleted += rows.filter(pk__in=ids).delete()[0]


def webhook_events_purge(*, older_than_days: int) -> int:
    """Delete received webhook bodies older than `older_than_days`; returns how many."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    return _purge_before(WebhookEvent.objects.all(), cutoff)


def deferred_statuses_purge(*, older_than_hours: int) -> int:
    """Delete statuses kept for wamids that no message recorded within `older_than_hours`.

    A wamid is recorded seconds after Meta's first webhook names it; a status still unmatched
    hours later belongs to no message of ours (another app's number, a forged or mistyped
    wamid) and would otherwise pile up for good. Returns how many were deleted.
    """
    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    return _purge_before(DeferredStatus.objects.all(), cutoff)
