"""Turning a cancelled send's `pending` messages `cancelled`, after its cancel has answered.

A cancel changes the send alone (bulksend.lifecycle): CANCELLED, its pending messages counted as
cancelled at once. Updating 100,000 rows costs seconds, so the rows are turned afterwards, by a
task woken when the cancel commits, a batch per transaction. Until then nothing tells them apart:
in a cancelled send a `pending` message is cancelled to every read (messaging.models
`public_status_of`) and to the counters (messaging.counters), and no drain claims it.

Each batch takes the next rows by id (`FOR UPDATE SKIP LOCKED`: a drain's settle or a second
converter holding some is not waited for), so a run walks the send's entries once, and a run cut
short (a worker died) is simply run again: the reaper's sweep wakes the task for any cancelled send
that still has `pending` rows, so a lost task costs latency only.
"""

from __future__ import annotations

import logging
import uuid

from django.db import connection, transaction

from bulksend.models import BulkSend, BulkSendStatus
from messaging.counters import STATUS_SQL, sql_literal
from messaging.models import Message, MessagePhase
from mindo.celery import app as celery_app

logger = logging.getLogger(__name__)

CONVERT_TASK_NAME = "bulksend.cancel_convert"
# Rows per transaction: long enough that a batch's round trips cost little beside its UPDATE,
# short enough that a drain's settle never waits long behind it.
CONVERT_BATCH = 5_000

# The next batch of the send's pending rows past `after`, in id order, only while the send is
# CANCELLED; answers how many it turned and the last id.
_CONVERT_SQL = """
WITH turned AS (
    UPDATE {messages} m SET status = {CANCELLED}, next_attempt_at = NULL
     WHERE m.id IN (
        SELECT id FROM {messages}
         WHERE bulk_send_id = %(send)s AND phase = {OPEN} AND status = {PENDING} AND id > %(after)s
         ORDER BY id
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED)
       AND m.status = {PENDING}
       AND EXISTS (SELECT 1 FROM {sends} WHERE id = %(send)s AND status = {SEND_CANCELLED})
    RETURNING m.id
)
SELECT count(*), max(id) FROM turned
"""


def _convert_sql() -> str:
    return _CONVERT_SQL.format(
        messages=Message._meta.db_table,
        sends=BulkSend._meta.db_table,
        SEND_CANCELLED=sql_literal(BulkSendStatus.CANCELLED),
        OPEN=MessagePhase.OPEN.value,
        **STATUS_SQL,
    )


def cancelled_messages_convert(
    bulk_send_id: uuid.UUID, *, batch: int = CONVERT_BATCH, max_batches: int | None = None
) -> int:
    """Turn the cancelled send's `pending` rows `cancelled`, `batch` per transaction (at most
    `max_batches` of them); returns how many. Moves no counter: they count them as cancelled
    already. Idempotent: nothing to do for a send that is not cancelled, or converted."""
    after, total, batches = 0, 0, 0
    sql = _convert_sql()
    while max_batches is None or batches < max_batches:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, {"send": bulk_send_id, "after": after, "limit": batch})
            turned, last = cursor.fetchone()
        total += turned
        batches += 1
        if turned < batch:
            break
        after = last
    if total:
        logger.info("Send %s: %d cancelled messages converted", bulk_send_id, total)
    return total


def cancelled_messages_convert_enqueue(bulk_send_id: uuid.UUID | str) -> None:
    """Wake the conversion task (after the cancel's commit); a lost wake-up costs latency only:
    the reaper's sweep wakes it again."""
    try:
        celery_app.send_task(CONVERT_TASK_NAME, args=[str(bulk_send_id)])
    except Exception:
        logger.exception("Could not wake the conversion of cancelled send %s", bulk_send_id)
