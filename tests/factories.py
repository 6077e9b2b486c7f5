"""Small factories: each makes one row with sensible defaults that a test may override."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User

from bulksend.models import BulkSend
from messaging.models import InboundMessage, Message, MessageStatus
from mindo.api_keys import api_key_create
from mindo.models import ApiKey, Membership, Organization
from templates_app.models import (
    MessageTemplate,
    PhoneNumber,
    TemplateStatus,
    WhatsAppBusinessAccount,
)

_sequence = itertools.count(1)

WELCOME_COMPONENTS = [
    {"type": "BODY", "text": "Hola {{name}}, tu codigo es {{code}}."},
    {
        "type": "BUTTONS",
        "buttons": [{"type": "URL", "text": "Ver", "url": "https://mindo.example/w/{{1}}"}],
    },
]


def make_organization(name: str | None = None) -> Organization:
    return Organization.objects.create(name=name or f"Org {next(_sequence)}")


def make_user(organization: Organization, **fields: Any) -> User:
    n = next(_sequence)
    defaults = {
        "username": f"user{n}",
        "email": f"user{n}@example.com",
        "first_name": "John",
        "last_name": "Doe",
    }
    user = User.objects.create(**{**defaults, **fields})
    Membership.objects.create(user=user, organization=organization)
    return user


def make_api_key(organization: Organization, user: User | None = None) -> tuple[ApiKey, str]:
    return api_key_create(
        organization=organization, user=user or make_user(organization), name="test key"
    )


def make_account(organization: Organization, **fields: Any) -> WhatsAppBusinessAccount:
    defaults = {
        "waba_id": f"{100000 + next(_sequence)}",
        "name": "Test WABA",
        "access_token": "test-token",
        "messaging_limit_tier": "TIER_1000",
    }
    return WhatsAppBusinessAccount.objects.create(
        organization=organization, **{**defaults, **fields}
    )


def make_number(account: WhatsAppBusinessAccount, **fields: Any) -> PhoneNumber:
    defaults = {
        "phone_number_id": f"{800000000000000 + next(_sequence)}",
        "display_phone_number": "+54 9 223 675-0780",
        "verified_name": "Mindo Software",
        "quality_rating": "GREEN",
        "messaging_limit_tier": "TIER_1000",
    }
    return PhoneNumber.objects.create(business_account=account, **{**defaults, **fields})


def make_template(
    account: WhatsAppBusinessAccount,
    *,
    name: str = "welcome_message",
    language: str = "es",
    components: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> MessageTemplate:
    template = MessageTemplate(
        business_account=account,
        name=name,
        language=language,
        status=fields.pop("status", TemplateStatus.APPROVED),
        category=fields.pop("category", "MARKETING"),
        **fields,
    )
    template.set_components(WELCOME_COMPONENTS if components is None else components)
    template.save()
    return template


def make_bulk_send(
    number: PhoneNumber, template: MessageTemplate, *, created_by: User | None = None, **fields: Any
) -> BulkSend:
    """A send with no messages; add them with `make_message`, which keeps the counters exact."""
    return BulkSend.objects.create(
        organization=number.business_account.organization,
        phone_number=number,
        template=template,
        created_by=created_by,
        **fields,
    )


_COUNTERS = {
    MessageStatus.PENDING: ["pending_count"],
    MessageStatus.SENDING: ["pending_count"],
    MessageStatus.SENT: ["sent_count"],
    MessageStatus.DELIVERED: ["sent_count", "delivered_count"],
    MessageStatus.READ: ["sent_count", "delivered_count", "read_count"],
    MessageStatus.FAILED: ["failed_count"],
    MessageStatus.CANCELLED: ["cancelled_count"],
}


def make_message(
    bulk_send: BulkSend,
    *,
    phone: str | None = None,
    status: str = MessageStatus.PENDING,
    sent_at: datetime | None = None,
    **fields: Any,
) -> Message:
    message = Message.objects.create(
        bulk_send=bulk_send,
        business_account_id=bulk_send.phone_number.business_account_id,
        recipient_phone=phone or f"+54911{next(_sequence):08d}",
        status=status,
        sent_at=sent_at,
        **fields,
    )
    bulk_send.unique_recipients += 1
    for counter in _COUNTERS[MessageStatus(status)]:
        setattr(bulk_send, counter, getattr(bulk_send, counter) + 1)
    bulk_send.save()
    return message


def make_inbound(number: PhoneNumber, *, phone: str, sent_at: datetime) -> InboundMessage:
    """A message `phone` wrote to `number` at `sent_at`: it opens their service window with it."""
    return InboundMessage.objects.create(
        wamid=f"wamid.inbound-{next(_sequence)}",
        organization_id=number.business_account.organization_id,
        phone_number=number,
        from_phone=phone,
        message_type="text",
        text="Hola",
        sent_at=sent_at,
        received_at=sent_at,
    )
