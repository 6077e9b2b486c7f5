from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from webhooks.models import WebhookEvent

# Deleting in slices keeps each statement short, so purging a busy day never blocks inserts long.
PURGE_SLICE = 5_000


def webhook_events_purge(*, older_than_days: int) -> int:
    """Delete received webhook bodies older than `older_than_days`; returns how many."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted = 0
    while True:
        ids = list(
            WebhookEvent.objects.filter(received_at__lt=cutoff).values_list("pk", flat=True)[
                :PURGE_SLICE
            ]
        )
        if not ids:
            return deleted
        deleted += WebhookEvent.objects.filter(pk__in=ids).delete()[0]
