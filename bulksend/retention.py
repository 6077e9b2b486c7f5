"""Finished sends past retention go, with their messages: a slice of messages per transaction,
so deleting a million-recipient send never holds locks long nor bloats one transaction.

Messages are not partitioned (README, operations): their unique wamid and the per-send
recipient uniqueness would have to include a time key, and a send is the unit that is finished
or not. A send still running (or never finished) is never touched, nor any live send's counters:
only finished sends' rows are deleted, and nothing is counted back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.db import connection, transaction

from bulksend.models import ACTIVE_STATUSES, BulkSend
from messaging.models import Message
from mindo.archive import query_archive

MESSAGES_SLICE = 5_000

_SLICE_DELETE_SQL = """
DELETE FROM {messages} WHERE id IN (
    SELECT id FROM {messages} WHERE bulk_send_id = %s ORDER BY id LIMIT %s)
"""


@dataclass
class SendsRetired:
    """What a retention run took (or, dry, would take) of finished sends."""

    sends: int = 0
    messages: int = 0
    archives: list[Path] = field(default_factory=list)


def finished_sends_before(cutoff: datetime) -> list[uuid.UUID]:
    """Sends that finished before `cutoff` (completed, partial, failed or cancelled), oldest
    first."""
    return list(
        BulkSend.objects.exclude(status__in=ACTIVE_STATUSES)
        .filter(completed_at__lt=cutoff)
        .order_by("completed_at")
        .values_list("pk", flat=True)
    )


def _finished_locked(send_id: uuid.UUID, cutoff: datetime) -> bool:
    """Lock the send and say whether it is still finished before the cut (a retry or an
    operator may have moved it since it was listed)."""
    return (
        BulkSend.objects.select_for_update()
        .exclude(status__in=ACTIVE_STATUSES)
        .filter(pk=send_id, completed_at__lt=cutoff)
        .exists()
    )


def _send_archive(send_id: uuid.UUID, archive_dir: Path) -> list[Path]:
    sends = archive_dir / f"bulk_send_{send_id}.csv"
    messages = archive_dir / f"bulk_send_{send_id}.messages.csv"
    query_archive(f"SELECT * FROM {BulkSend._meta.db_table} WHERE id = %s", [send_id], sends)
    query_archive(
        f"SELECT * FROM {Message._meta.db_table} WHERE bulk_send_id = %s ORDER BY id",
        [send_id],
        messages,
    )
    return [sends, messages]


def _send_delete(send_id: uuid.UUID, cutoff: datetime) -> int | None:
    """Delete a finished send's messages a slice at a time, then the send; None when it is no
    longer one to delete."""
    deleted = 0
    delete_slice = _SLICE_DELETE_SQL.format(messages=Message._meta.db_table)
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            if not _finished_locked(send_id, cutoff):
                return None
            cursor.execute(delete_slice, [send_id, MESSAGES_SLICE])
            deleted += cursor.rowcount
            if cursor.rowcount < MESSAGES_SLICE:
                BulkSend.objects.filter(pk=send_id).delete()
                return deleted


def finished_sends_retire(
    cutoff: datetime, *, archive_dir: Path | None = None, dry_run: bool = False
) -> SendsRetired:
    """Delete sends finished before `cutoff` and their messages, each archived first to
    `archive_dir` as CSV when given. A dry run counts and changes nothing."""
    retired = SendsRetired()
    for send_id in finished_sends_before(cutoff):
        if dry_run:
            retired.sends += 1
            retired.messages += Message.objects.filter(bulk_send_id=send_id).count()
            continue
        if archive_dir is not None:
            with transaction.atomic():
                if not _finished_locked(send_id, cutoff):
                    continue
                retired.archives += _send_archive(send_id, archive_dir)
        deleted = _send_delete(send_id, cutoff)
        if deleted is not None:
            retired.sends += 1
            retired.messages += deleted
    return retired
