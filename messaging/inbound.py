"""Recording the messages people send to an organization's numbers, from Meta's webhooks.

Each is kept once (by Meta's id: a redelivered webhook adds nothing) under the organization
that owns the number it was sent to, and its sender becomes a contact (`organic`) when the
organization has none with that phone. The caller holds the transaction: the webhook applier
records them together with the statuses of the same bodies.

Meta may name the sender by business-scoped user id (meta.user_ids) beside the phone, or
instead of it: a message with only the id is the message of the contact that has the id (learnt
from an earlier webhook naming both, `contact_user_ids_record`), and so opens that contact's
phone's service window; with no such contact it is kept under the id alone, and the sender
becomes a contact known by the id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from messaging.contacts import contact_list_default
from messaging.models import Contact, ContactSource, InboundMessage
from meta.webhook_payload import InboundUserMessage, UserIdentity
from mindo.phones import phone_normalize
from templates_app.models import PhoneNumber

logger = logging.getLogger(__name__)

_INSERT_MESSAGES_SQL = f"""
INSERT INTO {InboundMessage._meta.db_table}
    (wamid, organization_id, phone_number_id, from_phone, from_user_id, message_type, text,
     sent_at, received_at)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[],
                     %s::text[], %s::timestamptz[], %s::timestamptz[])
ON CONFLICT (wamid) DO NOTHING
RETURNING organization_id, from_phone, from_user_id
"""

# Any unique conflict (the phone, or the user id) leaves the contact there as it is.
_INSERT_CONTACTS_SQL = f"""
INSERT INTO {Contact._meta.db_table}
    (organization_id, contact_list_id, phone, user_id, name, source, created_at)
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],
                     %s::timestamptz[])
ON CONFLICT DO NOTHING
"""

# What a contact learns from a (phone, user id) pair Meta gave: `{learnt}` (user_id or phone) on
# the contact found by the other (`{known}`) when it has none yet, unless another contact of the
# organization has that value already (then the two rows stay as they are: whether they are one
# person is an operator's call). The pairs come unique by phone and by user id.
_CONTACT_LEARNS_SQL = f"""
UPDATE {Contact._meta.db_table} c SET {{learnt}} = i.{{learnt}}
  FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS i(organization_id, phone, user_id)
 WHERE c.organization_id = i.organization_id AND c.{{known}} = i.{{known}}
   AND c.{{learnt}} IS NULL
   AND NOT EXISTS (SELECT 1 FROM {Contact._meta.db_table} o
                    WHERE o.organization_id = i.organization_id AND o.{{learnt}} = i.{{learnt}})
"""


@dataclass(frozen=True, slots=True)
class _Row:
    message: InboundUserMessage
    organization_id: int
    phone_number_pk: int
    from_phone: str | None
    sent_at: datetime


def _numbers(phone_number_ids: set[str]) -> dict[str, tuple[int, int]]:
    """Meta's number id -> (our number's key, its organization)."""
    return {
        phone_number_id: (pk, organization_id)
        for phone_number_id, pk, organization_id in PhoneNumber.objects.filter(
            phone_number_id__in=phone_number_ids
        ).values_list("phone_number_id", "pk", "business_account__organization_id")
    }


def _phones_of_user_ids(
    organization_ids: set[int], user_ids: set[str]
) -> dict[tuple[int, str], str]:
    """(organization, user id) -> the phone of the contact with that id: one query, none when
    every sender came with a phone."""
    if not user_ids:
        return {}
    return {
        (organization_id, user_id): phone
        for organization_id, user_id, phone in Contact.objects.filter(
            organization_id__in=organization_ids, user_id__in=user_ids, phone__isnull=False
        ).values_list("organization_id", "user_id", "phone")
        if user_id is not None and phone is not None
    }


def _rows(messages: list[InboundUserMessage], received_at: datetime) -> list[_Row]:
    """The messages we can place: sent to a number we know, from a phone we can read or a user
    id (with the phone of its contact, when one has it)."""
    numbers = _numbers({message.phone_number_id for message in messages})
    id_only = {m.from_user_id for m in messages if m.from_wa_id is None and m.from_user_id}
    known = _phones_of_user_ids({org for _, org in numbers.values()}, id_only)
    rows = []
    for message in messages:
        number = numbers.get(message.phone_number_id)
        from_phone = phone_normalize(message.from_wa_id) if message.from_wa_id else None
        if number is not None and from_phone is None and message.from_wa_id is None:
            from_phone = known.get((number[1], message.from_user_id or ""))
        if number is None or (from_phone is None and message.from_wa_id is not None):
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


def contact_user_ids_record(identities: list[UserIdentity]) -> int:
    """Keep on each organization's contact with the phone the user id a webhook named with it,
    so the user's later events that carry only the id find the contact (and the phone on a
    contact known only by the id). One read of the numbers and two UPDATEs; returns how many
    contacts learnt something."""
    if not identities:
        return 0
    numbers = _numbers({identity.phone_number_id for identity in identities})
    known: list[tuple[int, str, str]] = []
    phones_seen: set[tuple[int, str]] = set()
    user_ids_seen: set[tuple[int, str]] = set()
    for identity in identities:
        number, phone = numbers.get(identity.phone_number_id), phone_normalize(identity.wa_id)
        if number is None or phone is None:
            continue
        # One pair per phone and per user id: one UPDATE may not give a value to two rows.
        by_phone, by_user_id = (number[1], phone), (number[1], identity.user_id)
        if by_phone not in phones_seen and by_user_id not in user_ids_seen:
            phones_seen.add(by_phone)
            user_ids_seen.add(by_user_id)
            known.append((number[1], phone, identity.user_id))
    if not known:
        return 0
    columns: list[list[int] | list[str]] = [
        [org for org, _, _ in known],
        [phone for _, phone, _ in known],
        [user_id for _, _, user_id in known],
    ]
    learnt = 0
    with connection.cursor() as cursor:
        for learns, by in (("user_id", "phone"), ("phone", "user_id")):
            cursor.execute(_CONTACT_LEARNS_SQL.format(learnt=learns, known=by), columns)
            learnt += cursor.rowcount
    return learnt


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
                [row.message.from_user_id for row in rows],
                [row.message.message_type for row in rows],
                [row.message.text for row in rows],
                [row.sent_at for row in rows],
                [received_at for _ in rows],
            ],
        )
        count = cursor.rowcount
        recorded = set(cursor.fetchall())
    # Sender -> (user id, profile name), by (organization, phone or user id).
    new_senders: dict[tuple[int, str | None, str | None], str | None] = {}
    # In phone order, as a send makes its contacts: two transactions inserting the same phones
    # take their locks in one order and never deadlock.
    for row in sorted(
        rows,
        key=lambda row: (row.organization_id, row.from_phone or "", row.message.from_user_id or ""),
    ):
        key = (row.organization_id, row.from_phone, row.message.from_user_id)
        if key in recorded and new_senders.get(key) is None:
            new_senders[key] = row.message.profile_name
    if new_senders:
        lists = {org: contact_list_default(org).pk for org, _, _ in new_senders}
        with connection.cursor() as cursor:
            cursor.execute(
                _INSERT_CONTACTS_SQL,
                [
                    [org for org, _, _ in new_senders],
                    [lists[org] for org, _, _ in new_senders],
                    [phone for _, phone, _ in new_senders],
                    [user_id for _, _, user_id in new_senders],
                    list(new_senders.values()),
                    [ContactSource.ORGANIC.value for _ in new_senders],
                    [received_at for _ in new_senders],
                ],
            )
    return count
