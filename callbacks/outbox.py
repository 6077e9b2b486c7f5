"""Recording events in the outbox, in the caller's transaction: an event exists if and only if the
change it reports was committed.

Each function is one `INSERT ... SELECT` that builds the bodies from the rows as the caller's
transaction sees them now (after its change) and joins the organization's enabled endpoints that
want the event's type, and the send's own `callback_url` (a send-scoped endpoint) when it has
one: an organization without endpoints costs the statement and nothing more, and no body is
built for it. The webhook applier's events ride in front of a statement it runs anyway
(`message_statuses_cte`); a single send asks whether there is an endpoint at all in the
statement that records it (`endpoint_exists_sql`).

The modules that make the changes (the webhook applier, a send's lifecycle, Meta's account
updates) call these; nothing else of the project imports this app.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from django.db import connection, transaction

from bulksend.models import BulkSend
from callbacks.addresses import AddressRefused, url_check
from callbacks.models import CallbackEvent, EventType, WebhookEndpoint
from callbacks.signing import secret_generate
from callbacks.store import signing_endpoints
from messaging.models import Message, MessageStatus
from messaging.status import Moves
from mindo.json_arrays import json_array, json_arrays_sql
from templates_app.models import MessageTemplate, PhoneNumber, WhatsAppBusinessAccount

logger = logging.getLogger(__name__)

# The statuses a `message.status` event reports. A message's `pending`/`sending` moves are the
# queue's business; a cancelled send's messages are told by its `bulk_send.status` event (with
# `cancelled_count`), not one by one.
REPORTED_STATUSES = frozenset(
    {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED}
)

# A wake-up per committing transaction would be a broker round trip per webhook batch; one every
# this often is enough, since a delivery run keeps taking what becomes due while it runs, and
# beat wakes one every CALLBACKS_POLL_SECONDS anyway.
WAKE_INTERVAL_SECONDS = 0.5
_last_wake = 0.0


def _tables() -> dict[str, str]:
    return {
        "events": CallbackEvent._meta.db_table,
        "endpoints": WebhookEndpoint._meta.db_table,
        "messages": Message._meta.db_table,
        "sends": BulkSend._meta.db_table,
        "numbers": PhoneNumber._meta.db_table,
        "accounts": WhatsAppBusinessAccount._meta.db_table,
        "templates": MessageTemplate._meta.db_table,
    }


_INSERT = """
INSERT INTO {events} (id, organization_id, endpoint_id, type, body, created_at, next_attempt_at,
                      attempts, last_error)
SELECT gen_random_uuid(), ep.organization_id, ep.id, %(type)s, src.body, now(), now(), 0, ''
FROM ({source}) AS src
JOIN {endpoints} ep ON ep.organization_id = src.organization_id AND ep.enabled
     AND CASE WHEN ep.send_scoped THEN ep.url = src.callback_url ELSE %(type)s = ANY(ep.events) END
"""

# The moves' arrays go as JSON texts (mindo.json_arrays): a drain's batch has hundreds.
_MOVED_ARRAYS = json_arrays_sql({"message_ids": "bigint", "old": "text", "new": "text"})

_MESSAGE_STATUS_SOURCE = (
    """
SELECT b.organization_id, b.callback_url, jsonb_build_object(
    'message_id', m.id,
    'wamid', m.wamid,
    'phone', m.recipient_phone,
    'bulk_send_id', m.bulk_send_id,
    'phone_number_id', p.phone_number_id,
    'status', c.new_status,
    'previous_status', c.old_status,
    -- Meta's time of the status reached, so a receiver can order what may arrive out of order.
    'timestamp', CASE c.new_status WHEN 'sent' THEN m.sent_at WHEN 'delivered' THEN m.delivered_at
                 WHEN 'read' THEN m.read_at WHEN 'failed' THEN m.failed_at END,
    'error', CASE WHEN c.new_status = 'failed'
             THEN jsonb_build_object('code', m.error_code, 'message', m.error_message) END
-- A message to a business-scoped user id (its phone null) names it; others keep their keys.
) || CASE WHEN m.recipient_user_id IS NULL THEN '{{}}'::jsonb
          ELSE jsonb_build_object('user_id', m.recipient_user_id) END AS body
FROM unnest("""
    + _MOVED_ARRAYS
    + """) AS c(message_id, old_status, new_status)
JOIN {messages} m ON m.id = c.message_id
JOIN {sends} b ON b.id = m.bulk_send_id
JOIN {numbers} p ON p.id = b.phone_number_id
"""
)

_BULK_SEND_SOURCE = """
SELECT b.organization_id, b.callback_url, jsonb_build_object(
    'bulk_send_id', b.id,
    'status', b.status,
    'previous_status', c.previous_status,
    'status_reason', b.status_reason,
    'halted', b.halted_at IS NOT NULL,
    'template_name', t.name,
    'total_recipients', b.unique_recipients,
    'unique_recipients', b.unique_recipients,
    'pending_count', b.pending_count,
    'sent_count', b.sent_count,
    'delivered_count', b.delivered_count,
    'read_count', b.read_count,
    'failed_count', b.failed_count,
    'cancelled_count', b.cancelled_count,
    'created_at', b.created_at,
    'started_at', b.started_at,
    'completed_at', b.completed_at
) AS body
FROM unnest(%(ids)s::uuid[], %(previous)s::text[]) AS c(id, previous_status)
JOIN {sends} b ON b.id = c.id
JOIN {templates} t ON t.id = b.template_id
"""

_TEMPLATE_SOURCE = """
SELECT a.organization_id, NULL::text AS callback_url, jsonb_build_object(
    'template_id', t.id,
    'meta_template_id', t.meta_template_id,
    'name', t.name,
    'language', t.language,
    'status', t.status,
    'meta_event', %(meta_event)s::text,
    'waba_id', a.waba_id
) AS body
FROM {templates} t JOIN {accounts} a ON a.id = t.business_account_id
WHERE t.id = ANY(%(ids)s::bigint[])
"""

_NUMBER_SOURCE = """
SELECT a.organization_id, NULL::text AS callback_url, jsonb_build_object(
    'phone_number_id', p.phone_number_id,
    'display_phone_number', p.display_phone_number,
    'quality_rating', p.quality_rating,
    'messaging_limit_tier', p.messaging_limit_tier,
    'meta_event', %(meta_event)s::text,
    'waba_id', a.waba_id
) AS body
FROM {numbers} p JOIN {accounts} a ON a.id = p.business_account_id
WHERE p.id = ANY(%(ids)s::bigint[])
"""


def _record(event_type: str, source: str, params: Mapping[str, Any]) -> int:
    if not connection.in_atomic_block:
        raise RuntimeError("record events in the transaction of the change they report")
    tables = _tables()
    sql = _INSERT.format(source=source.format(**tables), **tables)
    with connection.cursor() as cursor:
        cursor.execute(sql, {"type": event_type, **params})
        recorded = cursor.rowcount
    delivery_wake_on_commit(recorded)
    return recorded


def _message_status_params(moves: Moves) -> dict[str, Any] | None:
    """The parameters of _MESSAGE_STATUS_SOURCE for the moves a customer hears of (a message
    that reached sent, delivered, read or failed), or None when there are none."""
    reported = [
        (message_id, old, new)
        for message_id, (_, old, new) in moves.items()
        if new != old and new in REPORTED_STATUSES
    ]
    if not reported:
        return None
    return {
        "message_ids": json_array(message_id for message_id, _, _ in reported),
        "old": json_array(old for _, old, _ in reported),
        "new": json_array(new for _, _, new in reported),
    }


def events_record_message_statuses(moves: Moves) -> int:
    """`message.status` events for the messages that moved (`moves`: message id -> its send, its
    status before and after; messaging.status.Moves) to a status a customer hears of: sent,
    delivered, read, failed. One statement."""
    params = _message_status_params(moves)
    if params is None:
        return 0
    return _record(EventType.MESSAGE_STATUS, _MESSAGE_STATUS_SOURCE, params)


def message_statuses_cte(moves: Moves) -> tuple[str, dict[str, Any]]:
    """`events_record_message_statuses` as a common table expression named `recorded` (a row per
    event), with its parameters, for a caller to put in front of a statement it runs anyway in
    the same transaction, after the change: the events then cost no round trip of their own
    (the webhook applier's batch). The caller wakes the delivery (`delivery_wake_on_commit`)
    when `recorded` had rows."""
    params = _message_status_params(moves)
    if params is None:
        return "recorded AS (SELECT 1 WHERE false)", {}
    tables = _tables()
    source = _MESSAGE_STATUS_SOURCE.format(**tables)
    insert = _INSERT.format(source=source, **tables)
    return (
        f"recorded AS ({insert} RETURNING 1)",
        {"type": EventType.MESSAGE_STATUS.value, **params},
    )


def endpoint_exists_sql(organization: str) -> str:
    """An SQL condition: the organization (the SQL expression `organization`) has an enabled
    endpoint, for a caller to fold into a statement it runs anyway and skip recording events
    when it has none."""
    endpoints = WebhookEndpoint._meta.db_table
    return (
        f"EXISTS (SELECT 1 FROM {endpoints} ep"
        f" WHERE ep.organization_id = {organization} AND ep.enabled)"
    )


def delivery_wake_on_commit(recorded: int) -> None:
    """After `recorded` events were written by the caller's statement: wake the delivery once
    they are committed."""
    if recorded:
        transaction.on_commit(delivery_wake)


def event_record_bulk_send_status(
    bulk_send_ids: Collection[uuid.UUID | str], *, previous: Mapping[str, str] | None = None
) -> int:
    """`bulk_send.status` events for sends whose status just changed, with their counters as the
    transaction sees them now; `previous` maps a send id to the status it left, when known."""
    if not bulk_send_ids:
        return 0
    ids = [str(bulk_send_id) for bulk_send_id in bulk_send_ids]
    return _record(
        EventType.BULK_SEND_STATUS,
        _BULK_SEND_SOURCE,
        {"ids": ids, "previous": [(previous or {}).get(send_id) for send_id in ids]},
    )


def event_record_template_status(template_ids: Collection[int], *, meta_event: str) -> int:
    """`template.status` events for templates whose status Meta just changed."""
    if not template_ids:
        return 0
    return _record(
        EventType.TEMPLATE_STATUS,
        _TEMPLATE_SOURCE,
        {"ids": list(template_ids), "meta_event": meta_event},
    )


def event_record_number_quality(number_ids: Collection[int], *, meta_event: str) -> int:
    """`phone_number.quality` events for numbers whose quality or limit Meta just changed."""
    if not number_ids:
        return 0
    return _record(
        EventType.PHONE_NUMBER_QUALITY,
        _NUMBER_SOURCE,
        {"ids": list(number_ids), "meta_event": meta_event},
    )


# --- a send's own `callback_url` -----------------------------------------------------------------


def callback_url_refusal(*, organization_id: int, url: str) -> str | None:
    """Why a send may not name `url` as its `callback_url`, or None: it is checked as endpoints
    are (http(s), a public address; again at each delivery), and its events are signed with the
    organization's endpoint secret, so the organization must have registered an endpoint first.
    Resolves the name: call it before the send's transaction."""
    try:
        url_check(url)
    except AddressRefused as error:
        return str(error)
    if not signing_endpoints([organization_id]).exists():
        return (
            "Registre antes un endpoint en /api/v1/webhook-endpoints/: los eventos de "
            "callback_url se firman con su secreto."
        )
    return None


def send_callback_register(*, organization_id: int, url: str) -> None:
    """Make `url` (a send's `callback_url`, checked) an endpoint that its sends' events go to;
    one per organization and URL. A new send naming it enables it again after a failure."""
    endpoint, created = WebhookEndpoint.objects.get_or_create(
        organization_id=organization_id,
        url=url,
        send_scoped=True,
        defaults={
            "events": [EventType.MESSAGE_STATUS, EventType.BULK_SEND_STATUS],
            # Used only if the organization has no endpoint left to sign with.
            "secret": signing_endpoints([organization_id]).values_list("secret", flat=True).first()
            or secret_generate(),
        },
    )
    if not created and not endpoint.enabled:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            enabled=True, disabled_at=None, disabled_reason="", failing_since=None
        )


def delivery_wake() -> None:
    """Publish a delivery run, at most once every WAKE_INTERVAL_SECONDS per process. A lost
    wake-up costs latency only: beat wakes a run every CALLBACKS_POLL_SECONDS."""
    global _last_wake
    now = time.monotonic()
    if now - _last_wake < WAKE_INTERVAL_SECONDS:
        return
    _last_wake = now
    from callbacks.tasks import deliver_callbacks  # the tasks module imports the delivery engine

    try:
        deliver_callbacks.apply_async()
    except Exception as error:  # the broker away: beat will wake a run
        logger.warning("Cannot wake the callbacks delivery, beat will: %s", error)
