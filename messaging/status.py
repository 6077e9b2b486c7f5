"""Applying Meta's status events to messages, and to their sends' counters by exact deltas.

The rules (DESIGN, the message state machine):
- status only moves forward: sent < delivered < read; a late or duplicated event changes nothing;
- `read` without `delivered` sets both; `failed` ends a message that was not delivered yet and
  keeps Meta's error; failed and cancelled are final;
- each transition's time is Meta's timestamp, and the first one recorded stays;
- an event for a wamid no message has yet is kept (`DeferredStatus`) and applied when the wamid is
  recorded; an event carrying our `biz_opaque_callback_data` finds its message without the wamid.

A batch is three statements whatever its size: one UPDATE of the messages that returns what
changed, one lock of the touched sends in id order (so concurrent batches cannot deadlock), one
UPDATE of their counters by the deltas of the rows that really changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.db import connection, transaction

from messaging.models import DeferredStatus, Message, MessageStatus, WebhookProgress
from templates_app.models import PhoneNumber

APPLICABLE = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED)
COUNTERS = ("sent", "delivered", "read", "failed", "pending")
# Which message statuses each counter of a send counts (DESIGN: exact counters).
COUNTED_STATUSES = {
    "sent": {"sent", "delivered", "read"},
    "delivered": {"delivered", "read"},
    "read": {"read"},
    "failed": {"failed"},
    "pending": {"pending", "sending"},
}


@dataclass(frozen=True, slots=True)
class StatusEvent:
    wamid: str
    status: str
    occurred_at: datetime
    error_code: str | None = None
    error_message: str | None = None
    # Our message id, from `biz_opaque_callback_data`, when the event carries it.
    message_ref: int | None = None
    # The number Meta says the event is about (`metadata.phone_number_id`): the event may only
    # change messages sent from that number. None for what our own workers record.
    phone_number_id: str | None = None


@dataclass(slots=True)
class StatusOutcome:
    events: int = 0
    messages_changed: int = 0
    deferred: int = 0
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    # wamid -> (send, old status, new status) of each message that changed, so a batch of
    # webhooks can say which of them did what.
    changes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    deferred_wamids: set[str] = field(default_factory=set)

    def record_change(self, wamid: str, bulk_send_id: str, old: str, new: str) -> None:
        # A message moved twice in one batch (sent, then a kept delivered) moved once, from its
        # first status to its last.
        first = self.changes.get(wamid, (bulk_send_id, old, new))[1]
        self.changes[wamid] = (bulk_send_id, first, new)

    def counters_for(self, wamids: set[str]) -> dict[str, dict[str, int]]:
        """The counter deltas by send that the messages of `wamids` caused."""
        counters: dict[str, dict[str, int]] = {}
        for wamid in wamids & self.changes.keys():
            bulk_send_id, old_status, new_status = self.changes[wamid]
            totals = counters.setdefault(bulk_send_id, dict.fromkeys(COUNTERS, 0))
            for column, statuses in COUNTED_STATUSES.items():
                totals[column] += (new_status in statuses) - (old_status in statuses)
        return counters

    def merge(self, other: StatusOutcome) -> None:
        """Add what `other` (a later slice of the same events) did to this outcome."""
        self.events += other.events
        self.messages_changed += other.messages_changed
        self.deferred += other.deferred
        for bulk_send_id, deltas in other.counters.items():
            totals = self.counters.setdefault(bulk_send_id, dict.fromkeys(COUNTERS, 0))
            for column, delta in deltas.items():
                totals[column] += delta
        for wamid, (bulk_send_id, old, new) in other.changes.items():
            self.record_change(wamid, bulk_send_id, old, new)
        self.deferred_wamids |= other.deferred_wamids


@dataclass(slots=True)
class _Merged:
    """All the events of one wamid (from one number) in a batch: the earliest time of each kind."""

    wamid: str
    phone_number_id: str | None = None
    message_ref: int | None = None
    times: dict[str, datetime] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None

    def add(self, event: StatusEvent) -> None:
        current = self.times.get(event.status)
        if current is None or event.occurred_at < current:
            self.times[event.status] = event.occurred_at
            if event.status == MessageStatus.FAILED:
                self.error_code, self.error_message = event.error_code, event.error_message
        self.message_ref = self.message_ref or event.message_ref


_MESSAGES_SQL = """
WITH ev AS (
    SELECT * FROM unnest(
        %(wamids)s::text[], %(refs)s::bigint[], %(sent)s::timestamptz[],
        %(delivered)s::timestamptz[], %(read)s::timestamptz[], %(failed)s::timestamptz[],
        %(codes)s::text[], %(errors)s::text[], %(numbers)s::text[]
    ) AS e(wamid, ref, sent_ts, delivered_ts, read_ts, failed_ts, error_code, error_message,
           number)
),
candidates AS (
    SELECT m.id, m.bulk_send_id, 0 AS via_ref, e.* FROM ev e
      JOIN {messages} m ON m.wamid = e.wamid
    UNION ALL
    SELECT m.id, m.bulk_send_id, 1 AS via_ref, e.* FROM ev e JOIN {messages} m ON m.id = e.ref
     WHERE m.wamid IS NULL
       AND NOT EXISTS (SELECT 1 FROM {messages} x WHERE x.wamid = e.wamid)
),
matched AS (
    -- An event from Meta changes only messages sent from the number it names: a signed status
    -- of one organization's number never settles another's message.
    SELECT DISTINCT ON (c.id) c.* FROM candidates c
     WHERE c.number IS NULL OR EXISTS (
        SELECT 1 FROM {sends} b JOIN {numbers} p ON p.id = b.phone_number_id
         WHERE b.id = c.bulk_send_id AND p.phone_number_id = c.number)
    ORDER BY c.id, c.via_ref
),
locked AS (
    -- FOR UPDATE returns each row's latest committed version, so `old_status` is what the
    -- UPDATE below really changes, even when another batch changed it a moment ago.
    SELECT m.id, m.status AS old_status FROM {messages} m
     WHERE m.id IN (SELECT id FROM matched)
     ORDER BY m.id
       FOR UPDATE
),
decided AS (
    SELECT mt.*, l.old_status,
        CASE
            WHEN l.old_status IN ('failed', 'cancelled') THEN l.old_status
            WHEN mt.read_ts IS NOT NULL THEN 'read'
            WHEN mt.delivered_ts IS NOT NULL THEN
                CASE WHEN l.old_status = 'read' THEN l.old_status ELSE 'delivered' END
            WHEN mt.failed_ts IS NOT NULL THEN
                CASE WHEN l.old_status IN ('delivered', 'read') THEN l.old_status ELSE 'failed' END
            WHEN mt.sent_ts IS NOT NULL THEN
                CASE WHEN l.old_status IN ('pending', 'sending') THEN 'sent' ELSE l.old_status END
            ELSE l.old_status
        END AS new_status
    FROM matched mt JOIN locked l ON l.id = mt.id
),
changed AS (
    UPDATE {messages} m SET
        status = d.new_status,
        wamid = COALESCE(m.wamid, d.wamid),
        sent_at = CASE WHEN d.new_status IN ('sent', 'delivered', 'read')
            THEN COALESCE(m.sent_at, d.sent_ts, d.delivered_ts, d.read_ts) ELSE m.sent_at END,
        delivered_at = CASE WHEN d.new_status IN ('delivered', 'read')
            THEN COALESCE(m.delivered_at, d.delivered_ts, d.read_ts) ELSE m.delivered_at END,
        read_at = CASE WHEN d.new_status = 'read'
            THEN COALESCE(m.read_at, d.read_ts) ELSE m.read_at END,
        failed_at = CASE WHEN d.new_status = 'failed' AND d.old_status <> 'failed'
            THEN d.failed_ts ELSE m.failed_at END,
        error_code = CASE WHEN d.new_status = 'failed' AND d.old_status <> 'failed'
            THEN d.error_code ELSE m.error_code END,
        error_message = CASE WHEN d.new_status = 'failed' AND d.old_status <> 'failed'
            THEN d.error_message ELSE m.error_message END
    FROM decided d
    WHERE m.id = d.id AND (d.new_status <> d.old_status OR m.wamid IS NULL)
    RETURNING m.bulk_send_id, m.wamid, d.old_status, m.status AS new_status
),
deltas AS (
    SELECT bulk_send_id,
        count(*) AS changed,
        sum((new_status IN ('sent', 'delivered', 'read'))::int
            - (old_status IN ('sent', 'delivered', 'read'))::int) AS sent,
        sum((new_status IN ('delivered', 'read'))::int
            - (old_status IN ('delivered', 'read'))::int) AS delivered,
        sum((new_status = 'read')::int - (old_status = 'read')::int) AS read,
        sum((new_status = 'failed')::int - (old_status = 'failed')::int) AS failed,
        sum((new_status IN ('pending', 'sending'))::int
            - (old_status IN ('pending', 'sending'))::int) AS pending
    FROM changed GROUP BY bulk_send_id
)
SELECT
    (SELECT COALESCE(json_agg(DISTINCT wamid), '[]') FROM matched),
    (SELECT COALESCE(json_agg(DISTINCT wamid), '[]') FROM matched WHERE via_ref = 1),
    (SELECT COALESCE(json_agg(deltas), '[]') FROM deltas),
    (SELECT COALESCE(json_agg(json_build_array(wamid, bulk_send_id, old_status, new_status)), '[]')
       FROM changed)
"""

_LOCK_SENDS_SQL = "SELECT id FROM {sends} WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE"

# A send finishes when its last message settles; one that had finished turns PARTIAL when a
# failure arrives late, FAILED when none went out.
_COUNTERS_SQL = """
UPDATE {sends} b SET
    sent_count = b.sent_count + d.sent,
    delivered_count = b.delivered_count + d.delivered,
    read_count = b.read_count + d.read,
    failed_count = b.failed_count + d.failed,
    pending_count = b.pending_count + d.pending,
    -- The last message settled (by a worker or by a webhook after its worker left): finished.
    completed_at = CASE
        WHEN b.status = 'PROCESSING' AND b.pending_count + d.pending = 0 THEN now()
        ELSE b.completed_at
    END,
    status = CASE
        WHEN b.status = 'PROCESSING' AND b.pending_count + d.pending = 0 THEN
            CASE WHEN b.failed_count + d.failed = 0 THEN 'COMPLETED'
                 WHEN b.sent_count + d.sent = 0 THEN 'FAILED'
                 ELSE 'PARTIAL' END
        WHEN b.status IN ('COMPLETED', 'PARTIAL') AND b.failed_count + d.failed > 0
             AND b.sent_count + d.sent = 0 AND b.pending_count + d.pending = 0 THEN 'FAILED'
        WHEN b.status = 'COMPLETED' AND b.failed_count + d.failed > 0 THEN 'PARTIAL'
        ELSE b.status
    END
FROM unnest(%s::uuid[], %s::int[], %s::int[], %s::int[], %s::int[], %s::int[])
    AS d(id, sent, delivered, read, failed, pending)
WHERE b.id = d.id
"""


def table_names() -> dict[str, str]:
    # The send's table through the foreign key: messaging sits below bulksend, imports none of it.
    send_model = Message._meta.get_field("bulk_send").related_model
    assert send_model is not None
    assert not isinstance(send_model, str)
    return {
        "messages": Message._meta.db_table,
        "sends": send_model._meta.db_table,
        "numbers": PhoneNumber._meta.db_table,
        "progress": WebhookProgress._meta.db_table,
    }


def counters_add(cursor: Any, deltas: list[dict[str, Any]]) -> None:
    """Add each delta (`bulk_send_id` and one int per name of COUNTERS) to its send's counters.

    The sends are locked in id order first, so batches touching several sends cannot deadlock.
    """
    if not deltas:
        return
    tables = table_names()
    ids = [str(delta["bulk_send_id"]) for delta in deltas]
    cursor.execute(_LOCK_SENDS_SQL.format(**tables), [sorted(ids)])
    cursor.execute(
        _COUNTERS_SQL.format(**tables),
        [ids] + [[int(delta.get(column, 0)) for delta in deltas] for column in COUNTERS],
    )


def _merge(events: Iterable[StatusEvent]) -> dict[tuple[str, str | None], _Merged]:
    merged: dict[tuple[str, str | None], _Merged] = {}
    for event in events:
        if event.status in APPLICABLE:
            key = (event.wamid, event.phone_number_id)
            merged.setdefault(key, _Merged(event.wamid, event.phone_number_id)).add(event)
    return merged


def _batch_params(merged: dict[tuple[str, str | None], _Merged]) -> dict[str, list[Any]]:
    rows = list(merged.values())
    return {
        "wamids": [row.wamid for row in rows],
        "refs": [row.message_ref for row in rows],
        "sent": [row.times.get(MessageStatus.SENT) for row in rows],
        "delivered": [row.times.get(MessageStatus.DELIVERED) for row in rows],
        "read": [row.times.get(MessageStatus.READ) for row in rows],
        "failed": [row.times.get(MessageStatus.FAILED) for row in rows],
        "codes": [row.error_code for row in rows],
        "errors": [row.error_message for row in rows],
        "numbers": [row.phone_number_id for row in rows],
    }


def _apply_pass(
    cursor: Any, events: list[StatusEvent], outcome: StatusOutcome
) -> tuple[set[str], list[str]]:
    """One pass of the three statements over `events`: returns the wamids that found a message,
    and those that a message got just now from our callback data."""
    merged = _merge(events)
    if not merged:
        return set(), []
    cursor.execute(_MESSAGES_SQL.format(**table_names()), _batch_params(merged))
    matched_json, recorded_json, deltas_json, changed_json = cursor.fetchone()
    for wamid, bulk_send_id, old_status, new_status in _json(changed_json):
        outcome.record_change(wamid, str(bulk_send_id), old_status, new_status)
    deltas = _json(deltas_json)
    counters_add(cursor, deltas)
    outcome.messages_changed += sum(int(delta["changed"]) for delta in deltas)
    for delta in deltas:
        counters = outcome.counters.setdefault(
            str(delta["bulk_send_id"]), dict.fromkeys(COUNTERS, 0)
        )
        for column in COUNTERS:
            counters[column] += int(delta[column])
    return set(_json(matched_json)), list(_json(recorded_json))


def _lock_wamids(cursor: Any, wamids: set[str]) -> None:
    """Serialize, per wamid, recording it and keeping an event for it (held until commit).

    Without it a status could be kept as unknown by one transaction while another, not yet
    committed, records its wamid and finds nothing kept: the status would be stranded. With it,
    whichever comes second sees what the first committed. Taken in a fixed order, no deadlock.
    """
    if wamids:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(key) FROM ("
            " SELECT DISTINCT hashtextextended(wamid, 0) AS key FROM unnest(%s::text[]) AS wamid"
            " ORDER BY key) AS keys",
            [sorted(wamids)],
        )


def statuses_apply(events: list[StatusEvent]) -> StatusOutcome:
    """Apply a batch of status events in one transaction; keep the ones for unknown wamids.

    1. Apply the batch (the three statements).
    2. Lock the wamids it did not find and those it just recorded from callback data.
    3. Apply the ones not found once more: a wamid committed meanwhile is found now.
    4. Keep what is still unknown; apply what was kept for the wamids recorded now.
    """
    outcome = StatusOutcome(events=len(events))
    events = [event for event in events if event.status in APPLICABLE]
    if not events:
        return outcome
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        matched, recorded = _apply_pass(cursor, events, outcome)
        unknown = [event for event in events if event.wamid not in matched]
        if not unknown and not recorded:
            return outcome
        _lock_wamids(cursor, {event.wamid for event in unknown} | set(recorded))
        if unknown:
            found_now, recorded_now = _apply_pass(cursor, unknown, outcome)
            unknown = [event for event in unknown if event.wamid not in found_now]
            recorded += recorded_now
        DeferredStatus.objects.bulk_create(
            DeferredStatus(
                wamid=event.wamid,
                status=event.status,
                occurred_at=event.occurred_at,
                error_code=event.error_code,
                error_message=event.error_message,
                message_ref=event.message_ref,
                phone_number_id=event.phone_number_id,
            )
            for event in unknown
        )
        outcome.deferred = len(unknown)
        outcome.deferred_wamids = {event.wamid for event in unknown}
        if recorded:
            earlier = statuses_apply_deferred(recorded)
            outcome.messages_changed += earlier.messages_changed
            for wamid, (bulk_send_id, old, new) in earlier.changes.items():
                outcome.record_change(wamid, bulk_send_id, old, new)
    return outcome


def statuses_apply_deferred(wamids: list[str]) -> StatusOutcome:
    """Apply the kept events of `wamids`, now that their messages have them. Call it in the
    transaction that records the wamids, so no event can slip between the two."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            _lock_wamids(cursor, set(wamids))
        kept = list(DeferredStatus.objects.select_for_update().filter(wamid__in=wamids))
        if not kept:
            return StatusOutcome()
        DeferredStatus.objects.filter(pk__in=[row.pk for row in kept]).delete()
        return statuses_apply(
            [
                StatusEvent(
                    wamid=row.wamid,
                    status=row.status,
                    occurred_at=row.occurred_at,
                    error_code=row.error_code,
                    error_message=row.error_message,
                    message_ref=row.message_ref,
                    phone_number_id=row.phone_number_id,
                )
                for row in kept
            ]
        )


def _json(value: Any) -> Any:
    # psycopg returns json columns already decoded; text when the driver is told otherwise.
    return orjson.loads(value) if isinstance(value, str | bytes) else value
