"""The delivery side of the message state machine: claiming messages and settling what Meta said.

PostgreSQL is the queue of record. A worker claims `pending` messages with `FOR UPDATE SKIP
LOCKED` and a lease (`sending`), sends them, and settles each in one transaction per batch:
- sent: Meta gave a wamid. Recorded as a `sent` status event found by our message id, so it meets
  whatever Meta's webhooks already said about it (they may have come first) and its kept events;
- failed: a permanent error, with Meta's code and text;
- retry: back to `pending`, not claimed again before `retry_at`;
- uncertain: the request went out and no answer came back (the connection dropped, the worker
  may have died): Meta may have accepted it, so it stays `sending` until its `sent` webhook
  settles it, and only after a grace period does the reaper hand it back for a retry;
- release: not attempted after all (the send was halted, the quota window is full, the
  recipient cools down): back to `pending` as it was, not claimed again before `retry_at` when
  one is given;
- defer: Meta's per-user marketing limit (131049): the recipient's cooldown grows and the
  message waits for it, or fails as capped (messaging.cooldown).
A failure with Meta's 131050 (the user stopped marketing) puts the recipient on the
organization's suppression list in the same transaction (messaging.suppression).
Every status move is a guarded UPDATE (`WHERE status = 'sending'`), so a late worker never
overwrites what a webhook or the reaper decided. Each function returns how the sends' counters
moved, by the rows that really changed; its caller applies that in the same transaction
(bulksend.lifecycle).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
from django.db import connection

from messaging.cooldown import messages_defer
from messaging.counters import (
    STATUS_SQL,
    SendDeltas,
    deltas_merge,
    deltas_move,
    sql_in,
    sql_literal,
)
from messaging.models import MessagePhase, MessageStatus
from messaging.status import (
    Moves,
    StatusEvent,
    moves_merge,
    statuses_apply_sent,
    table_names,
    transaction_required,
)
from messaging.suppression import suppressions_from_failed
from meta.error_codes import USER_STOPPED_MARKETING
from mindo.prepared import prepared_cursor

# The status of a send whose messages may be claimed (bulksend's BulkSendStatus.PROCESSING; this
# package imports no bulksend). Any other (queued, halted, over, cancelled), or a pause, and the
# claim takes nothing, whoever calls it: a cancelled send's `pending` messages are cancelled
# already, their rows turned afterwards (bulksend.conversion), and a stopped one's wait for its
# resume.
SEND_RUNNING_STATUS = "PROCESSING"


class Settle(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"
    UNCERTAIN = "uncertain"
    RELEASE = "release"
    DEFER = "defer"  # Meta's per-user marketing limit (131049): wait for the cooldown


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    id: int
    # The phone, or None for a message to a business-scoped user id (`recipient_user_id`).
    recipient_phone: str | None
    variables: dict[str, str]
    button_variables: dict[str, str]
    attempts: int
    recipient_user_id: str | None = None

    @property
    def recipient(self) -> str:
        """Who it goes to, phone or user id (never alike: a phone starts with `+`)."""
        return self.recipient_phone or self.recipient_user_id or ""


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    message_id: int
    outcome: Settle
    wamid: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retry_at: datetime | None = None


_CLAIM_SQL = """
UPDATE {messages} m
   SET status = {SENDING}, lease_expires_at = %(lease_until)s, attempts = m.attempts + 1,
       next_attempt_at = NULL
 WHERE m.id IN (
    SELECT id FROM {messages}
     WHERE bulk_send_id = %(send)s AND phase = {OPEN} AND status = {PENDING}
       AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
       AND EXISTS (SELECT 1 FROM {sends}
                    WHERE id = %(send)s AND status = {SEND_RUNNING} AND paused_at IS NULL)
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
 )
RETURNING m.id, m.recipient_phone, m.variables, m.button_variables, m.attempts,
          m.recipient_user_id
"""

_FAIL_SQL = """
WITH outcome AS (
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS o(id, code, message)
)
UPDATE {messages} m
   SET status = {FAILED}, failed_at = %s, error_code = o.code, error_message = o.message,
       lease_expires_at = NULL
  FROM outcome o
 WHERE m.id = o.id AND m.status = {SENDING}
RETURNING m.bulk_send_id, m.id
"""

_RETRY_SQL = """
WITH outcome AS (SELECT * FROM unnest(%s::bigint[], %s::timestamptz[]) AS o(id, retry_at))
UPDATE {messages} m
   SET status = {PENDING}, next_attempt_at = o.retry_at, lease_expires_at = NULL
  FROM outcome o
 WHERE m.id = o.id AND m.status = {SENDING}
"""

_UNCERTAIN_SQL = """
UPDATE {messages} SET lease_expires_at = %s WHERE id = ANY(%s::bigint[]) AND status = {SENDING}
"""

_RELEASE_SQL = """
WITH outcome AS (SELECT * FROM unnest(%s::bigint[], %s::timestamptz[]) AS o(id, retry_at))
UPDATE {messages} m
   SET status = {PENDING}, lease_expires_at = NULL, next_attempt_at = o.retry_at,
       attempts = GREATEST(m.attempts - 1, 0)
  FROM outcome o
 WHERE m.id = o.id AND m.status = {SENDING}
"""

# Has Meta's status webhook stream for the message's number come `grace` past the moment the
# message was handed over (its lease's end: the moment of the unanswered attempt, or the end of a
# dead worker's lease)? Then Meta would have named it by now if it had taken it.
_EVIDENCE = """EXISTS (
    SELECT 1 FROM {sends} b
      JOIN {numbers} n ON n.id = b.phone_number_id
      JOIN {progress} p ON p.phone_number_id = n.phone_number_id
     WHERE b.id = m.bulk_send_id AND p.latest_status_at >= m.lease_expires_at + %(grace)s)"""

# The phase names the reaper's partial index (message_open_lease); the status narrows it.
_EXPIRED = """m.phase = {OPEN} AND m.status = {SENDING} AND m.lease_expires_at < %(cutoff)s"""

# Not taken by Meta (the evidence says so), or past the ceiling when resending is chosen.
_RETRYABLE = (
    f"{_EXPIRED} AND ({_EVIDENCE} OR (m.lease_expires_at < %(unknown_cutoff)s AND %(resend)s))"
)

_REAP_SQL = f"""
UPDATE {{messages}} m SET status = {{PENDING}}, lease_expires_at = NULL
 WHERE {_RETRYABLE} AND m.attempts < %(max_attempts)s
RETURNING m.bulk_send_id
"""

# A message whose every attempt went unanswered (and no webhook named it) has used its attempts.
_REAP_EXHAUSTED_SQL = f"""
UPDATE {{messages}} m
   SET status = {{FAILED}}, failed_at = %(now)s, lease_expires_at = NULL,
       error_code = 'no_answer',
       error_message = 'Meta did not answer any of ' || m.attempts || ' attempts, and no status '
                       'webhook came for this message.'
 WHERE {_RETRYABLE} AND m.attempts >= %(max_attempts)s
RETURNING m.bulk_send_id, m.id
"""

# No evidence either way within the ceiling: Meta may have delivered it. Sending again could
# deliver it twice, so it ends as failed with an outcome the client can read as unknown.
_REAP_UNKNOWN_SQL = f"""
UPDATE {{messages}} m
   SET status = {{FAILED}}, failed_at = %(now)s, lease_expires_at = NULL,
       error_code = 'unknown_outcome',
       error_message = 'Meta did not answer and sent no status for this message within '
                       || %(ceiling)s || ' seconds: it may have been delivered. Not sent again, '
                       'so that it is never delivered twice.'
 WHERE {_EXPIRED} AND m.lease_expires_at < %(unknown_cutoff)s AND NOT %(resend)s
   AND NOT {_EVIDENCE}
RETURNING m.bulk_send_id, m.id
"""

_PROGRESS_SQL = """
INSERT INTO {progress} (phone_number_id, latest_status_at)
SELECT * FROM unnest(%s::text[], %s::timestamptz[])
ON CONFLICT (phone_number_id)
DO UPDATE SET latest_status_at = GREATEST({progress}.latest_status_at, EXCLUDED.latest_status_at)
"""


# One attempt's `sent` (Meta gave `wamid`) recorded on its message, found by our id: what
# `statuses_apply` does with a `sent` event carrying our callback data, for one message. Not
# sent yet, it becomes sent at `now`; already moved on (Meta's webhook came first), it keeps its
# status and times; either way it gets the wamid if it has none. CTEs `old` and `changed` (the
# message's send, old and new status) for a statement that also moves its send's counters
# (bulksend.lifecycle); parameters `message`, `wamid`, `now`.
SENT_RECORD_CTES = """
old AS (
    SELECT m.id, m.status FROM {messages} m
     WHERE m.id = %(message)s AND (m.status IN {UNSENT} OR m.wamid IS NULL)
       AND NOT EXISTS (SELECT 1 FROM {messages} x WHERE x.wamid = %(wamid)s AND x.id <> m.id)
       FOR UPDATE
),
changed AS (
    UPDATE {messages} m SET
        status = CASE WHEN o.status IN {UNSENT} THEN {SENT} ELSE m.status END,
        wamid = COALESCE(m.wamid, %(wamid)s),
        sent_at = CASE WHEN o.status IN {UNSENT} THEN COALESCE(m.sent_at, %(now)s)
                  ELSE m.sent_at END
      FROM old o
     WHERE m.id = o.id
    RETURNING m.bulk_send_id, o.status AS old_status, m.status AS new_status
)"""


def _sql(template: str) -> str:
    return template.format(
        **table_names(),
        **STATUS_SQL,
        UNSENT=_UNSENT,
        OPEN=MessagePhase.OPEN.value,
        SEND_RUNNING=sql_literal(SEND_RUNNING_STATUS),
    )


_UNSENT = sql_in((MessageStatus.PENDING, MessageStatus.SENDING))


def sent_record_ctes() -> str:
    """SENT_RECORD_CTES with the tables and statuses filled in."""
    return _sql(SENT_RECORD_CTES)


def messages_claim(
    *,
    bulk_send_id: uuid.UUID,
    limit: int,
    lease_seconds: float,
    now: datetime,
) -> list[ClaimedMessage]:
    """Claim up to `limit` due `pending` messages of a send, oldest first, for this worker;
    none unless the send runs, not paused (`SEND_RUNNING_STATUS`).

    Call it inside the transaction that also decides their quota, so the claim and the decision
    commit together.
    """
    params: dict[str, Any] = {
        "send": bulk_send_id,
        "now": now,
        "limit": limit,
        "lease_until": now + timedelta(seconds=lease_seconds),
    }
    with prepared_cursor() as cursor:  # planned once per connection (mindo.prepared)
        cursor.execute(_sql(_CLAIM_SQL), params)
        rows = cursor.fetchall()
    # RETURNING gives no order; the claim took them oldest first, so send them that way too.
    return sorted(
        (
            ClaimedMessage(
                id=row[0],
                recipient_phone=row[1],
                variables=_decoded(row[2]),
                button_variables=_decoded(row[3]),
                attempts=row[4],
                recipient_user_id=row[5],
            )
            for row in rows
        ),
        key=lambda message: message.id,
    )


def _decoded(value: Any) -> dict[str, str]:
    if isinstance(value, str):  # the driver hands jsonb back as text when told so
        decoded: dict[str, str] = orjson.loads(value)  # a new dict already: no copy
        return decoded
    return dict(value or {})


@dataclass(slots=True)
class Settled:
    """What settling a batch did: how many results of each outcome, how the counters moved."""

    counts: dict[str, int]
    counters: SendDeltas
    # The messages that reached a status a customer hears of (sent, delivered, read, failed).
    moves: Moves = field(default_factory=dict)


def messages_settle(results: list[DeliveryResult], *, now: datetime) -> Settled:
    """Record what Meta said about each attempted message.

    Runs in the caller's transaction, which also applies `counters` to the sends.
    """
    transaction_required()
    by_outcome: dict[Settle, list[DeliveryResult]] = {outcome: [] for outcome in Settle}
    for result in results:
        by_outcome[result.outcome].append(result)
    counters: SendDeltas = {}
    moves: Moves = {}
    with prepared_cursor() as cursor:  # planned once per connection (mindo.prepared)
        sent = by_outcome[Settle.SENT]
        if sent:
            recorded = statuses_apply_sent(
                [(result.message_id, str(result.wamid)) for result in sent], occurred_at=now
            )
            deltas_merge(counters, recorded.counters)
            moves_merge(moves, recorded.moves)
        failed = by_outcome[Settle.FAILED]
        if failed:
            cursor.execute(
                _sql(_FAIL_SQL),
                [
                    [result.message_id for result in failed],
                    [result.error_code for result in failed],
                    [result.error_message for result in failed],
                    now,
                ],
            )
            _moved_per_send(cursor, counters, MessageStatus.SENDING, MessageStatus.FAILED, moves)
            suppressions_from_failed(
                [r.message_id for r in failed if r.error_code == USER_STOPPED_MARKETING], now=now
            )
        deferred = by_outcome[Settle.DEFER]
        if deferred:
            deltas_merge(
                counters, messages_defer([r.message_id for r in deferred], now=now, moves=moves)
            )
        retry = by_outcome[Settle.RETRY]
        if retry:
            cursor.execute(
                _sql(_RETRY_SQL),
                [[r.message_id for r in retry], [r.retry_at or now for r in retry]],
            )
        uncertain = by_outcome[Settle.UNCERTAIN]
        if uncertain:
            cursor.execute(_sql(_UNCERTAIN_SQL), [now, [r.message_id for r in uncertain]])
        release = by_outcome[Settle.RELEASE]
        if release:
            cursor.execute(
                _sql(_RELEASE_SQL),
                [[r.message_id for r in release], [r.retry_at for r in release]],
            )
    counts = {outcome.value: len(items) for outcome, items in by_outcome.items() if items}
    return Settled(counts, counters, moves)


def _moved_per_send(
    cursor: Any, counters: SendDeltas, old: str, new: str, moves: Moves | None = None
) -> None:
    """Add to `counters` (and `moves`) the messages the last statement moved from `old` to `new`
    (its RETURNING bulk_send_id, id: a row per message)."""
    for bulk_send_id, message_id in cursor.fetchall():
        deltas_move(counters, str(bulk_send_id), old, new)
        if moves is not None:
            moves[message_id] = (str(bulk_send_id), old, new)


@dataclass(slots=True)
class Reaped:
    """The sends that got messages back to `pending`, how the counters moved, and the messages
    that failed."""

    send_ids: set[str]
    counters: SendDeltas
    moves: Moves = field(default_factory=dict)


def leases_reap(
    *,
    grace_seconds: float,
    max_attempts: int,
    now: datetime,
    unknown_after_seconds: float,
    resend_unknown: bool = False,
) -> Reaped:
    """Settle messages whose worker's lease ran out: they may or may not be with Meta.

    Such a message is sent again only on evidence that Meta did not take it: Meta's status
    webhooks for its number have come in for `grace_seconds` past the moment it was handed over
    and none named it (a `sent` status settles it, through our callback data, however late its
    worker died). A message that has used `max_attempts` fails instead (a send must end). While
    webhooks are not arriving (Meta is late, or they do not reach us) the message waits, up to
    `unknown_after_seconds`; then it fails as `unknown_outcome` rather than risk a second
    delivery, unless `resend_unknown`. Messages given back move no counter (`sending` and
    `pending` are both pending); failed ones do. Runs in the caller's transaction.
    """
    transaction_required()
    params: dict[str, Any] = {
        "now": now,
        "cutoff": now - timedelta(seconds=grace_seconds),
        "grace": timedelta(seconds=grace_seconds),
        "unknown_cutoff": now - timedelta(seconds=unknown_after_seconds),
        "ceiling": int(unknown_after_seconds),
        "resend": resend_unknown,
        "max_attempts": max_attempts,
    }
    counters: SendDeltas = {}
    moves: Moves = {}
    with connection.cursor() as cursor:
        cursor.execute(_sql(_REAP_EXHAUSTED_SQL), params)
        _moved_per_send(cursor, counters, MessageStatus.SENDING, MessageStatus.FAILED, moves)
        cursor.execute(_sql(_REAP_UNKNOWN_SQL), params)
        _moved_per_send(cursor, counters, MessageStatus.SENDING, MessageStatus.FAILED, moves)
        cursor.execute(_sql(_REAP_SQL), params)
        return Reaped({str(row[0]) for row in cursor.fetchall()}, counters, moves)


def webhook_progress_record(events: list[StatusEvent], *, received_at: datetime) -> None:
    """Note how far Meta's status webhooks have come for each number they name (never past
    `received_at`: a status stamped in the future proves nothing). Call it in the transaction
    that applies them, so the progress is never seen without what the statuses settled."""
    latest: dict[str, datetime] = {}
    for event in events:
        if event.phone_number_id:
            moment = min(event.occurred_at, received_at)
            latest[event.phone_number_id] = max(latest.get(event.phone_number_id, moment), moment)
    if latest:
        with connection.cursor() as cursor:
            cursor.execute(_sql(_PROGRESS_SQL), [list(latest), list(latest.values())])
