"""Recording the messages people send to an organization's numbers, from Meta's webhooks.

Each is kept once (by Meta's id: a redelivered webhook adds nothing) under the organization
that owns the number it was sent to, and its sender becomes a contact (`organic`) when the
organization has none with that phone. The caller holds the transaction: the webhook applier
records them together with the statuses of the same bodies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from messaging.contacts import contact_list_default
from messaging.models import Contact, ContactSource, InboundMessage
from meta.webhook_payload import InboundUserMessage
from mindo.phones import phone_normalize
from templates_app.models import PhoneNumber

logger = logging.getLogger(__name__)

_INSERT_MESSAGES_SQL = f"""
INSERT INTO {InboundMessage._meta.db_table}
    (wamid, organization_id, phone_number_id, from_phone, message_type, text, sent_at, received_at)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[],
                     %s::timestamptz[], %s::timestamptz[])
ON CONFLICT (wamid) DO NOTHING
RETURNING organization_id, from_phone
"""

_INSERT_CONTACTS_SQL = f"""
INSERT INTO {Contact._meta.db_table}
    (organization_id, contact_list_id, phone, name, source, created_at)
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[],
                     %s::timestamptz[])
ON CONFLICT (organization_id, phone) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class _Row:
    message: InboundUserMessage
    organization_id: int
    phone_number_pk: int
    from_phone: str
    sent_at: datetime


def _rows(messages: list[InboundUserMessage], received_at: datetime) -> list[_Row]:
    """The messages we can place: sent to a number we know, from a phone we can read."""
    numbers = {
        phone_number_id: (pk, organization_id)
        for phone_number_id, pk, organization_id in PhoneNumber.objects.filter(
            phone_number_id__in={message.phone_number_id for message in messages}
        ).values_list("phone_number_id", "pk", "business_account__organization_id")
    }
    rows = []
    for message in messages:
        number = numbers.get(message.phone_number_id)
        from_phone = phone_normalize(message.from_wa_id)
        if number is None or from_phone is None:
            logger.info(
                "Inbound message %s skipped: number %r unknown or sender %r unreadable",
                message.wamid,
                message.phone_number_id,
                message.from_wa_id,
            )
            continue
        # A clock ahead of ours must not hold a session window open past its 24 h.
        sent_at = min(message.sent_at, received_at)
        number_pk, organization_id = number
        rows.append(_Row(message, organization_id, number_pk, from_phone, sent_at))
    return rows


def inbound_messages_record(messages: list[InboundUserMessage], *, received_at: datetime) -> int:
    """Keep the messages not kept yet and make their senders contacts; returns how many new.

    Two statements for any number of messages (the numbers read once, then one INSERT each for
    messages and contacts), so a burst of webhooks costs the applier's batch little.
    """
    if not messages:
        return 0
    rows = _rows(messages, received_at)
    if not rows:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_MESSAGES_SQL,
            [
                [row.message.wamid for row in rows],
                [row.organization_id for row in rows],
                [row.phone_number_pk for row in rows],
                [row.from_phone for row in rows],
                [row.message.message_type for row in rows],
                [row.message.text for row in rows],
                [row.sent_at for row in rows],
                [received_at for _ in rows],
            ],
        )
        count = cursor.rowcount
        recorded = set(cursor.fetchall())
    new_senders: dict[tuple[int, str], str | None] = {}
    # In phone order, as a send makes its contacts: two transactions inserting the same phones
    # take their locks in one order and never deadlock.
    for row in sorted(rows, key=lambda row: (row.organization_id, row.from_phone)):
        key = (row.organization_id, row.from_phone)
        if key in recorded and new_senders.get(key) is None:
            new_senders[key] = row.message.profile_name
    if new_senders:
        lists = {org: contact_list_default(org).pk for org, _ in new_senders}
        with connection.cursor() as cursor:
            cursor.execute(
                _INSERT_CONTACTS_SQL,
                [
                    [org for org, _ in new_senders],
                    [lists[org] for org, _ in new_senders],
                    [phone for _, phone in new_senders],
                    list(new_senders.values()),
                    [ContactSource.ORGANIC.value for _ in new_senders],
                    [received_at for _ in new_senders],
                ],
            )
    return count
