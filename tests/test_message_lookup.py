"""GET /api/v1/meta-templates/messages/{message_id}/: one message by its WhatsApp id (wamid)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from bulksend.models import BulkSend
from messaging.models import Contact, Message, MessageStatus
from tests import factories
from tests.conftest import Tenant

SPEC_WAMID = "wamid.HBgNNTQ5MTEyMzQ1Njc4FQIAERgSQjVBN0YzRjQ2NzFCNDVBNQA="
BASE = "/api/v1/meta-templates/messages/"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def looked_up(tenant: Tenant, path: str) -> dict[str, Any]:
    response = tenant.client.get(f"{BASE}{path}/")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def bulk_send(tenant: Tenant) -> BulkSend:
    return factories.make_bulk_send(tenant.number, tenant.template)


def read_message(bulk_send: BulkSend, wamid: str = SPEC_WAMID, **fields: Any) -> Message:
    """The contract's example: a message read a minute after it was sent."""
    defaults: dict[str, Any] = {
        "phone": "+5491112345678",
        "status": MessageStatus.READ,
        "wamid": wamid,
        "variables": {"code": "ABC123", "name": "Juan Perez"},
        "sent_at": at("2025-11-16T21:30:00"),
        "delivered_at": at("2025-11-16T21:30:05"),
        "read_at": at("2025-11-16T21:31:00"),
    }
    return factories.make_message(bulk_send, **{**defaults, **fields})


def test_it_answers_the_spec_example(tenant: Tenant, bulk_send: BulkSend) -> None:
    message = read_message(bulk_send)
    contact = Contact.objects.create(
        organization=tenant.organization, phone="+5491112345678", name="Juan Perez"
    )

    body = looked_up(tenant, SPEC_WAMID)

    assert body == {
        "id": message.pk,
        "template": {
            "id": tenant.template.pk,
            "name": "welcome_message",
            "language": "es",
            "category": "MARKETING",
        },
        "recipient": {
            "phone": "+5491112345678",
            "contact_name": "Juan Perez",
            "contact_id": contact.pk,
        },
        "variables_used": {"name": "Juan Perez", "code": "ABC123"},
        "delivery_status": {
            "current": "read",
            "sent_at": "2025-11-16T21:30:00Z",
            "delivered_at": "2025-11-16T21:30:05Z",
            "read_at": "2025-11-16T21:31:00Z",
            "failed_at": None,
            "error_code": None,
            "error_message": None,
        },
        "meta_message_id": SPEC_WAMID,
        "was_successful": True,
        "error_message": None,
        "sent_at": "2025-11-16T21:30:00Z",
    }
    assert list(body) == [
        "id",
        "template",
        "recipient",
        "variables_used",
        "delivery_status",
        "meta_message_id",
        "was_successful",
        "error_message",
        "sent_at",
    ]
    assert list(body["variables_used"]) == ["name", "code"]


def test_it_finds_a_wamid_whose_equals_sign_is_url_encoded(
    tenant: Tenant, bulk_send: BulkSend
) -> None:
    message = read_message(bulk_send)

    body = looked_up(tenant, quote(SPEC_WAMID, safe=""))

    assert body["id"] == message.pk
    assert body["meta_message_id"] == SPEC_WAMID


@pytest.mark.parametrize(
    "wamid",
    ["wamid.HBgL+NTU0/MTE2NzU0Nzg1FQIAERgS==", "wamid.a/b/c+d=", "wamid.HBgL%20x"],
)
def test_it_finds_wamids_holding_slashes_and_pluses_raw_or_encoded(
    tenant: Tenant, bulk_send: BulkSend, wamid: str
) -> None:
    message = read_message(bulk_send, wamid=wamid)

    assert looked_up(tenant, quote(wamid, safe=""))["id"] == message.pk
    if "%" not in wamid:
        assert looked_up(tenant, wamid)["id"] == message.pk


def test_it_tells_apart_wamids_that_differ_only_by_padding(
    tenant: Tenant, bulk_send: BulkSend
) -> None:
    padded = read_message(bulk_send, wamid="wamid.ABCD=")
    bare = read_message(bulk_send, wamid="wamid.ABCD", phone="+5491187654321")

    assert looked_up(tenant, "wamid.ABCD%3D")["id"] == padded.pk
    assert looked_up(tenant, "wamid.ABCD")["id"] == bare.pk


def test_it_has_null_contact_fields_when_no_contact_has_the_phone(
    tenant: Tenant, other_tenant: Tenant, bulk_send: BulkSend
) -> None:
    read_message(bulk_send)
    # Another organization's contact with the same phone is not ours.
    Contact.objects.create(
        organization=other_tenant.organization, phone="+5491112345678", name="Ajeno"
    )
    Contact.objects.create(organization=tenant.organization, phone="+5491187654321", name="Maria")

    assert looked_up(tenant, SPEC_WAMID)["recipient"] == {
        "phone": "+5491112345678",
        "contact_name": None,
        "contact_id": None,
    }


def test_it_shows_a_message_that_failed_after_meta_accepted_it(
    tenant: Tenant, bulk_send: BulkSend
) -> None:
    read_message(
        bulk_send,
        status=MessageStatus.FAILED,
        delivered_at=None,
        read_at=None,
        failed_at=at("2025-11-16T21:30:07"),
        error_code="131026",
        error_message="Message undeliverable",
    )

    body = looked_up(tenant, SPEC_WAMID)

    assert body["delivery_status"] == {
        "current": "failed",
        "sent_at": "2025-11-16T21:30:00Z",
        "delivered_at": None,
        "read_at": None,
        "failed_at": "2025-11-16T21:30:07Z",
        "error_code": "131026",
        "error_message": "Message undeliverable",
    }
    # Meta accepted the initial send (it gave a wamid); the failure came later.
    assert body["was_successful"] is True
    assert body["error_message"] is None


@pytest.mark.parametrize(
    ("status", "delivered", "read"),
    [
        (MessageStatus.SENT, None, None),
        (MessageStatus.DELIVERED, "2025-11-16T21:30:05Z", None),
    ],
)
def test_it_shows_each_delivery_step_reached(
    tenant: Tenant, bulk_send: BulkSend, status: str, delivered: str | None, read: str | None
) -> None:
    read_message(
        bulk_send,
        status=status,
        delivered_at=at(delivered[:-1]) if delivered else None,
        read_at=None,
    )

    delivery = looked_up(tenant, SPEC_WAMID)["delivery_status"]

    assert (delivery["current"], delivery["delivered_at"], delivery["read_at"]) == (
        status,
        delivered,
        read,
    )
    assert delivery["sent_at"] == "2025-11-16T21:30:00Z"


def test_it_shows_the_category_of_the_template(tenant: Tenant) -> None:
    template = factories.make_template(
        tenant.account,
        name="verification_code",
        category="AUTHENTICATION",
        components=[{"type": "BODY", "text": "Tu codigo es {{code}}"}],
    )
    bulk_send = factories.make_bulk_send(tenant.number, template)
    read_message(bulk_send, variables={"code": "123456"})

    assert looked_up(tenant, SPEC_WAMID)["template"] == {
        "id": template.pk,
        "name": "verification_code",
        "language": "es",
        "category": "AUTHENTICATION",
    }


@pytest.mark.usefixtures("bulk_send")
@pytest.mark.parametrize(
    "wamid", [SPEC_WAMID, "wamid.unknown", quote("wamid.x/y+z=", safe=""), "123"]
)
def test_it_answers_404_for_an_unknown_wamid(tenant: Tenant, wamid: str) -> None:
    response = tenant.client.get(f"{BASE}{wamid}/")

    assert response.status_code == 404
    assert response.json() == {"error": "Mensaje no encontrado"}


def test_it_answers_404_for_a_wamid_with_a_null_character(tenant: Tenant) -> None:
    response = tenant.client.get(f"{BASE}wamid.HBgN%00QA=/")

    assert response.status_code == 404
    assert response.json() == {"error": "Mensaje no encontrado"}


@pytest.mark.parametrize(
    "wamid",
    [
        "%0A",
        "wamid.HBgN%0A",
        f"{quote(SPEC_WAMID, safe='')}%0A",
        "%0D%0A",
        "%0Awamid.HBgN",
        "%00",
        "%FF%FE",
        "%20",
        "",
        "w" * 256,
        "w" * 100_000,
    ],
    ids=lambda wamid: wamid if len(wamid) < 40 else f"{len(wamid)}-characters",
)
def test_it_answers_the_contract_s_404_for_any_wamid_nobody_has(
    tenant: Tenant, bulk_send: BulkSend, wamid: str
) -> None:
    read_message(bulk_send)

    response = tenant.client.get(f"{BASE}{wamid}/")

    assert response.status_code == 404
    assert response.json() == {"error": "Mensaje no encontrado"}


def test_it_does_not_find_a_wamid_by_a_prefix(tenant: Tenant, bulk_send: BulkSend) -> None:
    read_message(bulk_send)

    response = tenant.client.get(f"{BASE}{SPEC_WAMID[:-1]}/")

    assert response.status_code == 404
    assert response.json() == {"error": "Mensaje no encontrado"}


def test_it_answers_403_for_another_organizations_message(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = factories.make_bulk_send(other_tenant.number, other_tenant.template)
    read_message(theirs)

    response = tenant.client.get(f"{BASE}{SPEC_WAMID}/")

    assert response.status_code == 403
    assert response.json() == {"error": "No tienes acceso a este mensaje"}
