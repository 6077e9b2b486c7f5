"""Finding one message by its WhatsApp id for a client."""

from __future__ import annotations

from dataclasses import dataclass

from messaging.models import Contact, Message
from mindo.errors import AccessDeniedError, NotFoundError
from mindo.models import Organization

WAMID_MAX_LENGTH: int = Message._meta.get_field("wamid").max_length or 255


@dataclass(frozen=True, slots=True)
class MessageLookup:
    message: Message
    # The organization's contact with the recipient's phone, when there is one.
    contact: Contact | None


def message_get_by_wamid(*, organization: Organization, wamid: str) -> MessageLookup:
    """The message with `wamid`: NotFoundError when nobody has it, AccessDeniedError when another
    organization does."""
    # PostgreSQL text cannot hold NUL and the column holds 255 characters, so no wamid has a NUL
    # or is longer: answer without asking the database.
    message = (
        None
        if "\x00" in wamid or len(wamid) > WAMID_MAX_LENGTH
        else Message.objects.select_related("bulk_send", "bulk_send__template")
        .filter(wamid=wamid)
        .first()
    )
    if message is None:
        raise NotFoundError("Mensaje no encontrado")
    if message.bulk_send.organization_id != organization.pk:
        raise AccessDeniedError("No tienes acceso a este mensaje")
    contact = Contact.objects.filter(
        organization=organization, phone=message.recipient_phone
    ).first()
    return MessageLookup(message=message, contact=contact)
