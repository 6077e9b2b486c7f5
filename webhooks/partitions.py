"""The webhook bodies' table is partitioned by the day a body was received (UTC), so that their
retention drops whole days (a quick catalog change that leaves nothing for vacuum) instead of
deleting millions of rows one by one.

A day's partition is created ahead of it by beat (`webhooks.ensure_partitions`) and by the
migration; a body received on a day with no partition (beat stopped for a week) lands in the
default partition, where retention deletes it row by row as before.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)

PARENT = WebhookEvent._meta.db_table
DEFAULT_PARTITION = f"{PARENT}_default"
_DAY_SUFFIX = re.compile(r"_p(\d{8})$")

# Each body is inserted once and updated once (applied): half of a day's row versions are dead
# by the evening. Vacuuming a day's partition at 5% (not PostgreSQL's 20%) keeps it from
# doubling, and the insert threshold sets its visibility map early for the admin's reads.
STORAGE_PARAMETERS = (
    "autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_insert_scale_factor = 0.05"
)


@dataclass(frozen=True, slots=True)
class DayPartition:
    name: str
    day: date

    @property
    def end(self) -> datetime:
        """The first moment past the partition's day."""
        return day_start(self.day + timedelta(days=1))


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def partition_name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def partition_create_sql(day: date) -> str:
    """The statement that creates `day`'s partition if it is missing."""
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF {PARENT} "
        f"FOR VALUES FROM ('{day_start(day).isoformat()}') "
        f"TO ('{day_start(day + timedelta(days=1)).isoformat()}') WITH ({STORAGE_PARAMETERS})"
    )


def partitions_ensure(*, days_ahead: int | None = None, today: date | None = None) -> list[str]:
    """Create the partitions of today and the `days_ahead` days after it that are missing;
    returns the names created. A day whose bodies already sit in the default partition is
    skipped (PostgreSQL refuses it; retention empties the default partition row by row)."""
    ahead = settings.WEBHOOK_PARTITION_DAYS_AHEAD if days_ahead is None else days_ahead
    first = today or timezone.now().astimezone(UTC).date()
    existing = {partition.name for partition in day_partitions()}
    created = []
    for offset in range(ahead + 1):
        day = first + timedelta(days=offset)
        if partition_name(day) in existing:
            continue
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(partition_create_sql(day))
        except DatabaseError:
            logger.warning("No partition for %s: the default partition holds its bodies", day)
            continue
        created.append(partition_name(day))
    return created


def day_partitions() -> list[DayPartition]:
    """The parent's day partitions, oldest first (the default partition is not one)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [PARENT],
        )
        names = [row[0] for row in cursor.fetchall()]
    days = []
    for name in names:
        match = _DAY_SUFFIX.search(name)
        if match:
            days.append(DayPartition(name, datetime.strptime(match[1], "%Y%m%d").date()))
    return sorted(days, key=lambda partition: partition.day)


def partitions_before(cutoff: datetime) -> list[DayPartition]:
    """The day partitions whose every body was received before `cutoff`."""
    return [partition for partition in day_partitions() if partition.end <= cutoff]


def partition_drop(partition: DayPartition) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {partition.name}")
