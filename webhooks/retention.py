"""What the webhook keeps is kept for a while, then purged by beat (and by a command).

Bodies live in daily partitions (webhooks.partitions): a day entirely past the cut is dropped
whole (after its rows are archived, when asked). Only bodies in the default partition (received
on a day that had no partition) are deleted row by row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.db import connection, transaction
from django.db.models import Model, QuerySet
from django.utils import timezone

from messaging.models import DeferredStatus
from mindo.archive import query_archive
from webhooks.partitions import DEFAULT_PARTITION, partition_drop, partitions_before

# Deleting in slices keeps each statement short, so purging a busy day never blocks inserts long.
PURGE_SLICE = 5_000


@dataclass
class BodiesRetired:
    """What a retention run took (or, dry, would take) from the webhook bodies."""

    partitions: list[str] = field(default_factory=list)
    rows: int = 0
    archives: list[Path] = field(default_factory=list)


def _purge_before(rows: QuerySet[Model], cutoff: datetime) -> int:
    deleted = 0
    while True:
        ids = list(rows.filter(received_at__lt=cutoff).values_list("pk", flat=True)[:PURGE_SLICE])
        if not ids:
            return deleted
        deleted += rows.filter(pk__in=ids).delete()[0]


def _count(table: str, cutoff: datetime | None = None) -> int:
    where = " WHERE received_at < %s" if cutoff else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}{where}", [cutoff] if cutoff else [])
        return int(cursor.fetchone()[0])


def _default_partition_purge(cutoff: datetime) -> int:
    """Delete, a slice per statement, the default partition's bodies received before `cutoff`.
    Only there: a day partition's are dropped with their day, never deleted row by row."""
    deleted = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"DELETE FROM {DEFAULT_PARTITION} WHERE id IN (SELECT id FROM {DEFAULT_PARTITION}"
                " WHERE received_at < %s LIMIT %s)",
                [cutoff, PURGE_SLICE],
            )
            deleted += cursor.rowcount
            if cursor.rowcount < PURGE_SLICE:
                return deleted


def webhook_bodies_retire(
    cutoff: datetime, *, archive_dir: Path | None = None, dry_run: bool = False
) -> BodiesRetired:
    """Drop the day partitions of bodies received wholly before `cutoff`, and delete the default
    partition's bodies received before it; each archived first to `archive_dir` as CSV when
    given. A dry run counts what would go and changes nothing (nor writes any archive)."""
    retired = BodiesRetired()
    for partition in partitions_before(cutoff):
        retired.partitions.append(partition.name)
        if dry_run:
            retired.rows += _count(partition.name)
            continue
        with transaction.atomic():
            if archive_dir is None:
                retired.rows += _count(partition.name)
            else:
                path = archive_dir / f"{partition.name}.csv"
                retired.rows += query_archive(f"SELECT * FROM {partition.name}", [], path)
                retired.archives.append(path)
            partition_drop(partition)
    if dry_run:
        retired.rows += _count(DEFAULT_PARTITION, cutoff)
        return retired
    if archive_dir is not None and _count(DEFAULT_PARTITION, cutoff):
        path = archive_dir / f"{DEFAULT_PARTITION}_before_{cutoff:%Y%m%dT%H%M%S}.csv"
        query_archive(f"SELECT * FROM {DEFAULT_PARTITION} WHERE received_at < %s", [cutoff], path)
        retired.archives.append(path)
    retired.rows += _default_partition_purge(cutoff)
    return retired


def webhook_events_purge(*, older_than_days: int) -> int:
    """Retire received webhook bodies older than `older_than_days`; returns how many went."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    return webhook_bodies_retire(cutoff).rows


def deferred_statuses_purge(*, older_than_hours: int) -> int:
    """Delete statuses kept for wamids that no message recorded within `older_than_hours`.

    A wamid is recorded seconds after Meta's first webhook names it; a status still unmatched
    hours later belongs to no message of ours (another app's number, a forged or mistyped
    wamid) and would otherwise pile up for good. Returns how many were deleted.
    """
    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    return _purge_before(DeferredStatus.objects.all(), cutoff)
