"""Finding one message by its WhatsApp id for a client."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.db.models import OuterRef, Q, QuerySet, Subquery

from messaging.models import Contact, Message, message_id_from_callback_data
from mindo.compiled import CompiledQuery, compile_queryset, first_of, stand_in_int
from mindo.errors import AccessDeniedError, NotFoundError
from mindo.models import Organization

WAMID_MAX_LENGTH: int = Message._meta.get_field("wamid").max_length or 255


@dataclass(frozen=True, slots=True)
class MessageLookup:
    message: Message
    # The organization's contact with the recipient's phone (or user id), when there is one.
    contact_id: int | None
    contact_name: str | None


ORGANIZATION = stand_in_int(1)
WAMID = "\x00wamid"  # a stand-in: no wamid has a NUL
MESSAGE = stand_in_int(2)


def _lookup(found: QuerySet[Message]) -> QuerySet[Message]:
    """The first of `found` with its send and template, and the caller's contact with its phone.
    The (organization, phone) pair is unique, so each subquery reads one entry of its index; a
    message to a user id finds its contact by that id (unique too)."""
    contact = Contact.objects.filter(organization_id=ORGANIZATION).filter(
        Q(phone=OuterRef("recipient_phone")) | Q(user_id=OuterRef("recipient_user_id"))
    )
    found = found.select_related("bulk_send", "bulk_send__template").annotate(
        recipient_contact_id=Subquery(contact.values("id")),
        recipient_contact_name=Subquery(contact.values("name")),
    )
    return first_of(found)


# Compiled once per process (mindo.compiled): building the lookup cost most of the read.
@functools.cache
def _by_wamid() -> CompiledQuery[Message]:
    found = _lookup(Message.objects.filter(wamid=WAMID))
    return compile_queryset(found, {"organization": ORGANIZATION, "wamid": WAMID}, prepared=True)


@functools.cache
def _by_id() -> CompiledQuery[Message]:
    found = _lookup(Message.objects.filter(pk=MESSAGE))
    return compile_queryset(
        found, {"organization": ORGANIZATION, "message": MESSAGE}, prepared=True
    )


def message_get_by_wamid(*, organization: Organization, wamid: str) -> MessageLookup:
    """The message with `wamid`: NotFoundError when nobody has it, AccessDeniedError when another
    organization does. `wamid` may also be the reference a single send answered with while Meta's
    answer was unknown (its `biz_opaque_callback_data`): it finds that message, wamid or not.

    One query: the message, its send and template, and the caller's contact with its phone.
    """
    # PostgreSQL text cannot hold NUL and the column holds 255 characters, so no wamid has a NUL
    # or is longer: answer without asking the database.
    if "\x00" in wamid or len(wamid) > WAMID_MAX_LENGTH:
        raise NotFoundError("Mensaje no encontrado")
    message_ref = message_id_from_callback_data(wamid)
    if message_ref is None:
        found = _by_wamid().objects(organization=organization.pk, wamid=wamid)
    else:
        found = _by_id().objects(organization=organization.pk, message=message_ref)
    message = found[0] if found else None
    if message is None:
        raise NotFoundError("Mensaje no encontrado")
    if message.bulk_send.organization_id != organization.pk:
        raise AccessDeniedError("No tienes acceso a este mensaje")
    return MessageLookup(
        message=message,
        # The annotations of `_lookup`.
        contact_id=message.recipient_contact_id,  # type: ignore[attr-defined]
        contact_name=message.recipient_contact_name,  # type: ignore[attr-defined]
    )
