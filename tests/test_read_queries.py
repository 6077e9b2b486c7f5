"""The read endpoints' queries once the key is trusted (mindo.api_keys): what each read costs."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Contact, MessageStatus
from tests import factories
from tests.conftest import Tenant

API = "/api/v1/meta-templates"
WAMID = "wamid.HBgNNTQ5MTEyMzQ1Njc4FQIAERgSQjVBN0YzRjQ2NzFCNDVBNQA="


@pytest.fixture
def bulk_send(tenant: Tenant) -> BulkSend:
    bulk_send = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PROCESSING
    )
    factories.make_message(
        bulk_send,
        phone="+5491112345678",
        status=MessageStatus.SENT,
        wamid=WAMID,
        sent_at=timezone.now(),
        variables={"name": "Juan", "code": "A"},
    )
    for index in range(3):
        factories.make_message(bulk_send, phone=f"+549111000000{index}")
    return bulk_send


def get(tenant: Tenant, path: str) -> dict[str, Any]:
    response = tenant.client.get(path)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("read", "queries"),
    [
        # The send with its template, number, creator and what is queued ahead of it.
        ("status", 1),
        # The count and the page, each send with its template and number.
        ("list", 2),
        # The send with its template (the counters answer the count), then the page.
        ("messages", 2),
        ("pending messages", 2),
        # The message with its send and template, and the caller's contact for its phone.
        ("wamid", 1),
        # A filter adds no query of its own, nor does a page counted from the end.
        ("filtered list", 2),
        ("last page of messages", 2),
        # The contact with its list and its last reply.
        ("contact lookup", 1),
    ],
)
def test_a_read_with_a_trusted_key_takes_its_own_queries_only(
    tenant: Tenant,
    bulk_send: BulkSend,
    django_assert_num_queries: Any,
    read: str,
    queries: int,
) -> None:
    paths = {
        "status": f"{API}/bulk-sends/{bulk_send.pk}/",
        "list": f"{API}/bulk-sends/",
        "messages": f"{API}/bulk-sends/{bulk_send.pk}/messages/",
        "pending messages": f"{API}/bulk-sends/{bulk_send.pk}/messages/?status=pending",
        "wamid": f"{API}/messages/{WAMID}/",
        "filtered list": f"{API}/bulk-sends/?status=PROCESSING&template={bulk_send.template_id}",
        "last page of messages": f"{API}/bulk-sends/{bulk_send.pk}/messages/?page_size=1&page=4",
        "contact lookup": "/api/v1/contact-lookup/?phone=5491112345678",
    }
    # A known contact: its reply is read in the same query (an unknown phone takes a second).
    Contact.objects.create(organization=tenant.organization, phone="+5491112345678", name="Juan")
    get(tenant, paths[read])  # checks the key and writes its last_used_at

    with django_assert_num_queries(queries):
        body = get(tenant, paths[read])

    assert body


def test_the_wamid_lookup_names_the_callers_contact_in_its_one_query(
    tenant: Tenant, other_tenant: Tenant, bulk_send: BulkSend, django_assert_num_queries: Any
) -> None:
    # Another organization's contact with the same phone is not the caller's.
    Contact.objects.create(organization=other_tenant.organization, phone="+5491112345678", name="X")
    mine = Contact.objects.create(
        organization=tenant.organization, phone="+5491112345678", name="Juan Perez"
    )
    get(tenant, f"{API}/bulk-sends/")

    with django_assert_num_queries(1):
        body = get(tenant, f"{API}/messages/{WAMID}/")

    assert body["recipient"] == {
        "phone": "+5491112345678",
        "contact_name": "Juan Perez",
        "contact_id": mine.pk,
    }
