"""Webhook gauges read at scrape time (listed in settings.METRICS_DATABASE_COLLECTORS)."""

from __future__ import annotations

from collections.abc import Iterator

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from webhooks.models import WebhookEvent


def webhook_lag_collect() -> Iterator[Metric]:
    """How long the oldest body not applied yet has waited: 0 when the applier keeps up.

    Bodies get increasing ids as they are stored, so the oldest unapplied one is the first entry
    of the applier's partial index on unprocessed ids: one index probe, however long the table.
    """
    oldest = (
        WebhookEvent.objects.filter(processed_at__isnull=True)
        .order_by("id")
        .values_list("received_at", flat=True)
        .first()
    )
    lag = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
    yield GaugeMetricFamily(
        "mindo_webhook_apply_lag_seconds",
        "Seconds the oldest stored webhook body has waited to be applied (0: none waits).",
        value=max(lag, 0.0),
    )
