"""Retrying a send: a new send, linked by `retry_of`, of the recipients its source did not reach.

The new send holds exactly the chosen recipients with the variables they had (frozen: the
messages are copied row by row in one INSERT ... SELECT, never rebuilt from a client's body),
and is accepted as send-bulk accepts one (quota figures, estimate, wake-up:
`creation.stored_send_accept`), so it goes through the same quota and pacing.

Who is chosen, from the source send's messages (`scope`):
- `failed`: the failed ones (only those with one of `error_codes`, when given);
- `pending`: the ones never handed to Meta: still pending in a send that will not send them
  (finished, or cancelled) or cancelled;
- `all_unsent`: both (`error_codes` narrowing the failed ones).

Never twice, across a whole chain of retries (the first send, its retries, theirs...):
- a message that reached Meta (`sent_at` or a wamid: sent, delivered, read, or failed after it
  was sent) is never retried;
- a recipient who has, anywhere in the chain, a message that reached Meta or may still go out
  (pending, in flight) is left out;
- retries of one chain are made one at a time (a lock on the chain's first send), so two cannot
  both take a recipient;
- `pending` and `all_unsent` are refused (409) while the source send may still send its pending
  messages (QUEUED or PROCESSING, paused ones too); a send Meta halted could be resumed, so its
  pending messages are cancelled first, in the same transaction (the send becomes CANCELLED).

A retry asked again while the previous retry of the same send is unfinished answers that retry
(not a new one): a client that lost the answer, or clicked twice, sends nobody anything twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.contrib.auth.models import User
from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection, transaction
from django.db.models import OuterRef, QuerySet
from django.utils import timezone

from bulksend.creation import BulkSendAccepted, stored_send_accept, template_sendable_check
from bulksend.lifecycle import bulk_send_cancel
from bulksend.models import ACTIVE_STATUSES, BulkSend, BulkSendKind, BulkSendStatus
from bulksend.quota import quota_for_send
from messaging.counters import sql_in, sql_literal
from messaging.models import Message, MessageStatus, stored_statuses_of
from mindo import metrics
from mindo.errors import ConflictError, field_error


class RetryScope(StrEnum):
    FAILED = "failed"
    PENDING = "pending"
    ALL_UNSENT = "all_unsent"


# The statuses each scope takes from the source send.
_SCOPE_STATUSES = {
    RetryScope.FAILED: (MessageStatus.FAILED,),
    RetryScope.PENDING: (MessageStatus.PENDING, MessageStatus.CANCELLED),
    RetryScope.ALL_UNSENT: (MessageStatus.FAILED, MessageStatus.PENDING, MessageStatus.CANCELLED),
}

NOTHING_TO_RETRY = "No hay destinatarios para reintentar con ese scope y esos error_codes"
SOURCE_ACTIVE = (
    "El envio todavia puede enviar sus mensajes pendientes: cancelelo o espere a que termine "
    "antes de reintentar con scope '{scope}'"
)
CODES_WITHOUT_FAILED = "error_codes only narrows failed messages: use scope failed or all_unsent."

# The key space of the chain's lock (pg_advisory_xact_lock's two-int form does not overlap the
# one-bigint keys the rest of the project takes).
CHAIN_LOCK_CLASS = 0x52455452  # "RETR"

# The chain's first send, following `retry_of` up.
_ROOT_SQL = """
WITH RECURSIVE up(id, retry_of_id) AS (
    SELECT id, retry_of_id FROM {sends} WHERE id = %s
    UNION
    SELECT s.id, s.retry_of_id FROM {sends} s JOIN up ON s.id = up.retry_of_id
)
SELECT id FROM up WHERE retry_of_id IS NULL
"""

# Every send of the chain, following `retry_of` down from its first.
_CHAIN_SQL = """
WITH RECURSIVE chain(id) AS (
    SELECT %s::uuid
    UNION
    SELECT s.id FROM {sends} s JOIN chain ON s.retry_of_id = chain.id
)
SELECT array_agg(id) FROM chain
"""

# The retry's messages, copied from its source's in one statement (see the module's docstring for
# who is chosen). The new send's row is written after them, in the same transaction: a
# message's key to its send is checked at commit.
_COPY_SQL = """
INSERT INTO {messages} (bulk_send_id, business_account_id, recipient_phone, recipient_user_id,
                        variables, button_variables)
SELECT %(retry)s, m.business_account_id, m.recipient_phone, m.recipient_user_id, m.variables,
       m.button_variables
  FROM {messages} m
 WHERE m.bulk_send_id = %(source)s AND m.status = ANY(%(statuses)s)
   AND m.sent_at IS NULL AND m.wamid IS NULL
   AND (m.status <> {failed} OR %(codes)s::text[] IS NULL OR m.error_code = ANY(%(codes)s))
   AND NOT EXISTS (
       SELECT 1 FROM {messages} f JOIN {sends} fs ON fs.id = f.bulk_send_id
        WHERE f.bulk_send_id = ANY(%(chain)s::uuid[])
          -- The same person: by phone, or by Meta's user id for one sent to by it.
          AND (f.recipient_phone = m.recipient_phone OR f.recipient_user_id = m.recipient_user_id)
          AND f.id <> m.id
          -- Reached Meta or may still go out: a client reads it as neither failed nor cancelled
          -- (its send's status read in this statement, with the messages).
          AND (CASE WHEN fs.status = {cancelled_send} THEN f.status NOT IN {unreached_if_cancelled}
                    ELSE f.status NOT IN {unreached} END
               OR f.sent_at IS NOT NULL OR f.wamid IS NOT NULL))
 ORDER BY m.id
"""


@dataclass(frozen=True, slots=True)
class RetryAccepted:
    """The retry, and whether this call made it (False: an unfinished retry answered again)."""

    accepted: BulkSendAccepted
    created: bool


def bulk_send_retry(
    *,
    bulk_send: BulkSend,
    created_by: User | None,
    scope: RetryScope,
    error_codes: Sequence[str] | None = None,
) -> RetryAccepted:
    """A new send of `bulk_send`'s recipients that `scope` chooses, or its unfinished retry.

    `bulk_send` is the caller's (scoped to its organization by the caller), a bulk one. Refuses
    with a 409 when it may still send what `scope` would take, or when nobody is chosen; with a
    400 (naming the field) for `error_codes` without failed messages in the scope or a template
    that can no longer be sent.
    """
    if error_codes is not None and scope == RetryScope.PENDING:
        raise field_error("error_codes", CODES_WITHOUT_FAILED)
    assert bulk_send.kind == BulkSendKind.BULK
    now = timezone.now()
    with transaction.atomic():
        chain = _chain_lock(bulk_send.pk)
        unfinished = (
            BulkSend.objects.filter(retry_of_id=bulk_send.pk, completed_at__isnull=True)
            .select_related("template", "phone_number__business_account")
            .order_by("created_at")
            .first()
        )
        if unfinished is not None:
            quota = quota_for_send(
                bulk_send=unfinished, account=unfinished.phone_number.business_account, now=now
            )
            return RetryAccepted(BulkSendAccepted(unfinished, quota), created=False)
        source = BulkSend.objects.select_related(
            "template", "phone_number__business_account", "organization"
        ).get(pk=bulk_send.pk)
        if scope != RetryScope.FAILED:
            _pending_release(source, scope)
        template_sendable_check(source.template)
        retry_id = uuid.uuid4()
        copied = _messages_copy(
            source=source.pk, retry=retry_id, chain=chain, scope=scope, error_codes=error_codes
        )
        if not copied:
            raise ConflictError(NOTHING_TO_RETRY)
        retry = BulkSend.objects.create(
            id=retry_id,
            organization=source.organization,
            phone_number=source.phone_number,
            template=source.template,
            created_by=created_by,
            retry_of=source,
            task_id=str(uuid.uuid4()),
            submitted_recipients=copied,
            unique_recipients=copied,
            pending_count=copied,
        )
        accepted = stored_send_accept(retry, number=source.phone_number, now=now)
    metrics.send_accepted(recipients=copied)
    return RetryAccepted(accepted, created=True)


def _chain_lock(bulk_send_id: uuid.UUID) -> list[uuid.UUID]:
    """Take the lock of `bulk_send_id`'s chain of retries for this transaction; return every
    send of the chain (read once the lock is held, so no retry of it is being made)."""
    sends = BulkSend._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(_ROOT_SQL.format(sends=sends), [bulk_send_id])
        (root,) = cursor.fetchone()
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s::text))", [CHAIN_LOCK_CLASS, root]
        )
        cursor.execute(_CHAIN_SQL.format(sends=sends), [root])
        (chain,) = cursor.fetchone()
    return list(chain)


def _pending_release(source: BulkSend, scope: RetryScope) -> None:
    """Make sure `source` sends none of the pending messages a retry of `scope` takes: a 409
    while it may send them, its pending ones cancelled (through the lifecycle) when Meta halted
    it, nothing to do once it is over."""
    if source.is_halted and source.completed_at is None:
        bulk_send_cancel(bulk_send=source)
    elif source.status in ACTIVE_STATUSES:
        raise ConflictError(SOURCE_ACTIVE.format(scope=scope.value))


def _unreached_sql(*, send_cancelled: bool) -> str:
    """The stored statuses a client reads as failed or cancelled, in a send cancelled or not (a
    pending message of a cancelled send is cancelled, its row turned afterwards), for an SQL
    `IN`."""
    public = (MessageStatus.FAILED, MessageStatus.CANCELLED)
    return sql_in(
        frozenset(
            stored
            for status in public
            for stored in stored_statuses_of(status, send_cancelled=send_cancelled)
        )
    )


def _messages_copy(
    *,
    source: uuid.UUID,
    retry: uuid.UUID,
    chain: list[uuid.UUID],
    scope: RetryScope,
    error_codes: Sequence[str] | None,
) -> int:
    sql = _COPY_SQL.format(
        messages=Message._meta.db_table,
        sends=BulkSend._meta.db_table,
        failed=sql_literal(MessageStatus.FAILED),
        cancelled_send=sql_literal(BulkSendStatus.CANCELLED),
        unreached=_unreached_sql(send_cancelled=False),
        unreached_if_cancelled=_unreached_sql(send_cancelled=True),
    )
    params: dict[str, Any] = {
        "retry": retry,
        "source": source,
        "statuses": [str(status) for status in _SCOPE_STATUSES[scope]],
        "codes": list(error_codes) if error_codes is not None else None,
        "chain": chain,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _retry_ids_of(send: Any) -> QuerySet[BulkSend, Any]:
    return BulkSend.objects.filter(retry_of_id=send).order_by("created_at", "id").values("pk")


def with_retry_ids(queryset: QuerySet[BulkSend]) -> QuerySet[BulkSend]:
    """`queryset` with each send's `retry_ids` (its retries, oldest first) in the same statement,
    for the status body's `retries`."""
    return queryset.annotate(retry_ids=ArraySubquery(_retry_ids_of(OuterRef("pk"))))


def retries_of(bulk_send_id: uuid.UUID) -> list[uuid.UUID]:
    """The ids of `bulk_send_id`'s retries, oldest first."""
    return [row["pk"] for row in _retry_ids_of(bulk_send_id)]
