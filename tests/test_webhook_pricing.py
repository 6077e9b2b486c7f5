"""Each status webhook's `pricing` is kept on its message, in the statuses' bulk statement; the
status endpoint shows none of it; a send's totals by category come from one GROUP BY."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from messaging.models import DeferredStatus, Message, MessageStatus
from messaging.pricing import CategoryTotal, message_totals_by_category
from tests import factories
from tests import meta_payloads as meta
from tests.conftest import Tenant
from webhooks.models import WebhookEvent


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def priced(
    wamid: str, kind: str, timestamp: int, pricing: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    status = meta.status(wamid, kind, timestamp, pricing=False, **fields)
    status["pricing"] = pricing
    return status


MARKETING = {
    "billable": True,
    "pricing_model": "PMP",
    "category": "marketing",
    "type": "regular",
}
SERVICE = {"pricing_model": "PMP", "category": "service", "type": "free_customer_service"}


def post(client: Client, *statuses: dict[str, Any]) -> WebhookEvent:
    response = meta.post(client, meta.statuses_notification(*statuses))
    assert response.status_code == 200, response.content
    return WebhookEvent.objects.get(pk=response.json()["event_id"])


def pricing_of(message: Message) -> tuple[Any, ...]:
    message.refresh_from_db()
    return (
        message.pricing_billable,
        message.pricing_model,
        message.pricing_category,
        message.pricing_type,
    )


def test_a_delivered_status_keeps_metas_pricing_on_the_message(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    assert message.wamid is not None

    post(client, priced(message.wamid, "delivered", meta.T0 + 5, MARKETING))

    assert pricing_of(message) == (True, "PMP", "marketing", "regular")
    assert message.status == MessageStatus.DELIVERED
    meta.assert_counters_exact(bulk_send)


def test_a_sent_status_for_a_message_already_sent_stores_its_pricing_and_moves_nothing(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    assert message.wamid is not None

    event = post(client, priced(message.wamid, "sent", meta.T0, SERVICE))

    assert pricing_of(message) == (None, "PMP", "service", "free_customer_service")
    # The message was `sent` already: nothing moved, no counter changed.
    assert event.messages_changed == 0
    assert event.outcome["counters"] == {}
    meta.assert_counters_exact(bulk_send)


def test_a_status_without_pricing_leaves_the_kept_pricing(client: Client, tenant: Tenant) -> None:
    _, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    assert message.wamid is not None
    post(client, priced(message.wamid, "delivered", meta.T0 + 5, MARKETING))

    post(client, meta.status(message.wamid, "read", meta.T0 + 9))

    assert pricing_of(message) == (True, "PMP", "marketing", "regular")
    assert message.status == MessageStatus.READ


def test_the_pricing_of_a_status_that_came_before_its_wamid_is_kept_and_applied(
    client: Client, tenant: Tenant
) -> None:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    message = factories.make_message(bulk_send, status=MessageStatus.SENDING)
    wamid = meta.new_wamid()

    post(client, priced(wamid, "delivered", meta.T0 + 5, MARKETING))
    assert DeferredStatus.objects.get(wamid=wamid).pricing == MARKETING

    # Meta's `sent` with our callback data finds the message and records its wamid; the kept
    # `delivered` then applies, its pricing with it.
    post(client, meta.status(wamid, "sent", meta.T0, message_id=message.pk, pricing=False))

    assert pricing_of(message) == (True, "PMP", "marketing", "regular")
    assert message.status == MessageStatus.DELIVERED
    meta.assert_counters_exact(bulk_send)


def test_a_batch_of_priced_statuses_is_applied_in_the_same_statements(
    client: Client, tenant: Tenant
) -> None:
    _, messages = meta.send_with_messages(tenant.number, tenant.template, 1)
    _, many = meta.send_with_messages(tenant.number, tenant.template, 50)
    few_body = meta.encode(
        meta.statuses_notification(
            *(priced(m.wamid or "", "delivered", meta.T0 + 5, MARKETING) for m in messages)
        )
    )
    many_body = meta.encode(
        meta.statuses_notification(
            *(priced(m.wamid or "", "delivered", meta.T0 + 5, MARKETING) for m in many)
        )
    )

    with CaptureQueriesContext(connection) as one:
        meta.post(client, None, body=few_body)
    with CaptureQueriesContext(connection) as fifty:
        meta.post(client, None, body=many_body)

    # No query per status: fifty priced statuses cost what one does.
    assert len(fifty) == len(one)
    assert {pricing_of(m)[2] for m in many} == {"marketing"}


def test_the_status_endpoint_shows_nothing_of_the_pricing(client: Client, tenant: Tenant) -> None:
    bulk_send, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    assert message.wamid is not None
    path = f"/api/v1/meta-templates/bulk-sends/{bulk_send.pk}/"
    before = tenant.client.get(path)
    assert before.status_code == 200

    post(client, priced(message.wamid, "sent", meta.T0, MARKETING))

    after = tenant.client.get(path).json()
    assert after.keys() == before.json().keys()
    assert "marketing" not in str(after)
    assert "pricing" not in str(after)


def test_a_sends_totals_by_category_count_each_category_in_one_query(
    client: Client, tenant: Tenant
) -> None:
    bulk_send, messages = meta.send_with_messages(tenant.number, tenant.template, 5)
    factories.make_message(bulk_send)  # pending: not priced yet
    post(
        client,
        *(priced(m.wamid or "", "delivered", meta.T0 + 5, MARKETING) for m in messages[:3]),
        *(priced(m.wamid or "", "delivered", meta.T0 + 5, SERVICE) for m in messages[3:]),
    )

    with CaptureQueriesContext(connection) as queries:
        totals = message_totals_by_category(bulk_send.pk)

    assert len(queries) == 1
    assert totals == [
        CategoryTotal("marketing", 3, 3),
        CategoryTotal("service", 2, 0),
        CategoryTotal(None, 1, 0),
    ]


def test_the_admin_shows_pricing_on_the_message_list_and_totals_on_the_send(
    client: Client, tenant: Tenant, admin_client: Client
) -> None:
    bulk_send, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    post(client, priced(message.wamid or "", "delivered", meta.T0 + 5, MARKETING))

    listing = admin_client.get("/admin/messaging/message/").content.decode()
    assert "category · type" in listing.lower()
    page = admin_client.get(f"/admin/bulksend/bulksend/{bulk_send.pk}/change/").content.decode()

    assert "marketing<br>regular" in listing
    assert "<td>marketing</td><td>1</td><td>1</td>" in page
