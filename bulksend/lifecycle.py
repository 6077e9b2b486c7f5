"""A send's lifecycle, in one place: the only code that changes a send's status, its counters,
`started_at`/`completed_at`, whether it is halted, and `status_reason`.

    QUEUED -> PROCESSING -> COMPLETED | PARTIAL | FAILED      (the last message settled)
    PROCESSING -> halted: FAILED or PARTIAL with `halted_at`  (Meta refused the token or account)
    halted -> PROCESSING                                      (resumed by an operator)
    QUEUED | PROCESSING | halted -> CANCELLED                 (cancelled by an operator)
    QUEUED | PROCESSING -> paused (same status, `paused_at`) -> resumed   (by the client)

Cancelling and pausing also stop the workers in the middle of a batch (bulksend.stopping) and wait
until nothing of the send is claimed and unsent, so that nothing goes out after they return.

Messaging moves messages and reports how each send's counters moved (messaging.counters); the
functions here add those deltas in the same transaction, and the statement that adds them also
finishes a send whose last message settled, so no path (a worker, a webhook after its worker left,
the reaper) can leave a settled send unfinished or finish it twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from bulksend.conversion import cancelled_messages_convert_enqueue
from bulksend.creation import bulk_send_enqueue
from bulksend.liveness import drain_may_be_alive
from bulksend.models import ACTIVE_STATUSES, BulkSend, BulkSendStatus
from bulksend.stopping import send_stop_clear, send_stop_mark
from callbacks.outbox import (
    endpoint_exists_sql,
    event_record_bulk_send_status,
    events_record_message_statuses,
)
from messaging.counters import (
    COUNTERS,
    SendDeltas,
    deltas_merge,
    deltas_move,
    deltas_select_sql,
    sql_literal,
)
from messaging.delivery import (
    DeliveryResult,
    Settle,
    Settled,
    leases_reap,
    messages_settle,
    sent_record_ctes,
)
from messaging.models import DeferredStatus, Message, MessagePhase, MessageStatus
from messaging.status import (
    WAMID_LOCK_KEY,
    Moves,
    StatusEvent,
    StatusOutcome,
    moves_merge,
    statuses_apply,
    statuses_apply_deferred,
)
from mindo.errors import ConflictError, ServiceUnavailableError
from mindo.prepared import prepared_cursor
from mindo.redisconn import REDIS_ERRORS
from templates_app.models import (
    REFUSED_TEMPLATE_STATUSES,
    MessageTemplate,
    PhoneNumber,
    WhatsAppBusinessAccount,
)

logger = logging.getLogger(__name__)

CANCELLED_REASON = "Cancelled by an operator."

_STATUS_SQL = {status.name: sql_literal(status.value) for status in BulkSendStatus}

_LOCK_SENDS_SQL = """
SELECT id, completed_at IS NULL, status FROM {sends} WHERE id = ANY(%s::uuid[]) ORDER BY id
FOR UPDATE
"""

# Counters move by the deltas; a send whose last message settled finishes in the same statement.
# One that had finished turns PARTIAL when a failure arrives late, FAILED when none went out.
_COUNTERS_SQL = """
UPDATE {sends} b SET
    {counters},
    completed_at = CASE WHEN {finishing} THEN {now} ELSE b.completed_at END,
    status = CASE
        WHEN {finishing} THEN
            CASE WHEN b.failed_count + d.failed = 0 THEN {COMPLETED}
                 WHEN b.sent_count + d.sent = 0 THEN {FAILED}
                 ELSE {PARTIAL} END
        WHEN b.status IN ({COMPLETED}, {PARTIAL}) AND b.failed_count + d.failed > 0
             AND b.sent_count + d.sent = 0 AND b.pending_count + d.pending = 0 THEN {FAILED}
        WHEN b.status = {COMPLETED} AND b.failed_count + d.failed > 0 THEN {PARTIAL}
        ELSE b.status
    END
FROM {source} AS d(id, {names})
WHERE b.id = d.id
RETURNING b.id, b.completed_at IS NOT NULL, b.status
"""

# Running, or halted with nothing left to wait for: the last message has settled.
_FINISHING = (
    "b.completed_at IS NULL AND b.pending_count + d.pending = 0"
    " AND (b.status = {PROCESSING} OR b.halted_at IS NOT NULL)"
)


def _sends_table() -> str:
    return BulkSend._meta.db_table


def _counters_sql(source: str = "unnest(%s::uuid[], {arrays})", now: str = "%s") -> str:
    """The counters' UPDATE, its deltas (a row per send: id, then COUNTERS) read from `source`
    (by default the arrays of `sends_counters_apply`) and the moment a send finishes from the
    parameter `now`."""
    return _COUNTERS_SQL.format(
        sends=_sends_table(),
        counters=",\n    ".join(f"{name}_count = b.{name}_count + d.{name}" for name in COUNTERS),
        finishing=_FINISHING.format(**_STATUS_SQL),
        source=source.format(arrays=", ".join("%s::int[]" for _ in COUNTERS)),
        now=now,
        names=", ".join(COUNTERS),
        **_STATUS_SQL,
    )


def sends_counters_apply(
    deltas: SendDeltas, *, now: datetime | None = None, status_events: bool = True
) -> set[str]:
    """Add each send's deltas to its counters and finish the sends whose last message settled;
    returns the ids of the sends finished by this call. A send whose status changed gets its
    `bulk_send.status` callback (unless `status_events` is off: the caller records its own).

    The sends are locked in id order first, so batches touching several sends cannot deadlock.
    Call it in the transaction that moved the messages.
    """
    if not deltas:
        return set()
    ids = sorted(deltas)
    with prepared_cursor() as cursor:  # planned once per connection (mindo.prepared)
        # Locks them all; also says which were not finished before this statement.
        cursor.execute(_LOCK_SENDS_SQL.format(sends=_sends_table()), [ids])
        locked = cursor.fetchall()
        unfinished = {str(row[0]) for row in locked if row[1]}
        status_before = {str(row[0]): row[2] for row in locked}
        columns = [[int(deltas[send_id].get(name, 0)) for send_id in ids] for name in COUNTERS]
        params: list[Any] = [now or timezone.now(), ids, *columns]
        cursor.execute(_counters_sql(), params)
        updated = cursor.fetchall()
    # A cancelled send's `pending` messages count as cancelled: one of them moved by a status
    # (Meta's late `sent` of a message given back) moved the wrong counter; recount the two.
    # `counted_statuses(send_cancelled=True)` cannot fix the deltas instead, for two reasons:
    # - they come summed per counter under the rule of a send not cancelled, where `pending`
    #   sums `pending` and `sending` rows; `pending -> sent` and `sending -> sent` then give the
    #   same deltas, yet in a cancelled send the first is `cancelled -1` and the second
    #   `pending -1`, so the sums cannot say which counter moved;
    # - messaging moved the rows and summed them before the lock above was taken: the send may
    #   have been cancelled in between, so which rule applied is known only now, under the lock,
    #   and only the rows, read now, say what the counters must be.
    for send_id in ids:
        if status_before.get(send_id) == BulkSendStatus.CANCELLED and (
            deltas[send_id].get("pending") or deltas[send_id].get("cancelled")
        ):
            _cancelled_counters_true_up(send_id)
    changed = {str(row[0]) for row in updated if row[2] != status_before.get(str(row[0]))}
    if changed and status_events:
        event_record_bulk_send_status(changed, previous=status_before)
    return {str(row[0]) for row in updated if row[1]} & unfinished


def sends_statuses_apply(events: list[StatusEvent]) -> StatusOutcome:
    """Apply Meta's status events to the messages and their sends, in one transaction (the
    caller's, when there is one)."""
    with transaction.atomic(savepoint=False):
        outcome = statuses_apply(events)
        sends_counters_apply(outcome.counters)
    return outcome


def batch_settle(results: list[DeliveryResult], *, now: datetime) -> dict[str, int]:
    """Settle a batch of attempts and its sends' counters in one transaction; returns how many
    results of each outcome."""
    return batch_settle_outcome(results, now=now).counts


def batch_settle_outcome(
    results: list[DeliveryResult], *, now: datetime, durable: bool = True
) -> Settled:
    """`batch_settle`, answering how the counters moved too.

    Not `durable`: the commit does not wait for the disk. For a caller whose settle, if a crash
    lost it, is made again from elsewhere: the message stays `sending` under its lease, and
    Meta's `sent` webhook (carrying our callback data) or the reaper settles it as it settles
    any worker's lost batch; nothing is sent twice, since a lease is handed back only on evidence
    that Meta did not take the message.
    """
    with transaction.atomic():
        if not durable:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        settled = messages_settle(results, now=now)
        events_record_message_statuses(settled.moves)
        sends_counters_apply(settled.counters, now=now)
    return settled


# One single send's `sent`, recorded and counted in one statement (see `single_sent_settle`);
# it also says how the send's status moved (the send as it was, before the statement), and
# whether its organization has an endpoint for events at all.
_SINGLE_SENT_SQL = """
WITH {record},
deltas AS (
    SELECT bulk_send_id, {deltas} FROM changed GROUP BY bulk_send_id
),
counted AS (
    {counters}
)
SELECT
    (SELECT COALESCE(json_agg(json_build_array(bulk_send_id, old_status, new_status)), '[]')
       FROM changed),
    EXISTS (SELECT 1 FROM {deferred} WHERE wamid = %(wamid)s),
    (SELECT COALESCE(json_agg(json_build_array(c.id, b.status, c.status)), '[]')
       FROM counted c JOIN {sends} b ON b.id = c.id WHERE c.status <> b.status),
    EXISTS (SELECT 1 FROM changed c JOIN {sends} b ON b.id = c.bulk_send_id
             WHERE {has_endpoint})
"""

_NOT_DURABLE_AND_LOCKED_SQL = (
    "SELECT set_config('synchronous_commit', 'off', true),"
    f" pg_advisory_xact_lock({WAMID_LOCK_KEY.format(wamid='%s')})"
)


def single_sent_settle(*, message_id: int, wamid: str, now: datetime) -> Settled:
    """`batch_settle_outcome([sent], durable=False)` for one message Meta took, in three round
    trips instead of seven: the commit does not wait for the disk (see `batch_settle_outcome`)
    and the wamid's lock is taken in one statement, then the message is recorded sent, its
    send's counters moved and finished in another (one send: no ordering of locks to keep).

    The wamid's lock comes first, so whatever Meta's webhooks kept for the wamid before it was
    recorded is seen by the statement that records it, and applied in the same transaction.
    The customers' events cost a statement only for an organization with an endpoint: the
    statement that records the message says whether it has one.
    """
    params: dict[str, Any] = {"message": message_id, "wamid": wamid, "now": now}
    # Planned once per connection: planning the second costs about as much as running it.
    with transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute(_NOT_DURABLE_AND_LOCKED_SQL, [wamid])
        cursor.execute(_single_sent_sql(), params)
        changes, kept, send_moves, has_endpoint = cursor.fetchone()
        counters: SendDeltas = {}
        moves: Moves = {}
        for bulk_send_id, old_status, new_status in changes:
            deltas_move(counters, str(bulk_send_id), old_status, new_status)
            moves[message_id] = (str(bulk_send_id), old_status, new_status)
        if kept:
            earlier = statuses_apply_deferred([wamid], locked=True)
            sends_counters_apply(earlier.counters, now=now)
            deltas_merge(counters, earlier.counters)
            moves_merge(moves, earlier.moves)
        if has_endpoint:
            events_record_message_statuses(moves)
            event_record_bulk_send_status(
                [row[0] for row in send_moves], previous={row[0]: row[1] for row in send_moves}
            )
    return Settled({Settle.SENT.value: 1}, counters, moves)


def _single_sent_sql() -> str:
    counters = _counters_sql(source="deltas", now="%(now)s")
    return _SINGLE_SENT_SQL.format(
        record=sent_record_ctes(),
        deltas=deltas_select_sql("old_status", "new_status"),
        counters=counters.strip(),
        deferred=DeferredStatus._meta.db_table,
        sends=_sends_table(),
        has_endpoint=endpoint_exists_sql("b.organization_id"),
    )


def sends_leases_reap(
    *,
    grace_seconds: float,
    max_attempts: int,
    now: datetime,
    unknown_after_seconds: float,
    resend_unknown: bool = False,
) -> set[str]:
    """messaging.delivery.leases_reap with its sends' counters, in one transaction; returns the
    ids of the sends that got messages back to `pending`."""
    with transaction.atomic():
        reaped = leases_reap(
            grace_seconds=grace_seconds,
            max_attempts=max_attempts,
            now=now,
            unknown_after_seconds=unknown_after_seconds,
            resend_unknown=resend_unknown,
        )
        events_record_message_statuses(reaped.moves)
        sends_counters_apply(reaped.counters, now=now)
    return reaped.send_ids


def bulk_send_start(bulk_send_id: uuid.UUID) -> bool:
    """QUEUED -> PROCESSING once (guarded), not before its `send_at` (bulksend.schedule); True
    when the send is PROCESSING now and not paused (a paused send stays as it is: QUEUED until
    its resume)."""
    now = timezone.now()
    unpaused = BulkSend.objects.filter(pk=bulk_send_id, paused_at__isnull=True)
    with transaction.atomic():
        started = (
            unpaused.filter(status=BulkSendStatus.QUEUED)
            .filter(Q(send_at__isnull=True) | Q(send_at__lte=now))
            .update(status=BulkSendStatus.PROCESSING, started_at=now)
        )
        if started:
            event_record_bulk_send_status(
                [bulk_send_id], previous={str(bulk_send_id): BulkSendStatus.QUEUED}
            )
    return unpaused.filter(status=BulkSendStatus.PROCESSING).exists()


def bulk_send_finish_if_done(bulk_send_id: uuid.UUID) -> bool:
    """Finish the send if its last message has settled (the rule of `sends_counters_apply`, with
    no delta): for a drain or the reaper that saw it settle. True when it finished now."""
    with transaction.atomic():
        return bool(sends_counters_apply({str(bulk_send_id): dict.fromkeys(COUNTERS, 0)}))


def bulk_send_halt(bulk_send_id: uuid.UUID, *, code: str, text: str) -> bool:
    """Stop a running send for an operator (Meta refused its token or account): FAILED when
    nothing went out, PARTIAL otherwise, with the reason on the status endpoint and in the
    admin. Its untried messages stay pending for when it is resumed. True when it halted now."""
    reason = f"Halted: Meta error {code}: {text}. Fix it and resume the send."
    now = timezone.now()
    with transaction.atomic():
        sends = BulkSend.objects.select_for_update().filter(
            pk=bulk_send_id, status=BulkSendStatus.PROCESSING
        )
        send = sends.first()
        if send is None:
            return False
        sends.update(
            status=BulkSendStatus.FAILED if send.sent_count == 0 else BulkSendStatus.PARTIAL,
            status_reason=reason,
            halted_at=now,
            halt_reason=reason,
        )
        event_record_bulk_send_status([bulk_send_id], previous={str(bulk_send_id): send.status})
    return True


def bulk_send_resume(*, bulk_send: BulkSend) -> bool:
    """Resume a halted send (a token fixed, an account unblocked, a template approved again):
    back to PROCESSING with its reason cleared (and its pause, if it had one), and a wake-up for
    the workers. False when there is nothing to do, or while Meta still refuses its template or
    restricts its account (`bulk_send_resume_blocker` says which). One halted before it started
    starts now. `ServiceUnavailableError` while Redis cannot clear its stop mark."""
    with transaction.atomic():
        halted = (
            BulkSend.objects.select_for_update()
            .filter(
                pk=bulk_send.pk,
                halted_at__isnull=False,
                completed_at__isnull=True,
                pending_count__gt=0,
                phone_number__business_account__restriction="",
            )
            .exclude(template__status__in=REFUSED_TEMPLATE_STATUSES)
        )
        before = halted.values_list("status", flat=True).first()
        if before is not None:
            _stop_clear(bulk_send)
        resumed = halted.update(
            status=BulkSendStatus.PROCESSING,
            status_reason="",
            halted_at=None,
            halt_reason="",
            paused_at=None,
            started_at=Coalesce(F("started_at"), Value(timezone.now())),
        )
        if resumed:
            event_record_bulk_send_status([bulk_send.pk], previous={str(bulk_send.pk): str(before)})
    if resumed:
        transaction.on_commit(lambda: bulk_send_enqueue(bulk_send))
    return bool(resumed)


def bulk_send_cancel(*, bulk_send: BulkSend, refuse_finished: bool = False) -> int:
    """Cancel what has not gone out yet; returns how many messages were cancelled.

    Only `pending` messages are cancelled: one a worker holds (`sending`) may already be with
    Meta, so it settles as Meta says. A halted or paused send can be cancelled too, to give up on
    what it had left. Then the workers are stopped and waited for (`_stop_and_wait`): when this
    returns, nothing more of the send goes to Meta. Cancelling a cancelled send again only waits
    again; a finished one is left as it is, or refused (`refuse_finished`: `ConflictError`).

    The send alone changes here: CANCELLED, its pending messages counted as cancelled at once
    (`_cancelled_counters_true_up`), which every read already shows them as; their rows are
    turned `cancelled` afterwards by a task woken on commit (bulksend.conversion).
    """
    with transaction.atomic():
        send = BulkSend.objects.select_for_update().get(pk=bulk_send.pk)
        if send.status == BulkSendStatus.CANCELLED:
            cancelled = 0
        elif send.completed_at is not None or not (
            send.status in ACTIVE_STATUSES or send.halted_at is not None
        ):
            if refuse_finished:
                raise ConflictError(f"El envio ya finalizo ({send.status}) y no se puede cancelar")
            return 0
        else:
            # Under the send's lock, before the commit: see bulksend.stopping.
            send_stop_mark(send.pk, _number_id(send), why="cancelled", forever=True)
            BulkSend.objects.filter(pk=send.pk).update(
                status=BulkSendStatus.CANCELLED,
                completed_at=timezone.now(),
                status_reason=CANCELLED_REASON,
                halted_at=None,
                halt_reason="",
                paused_at=None,
            )
            cancelled = _cancelled_counters_true_up(send.pk)
            event_record_bulk_send_status([send.pk], previous={str(send.pk): send.status})
            transaction.on_commit(lambda: cancelled_messages_convert_enqueue(send.pk))
    _stop_and_wait(send.pk)
    # What the stopped workers gave back to `pending` meanwhile.
    return cancelled + bulk_send_cancel_leftovers(send.pk)


def bulk_send_cancel_for_client(*, bulk_send: BulkSend) -> int:
    """`bulk_send_cancel` for the API: a finished send is a `ConflictError`."""
    return bulk_send_cancel(bulk_send=bulk_send, refuse_finished=True)


# --- pause and resume, for the client (and the admin) ------------------------------------------

PAUSED_REASON = "paused"
# The longest a pause or a cancel waits for a drain to stop: a live drain stops within a request
# to Meta; one that died holds its claimed messages until its mark in Redis lapses (seconds).
STOP_WAIT_MAX_SECONDS = 60.0
STOP_POLL_SECONDS = 0.05


def bulk_send_pause(*, bulk_send: BulkSend) -> bool:
    """Hold a send that has not finished: no worker sends for it until `bulk_send_unpause`, its
    pending messages wait, its status stays QUEUED or PROCESSING with `status_reason` "paused".
    Returns when nothing more goes out (as a cancel does); True when it paused now, False when it
    was paused already. `ConflictError` for a finished, cancelled or halted send."""
    with transaction.atomic():
        send = BulkSend.objects.select_for_update().get(pk=bulk_send.pk)
        _refuse_unless_active(send, verb="pausar")
        paused = send.paused_at is None
        if paused:
            send_stop_mark(send.pk, _number_id(send), why="paused")
            BulkSend.objects.filter(pk=send.pk).update(
                paused_at=timezone.now(), status_reason=PAUSED_REASON
            )
            event_record_bulk_send_status([send.pk], previous={str(send.pk): send.status})
    _stop_and_wait(send.pk)
    return paused


def bulk_send_unpause(*, bulk_send: BulkSend) -> bool:
    """Resume a send for the client: a paused one goes on where it stopped (its estimate counts
    from now), one Meta halted restarts as `bulk_send_resume` restarts it, a running one is left
    as it is. True when it changed. `ConflictError` for a finished or cancelled send and while
    Meta still refuses a halted one (`bulk_send_resume_blocker`'s text); `ServiceUnavailableError`
    while Redis cannot clear its stop mark."""
    with transaction.atomic():
        send = BulkSend.objects.select_for_update().get(pk=bulk_send.pk)
        if send.is_halted and send.completed_at is None:
            blocker = bulk_send_resume_blocker(send)
            if blocker is not None:
                raise ConflictError(blocker)
            return bulk_send_resume(bulk_send=send)
        _refuse_unless_active(send, verb="reanudar")
        # Cleared even when not paused: a mark a failed commit left behind must not hold it.
        _stop_clear(send)
        if send.paused_at is None:
            return False
        BulkSend.objects.filter(pk=send.pk).update(paused_at=None, status_reason="")
        event_record_bulk_send_status([send.pk], previous={str(send.pk): send.status})
    transaction.on_commit(lambda: bulk_send_enqueue(send))
    return True


def _refuse_unless_active(send: BulkSend, *, verb: str) -> None:
    """`ConflictError` unless the send is QUEUED or PROCESSING, not finished nor halted."""
    if send.status == BulkSendStatus.CANCELLED:
        raise ConflictError(f"El envio fue cancelado y no se puede {verb}")
    if send.completed_at is not None:
        raise ConflictError(f"El envio ya finalizo ({send.status}) y no se puede {verb}")
    if send.is_halted:
        raise ConflictError(
            f"El envio esta detenido por un error de Meta y no se puede {verb}: "
            "reanudelo una vez resuelto, o cancelelo"
        )


def _number_id(send: BulkSend) -> str:
    """Meta's id of the send's number: the hash tag of its stop mark (bulksend.stopping)."""
    return str(
        PhoneNumber.objects.values_list("phone_number_id", flat=True).get(pk=send.phone_number_id)
    )


def _stop_clear(send: BulkSend) -> None:
    """Clear the send's stop mark, under its lock (bulksend.stopping); 503 when Redis is away."""
    try:
        send_stop_clear(send.pk, _number_id(send))
    except REDIS_ERRORS as error:
        raise ServiceUnavailableError(
            "Servicio no disponible temporalmente. Intente nuevamente en unos segundos."
        ) from error


def _stop_and_wait(bulk_send_id: uuid.UUID) -> bool:
    """Wait until no message of the send is claimed and unsent, now that its drains stop (the
    database and its stop mark say so); True when none is. Bounded: a drain that died holds its
    claim until its lease ends, and it sends nothing; that is the reaper's (False then)."""
    deadline = time.monotonic() + min(settings.DELIVERY_LEASE_SECONDS, STOP_WAIT_MAX_SECONDS)
    claimed = Message.objects.filter(
        bulk_send_id=bulk_send_id, phase=MessagePhase.OPEN, status=MessageStatus.SENDING
    )
    while True:
        # An attempt Meta did not answer keeps its message `sending`, its lease ending when the
        # attempt did: only a lease still running is a claim a drain may yet send.
        if not claimed.filter(lease_expires_at__gt=timezone.now()).exists():
            return True
        if time.monotonic() >= deadline or not drain_may_be_alive(bulk_send_id):
            logger.warning("Send %s stopped with messages still claimed", bulk_send_id)
            return False
        time.sleep(STOP_POLL_SECONDS)


# A cancelled send's counters recounted by the rule of messaging.counters (its `pending` messages
# are cancelled, only those a worker holds are pending), from the one count that can differ: the
# messages in flight, a short range of the (send, status, id) index. The others move only with
# their rows, by deltas; these two by what no delta tells: a message given back to `pending` (a
# release, a retry, a reaped lease), or claimed by a drain that had not seen the cancel yet.
# Answers how many moved from pending to cancelled (negative: back). The caller holds the lock.
_CANCELLED_TRUE_UP_SQL = """
WITH held AS (
    SELECT count(*) AS sending FROM {messages}
     WHERE bulk_send_id = %(send)s AND phase = {OPEN} AND status = {SENDING}
),
before AS (SELECT pending_count FROM {sends} WHERE id = %(send)s)
UPDATE {sends} b
   SET cancelled_count = b.cancelled_count + b.pending_count - held.sending,
       pending_count = held.sending
  FROM held, before
 WHERE b.id = %(send)s AND b.status = {CANCELLED} AND b.pending_count <> held.sending
RETURNING before.pending_count - held.sending
"""


def _cancelled_counters_true_up(bulk_send_id: uuid.UUID | str) -> int:
    """Move a cancelled send's counters to what its messages say (see the SQL); returns how many
    moved from pending to cancelled. The caller holds the send's lock (its snapshot is then
    later than every change the lock waited for)."""
    sql = _CANCELLED_TRUE_UP_SQL.format(
        messages=Message._meta.db_table,
        sends=_sends_table(),
        SENDING=sql_literal(MessageStatus.SENDING),
        OPEN=MessagePhase.OPEN.value,
        CANCELLED=_STATUS_SQL[BulkSendStatus.CANCELLED.name],
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {"send": bulk_send_id})
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def bulk_send_cancel_leftovers(bulk_send_id: uuid.UUID) -> int:
    """Count as cancelled what came back to `pending` in a send cancelled meanwhile; returns how
    many.

    A message in flight when its send was cancelled settles afterwards: sent as Meta says, but a
    retry, a released message or a reaped lease goes back to `pending`, where no drain will look
    for it (drains stop at a cancelled send). It is cancelled to every read from then on; here
    the counters follow, under the send's lock, by `_cancelled_counters_true_up` (never twice: it
    recounts rather than adds). Its row is turned with the others (bulksend.conversion). Called
    by the drain that saw the cancel, by the conversion's last step and by the reaper.
    """
    with transaction.atomic():
        locked = BulkSend.objects.select_for_update().filter(
            pk=bulk_send_id, status=BulkSendStatus.CANCELLED
        )
        if not locked.exists():
            return 0
        return _cancelled_counters_true_up(bulk_send_id)


# The sweep looks this far back for a cancelled send whose rows are not all turned: its task was
# lost (the broker away) or its worker died. Older ones are left: their rows read as cancelled.
CONVERSION_SWEEP_DAYS = 7


def cancelled_sends_sweep() -> int:
    """`bulk_send_cancel_leftovers` for every cancelled send that still counts messages pending
    (in flight ones included: their settling may bring them back), and the conversion's wake-up
    for every recent one with `pending` rows left (bulksend.conversion); returns how many
    messages the counters moved."""
    cancelled = BulkSend.objects.filter(status=BulkSendStatus.CANCELLED)
    moved = sum(
        bulk_send_cancel_leftovers(bulk_send_id)
        for bulk_send_id in cancelled.filter(pending_count__gt=0).values_list("pk", flat=True)
    )
    unconverted = cancelled.filter(
        completed_at__gte=timezone.now() - timedelta(days=CONVERSION_SWEEP_DAYS)
    ).filter(
        Exists(
            Message.objects.filter(
                bulk_send_id=OuterRef("pk"), phase=MessagePhase.OPEN, status=MessageStatus.PENDING
            )
        )
    )
    for bulk_send_id in unconverted.values_list("pk", flat=True):
        cancelled_messages_convert_enqueue(bulk_send_id)
    return moved


# --- halts for Meta's events about a send's template, number or account -----------------------


def _sends_halt(sends: QuerySet[BulkSend], *, reason: str) -> int:
    """Halt every active send of `sends` (QUEUED or PROCESSING, not finished, not halted yet)
    with `reason`, as `bulk_send_halt` halts one: FAILED when nothing went out, PARTIAL
    otherwise, untried messages left pending for a resume. Returns how many halted now.

    The sends are locked, then halted by one UPDATE: a drain sees the send no longer PROCESSING
    and stops after the batch it holds; a QUEUED send's drain never starts it. Each halted send
    gets its `bulk_send.status` event.
    """
    with transaction.atomic():
        halting = dict(
            sends.filter(
                status__in=ACTIVE_STATUSES, completed_at__isnull=True, halted_at__isnull=True
            )
            .select_for_update()
            .values_list("pk", "status")
        )
        if not halting:
            return 0
        halted = BulkSend.objects.filter(pk__in=list(halting)).update(
            status=Case(
                When(sent_count=0, then=Value(BulkSendStatus.FAILED)),
                default=Value(BulkSendStatus.PARTIAL),
            ),
            status_reason=reason,
            halted_at=timezone.now(),
            halt_reason=reason,
        )
        event_record_bulk_send_status(
            list(halting), previous={str(pk): status for pk, status in halting.items()}
        )
    return halted


def _with_meta_reason(meta_reason: str) -> str:
    return f" (Meta: {meta_reason})" if meta_reason else ""


def sends_halt_for_templates(
    templates: list[MessageTemplate], *, status: str, meta_reason: str = ""
) -> int:
    """Halt the active sends of templates Meta paused or disabled; returns how many."""
    halted = 0
    for template in templates:
        reason = (
            f"Halted: Meta set the template {template.name} ({template.language}) to {status}"
            f"{_with_meta_reason(meta_reason)}. Resume the send once Meta approves it again."
        )
        halted += _sends_halt(BulkSend.objects.filter(template_id=template.pk), reason=reason)
    return halted


def sends_halt_for_numbers(numbers: list[PhoneNumber], *, event: str) -> int:
    """Halt the active sends of numbers whose quality Meta flagged; returns how many."""
    halted = 0
    for number in numbers:
        reason = (
            f"Halted: Meta reported {event} for the number {number.display_phone_number}: its "
            "quality fell to RED. Review the recent sends and resume when ready."
        )
        halted += _sends_halt(BulkSend.objects.filter(phone_number_id=number.pk), reason=reason)
    return halted


def sends_halt_for_account(account: WhatsAppBusinessAccount, *, restriction: str) -> int:
    """Halt the active sends of every number of a business account Meta restricted."""
    reason = (
        f"Halted: {restriction} on the business account {account.waba_id}. Resume the send "
        "once Meta lifts it."
    )
    sends = BulkSend.objects.filter(phone_number__business_account_id=account.pk)
    return _sends_halt(sends, reason=reason)


def bulk_send_resume_blocker(bulk_send: BulkSend) -> str | None:
    """Why the send may not be resumed yet (Meta still refuses its template, or its account is
    restricted), or None."""
    template = MessageTemplate.objects.get(pk=bulk_send.template_id)
    if template.status in REFUSED_TEMPLATE_STATUSES:
        return (
            f"Meta still has the template {template.name} ({template.language}) "
            f"{template.status}: resume once it is approved again."
        )
    account = WhatsAppBusinessAccount.objects.get(phone_numbers__pk=bulk_send.phone_number_id)
    if account.is_restricted:
        return f"The business account {account.waba_id} is still restricted: {account.restriction}."
    return None
