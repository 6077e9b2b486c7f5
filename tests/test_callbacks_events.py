"""The events a customer receives for what really changed: `message.status` from Meta's status
webhooks (one statement per applied batch), with bodies that need no extra call, only for the
organizations with an endpoint that wants them; and, over any order of Meta's webhooks, exactly
the transitions the messages made."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from callbacks.delivery import callbacks_deliver
from callbacks.models import CallbackEvent, WebhookEndpoint
from callbacks.signing import secret_generate
from messaging.models import Message
from tests import meta_payloads as meta
from tests.callback_receiver import CallbackReceiver
from tests.conftest import Tenant
from tests.test_webhook_properties import (
    HISTORIES,
    PROPERTY_SETTINGS,
    batches_of,
    completed_send,
    events_of,
    rolled_back,
)
from webhooks.processing import webhook_process


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    started = CallbackReceiver().start()
    yield started
    started.stop()


def subscribe(
    tenant: Tenant, receiver: CallbackReceiver, events: list[str], *, batch: bool = False
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.create(
        organization=tenant.organization,
        url=receiver.url,
        events=events,
        batch_events=batch,
        secret=secret_generate(),
    )
    receiver.secrets.append(endpoint.secret)
    return endpoint


def test_a_failed_status_reaches_the_customer_with_metas_error(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    subscribe(tenant, receiver, ["message.status"])
    bulk_send, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    wamid = message.wamid or ""
    document = meta.statuses_notification(meta.status(wamid, "failed", meta.T0 + 15))

    assert meta.post(Client(), document).status_code == 200
    callbacks_deliver(budget_seconds=0)

    [event] = receiver.events("message.status")
    assert event["data"] == {
        "message_id": message.pk,
        "wamid": wamid,
        "phone": message.recipient_phone,
        "bulk_send_id": str(bulk_send.pk),
        "phone_number_id": tenant.number.phone_number_id,
        "status": "failed",
        "previous_status": "sent",
        "timestamp": meta.at(meta.T0 + 15).isoformat(),
        "error": {
            "code": str(meta.UNDELIVERABLE_CODE),
            "message": event["data"]["error"]["message"],
        },
    }
    assert event["data"]["error"]["message"]
    assert receiver.bad_signatures == 0


def test_statuses_make_no_event_without_an_endpoint_that_wants_them(
    tenant: Tenant, other_tenant: Tenant, receiver: CallbackReceiver
) -> None:
    subscribe(tenant, receiver, ["bulk_send.status"])  # not message.status
    disabled = subscribe(tenant, receiver, ["message.status"])
    WebhookEndpoint.objects.filter(pk=disabled.pk).update(enabled=False)
    subscribe(other_tenant, receiver, ["message.status"])  # another organization's
    _, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    document = meta.statuses_notification(meta.status(message.wamid or "", "delivered", meta.T0))

    assert meta.post(Client(), document).status_code == 200

    assert not CallbackEvent.objects.filter(type="message.status").exists()


def test_a_duplicate_status_makes_no_second_event(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    subscribe(tenant, receiver, ["message.status"])
    _, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    document = meta.statuses_notification(meta.status(message.wamid or "", "read", meta.T0 + 20))

    for _ in range(3):
        assert meta.post(Client(), document).status_code == 200

    [event] = CallbackEvent.objects.filter(type="message.status")
    assert (event.body["previous_status"], event.body["status"]) == ("sent", "read")


def apply_through_the_applier(document: dict[str, object], *, via_http: bool) -> None:
    if via_http:
        assert meta.post(Client(raise_request_exception=False), document).status_code == 200
    else:
        webhook_process(meta.encode(document))


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(histories=st.lists(st.sampled_from(HISTORIES), min_size=1, max_size=6), data=st.data())
def test_the_customer_receives_exactly_the_transitions_the_messages_made(
    tenant: Tenant,
    receiver: CallbackReceiver,
    histories: list[tuple[str, ...]],
    data: st.DataObject,
) -> None:
    with rolled_back():
        receiver.received.clear()
        subscribe(tenant, receiver, ["message.status"], batch=data.draw(st.booleans()))
        bulk_send, messages = completed_send(tenant, len(histories), wamids=True)
        wamids = [m.wamid or "" for m in messages]
        made: set[tuple[int, str, str]] = set()
        before = {m.pk: m.status for m in messages}
        for batch in batches_of(events_of(histories, data), data):
            document = meta.statuses_notification(
                *(e.meta_status(wamids[e.index], messages[e.index].pk) for e in batch)
            )
            apply_through_the_applier(document, via_http=data.draw(st.booleans()))
            after = dict(Message.objects.filter(bulk_send=bulk_send).values_list("pk", "status"))
            made |= {(pk, before[pk], after[pk]) for pk in after if after[pk] != before[pk]}
            before = after

        report = callbacks_deliver(budget_seconds=0)

        received = receiver.events("message.status")
        transitions = [
            (e["data"]["message_id"], e["data"]["previous_status"], e["data"]["status"])
            for e in received
        ]
        assert report.failed == report.retried == 0
        assert receiver.bad_signatures == 0
        assert sorted(transitions) == sorted(made)
        assert len({e["id"] for e in received}) == len(received)
