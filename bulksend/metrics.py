"""Send and quota gauges read at scrape time (listed in settings.METRICS_DATABASE_COLLECTORS)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import lru_cache

from django.db import connection
from django.db.models import Q, Sum
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from bulksend.models import ACTIVE_STATUSES
from bulksend.window_sql import WINDOW_SIZE_SQL, window_params, window_sql
from templates_app.models import PhoneNumber, WhatsAppBusinessAccount

QUOTA_REFRESH_SECONDS = 60


def pending_collect() -> Iterator[Metric]:
    """Messages still to send per number: the exact `pending_count`s of its active sends (a
    small table: sends, not messages)."""
    gauge = GaugeMetricFamily(
        "mindo_pending_messages",
        "Messages of active bulk sends not sent yet, per phone number.",
        labels=["phone_number_id"],
    )
    numbers = PhoneNumber.objects.annotate(
        pending=Sum("bulk_sends__pending_count", filter=Q(bulk_sends__status__in=ACTIVE_STATUSES))
    ).values_list("phone_number_id", "pending")
    for phone_number_id, pending in numbers:
        gauge.add_metric([phone_number_id], pending or 0)
    yield gauge


def quota_collect() -> Iterator[Metric]:
    """Each limited portfolio's tier, its use of the moving 24 h window and the room left.

    The use counts recipients messaged in the window outside a service window, as Meta counts
    them (`window_sql`); recipients still waiting in active sends
    will take room too when they go out (see `mindo_pending_messages`), but counting them would
    read every waiting message at each scrape. The figures are at most a minute old.
    """
    limit = GaugeMetricFamily(
        "mindo_quota_limit",
        "Unique recipients the portfolio's tier allows in any 24 h window.",
        labels=["waba_id"],
    )
    used = GaugeMetricFamily(
        "mindo_quota_used",
        "Unique recipients the portfolio messaged in the last 24 h.",
        labels=["waba_id"],
    )
    room = GaugeMetricFamily(
        "mindo_quota_room",
        "Unique recipients the portfolio may still message now (limit - used).",
        labels=["waba_id"],
    )
    period = int(time.monotonic() // QUOTA_REFRESH_SECONDS)
    for waba_id, total, in_window in quota_window_use(period):
        limit.add_metric([waba_id], total)
        used.add_metric([waba_id], in_window)
        room.add_metric([waba_id], max(total - in_window, 0))
    yield from (limit, used, room)


@lru_cache(maxsize=1)
def quota_window_use(period: int) -> list[tuple[str, int, int]]:
    """(waba_id, tier limit, unique recipients in the window) of each limited portfolio.

    Counting the distinct recipients of a full 100K window takes a few hundred milliseconds, so
    the figures are computed once per `period` (QUOTA_REFRESH_SECONDS) in each process rather than
    at every scrape: the window moves slowly next to that.
    """
    limits: dict[int, tuple[str, int]] = {}
    for account in WhatsAppBusinessAccount.objects.only("waba_id", "messaging_limit_tier"):
        try:
            total = account.quota_total
        except ValueError:
            continue  # a tier spelling nobody knows: no figure rather than a wrong one
        if total is not None:
            limits[account.pk] = (account.waba_id, total)
    window_used: dict[int, int] = {}
    now = timezone.now()
    with connection.cursor() as cursor:
        # One statement per limited portfolio: a scan of the quota window's index for each.
        for account_id in limits:
            cursor.execute(
                window_sql(WINDOW_SIZE_SQL), window_params(account_id=account_id, now=now)
            )
            window_used[account_id] = cursor.fetchone()[0]
    return [
        (waba_id, total, window_used.get(account_id, 0))
        for account_id, (waba_id, total) in limits.items()
    ]
