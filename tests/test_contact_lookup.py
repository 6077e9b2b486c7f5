"""GET /api/v1/contact-lookup/?phone=: the contact in any spelling of its phone, always 200."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from messaging.contacts import DEFAULT_CONTACT_LIST_NAME
from messaging.models import Contact, ContactList, ContactSource, InboundMessage
from tests import meta_payloads as meta
from tests.conftest import Tenant, TickingClock
from tests.spec_shapes import CONTACT_KEYS, CONTACT_LOOKUP_KEYS

URL = "/api/v1/contact-lookup/"
# Every spelling of the page's table, plus what a `+` left unencoded in a query string becomes.
PAGE_FORMATS = [
    "+5492235961983",
    "5492235961983",
    "+54223155961983",
    "54223155961983",
    "+54 223 15-596-1983",
    " 5492235961983",
]
NOT_FOUND = {
    "found": False,
    "contact": None,
    "hasReplied": False,
    "lastReplyAt": None,
    "sessionWindowActive": False,
    "sessionExpiresAt": None,
}


def juan(tenant: Tenant, **fields: Any) -> Contact:
    contact_list = ContactList.objects.create(
        organization=tenant.organization, name="Lista Principal"
    )
    defaults: dict[str, Any] = {
        "organization": tenant.organization,
        "contact_list": contact_list,
        "phone": "+5492235961983",
        "name": "Juan Perez",
        "email": "juan@ejemplo.com",
        "source": ContactSource.ORGANIC,
        "created_at": datetime(2025, 1, 15, 10, 30, tzinfo=UTC),
    }
    return Contact.objects.create(**{**defaults, **fields})


def replied(tenant: Tenant, phone: str, at: datetime) -> InboundMessage:
    return InboundMessage.objects.create(
        wamid=meta.new_wamid(),
        organization=tenant.organization,
        phone_number=tenant.number,
        from_phone=phone,
        message_type="text",
        text="Hola",
        sent_at=at,
    )


def lookup(tenant: Tenant, phone: str | None) -> Any:
    response = tenant.client.get(URL, {} if phone is None else {"phone": phone})
    assert response.status_code == 200, response.content
    return response.json()


def test_the_page_example_body_key_for_key_with_its_types(
    tenant: Tenant, frozen_now: TickingClock
) -> None:
    contact = juan(tenant)
    replied(tenant, contact.phone, datetime(2026, 1, 15, 11, 22, tzinfo=UTC))

    body = lookup(tenant, "5492235961983")

    assert list(body) == CONTACT_LOOKUP_KEYS
    assert list(body["contact"]) == CONTACT_KEYS
    assert body == {
        "found": True,
        "contact": {
            "id": contact.pk,
            "fullName": "Juan Perez",
            "phone": "+5492235961983",
            "email": "juan@ejemplo.com",
            "contactListId": contact.contact_list_id,
            "contactListName": "Lista Principal",
            "source": "organic",
            "createdAt": "2025-01-15T10:30:00Z",
        },
        "hasReplied": True,
        "lastReplyAt": "2026-01-15T11:22:00Z",
        "sessionWindowActive": True,
        "sessionExpiresAt": "2026-01-16T11:22:00Z",
    }


@pytest.mark.parametrize("spelling", PAGE_FORMATS)
def test_every_format_of_the_page_finds_the_same_contact(tenant: Tenant, spelling: str) -> None:
    contact = juan(tenant)

    body = lookup(tenant, spelling)

    assert body["found"] is True
    assert body["contact"]["id"] == contact.pk
    assert body["contact"]["phone"] == "+5492235961983"


def test_a_plus_sent_encoded_finds_the_contact(tenant: Tenant) -> None:
    contact = juan(tenant)

    response = tenant.client.get(f"{URL}?phone=%2B54%20223%2015-596-1983")

    assert response.json()["contact"]["id"] == contact.pk


def test_an_unknown_contact_is_a_200_with_found_false(tenant: Tenant) -> None:
    juan(tenant)

    assert lookup(tenant, "+5491187654321") == NOT_FOUND


@pytest.mark.parametrize("phone", ["hola", "+54", "12", "+0 11 1234", "5" * 80, "+54-223-ABC"])
def test_an_unparsable_phone_is_a_200_with_found_false(tenant: Tenant, phone: str) -> None:
    juan(tenant)

    assert lookup(tenant, phone) == NOT_FOUND


def test_a_missing_phone_is_a_400_naming_it(tenant: Tenant) -> None:
    response = tenant.client.get(URL)

    assert response.status_code == 400
    assert response.json() == {"phone": ["This field is required."]}


def test_a_blank_phone_is_a_400_naming_it(tenant: Tenant) -> None:
    response = tenant.client.get(URL, {"phone": "  "})

    assert response.status_code == 400
    assert response.json() == {"phone": ["This field may not be blank."]}


def test_a_contact_nobody_named_has_null_name_and_email(tenant: Tenant) -> None:
    juan(tenant, name=None, email=None, source=ContactSource.API)

    contact = lookup(tenant, "+5492235961983")["contact"]

    assert (contact["fullName"], contact["email"], contact["source"]) == (None, None, "api")


def test_a_contact_who_never_replied_has_no_window(tenant: Tenant) -> None:
    juan(tenant)

    body = lookup(tenant, "+5492235961983")

    assert body["found"] is True
    assert {key: body[key] for key in CONTACT_LOOKUP_KEYS[2:]} == {
        "hasReplied": False,
        "lastReplyAt": None,
        "sessionWindowActive": False,
        "sessionExpiresAt": None,
    }


def test_the_window_follows_the_latest_reply_and_closes_24_hours_after_it(
    tenant: Tenant, frozen_now: TickingClock
) -> None:
    contact = juan(tenant)
    now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    replied(tenant, contact.phone, now - timedelta(hours=30))
    replied(tenant, contact.phone, now - timedelta(hours=2))
    replied(tenant, contact.phone, now - timedelta(hours=20))

    open_window = lookup(tenant, contact.phone)
    frozen_now.current = now + timedelta(hours=22, minutes=1)
    closed = lookup(tenant, contact.phone)

    assert open_window["lastReplyAt"] == "2026-01-15T10:00:00Z"
    assert open_window["sessionWindowActive"] is True
    assert open_window["sessionExpiresAt"] == "2026-01-16T10:00:00Z"
    assert closed["hasReplied"] is True
    assert closed["lastReplyAt"] == "2026-01-15T10:00:00Z"
    assert (closed["sessionWindowActive"], closed["sessionExpiresAt"]) == (False, None)


def test_another_organizations_contact_and_replies_are_not_found(
    tenant: Tenant, other_tenant: Tenant, frozen_now: TickingClock
) -> None:
    contact = juan(other_tenant)
    replied(other_tenant, contact.phone, frozen_now.current - timedelta(hours=1))

    assert lookup(tenant, "+5492235961983") == NOT_FOUND
    assert lookup(other_tenant, "+5492235961983")["found"] is True


def test_replies_to_another_organizations_number_do_not_open_this_ones_window(
    tenant: Tenant, other_tenant: Tenant, frozen_now: TickingClock
) -> None:
    juan(tenant)
    replied(other_tenant, "+5492235961983", frozen_now.current - timedelta(hours=1))

    body = lookup(tenant, "+5492235961983")

    assert (body["found"], body["hasReplied"], body["sessionWindowActive"]) == (True, False, False)


def test_it_needs_an_api_key(client: Client) -> None:
    response = client.get(URL, {"phone": "+5492235961983"})

    assert response.status_code == 401


def test_it_answers_without_the_trailing_slash(tenant: Tenant) -> None:
    contact = juan(tenant)

    response = tenant.client.get("/api/v1/contact-lookup", {"phone": "5492235961983"})

    assert response.status_code == 200
    assert response.json()["contact"]["id"] == contact.pk


def test_a_send_makes_each_new_recipient_a_contact_of_the_default_list(tenant: Tenant) -> None:
    existing = juan(tenant, phone="+5491112345678")
    variables = {"variables": {"name": "X", "code": "1"}, "button_variables": {"button_0": "1"}}
    recipients = [
        {"phone": phone, **variables}
        for phone in ("+5491112345678", "+5491187654321", "+5491187654321")
    ]

    sent = tenant.client.post(
        "/api/v1/meta-templates/send-bulk/",
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": "welcome_message",
            "language": "es",
            "recipients": recipients,
        },
        format="json",
    )

    assert sent.status_code == 202, sent.content
    contacts = Contact.objects.filter(organization=tenant.organization).order_by("phone")
    assert [(c.phone, c.source, c.contact_list.name) for c in contacts] == [
        ("+5491112345678", "organic", "Lista Principal"),
        ("+5491187654321", "api", DEFAULT_CONTACT_LIST_NAME),
    ]
    assert contacts[0].pk == existing.pk
    body = lookup(tenant, "5491187654321")
    assert body["contact"]["fullName"] is None
    assert body["contact"]["contactListName"] == DEFAULT_CONTACT_LIST_NAME
    assert body["hasReplied"] is False
