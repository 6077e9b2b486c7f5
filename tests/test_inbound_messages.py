"""People's messages in Meta's webhooks: kept once, under the number's organization, opening and
closing the sender's 24 h session window as the contact lookup shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.test import Client

from messaging.contacts import DEFAULT_CONTACT_LIST_NAME
from messaging.models import Contact, ContactList, ContactSource, InboundMessage
from tests import meta_payloads as meta
from tests.conftest import Tenant, TickingClock
from webhooks.models import WebhookEvent

URL = "/api/v1/contact-lookup/"
# The frozen clock's start (conftest's frozen_now).
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
# A sender's clock far ahead of ours.
FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)


def inbound(sender: str, moment: Any, *, text: str = "Hola!") -> dict[str, Any]:
    message = meta.inbound_text(sender, text)
    message["timestamp"] = meta.unix(moment)
    return message


def post_messages(
    client: Client, *messages: dict[str, Any], phone_number_id: str = meta.PHONE_NUMBER_ID
) -> None:
    change = meta.messages_change(messages=list(messages), phone_number_id=phone_number_id)
    response = meta.post(client, meta.notification(meta.entry(change)))
    assert response.status_code == 200, response.content


def window(tenant: Tenant, phone: str) -> tuple[bool, bool, str | None, str | None]:
    body = tenant.client.get(URL, {"phone": phone}).json()
    return (
        body["hasReplied"],
        body["sessionWindowActive"],
        body["lastReplyAt"],
        body["sessionExpiresAt"],
    )


def test_a_message_opens_the_senders_window_and_it_closes_24_hours_later(
    client: Client, tenant: Tenant, frozen_now: TickingClock
) -> None:
    start = START
    assert window(tenant, "5491112345678") == (False, False, None, None)

    post_messages(client, inbound("5491112345678", start - timedelta(minutes=5)))
    opened = window(tenant, "5491112345678")
    frozen_now.current = start + timedelta(hours=23, minutes=54)
    still_open = window(tenant, "5491112345678")
    frozen_now.current = start + timedelta(hours=23, minutes=56)
    closed = window(tenant, "5491112345678")

    assert opened == (True, True, "2026-01-15T11:55:00Z", "2026-01-16T11:55:00Z")
    assert still_open == opened
    assert closed == (True, False, "2026-01-15T11:55:00Z", None)


def test_a_later_message_opens_the_window_again(
    client: Client, tenant: Tenant, frozen_now: TickingClock
) -> None:
    start = START
    post_messages(client, inbound("5491112345678", start - timedelta(hours=30)))
    closed = window(tenant, "+5491112345678")

    post_messages(client, inbound("5491112345678", start - timedelta(hours=1)))

    assert closed[:2] == (True, False)
    assert window(tenant, "+5491112345678") == (
        True,
        True,
        "2026-01-15T11:00:00Z",
        "2026-01-16T11:00:00Z",
    )


def test_a_redelivered_message_is_kept_once(
    client: Client, tenant: Tenant, frozen_now: TickingClock
) -> None:
    message = inbound("5491112345678", START - timedelta(minutes=1))

    post_messages(client, message, message)
    post_messages(client, message)

    assert InboundMessage.objects.filter(wamid=message["id"]).count() == 1
    assert InboundMessage.objects.count() == 1
    assert Contact.objects.filter(organization=tenant.organization).count() == 1
    assert [event.outcome["inbound_messages"] for event in WebhookEvent.objects.order_by("id")] == [
        2,
        1,
    ]


def test_the_sender_becomes_an_organic_contact_named_by_their_profile(
    client: Client, tenant: Tenant, frozen_now: TickingClock
) -> None:
    post_messages(client, inbound("54223155961983", START - timedelta(minutes=1)))

    body = tenant.client.get(URL, {"phone": "+54 223 15-596-1983"}).json()

    assert body["found"] is True
    assert body["contact"]["phone"] == "+5492235961983"
    assert body["contact"]["fullName"] == "Juan"
    assert body["contact"]["source"] == "organic"
    assert body["contact"]["contactListName"] == DEFAULT_CONTACT_LIST_NAME
    assert body["hasReplied"] is True


def test_a_mexican_user_named_by_the_former_mobile_1_opens_the_window_of_their_contact(
    client: Client, tenant: Tenant, frozen_now: TickingClock
) -> None:
    """WhatsApp names Mexican mobiles `521` + ten digits; the contact is `+52` + the same ten."""
    Contact.objects.create(
        organization=tenant.organization, phone="+525512345678", source=ContactSource.IMPORT
    )

    post_messages(client, inbound("5215512345678", START - timedelta(minutes=1)))

    assert window(tenant, "+525512345678")[:2] == (True, True)
    assert window(tenant, "+52 1 55 1234 5678")[:2] == (True, True)
    assert Contact.objects.filter(organization=tenant.organization).count() == 1


def test_an_existing_contact_keeps_its_list_name_and_source(
    client: Client, tenant: Tenant, frozen_now: TickingClock
) -> None:
    vip = ContactList.objects.create(organization=tenant.organization, name="VIP")
    contact = Contact.objects.create(
        organization=tenant.organization,
        contact_list=vip,
        phone="+5491112345678",
        name="Juan Perez",
        source=ContactSource.IMPORT,
    )

    post_messages(client, inbound("5491112345678", START - timedelta(minutes=1)))

    contact.refresh_from_db()
    kept = (contact.contact_list_id, contact.name, contact.source)
    assert kept == (vip.pk, "Juan Perez", "import")
    assert Contact.objects.filter(organization=tenant.organization).count() == 1


def test_a_message_belongs_to_the_organization_of_the_number_it_was_sent_to(
    client: Client, tenant: Tenant, other_tenant: Tenant, frozen_now: TickingClock
) -> None:
    post_messages(
        client,
        inbound("5491112345678", START - timedelta(minutes=1)),
        phone_number_id=other_tenant.number.phone_number_id,
    )

    assert window(tenant, "+5491112345678")[:2] == (False, False)
    assert tenant.client.get(URL, {"phone": "+5491112345678"}).json()["found"] is False
    assert window(other_tenant, "+5491112345678")[:2] == (True, True)
    [message] = InboundMessage.objects.all()
    assert message.organization_id == other_tenant.organization.pk


def test_a_message_to_an_unknown_number_is_not_kept(
    client: Client, tenant: Tenant, frozen_now: TickingClock
) -> None:
    post_messages(
        client,
        inbound("5491112345678", START - timedelta(minutes=1)),
        phone_number_id="999999999999",
    )

    assert InboundMessage.objects.count() == 0
    assert Contact.objects.count() == 0
    assert WebhookEvent.objects.get().error == ""


def test_a_timestamp_ahead_of_the_receiving_clock_is_taken_as_received(
    client: Client, tenant: Tenant
) -> None:
    post_messages(client, inbound("5491112345678", FAR_FUTURE))

    [message] = InboundMessage.objects.all()
    assert message.sent_at == WebhookEvent.objects.get().received_at


def test_statuses_and_messages_in_one_body_are_both_applied(
    client: Client, tenant: Tenant, frozen_now: TickingClock
) -> None:
    _, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    assert message.wamid is not None
    change = meta.messages_change(
        [meta.status(message.wamid, "read", meta.T0 + 9)],
        messages=[inbound(message.recipient_phone[1:], frozen_now.current)],
    )

    meta.post(client, meta.notification(meta.entry(change)))

    message.refresh_from_db()
    assert message.status == "read"
    assert window(tenant, message.recipient_phone)[:2] == (True, True)
