"""The read endpoints build their bodies without DRF's serializers (see mindo.serializers): each
answer is byte for byte what the serializer that documents it renders, for sends and messages in
every shape a body can take."""

from __future__ import annotations

import json
from datetime import time, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from bulksend.models import BulkSend, BulkSendStatus
from bulksend.quota import with_queued_ahead
from bulksend.retry import with_retry_ids
from bulksend.serializers import (
    BulkSendDetailSerializer,
    BulkSendListItemSerializer,
    BulkSendMessageSerializer,
)
from messaging.contacts import contact_list_default, contact_lookup
from messaging.lookup import message_get_by_wamid
from messaging.models import Contact, Message, MessageStatus
from messaging.serializers import ContactLookupSerializer, MessageLookupSerializer
from tests import factories
from tests.conftest import Tenant, TickingClock

API = "/api/v1/meta-templates"


def rendered(data: Any) -> bytes:
    return JSONRenderer().render(data)


def content_of(tenant: Tenant, path: str) -> bytes:
    response = tenant.client.get(path)
    assert response.status_code == 200, response.content
    return bytes(response.content)


@pytest.fixture
def sends(tenant: Tenant, frozen_now: TickingClock) -> list[BulkSend]:
    """A running send with pending messages (its estimate and quota), a finished one, and one
    with every optional field: created by a user, paused, scheduled with quiet hours, a retry
    of the finished one and retried itself, stopped with a reason."""
    now = timezone.now()
    user = factories.make_user(tenant.organization, email="ana@example.com", first_name="Ána")
    running = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PROCESSING, started_at=now
    )
    for _ in range(3):
        factories.make_message(running, status=MessageStatus.PENDING)
    factories.make_message(running, status=MessageStatus.READ, sent_at=now, wamid="wamid.R")
    finished = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.COMPLETED, completed_at=now
    )
    factories.make_message(finished, status=MessageStatus.FAILED, error_message="No\u2028line")
    optional = factories.make_bulk_send(
        tenant.number,
        tenant.template,
        created_by=user,
        status=BulkSendStatus.QUEUED,
        status_reason="Operador: pausa \u00e9 \u2029",
        paused_at=now,
        send_at=now + timedelta(hours=3),
        send_window_start=time(9, 0),
        send_window_end=time(18, 30),
        retry_of=finished,
    )
    factories.make_bulk_send(tenant.number, tenant.template, retry_of=optional)
    factories.make_message(optional, status=MessageStatus.PENDING)
    return [running, finished, optional]


def test_the_status_body_is_the_serializers(tenant: Tenant, sends: list[BulkSend]) -> None:
    for bulk_send in sends:
        queried = with_retry_ids(with_queued_ahead(BulkSend.objects.with_api_relations()))
        expected = rendered(BulkSendDetailSerializer(queried.get(pk=bulk_send.pk)).data)

        assert content_of(tenant, f"{API}/bulk-sends/{bulk_send.pk}/") == expected


def test_the_sends_list_is_the_serializers(tenant: Tenant, sends: list[BulkSend]) -> None:
    content = content_of(tenant, f"{API}/bulk-sends/")

    listed = BulkSend.objects.for_organization(tenant.organization.pk).bulk()
    items = BulkSendListItemSerializer(
        listed.select_related("template", "phone_number"), many=True
    ).data
    envelope = {"count": len(items), "next": None, "previous": None, "results": items}
    assert content == rendered(envelope)


def test_a_page_of_messages_is_the_serializers(tenant: Tenant, frozen_now: TickingClock) -> None:
    now = timezone.now()
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    # Variables in the template's order (not jsonb's), a message to a user id, every moment,
    # an error with a line separator (escaped by the renderer).
    factories.make_message(bulk_send, variables={"name": "Ñandú", "code": "Z"})
    factories.make_message(
        bulk_send, status=MessageStatus.READ, sent_at=now, wamid="wamid.P1",
        delivered_at=now, read_at=now + timedelta(seconds=1),
    )  # fmt: skip
    factories.make_message(bulk_send, status=MessageStatus.SENDING)
    factories.make_message(bulk_send, status=MessageStatus.FAILED, error_message="x\u2028y")
    Message.objects.create(
        bulk_send=bulk_send,
        business_account_id=tenant.account.pk,
        recipient_phone=None,
        recipient_user_id="US.13491208655302741918",
        status=MessageStatus.PENDING,
    )

    for query in ("", "?status=pending", "?status=read", "?page_size=2&page=2"):
        content = content_of(tenant, f"{API}/bulk-sends/{bulk_send.pk}/messages/{query}")

        envelope = json.loads(content)
        messages = Message.objects.filter(pk__in=[m["id"] for m in envelope["results"]])
        context = {"template_variables": tenant.template.variables}
        envelope["results"] = BulkSendMessageSerializer(
            sorted(messages, key=lambda m: m.pk), many=True, context=context
        ).data
        assert content == rendered(envelope)


def test_the_wamid_lookup_is_the_serializers(tenant: Tenant, frozen_now: TickingClock) -> None:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    factories.make_message(
        bulk_send,
        phone="+5491112345678",
        status=MessageStatus.DELIVERED,
        wamid="wamid.L1",
        sent_at=timezone.now(),
        delivered_at=timezone.now(),
        variables={"name": "Juan", "code": "A"},
    )
    Contact.objects.create(organization=tenant.organization, phone="+5491112345678", name="Juan")
    Message.objects.create(
        bulk_send=bulk_send,
        business_account_id=tenant.account.pk,
        recipient_user_id="US.1",
        status=MessageStatus.FAILED,
        wamid="wamid.L2",
        failed_at=timezone.now(),
        error_code="131026",
        error_message="Message undeliverable",
    )

    for wamid in ("wamid.L1", "wamid.L2"):
        lookup = message_get_by_wamid(organization=tenant.organization, wamid=wamid)
        expected = rendered(MessageLookupSerializer(lookup).data)

        assert content_of(tenant, f"{API}/messages/{wamid}/") == expected


def test_the_contact_lookup_is_the_serializers(tenant: Tenant, frozen_now: TickingClock) -> None:
    contact_list = contact_list_default(tenant.organization.pk)
    Contact.objects.create(
        organization=tenant.organization,
        contact_list=contact_list,
        phone="+5491112345678",
        name="Juan Pérez",
        email="juan@example.com",
    )
    Contact.objects.create(organization=tenant.organization, phone="+5491187654321")
    factories.make_inbound(tenant.number, phone="+5491112345678", sent_at=timezone.now())

    for phone in ("5491112345678", "5491187654321", "5491100000000"):
        lookup = contact_lookup(organization_id=tenant.organization.pk, phone=phone)
        expected = rendered(ContactLookupSerializer(lookup).data)

        assert content_of(tenant, f"/api/v1/contact-lookup/?phone={phone}") == expected
