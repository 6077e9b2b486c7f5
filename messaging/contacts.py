"""An organization's contacts: their default list, the contacts a send makes, and looking one up
by phone (or Meta's business-scoped user id) with whether they replied and whether their 24 h
session window is open."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Subquery
from django.utils import timezone

from messaging.models import Contact, ContactList, InboundMessage, Message
from mindo.compiled import CompiledQuery, compile_queryset, first_of, stand_in_int
from mindo.phones import phone_normalize

DEFAULT_CONTACT_LIST_NAME = "Lista Principal"
# WhatsApp's customer service window: free-form messages are allowed this long after the
# person's last message.
SESSION_WINDOW = timedelta(hours=24)

# One statement however many recipients: the send's messages are already in the table, so
# their phones never travel back to Python. In phone order, as inbound messages make theirs:
# transactions inserting the same phones take their locks in one order and never deadlock. A
# recipient given by user id becomes a contact with that id and no phone, unless a contact has
# the id already (any unique conflict, phone or user id, leaves the existing contact alone).
_CONTACTS_FROM_SEND_SQL = f"""
INSERT INTO {Contact._meta.db_table}
    (organization_id, contact_list_id, phone, user_id, source, created_at)
SELECT %s, %s, m.recipient_phone, m.recipient_user_id, %s, %s
FROM {Message._meta.db_table} m
WHERE m.bulk_send_id = %s
ORDER BY m.recipient_phone, m.recipient_user_id
ON CONFLICT DO NOTHING
"""


def contact_list_default(organization_id: int) -> ContactList:
    """The organization's default list, made on first use (named DEFAULT_CONTACT_LIST_NAME, or
    that list made the default when a list of that name exists already)."""
    default = ContactList.objects.filter(organization_id=organization_id, is_default=True).first()
    if default is not None:
        return default
    try:
        with transaction.atomic():
            named, _ = ContactList.objects.get_or_create(
                organization_id=organization_id, name=DEFAULT_CONTACT_LIST_NAME
            )
            ContactList.objects.filter(pk=named.pk).update(is_default=True)
    except IntegrityError:
        pass  # made by a concurrent request meanwhile: it is the one below
    return ContactList.objects.get(organization_id=organization_id, is_default=True)


def contacts_from_send(*, organization_id: int, bulk_send_id: uuid.UUID, source: str) -> int:
    """Make a contact, in the default list, of every recipient of the send the organization has
    no contact for yet; returns how many. Call it in the transaction that stored the messages."""
    default = contact_list_default(organization_id)
    with connection.cursor() as cursor:
        cursor.execute(
            _CONTACTS_FROM_SEND_SQL,
            [organization_id, default.pk, source, timezone.now(), bulk_send_id],
        )
        return cursor.rowcount


@dataclass(frozen=True, slots=True)
class ContactLookup:
    contact: Contact | None
    last_reply_at: datetime | None
    now: datetime

    @property
    def found(self) -> bool:
        return self.contact is not None

    @property
    def session_expires_at(self) -> datetime | None:
        """When the open window closes; None when no window is open."""
        if self.last_reply_at is None:
            return None
        expires_at = self.last_reply_at + SESSION_WINDOW
        return expires_at if expires_at > self.now else None


def _latest_reply(organization_id: int, phone: str) -> Subquery:
    return Subquery(
        InboundMessage.objects.filter(organization_id=organization_id, from_phone=phone)
        .order_by("-sent_at")
        .values("sent_at")[:1]
    )


ORGANIZATION = stand_in_int(1)
PHONE = "\x00phone"  # a stand-in: no phone has a NUL


@functools.cache
def _contact_with_latest_reply() -> CompiledQuery[Contact]:
    """The organization's contact with a phone, its list and the time of its latest reply, in
    one statement compiled once per process (mindo.compiled)."""
    contact = (
        Contact.objects.select_related("contact_list")
        .annotate(last_reply_at=_latest_reply(ORGANIZATION, PHONE))
        .filter(organization_id=ORGANIZATION, phone=PHONE)
    )
    return compile_queryset(
        first_of(contact), {"organization": ORGANIZATION, "phone": PHONE}, prepared=True
    )


def _latest_reply_of_user_id(organization_id: int, user_id: str) -> datetime | None:
    """The last message from a user Meta named only by `user_id` (no phone known for them)."""
    return (
        InboundMessage.objects.filter(
            organization_id=organization_id, from_phone__isnull=True, from_user_id=user_id
        )
        .order_by("-sent_at")
        .values_list("sent_at", flat=True)
        .first()
    )


def contact_lookup_by_user_id(*, organization_id: int, user_id: str) -> ContactLookup:
    """The organization's contact with Meta's business-scoped `user_id` (exactly as Meta writes
    it), and the time of the last message that user sent: by the contact's phone when it has
    one (a webhook named both), else by the id."""
    now = timezone.now()
    contact = (
        Contact.objects.select_related("contact_list")
        .filter(organization_id=organization_id, user_id=user_id)
        .first()
    )
    if contact is not None and contact.phone:
        # By the phone (its lookup adds the messages named by the id alone).
        by_phone = contact_lookup(organization_id=organization_id, phone=contact.phone)
        return ContactLookup(contact=contact, last_reply_at=by_phone.last_reply_at, now=now)
    last_reply_at = _latest_reply_of_user_id(organization_id, user_id)
    return ContactLookup(contact=contact, last_reply_at=last_reply_at, now=now)


def _latest(*moments: datetime | None) -> datetime | None:
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else None


def contact_lookup(*, organization_id: int, phone: str) -> ContactLookup:
    """The organization's contact with `phone` in any spelling `phone_normalize` reads, and the
    time of the last message that number sent to any of the organization's numbers.

    One query when the contact exists (the latest reply is one entry of an index); an
    unparsable phone asks nothing.
    """
    now = timezone.now()
    normalized = phone_normalize(phone)
    if normalized is None:
        return ContactLookup(contact=None, last_reply_at=None, now=now)
    found = _contact_with_latest_reply().objects(organization=organization_id, phone=normalized)
    contact = found[0] if found else None
    if contact is not None:
        last_reply_at = contact.last_reply_at  # type: ignore[attr-defined]
        if contact.user_id:
            # Messages Meta named by the user id alone, before the contact had it with its phone.
            last_reply_at = _latest(
                last_reply_at, _latest_reply_of_user_id(organization_id, contact.user_id)
            )
        return ContactLookup(contact=contact, last_reply_at=last_reply_at, now=now)
    # Someone who wrote in and whose contact was deleted still replied.
    last_reply_at = (
        InboundMessage.objects.filter(organization_id=organization_id, from_phone=normalized)
        .order_by("-sent_at")
        .values_list("sent_at", flat=True)
        .first()
    )
    return ContactLookup(contact=None, last_reply_at=last_reply_at, now=now)
