"""Webhook bodies: stored as they arrive, then applied in batches.

Receiving (`webhook_store`) is one INSERT: once it commits, the body is safe and Meta may have
its 200. Applying (`webhook_events_apply_pending`) runs right after the answer, in the process
that answered, under a lock only one process holds at a time: it takes every body not applied
yet, oldest first, and applies their statuses together in one `statuses_apply`, so a burst of
single-status POSTs costs a few statements per batch rather than per POST. Beat runs it too, so
a body whose applier died is applied within seconds. Every change is idempotent: applying a body
twice (a crash between applying and marking it) changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from messaging.status import StatusOutcome, statuses_apply
from mindo import metrics
from templates_app import meta_updates
from webhooks.models import WebhookEvent
from webhooks.payload import Payload, payload_read

# Bodies applied per transaction: big enough to amortize the statements over a burst, small
# enough to keep each transaction short.
APPLY_BATCH_SIZE = 500
# pg_advisory_xact_lock key of the applier: one process applies at a time, the others answer.
APPLIER_LOCK = 0x6D696E646F  # "mindo"

_INSERT_SQL = "INSERT INTO {table} (body) VALUES (%s) RETURNING id"


# One statement for the whole batch (Django's bulk_update would build a CASE per column).
_MARK_APPLIED_SQL = """
UPDATE {table} e SET
    processed_at = %s, object_type = b.object_type, fields = b.fields,
    status_events = b.status_events, messages_changed = b.messages_changed,
    deferred = b.deferred, outcome = b.outcome
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::int[], %s::int[], %s::int[], %s::jsonb[])
    AS b(id, object_type, fields, status_events, messages_changed, deferred, outcome)
WHERE e.id = b.id
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


def _apply_account_changes(payload: Payload) -> dict[str, int]:
    templates = sum(
        meta_updates.template_status_update(
            waba_id=change.waba_id,
            meta_template_id=change.meta_template_id,
            name=change.name,
            language=change.language,
            status=change.status,
        )
        for change in payload.templates
    )
    numbers = sum(
        meta_updates.phone_number_quality_update(
            waba_id=change.waba_id,
            display_phone_number=change.display_phone_number,
            event=change.event,
            current_limit=change.current_limit,
            portfolio_tier=change.portfolio_tier,
        )
        for change in payload.numbers
    )
    numbers += sum(
        meta_updates.business_capability_update(
            waba_id=change.waba_id,
            per_phone_tier=change.per_phone_tier,
            portfolio_tier=change.portfolio_tier,
        )
        for change in payload.capabilities
    )
    return {"templates_changed": templates, "numbers_or_accounts_changed": numbers}


@dataclass(slots=True)
class _Read:
    event: WebhookEvent
    payload: Payload


def _read(event: WebhookEvent) -> _Read:
    try:
        document: Any = orjson.loads(event.body)
    except orjson.JSONDecodeError:
        document = None  # stored only after a JSON check: kept as evidence, nothing to apply
    return _Read(event, payload_read(document))


def _outcome(read: _Read, statuses: StatusOutcome) -> dict[str, Any]:
    """What one body changed, out of the batch it was applied in."""
    wamids = {status.wamid for status in read.payload.statuses}
    outcome: dict[str, Any] = {
        "events": len(read.payload.statuses),
        "messages_changed": len(wamids & statuses.changes.keys()),
        "deferred": len(wamids & statuses.deferred_wamids),
        "counters": statuses.counters_for(wamids),
        **_apply_account_changes(read.payload),
    }
    if read.payload.inbound_messages:
        outcome["inbound_messages"] = read.payload.inbound_messages
    return outcome


def webhook_events_apply(events: list[WebhookEvent]) -> StatusOutcome:
    """Apply `events` (bodies not applied yet) together and record what each one changed."""
    reads = [_read(event) for event in events]
    statuses = statuses_apply([status for read in reads for status in read.payload.statuses])
    outcomes = [_outcome(read, statuses) for read in reads]
    with connection.cursor() as cursor:
        cursor.execute(
            _MARK_APPLIED_SQL.format(table=WebhookEvent._meta.db_table),
            [
                timezone.now(),
                [read.event.pk for read in reads],
                [read.payload.object_type[:64] for read in reads],
                [",".join(sorted(set(read.payload.fields)))[:200] for read in reads],
                [len(read.payload.statuses) for read in reads],
                [outcome["messages_changed"] for outcome in outcomes],
                [outcome["deferred"] for outcome in outcomes],
                [orjson.dumps(outcome).decode() for outcome in outcomes],
            ],
        )
    return statuses


def webhook_events_apply_pending(*, batch_size: int = APPLY_BATCH_SIZE, wait: bool = False) -> int:
    """Apply every stored body not applied yet, batch by batch; returns how many.

    Returns at once when another process holds the applier's lock (that one takes the bodies
    stored meanwhile in its next batch), unless `wait`: then it waits for its turn. The lock is
    the session's, taken and tried in one round trip: most calls, under load, end there.
    """
    if connection.in_atomic_block:
        # Inside a caller's transaction (a test, a replay): one batch loop under a lock that
        # ends with that transaction.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPLIER_LOCK])
        return _apply_batches(batch_size)
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_lock(%s)", [APPLIER_LOCK])
        else:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [APPLIER_LOCK])
            if not cursor.fetchone()[0]:
                return 0
        try:
            return _apply_batches(batch_size)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [APPLIER_LOCK])


def _apply_batches(batch_size: int) -> int:
    applied = 0
    while True:
        with transaction.atomic():
            batch = list(
                WebhookEvent.objects.filter(processed_at__isnull=True)
                .order_by("id")
                .select_for_update(skip_locked=True)[:batch_size]
            )
            if not batch:
                return applied
            webhook_events_apply(batch)
            metrics.WEBHOOKS_APPLIED.inc(len(batch))
            applied += len(batch)


def webhook_process(body: bytes) -> WebhookEvent:
    """Store `body` and apply it (with whatever else waits) before returning it, applied.

    For callers that need the effect at once (tests, replays by an operator); the endpoint
    answers first and applies after.
    """
    event_id = webhook_store(body)
    webhook_events_apply_pending(wait=True)
    return WebhookEvent.objects.get(pk=event_id)
