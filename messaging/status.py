"""Applying Meta's status events to messages, and reporting how their sends' counters moved.

The rules of the message state machine:
- status only moves forward: sent < delivered < read; a late or duplicated event changes nothing;
- `read` without `delivered` sets both; `failed` ends a message that was not delivered yet and
  keeps Meta's error; failed and cancelled are final;
- each transition's time is Meta's timestamp, and the first one recorded stays;
- an event for a wamid no message has yet is kept (`DeferredStatus`) and applied when the wamid is
  recorded; an event carrying our `biz_opaque_callback_data` finds its message without the wamid.

A batch is one statement whatever its size: an UPDATE of the messages that returns what changed
and, per send, how each counter moved by the rows that really changed. The caller adds those
deltas to the sends in the same transaction (bulksend.lifecycle, the one home of a send's state).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.db import connection, transaction

from messaging.counters import (
    STATUS_SQL,
    SendDeltas,
    deltas_merge,
    deltas_move,
    deltas_select_sql,
    sql_in,
)
from messaging.models import DeferredStatus, Message, MessageStatus, WebhookProgress
from meta.account_events import Pricing, pricing_document, pricing_read
from mindo.json_arrays import json_array, json_array_sql, json_arrays_sql
from mindo.prepared import prepared_cursor
from templates_app.models import PhoneNumber

# The advisory lock of a wamid (`_lock_wamids`), as SQL over the expression `{wamid}`.
WAMID_LOCK_KEY = "hashtextextended({wamid}, 0)"

APPLICABLE = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED)

# message id -> (its send, status before, status after): the moves a transaction made, which the
# customers' `message.status` events report (callbacks.outbox).
Moves = dict[int, tuple[str, str, str]]


def moves_merge(moves: Moves, other: Moves) -> None:
    """Add `other` (later moves of the same transaction) to `moves`: a message moved twice moved
    once, from its first status to its last."""
    for message_id, (bulk_send_id, old, new) in other.items():
        first = moves.get(message_id, (bulk_send_id, old, new))[1]
        moves[message_id] = (bulk_send_id, first, new)


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
    # How Meta bills the message, when the status carries `pricing`.
    pricing: Pricing | None = None


@dataclass(slots=True)
class StatusOutcome:
    events: int = 0
    messages_changed: int = 0
    deferred: int = 0
    # How each send's counters moved; bulksend.lifecycle applies them.
    counters: SendDeltas = field(default_factory=dict)
    # wamid -> (send, old status, new status) of each message that changed, so a batch of
    # webhooks can say which of them did what.
    changes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    deferred_wamids: set[str] = field(default_factory=set)
    # The same moves by message id (`Moves`), for the customers' events.
    moves: Moves = field(default_factory=dict)

    def record_change(
        self, wamid: str, bulk_send_id: str, old: str, new: str, message_id: int
    ) -> None:
        # A message moved twice in one batch (sent, then a kept delivered) moved once, from its
        # first status to its last.
        first = self.changes.get(wamid, (bulk_send_id, old, new))[1]
        self.changes[wamid] = (bulk_send_id, first, new)
        moves_merge(self.moves, {message_id: (bulk_send_id, old, new)})

    def counters_for(self, wamids: set[str]) -> SendDeltas:
        """The counter deltas by send that the messages of `wamids` caused."""
        counters: SendDeltas = {}
        for wamid in wamids & self.changes.keys():
            bulk_send_id, old_status, new_status = self.changes[wamid]
            deltas_move(counters, bulk_send_id, old_status, new_status)
        return counters

    def merge(self, other: StatusOutcome) -> None:
        """Add what `other` (a later slice of the same events) did to this outcome."""
        self.events += other.events
        self.messages_changed += other.messages_changed
        self.deferred += other.deferred
        deltas_merge(self.counters, other.counters)
        self.changes_merge(other)
        self.deferred_wamids |= other.deferred_wamids

    def changes_merge(self, other: StatusOutcome) -> None:
        """Add the moves of `other` (later in the same transaction) to this outcome's."""
        for wamid, (bulk_send_id, old, new) in other.changes.items():
            first = self.changes.get(wamid, (bulk_send_id, old, new))[1]
            self.changes[wamid] = (bulk_send_id, first, new)
        moves_merge(self.moves, other.moves)


@dataclass(slots=True)
class _Merged:
    """All the events of one wamid (from one number) in a batch: the earliest time of each kind."""

    wamid: str
    phone_number_id: str | None = None
    message_ref: int | None = None
    times: dict[str, datetime] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    # The pricing of the latest event that carried one, and that event's time.
    pricing: Pricing | None = None
    priced_at: datetime | None = None

    def add(self, event: StatusEvent) -> None:
        current = self.times.get(event.status)
        if current is None or event.occurred_at < current:
            self.times[event.status] = event.occurred_at
            if event.status == MessageStatus.FAILED:
                self.error_code, self.error_message = event.error_code, event.error_message
        self.message_ref = self.message_ref or event.message_ref
        if event.pricing is not None and (
            self.priced_at is None or event.occurred_at >= self.priced_at
        ):
            self.pricing, self.priced_at = event.pricing, event.occurred_at


_MESSAGES_SQL = """
WITH ev AS (
    SELECT * FROM unnest({arrays})
        AS e(wamid, ref, sent_ts, delivered_ts, read_ts, failed_ts, error_code, error_message,
             number, p_billable, p_model, p_category, p_type)
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
    SELECT m.id, m.status AS old_status, m.wamid AS old_wamid FROM {messages} m
     WHERE m.id IN (SELECT id FROM matched)
     ORDER BY m.id
       FOR UPDATE
),
decided AS (
    SELECT mt.*, l.old_status, l.old_wamid,
        CASE
            WHEN l.old_status IN {FINAL} THEN l.old_status
            WHEN mt.read_ts IS NOT NULL THEN {READ}
            WHEN mt.delivered_ts IS NOT NULL THEN
                CASE WHEN l.old_status = {READ} THEN l.old_status ELSE {DELIVERED} END
            WHEN mt.failed_ts IS NOT NULL THEN
                CASE WHEN l.old_status IN {REACHED_PHONE} THEN l.old_status ELSE {FAILED} END
            WHEN mt.sent_ts IS NOT NULL THEN
                CASE WHEN l.old_status IN {UNSENT} THEN {SENT} ELSE l.old_status END
            ELSE l.old_status
        END AS new_status
    FROM matched mt JOIN locked l ON l.id = mt.id
),
changed AS (
    UPDATE {messages} m SET
        status = d.new_status,
        wamid = COALESCE(m.wamid, d.wamid),
        sent_at = CASE WHEN d.new_status IN {WENT_OUT}
            THEN COALESCE(m.sent_at, d.sent_ts, d.delivered_ts, d.read_ts) ELSE m.sent_at END,
        delivered_at = CASE WHEN d.new_status IN {REACHED_PHONE}
            THEN COALESCE(m.delivered_at, d.delivered_ts, d.read_ts) ELSE m.delivered_at END,
        read_at = CASE WHEN d.new_status = {READ}
            THEN COALESCE(m.read_at, d.read_ts) ELSE m.read_at END,
        failed_at = CASE WHEN d.new_status = {FAILED} AND d.old_status <> {FAILED}
            THEN d.failed_ts ELSE m.failed_at END,
        error_code = CASE WHEN d.new_status = {FAILED} AND d.old_status <> {FAILED}
            THEN d.error_code ELSE m.error_code END,
        error_message = CASE WHEN d.new_status = {FAILED} AND d.old_status <> {FAILED}
            THEN d.error_message ELSE m.error_message END,
        pricing_billable = COALESCE(d.p_billable, m.pricing_billable),
        pricing_model = COALESCE(d.p_model, m.pricing_model),
        pricing_category = COALESCE(d.p_category, m.pricing_category),
        pricing_type = COALESCE(d.p_type, m.pricing_type)
    FROM decided d
    WHERE m.id = d.id AND (
        d.new_status <> d.old_status OR m.wamid IS NULL
        -- A status that only brings Meta's pricing (a `sent` for a message our worker already
        -- marked sent) writes it and moves nothing.
        OR (m.pricing_billable, m.pricing_model, m.pricing_category, m.pricing_type)
           IS DISTINCT FROM (COALESCE(d.p_billable, m.pricing_billable),
                             COALESCE(d.p_model, m.pricing_model),
                             COALESCE(d.p_category, m.pricing_category),
                             COALESCE(d.p_type, m.pricing_type)))
    RETURNING m.id, m.bulk_send_id, m.wamid, d.old_status, m.status AS new_status,
        (d.new_status <> d.old_status OR d.old_wamid IS NULL) AS moved
),
moved AS (
    SELECT * FROM changed WHERE moved
),
deltas AS (
    SELECT bulk_send_id,
        count(*) AS changed,
        {deltas}
    FROM moved GROUP BY bulk_send_id
)
SELECT
    (SELECT COALESCE(json_agg(DISTINCT wamid), '[]') FROM matched),
    (SELECT COALESCE(json_agg(DISTINCT wamid), '[]') FROM matched WHERE via_ref = 1),
    (SELECT COALESCE(json_agg(deltas), '[]') FROM deltas),
    (SELECT COALESCE(json_agg(json_build_array(wamid, bulk_send_id, old_status, new_status, id)),
                     '[]')
       FROM moved)
"""

_STATUS_GROUPS = {
    "FINAL": sql_in((MessageStatus.FAILED, MessageStatus.CANCELLED)),
    "UNSENT": sql_in((MessageStatus.PENDING, MessageStatus.SENDING)),
    "WENT_OUT": sql_in((MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)),
    "REACHED_PHONE": sql_in((MessageStatus.DELIVERED, MessageStatus.READ)),
}


def transaction_required() -> None:
    """Messages and their sends' counters change together or not at all: the functions that move
    messages return counter deltas and leave it to their caller's transaction to apply them."""
    if not connection.in_atomic_block:
        raise RuntimeError("call this inside the transaction that applies the counter deltas")


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


def _messages_sql() -> str:
    return _MESSAGES_SQL.format(
        arrays=json_arrays_sql(_BATCH_TYPES),
        **table_names(),
        **STATUS_SQL,
        **_STATUS_GROUPS,
        deltas=deltas_select_sql("old_status", "new_status"),
    )


def _merge(events: Iterable[StatusEvent]) -> dict[tuple[str, str | None], _Merged]:
    merged: dict[tuple[str, str | None], _Merged] = {}
    for event in events:
        if event.status in APPLICABLE:
            key = (event.wamid, event.phone_number_id)
            merged.setdefault(key, _Merged(event.wamid, event.phone_number_id)).add(event)
    return merged


# The parameters of `_MESSAGES_SQL`, in its `unnest` order, and their types; each a JSON array
# (mindo.json_arrays).
_BATCH_TYPES = {
    "wamids": "text",
    "refs": "bigint",
    "sent": "timestamptz",
    "delivered": "timestamptz",
    "read": "timestamptz",
    "failed": "timestamptz",
    "codes": "text",
    "errors": "text",
    "numbers": "text",
    "billable": "boolean",
    "pricing_models": "text",
    "categories": "text",
    "pricing_types": "text",
}


# The array parameters besides `wamids`, which is never empty.
_BATCH_COLUMNS = tuple(name for name in _BATCH_TYPES if name != "wamids")


def _batch_params(merged: dict[tuple[str, str | None], _Merged]) -> dict[str, list[Any]]:
    rows = list(merged.values())
    return _padded(
        {
            "wamids": [row.wamid for row in rows],
            "refs": [row.message_ref for row in rows],
            "sent": [row.times.get(MessageStatus.SENT) for row in rows],
            "delivered": [row.times.get(MessageStatus.DELIVERED) for row in rows],
            "read": [row.times.get(MessageStatus.READ) for row in rows],
            "failed": [row.times.get(MessageStatus.FAILED) for row in rows],
            "codes": [row.error_code for row in rows],
            "errors": [row.error_message for row in rows],
            "numbers": [row.phone_number_id for row in rows],
            "billable": [row.pricing.billable if row.pricing else None for row in rows],
            "pricing_models": [row.pricing.model if row.pricing else None for row in rows],
            "categories": [row.pricing.category if row.pricing else None for row in rows],
            "pricing_types": [row.pricing.type if row.pricing else None for row in rows],
        }
    )


def _padded(params: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """`params` with every column of NULLs sent as an empty array: `unnest` pads the shorter
    arrays with NULLs, so a batch of Meta's `sent` answers (three columns of thirteen filled)
    sends and unpacks a fraction of the values."""
    for name in _BATCH_COLUMNS:
        if not any(value is not None for value in params[name]):
            params[name] = []
    return params


def _sent_params(refs: dict[str, int], occurred_at: datetime) -> dict[str, list[Any]]:
    """`_batch_params` of `sent` events carrying our message ids (`refs`, by wamid), built
    without merging events one by one."""
    params: dict[str, list[Any]] = {name: [] for name in _BATCH_COLUMNS}
    params["wamids"] = list(refs)
    params["refs"] = list(refs.values())
    params["sent"] = [occurred_at] * len(refs)
    return params


def _apply_pass(
    cursor: Any, events: list[StatusEvent], outcome: StatusOutcome
) -> tuple[set[str], list[str]]:
    """One pass of the three statements over `events`: returns the wamids that found a message,
    and those that a message got just now from our callback data."""
    merged = _merge(events)
    if not merged:
        return set(), []
    return _apply_params(cursor, _batch_params(merged), outcome)


def _apply_params(
    cursor: Any, params: dict[str, list[Any]], outcome: StatusOutcome
) -> tuple[set[str], list[str]]:
    """`_apply_pass` of events merged into `params` already."""
    cursor.execute(_messages_sql(), {name: json_array(values) for name, values in params.items()})
    matched_json, recorded_json, deltas_json, changed_json = cursor.fetchone()
    for wamid, bulk_send_id, old_status, new_status, message_id in _json(changed_json):
        outcome.record_change(wamid, str(bulk_send_id), old_status, new_status, message_id)
    deltas = _json(deltas_json)
    outcome.messages_changed += sum(int(delta.pop("changed")) for delta in deltas)
    deltas_merge(
        outcome.counters,
        {str(delta.pop("bulk_send_id")): {k: int(v) for k, v in delta.items()} for delta in deltas},
    )
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
            f" SELECT DISTINCT {WAMID_LOCK_KEY.format(wamid='wamid')} AS key"
            f" FROM unnest({json_array_sql('%s', 'text')}) AS wamid ORDER BY key) AS keys",
            [json_array(sorted(wamids))],
        )


def statuses_apply(events: list[StatusEvent]) -> StatusOutcome:
    """Apply a batch of status events; keep the ones for unknown wamids.

    Runs in the caller's transaction, which also applies `outcome.counters` to the sends.

    1. Apply the batch.
    2. Lock the wamids it did not find and those it just recorded from callback data.
    3. Apply the ones not found once more: a wamid committed meanwhile is found now.
    4. Keep what is still unknown; apply what was kept for the wamids recorded now.
    """
    transaction_required()
    outcome = StatusOutcome(events=len(events))
    events = [event for event in events if event.status in APPLICABLE]
    if not events:
        return outcome
    # Prepared (mindo.prepared): the batch statements are planned once per connection.
    with transaction.atomic(savepoint=False), prepared_cursor() as cursor:
        matched, recorded = _apply_pass(cursor, events, outcome)
        unknown = [event for event in events if event.wamid not in matched]
        _apply_rest(cursor, unknown, recorded, outcome)
    return outcome


def statuses_apply_sent(sent: list[tuple[int, str]], *, occurred_at: datetime) -> StatusOutcome:
    """`statuses_apply` of the `sent` events of our own messages, (message id, wamid) pairs, as
    a drain records Meta's answers: the same statements, their parameters built straight from
    the pairs (making and merging an event per message was most of a drain's settle in Python).
    Runs in the caller's transaction."""
    transaction_required()
    outcome = StatusOutcome(events=len(sent))
    if not sent:
        return outcome
    refs: dict[str, int] = {}
    for message_id, wamid in sent:
        refs.setdefault(wamid, message_id)  # as `_Merged.add` keeps a wamid's first reference
    with transaction.atomic(savepoint=False), prepared_cursor() as cursor:
        matched, recorded = _apply_params(cursor, _sent_params(refs, occurred_at), outcome)
        unknown = [
            StatusEvent(
                wamid=wamid,
                status=MessageStatus.SENT,
                occurred_at=occurred_at,
                message_ref=message_id,
            )
            for message_id, wamid in sent
            if wamid not in matched
        ]
        _apply_rest(cursor, unknown, recorded, outcome)
    return outcome


def _apply_rest(
    cursor: Any, unknown: list[StatusEvent], recorded: list[str], outcome: StatusOutcome
) -> None:
    """Steps 2 to 4 of `statuses_apply`, after its first pass: `unknown`, the events whose
    wamid found no message; `recorded`, the wamids messages got from our callback data."""
    if not unknown and not recorded:
        return
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
            pricing=pricing_document(event.pricing),
        )
        for event in unknown
    )
    outcome.deferred = len(unknown)
    outcome.deferred_wamids = {event.wamid for event in unknown}
    if recorded:
        earlier = statuses_apply_deferred(recorded, locked=True)
        outcome.messages_changed += earlier.messages_changed
        deltas_merge(outcome.counters, earlier.counters)
        outcome.changes_merge(earlier)


def statuses_apply_deferred(wamids: list[str], *, locked: bool = False) -> StatusOutcome:
    """Apply the kept events of `wamids`, now that their messages have them. Call it in the
    transaction that records the wamids, so no event can slip between the two; `locked` when
    that transaction holds their locks (`_lock_wamids`) already."""
    transaction_required()
    with transaction.atomic(savepoint=False):
        if not locked:
            with connection.cursor() as cursor:
                _lock_wamids(cursor, set(wamids))
        # One statement with one array parameter, prepared: the ORM's `wamid IN (%s, ...)` of a
        # whole batch was a new statement text each time, parsed again by the driver (40% of
        # the Python time of a drain's settle).
        with prepared_cursor() as cursor:
            cursor.execute(_deferred_take_sql(), [json_array(wamids)])
            kept = sorted(cursor.fetchall())  # in the order they were kept, as the ORM read them
        if not kept:
            return StatusOutcome()
        return statuses_apply(
            [
                StatusEvent(
                    wamid=wamid,
                    status=status,
                    occurred_at=occurred_at,
                    error_code=error_code,
                    error_message=error_message,
                    message_ref=message_ref,
                    phone_number_id=phone_number_id,
                    pricing=pricing_read(_json(pricing)),
                )
                for (
                    _id,
                    wamid,
                    status,
                    occurred_at,
                    error_code,
                    error_message,
                    message_ref,
                    phone_number_id,
                    pricing,
                ) in kept
            ]
        )


# The kept events of some wamids, taken: deleted, their rows locked until the commit as
# `select_for_update()` then `delete()` left them.
_DEFERRED_TAKE_SQL = """
DELETE FROM {deferred} WHERE wamid = ANY({wamids})
RETURNING id, wamid, status, occurred_at, error_code, error_message, message_ref,
          phone_number_id, pricing
"""


def _deferred_take_sql() -> str:
    return _DEFERRED_TAKE_SQL.format(
        deferred=DeferredStatus._meta.db_table, wamids=json_array_sql("%s", "text")
    )


def _json(value: Any) -> Any:
    # psycopg returns json columns already decoded; text when the driver is told otherwise.
    return orjson.loads(value) if isinstance(value, str | bytes) else value
