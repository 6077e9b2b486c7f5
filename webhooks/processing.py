"""Webhook bodies: stored as they arrive, then applied in batches.

Receiving (`webhook_store`) is one INSERT: once it commits, the body is safe and Meta may have
its 200. Applying (`webhook_events_apply_pending`) runs right after the answer, in the process
that answered, under a lock only one process holds at a time: it takes every body not applied
yet, oldest first, and applies their statuses together in one `sends_statuses_apply`, so a burst of
single-status POSTs costs a few statements per batch rather than per POST. Beat runs it too, so
a body whose applier died is applied within seconds. Every change is idempotent: applying a body
twice (a crash between applying and marking it) changes nothing the second time.

A body that cannot be applied (a value no column can hold, a bug) is quarantined with its
error: marked with it and taken out of the queue, so it never blocks the bodies after it; an
operator reads it in the admin and replays it once the cause is fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import takewhile
from typing import Any

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from bulksend.lifecycle import sends_statuses_apply
from callbacks.outbox import (
    delivery_wake_on_commit,
    events_record_message_statuses,
    message_statuses_cte,
)
from messaging.cooldown import cooldowns_from_failed_statuses
from messaging.delivery import webhook_progress_record
from messaging.inbound import contact_user_ids_record, inbound_messages_record
from messaging.models import message_id_from_callback_data
from messaging.status import Moves, StatusEvent, StatusOutcome
from messaging.suppression import marketing_preferences_apply, suppressions_from_failed_statuses
from meta.error_codes import PER_USER_MARKETING_LIMIT, USER_STOPPED_MARKETING
from meta.webhook_payload import MarketingPreference, MessageStatusUpdate, Payload, payload_read
from mindo import metrics
from mindo.prepared import prepared_cursor
from webhooks.asset_events import asset_changes_apply
from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)

# Statuses applied per statement batch: bodies are grouped up to this many statuses, and one body
# with more is applied in slices of it, so no transaction takes unbounded per-wamid locks.
STATUS_SLICE = 1_000
QUARANTINE_ERROR_LENGTH = 2_000
# Bodies applied per transaction: big enough to amortize the statements over a burst, small
# enough to keep each transaction short.
APPLY_BATCH_SIZE = 500
# pg_advisory_xact_lock key of the applier: one process applies at a time, the others answer.
APPLIER_LOCK = 0x6D696E646F  # "mindo"

_INSERT_SQL = "INSERT INTO {table} (body) VALUES (%s) RETURNING id"


# One statement for the whole batch (Django's bulk_update would build a CASE per column). The
# customers' `message.status` events of the batch ride in front of it (`recorded`,
# callbacks.outbox.message_statuses_cte): they cost the batch no round trip of their own.
_MARK_APPLIED_SQL = """
WITH {recorded},
marked AS (
    UPDATE {table} e SET
        processed_at = %(now)s, object_type = b.object_type, fields = b.fields,
        status_events = b.status_events, messages_changed = b.messages_changed,
        deferred = b.deferred, outcome = b.outcome
    FROM unnest(%(ids)s::bigint[], %(object_types)s::text[], %(fields)s::text[],
                %(status_events)s::int[], %(messages_changed)s::int[], %(deferred)s::int[],
                %(outcomes)s::jsonb[])
        AS b(id, object_type, fields, status_events, messages_changed, deferred, outcome)
    WHERE e.id = b.id AND e.received_at >= %(oldest)s
    RETURNING 1
)
SELECT (SELECT count(*) FROM recorded), (SELECT count(*) FROM marked)
"""


class NotJson(ValueError):
    pass


def webhook_store(body: bytes) -> int:
    """Keep a verified body for the applier; NotJson when it is not JSON. Returns its id."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise NotJson(str(error)) from error
    # PostgreSQL text holds no NUL; JSON escapes it, so only a malformed body could carry one.
    text = body.decode("utf-8", errors="replace").replace("\x00", "")
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL.format(table=WebhookEvent._meta.db_table), [text])
        (event_id,) = cursor.fetchone()
    return int(event_id)


def _status_event(update: MessageStatusUpdate) -> StatusEvent:
    return StatusEvent(
        wamid=update.wamid,
        status=update.status,
        occurred_at=update.occurred_at,
        error_code=update.error_code,
        error_message=update.error_message,
        message_ref=message_id_from_callback_data(update.callback_data),
        phone_number_id=update.phone_number_id,
        pricing=update.pricing,
    )


def status_events(payload: Payload) -> list[StatusEvent]:
    """The payload's status updates as messaging applies them: the callback data each one
    echoes read back into our message id, when we signed it."""
    return [_status_event(update) for update in payload.statuses]


@dataclass(slots=True)
class _Read:
    event: WebhookEvent
    payload: Payload
    statuses: list[StatusEvent]


def _read(event: WebhookEvent) -> _Read:
    try:
        document: Any = orjson.loads(event.body)
    except orjson.JSONDecodeError:
        document = None  # stored only after a JSON check: kept as evidence, nothing to apply
    payload = payload_read(document)
    return _Read(event, payload, status_events(payload))


def _outcome(read: _Read, statuses: StatusOutcome) -> dict[str, Any]:
    """What one body changed, out of the batch it was applied in."""
    wamids = {status.wamid for status in read.statuses}
    outcome: dict[str, Any] = {
        "events": len(read.statuses),
        "messages_changed": len(wamids & statuses.changes.keys()),
        "deferred": len(wamids & statuses.deferred_wamids),
        "counters": statuses.counters_for(wamids),
        **asset_changes_apply(read.payload),
    }
    if read.payload.inbound:
        outcome["inbound_messages"] = len(read.payload.inbound)
    return outcome


def _mark_applied(
    reads: list[_Read], outcomes: list[dict[str, Any]], moves: Moves | None = None
) -> None:
    """Mark the bodies applied with what each changed; `moves` are the messages they moved, whose
    `message.status` events are written by the same statement."""
    recorded_cte, event_params = message_statuses_cte(moves or {})
    with prepared_cursor() as cursor:  # planned once per connection (mindo.prepared)
        cursor.execute(
            _MARK_APPLIED_SQL.format(table=WebhookEvent._meta.db_table, recorded=recorded_cte),
            {
                **event_params,
                "now": timezone.now(),
                "ids": [read.event.pk for read in reads],
                # The table is partitioned by day received: only the batch's days are searched.
                "oldest": min(read.event.received_at for read in reads),
                "object_types": [read.payload.object_type[:64] for read in reads],
                "fields": [",".join(sorted(set(read.payload.fields)))[:200] for read in reads],
                "status_events": [len(read.statuses) for read in reads],
                "messages_changed": [outcome["messages_changed"] for outcome in outcomes],
                "deferred": [outcome["deferred"] for outcome in outcomes],
                "outcomes": [orjson.dumps(outcome).decode() for outcome in outcomes],
            },
        )
        (recorded, _) = cursor.fetchone()
    delivery_wake_on_commit(recorded)


def _apply_recipient_holds(
    preferences: list[MarketingPreference], events: list[StatusEvent], *, now: datetime
) -> None:
    """What Meta says of recipients' marketing, after the statuses are applied: users who
    stopped (or resumed) it (`user_preferences`, and `failed` statuses with 131050) update the
    organizations' suppression lists; `failed` statuses with 131049 start the recipient's
    cooldown, as Meta's synchronous 131049 does."""
    if preferences:
        marketing_preferences_apply(preferences)
    suppressions_from_failed_statuses(
        [e.wamid for e in events if e.error_code == USER_STOPPED_MARKETING], now=now
    )
    cooldowns_from_failed_statuses(
        [e.wamid for e in events if e.error_code == PER_USER_MARKETING_LIMIT], now=now
    )


def _apply_reads(reads: list[_Read]) -> StatusOutcome:
    """Apply bodies together (one statuses batch) and record what each one changed."""
    events = [status for read in reads for status in read.statuses]
    statuses = sends_statuses_apply(events)
    received_at = max(read.event.received_at for read in reads)
    webhook_progress_record(events, received_at=received_at)
    inbound_messages_record(
        [message for read in reads for message in read.payload.inbound], received_at=received_at
    )
    contact_user_ids_record([identity for read in reads for identity in read.payload.identities])
    preferences = [preference for read in reads for preference in read.payload.preferences]
    _apply_recipient_holds(preferences, events, now=received_at)
    # The customers' message.status events are written by the statement that marks the bodies.
    _mark_applied(reads, [_outcome(read, statuses) for read in reads], statuses.moves)
    return statuses


def _is_transient(error: Exception) -> bool:
    """An error of the connection or of concurrency, not of the body: try again later, do not
    quarantine (a database restarting must not put every body aside)."""
    if isinstance(error, InterfaceError):
        return True
    sqlstate = getattr(error.__cause__, "sqlstate", None) or ""
    # 08: connection exception; 57P: the server is shutting down; 40: serialization, deadlock.
    if sqlstate.startswith(("08", "57P", "40")):
        return True
    return isinstance(error, OperationalError) and not sqlstate


def _quarantine(event: WebhookEvent, error: Exception) -> None:
    logger.error("Webhook body %s quarantined: %s", event.pk, error)
    text = f"{type(error).__name__}: {error}".replace("\x00", "")[:QUARANTINE_ERROR_LENGTH]
    WebhookEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now(), error=text)


def _apply_isolating_poison(reads: list[_Read]) -> None:
    """Apply `reads` together; if that fails, each alone, and quarantine the ones that fail
    alone. Call it inside a transaction: each try runs in a savepoint."""
    try:
        with transaction.atomic():
            _apply_reads(reads)
        return
    except Exception as error:
        if _is_transient(error):
            raise
        if len(reads) == 1:
            _quarantine(reads[0].event, error)
            return
    for read in reads:
        _apply_isolating_poison([read])


def _apply_group(reads: list[_Read]) -> None:
    """Apply a group of bodies in one transaction, quarantining what fails alone.

    A group of one body in a transaction of its own (the usual case: a webhook applied right
    after its answer) needs no savepoint to be isolated in: if it fails, its transaction rolls
    back and it is quarantined in another. That saves two of a webhook's round trips.
    """
    if len(reads) > 1 or connection.in_atomic_block:
        with transaction.atomic():
            _apply_isolating_poison(reads)
        return
    try:
        with transaction.atomic():
            _apply_reads(reads)
    except Exception as error:
        if _is_transient(error):
            raise
        with transaction.atomic():
            _quarantine(reads[0].event, error)


def _apply_large(read: _Read, *, slice_lock: Callable[[], bool] | None = None) -> bool:
    """One body of more than STATUS_SLICE statuses, a slice per transaction: each slice takes its
    own per-wamid locks, so tens of thousands of unknown wamids never run PostgreSQL out of lock
    memory. A crash between slices applies the body again from the start, which is idempotent
    (at worst an unknown wamid's event is kept twice, and applying it twice changes nothing).

    `slice_lock`, when given, is taken first in each of those transactions; False from it stops
    here, the body left for whoever holds the lock (answers False). True once applied or
    quarantined."""
    statuses = read.statuses
    outcome = StatusOutcome()
    try:
        for start in range(0, len(statuses), STATUS_SLICE):
            with transaction.atomic():
                if slice_lock is not None and not slice_lock():
                    return False
                events = statuses[start : start + STATUS_SLICE]
                applied = sends_statuses_apply(events)
                events_record_message_statuses(applied.moves)
                outcome.merge(applied)
                webhook_progress_record(events, received_at=read.event.received_at)
                # As the small path does: each slice's opt-outs (131050) and cooldowns (131049).
                _apply_recipient_holds([], events, now=read.event.received_at)
        with transaction.atomic():
            if slice_lock is not None and not slice_lock():
                return False
            inbound_messages_record(read.payload.inbound, received_at=read.event.received_at)
            contact_user_ids_record(read.payload.identities)
            _apply_recipient_holds(read.payload.preferences, [], now=read.event.received_at)
            _mark_applied([read], [_outcome(read, outcome)])
    except Exception as error:
        if _is_transient(error):
            raise
        _quarantine(read.event, error)
    return True


def _next_group(reads: list[_Read]) -> list[_Read]:
    """The oldest bodies whose statuses fit in one slice (at least one body)."""
    group: list[_Read] = []
    statuses = 0
    for read in reads:
        statuses += len(read.statuses)
        if group and statuses > STATUS_SLICE:
            break
        group.append(read)
    return group


def webhook_events_apply_pending(*, batch_size: int = APPLY_BATCH_SIZE, wait: bool = False) -> int:
    """Apply every stored body not applied yet, batch by batch; returns how many.

    Returns at once when another process holds the applier's lock (that one takes the bodies
    stored meanwhile in its next batch), unless `wait`: then it waits for its turn. The lock is
    the session's, taken and tried in one round trip: most calls, under load, end there (behind
    a pooler in transaction mode, each batch's transaction's: `_apply_pending_per_transaction`).
    """
    if connection.in_atomic_block:
        # Inside a caller's transaction (a test, a replay): one batch loop under a lock that
        # ends with that transaction.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPLIER_LOCK])
        return _apply_batches(batch_size)
    if settings.DATABASE_POOLING == "transaction":
        return _apply_pending_per_transaction(batch_size, wait=wait)
    applied = 0
    with connection.cursor() as cursor:
        while True:
            if wait:
                cursor.execute("SELECT pg_advisory_lock(%s)", [APPLIER_LOCK])
            else:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [APPLIER_LOCK])
                if not cursor.fetchone()[0]:
                    return applied
            try:
                applied += _apply_batches(batch_size)
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [APPLIER_LOCK])
            if not _bodies_waiting():
                return applied


def _bodies_waiting() -> bool:
    """Whether a body waits, looked at once the lock is released: one stored while the lock was
    held may have found it taken and left it to us after our last look, and must not wait for
    beat."""
    return WebhookEvent.objects.filter(processed_at__isnull=True).exists()


def _apply_pending_per_transaction(batch_size: int, *, wait: bool) -> int:
    """`webhook_events_apply_pending` behind a pooler in transaction mode, where no session
    outlives a transaction: a session lock would be taken on one server connection and released
    (or tried by another applier) on another, so two appliers could run at once or the lock stay
    held for good. Each batch is one transaction under the applier's transaction lock instead,
    which ends with it whatever the pooler does.

    A body too large for one transaction's locks (`_apply_large`) ends its batch and is applied
    after it, a slice per transaction, each under the lock again. Between two slices another
    applier may take the lock and apply the body from its start: applying it twice changes
    nothing (see `_apply_large`).
    """
    slice_lock = partial(_applier_xact_lock, wait=wait)
    applied = 0
    while True:
        with transaction.atomic():
            if not slice_lock():
                return applied
            reads = _pending_reads(batch_size)
            small = list(takewhile(lambda read: len(read.statuses) <= STATUS_SLICE, reads))
            _apply_in_groups(small)
        applied += len(small)
        if len(small) < len(reads):
            if not _apply_large(reads[len(small)], slice_lock=slice_lock):
                return applied
            applied += 1
            metrics.WEBHOOKS_APPLIED.inc()
        elif len(reads) < batch_size and not _bodies_waiting():
            return applied


def _applier_xact_lock(*, wait: bool) -> bool:
    """Take the applier's lock until the end of the current transaction (waiting for it when
    `wait`); False when another holds it."""
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPLIER_LOCK])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [APPLIER_LOCK])
        return bool(cursor.fetchone()[0])


def _apply_batches(batch_size: int) -> int:
    """Apply the queue oldest first, batch by batch, until it is empty. Only the holder of the
    applier's lock gets here, so reading the queue needs no row locks."""
    applied = 0
    while True:
        reads = _pending_reads(batch_size)
        _apply_in_groups(reads)
        applied += len(reads)
        if len(reads) < batch_size:
            # The queue held no more: one look fewer. A body stored meanwhile is found by the
            # caller's look after unlocking (or by the next batch of a caller in a transaction).
            return applied


def _pending_reads(batch_size: int) -> list[_Read]:
    """Up to `batch_size` of the oldest bodies not applied yet, read."""
    batch = WebhookEvent.objects.filter(processed_at__isnull=True).order_by("id")[:batch_size]
    return [_read(event) for event in batch]


def _apply_in_groups(reads: list[_Read]) -> None:
    """Apply `reads` a group per transaction (per savepoint inside a caller's), a large body in
    slices of its own."""
    for_metrics = len(reads)
    while reads:
        group = _next_group(reads)
        reads = reads[len(group) :]
        if len(group[0].statuses) > STATUS_SLICE:
            _apply_large(group[0])
        else:
            _apply_group(group)
    if for_metrics:
        metrics.WEBHOOKS_APPLIED.inc(for_metrics)


def webhook_events_replay(event_ids: list[int]) -> int:
    """Put bodies back in the applier's queue (a quarantined one once its cause is fixed) and
    apply them now; returns how many were queued. Applying again is idempotent."""
    queued = WebhookEvent.objects.filter(pk__in=event_ids).update(processed_at=None, error="")
    webhook_events_apply_pending(wait=True)
    return queued


def webhook_process(body: bytes) -> WebhookEvent:
    """Store `body` and apply it (with whatever else waits) before returning it, applied.

    For callers that need the effect at once (tests, replays by an operator); the endpoint
    answers first and applies after.
    """
    event_id = webhook_store(body)
    webhook_events_apply_pending(wait=True)
    return WebhookEvent.objects.get(pk=event_id)
