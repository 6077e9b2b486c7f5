"""Two organizations side by side: neither sees nor touches the other's data."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from bulksend.models import BulkSend
from messaging.models import Message, MessageStatus
from tests import factories
from tests.conftest import Tenant

BASE = "/api/v1/meta-templates"
WAMID = "wamid.HBgNNTQ5MTEyMzQ1Njc4FQIAERgSQjVBN0YzRjQ2NzFCNDVBNQA="


def welcome_send(phone_number_id: str) -> dict[str, Any]:
    return {
        "phone_number_id": phone_number_id,
        "template_name": "welcome_message",
        "recipients": [
            {
                "phone": "+5491112345678",
                "variables": {"name": "Juan", "code": "A"},
                "button_variables": {"button_0": "A"},
            }
        ],
    }


@pytest.fixture
def first_send(tenant: Tenant) -> BulkSend:
    """The first organization's send, with one sent message."""
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    factories.make_message(
        bulk_send,
        status=MessageStatus.SENT,
        wamid=WAMID,
        sent_at=timezone.now(),
        variables={"name": "Juan", "code": "A"},
    )
    return bulk_send


def test_the_list_shows_only_the_callers_sends(
    tenant: Tenant, other_tenant: Tenant, first_send: BulkSend
) -> None:
    theirs = factories.make_bulk_send(other_tenant.number, other_tenant.template)

    mine = tenant.client.get(f"{BASE}/bulk-sends/").json()
    other = other_tenant.client.get(f"{BASE}/bulk-sends/").json()

    assert [item["id"] for item in mine["results"]] == [str(first_send.pk)]
    assert [item["id"] for item in other["results"]] == [str(theirs.pk)]
    assert (mine["count"], other["count"]) == (1, 1)


@pytest.mark.usefixtures("first_send")
def test_the_list_filtered_by_another_organizations_template_is_empty(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    response = other_tenant.client.get(f"{BASE}/bulk-sends/?template={tenant.template.pk}")

    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_another_organization_gets_404_for_the_send(
    other_tenant: Tenant, first_send: BulkSend
) -> None:
    response = other_tenant.client.get(f"{BASE}/bulk-sends/{first_send.pk}/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("query", ["", "?status=sent", "?status=bogus"])
def test_another_organization_gets_404_for_the_sends_messages(
    other_tenant: Tenant, first_send: BulkSend, query: str
) -> None:
    response = other_tenant.client.get(f"{BASE}/bulk-sends/{first_send.pk}/messages/{query}")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.usefixtures("first_send")
def test_another_organization_gets_403_for_the_wamid(other_tenant: Tenant) -> None:
    response = other_tenant.client.get(f"{BASE}/messages/{WAMID}/")

    assert response.status_code == 403
    assert response.json() == {"error": "No tienes acceso a este mensaje"}


def test_another_organization_cannot_send_from_the_number(
    tenant: Tenant, other_tenant: Tenant, first_send: BulkSend
) -> None:
    response = other_tenant.client.post(
        f"{BASE}/send-bulk/", welcome_send(tenant.number.phone_number_id), format="json"
    )

    assert response.status_code == 404
    assert response.json() == {
        "error": f"Numero de WhatsApp con ID '{tenant.number.phone_number_id}' no encontrado"
    }
    assert list(BulkSend.objects.values_list("pk", flat=True)) == [first_send.pk]
    assert Message.objects.count() == 1


def test_a_send_of_another_organization_lands_in_that_organization_only(
    tenant: Tenant, other_tenant: Tenant, first_send: BulkSend
) -> None:
    response = other_tenant.client.post(
        f"{BASE}/send-bulk/", welcome_send(other_tenant.number.phone_number_id), format="json"
    )

    assert response.status_code == 202, response.content
    created = BulkSend.objects.get(pk=response.json()["bulk_send_id"])
    assert created.organization == other_tenant.organization
    assert created.created_by == other_tenant.api_key.user
    assert BulkSend.objects.filter(organization=tenant.organization).get() == first_send
    assert tenant.client.get(f"{BASE}/bulk-sends/{created.pk}/").status_code == 404


def test_the_same_template_name_resolves_within_the_numbers_account(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    # Both organizations have a `welcome_message`; each send uses its own.
    response = other_tenant.client.post(
        f"{BASE}/send-bulk/", welcome_send(other_tenant.number.phone_number_id), format="json"
    )

    created = BulkSend.objects.get(pk=response.json()["bulk_send_id"])
    assert created.template == other_tenant.template
    assert created.template != tenant.template


def test_two_organizations_can_message_the_same_phone(tenant: Tenant, other_tenant: Tenant) -> None:
    for each in (tenant, other_tenant):
        response = each.client.post(
            f"{BASE}/send-bulk/", welcome_send(each.number.phone_number_id), format="json"
        )
        assert response.status_code == 202, response.content

    assert Message.objects.filter(recipient_phone="+5491112345678").count() == 2
