"""A send's own `callback_url` (send-bulk and send): that send's events also go to it, signed with
the secret of the organization's first endpoint; a URL that may not be called is refused at
request time with a 400 naming the field, and again when delivering."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

from bulksend.lifecycle import bulk_send_start
from bulksend.models import BulkSend
from callbacks.delivery import callbacks_deliver
from callbacks.models import CallbackEvent, DeliveryAttempt, WebhookEndpoint
from callbacks.signing import secret_generate
from messaging.models import Message
from tests import meta_payloads as meta
from tests.callback_receiver import CallbackReceiver
from tests.conftest import Tenant
from tests.delivery_support import (
    ScriptedMeta,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    scripted_meta_fixture,  # noqa: F401
)

SEND_BULK_URL = "/api/v1/meta-templates/send-bulk/"
SEND_URL = "/api/v1/meta-templates/send/"
ENDPOINTS_URL = "/api/v1/webhook-endpoints/"
VARIABLES = {"name": "Juan Perez", "code": "ABC123"}
BUTTONS = {"button_0": "ABC-123"}


@pytest.fixture
def receivers() -> Iterator[tuple[CallbackReceiver, CallbackReceiver]]:
    """The organization's endpoint, and the URL a send names."""
    started = (CallbackReceiver().start(), CallbackReceiver().start())
    yield started
    for receiver in started:
        receiver.stop()


def register(tenant: Tenant, receiver: CallbackReceiver, events: list[str]) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.create(
        organization=tenant.organization, url=receiver.url, events=events, secret=secret_generate()
    )
    receiver.secrets.append(endpoint.secret)
    return endpoint


def send_bulk(tenant: Tenant, **fields: Any) -> Any:
    body = {
        "phone_number_id": tenant.number.phone_number_id,
        "template_name": "welcome_message",
        "language": "es",
        "recipients": [
            {"phone": "+5491112345678", "variables": VARIABLES, "button_variables": BUTTONS}
        ],
        **fields,
    }
    return tenant.client.post(SEND_BULK_URL, body, format="json")


def deliver_a_status(bulk_send: BulkSend) -> None:
    """The send starts and its message is accepted, as a drain and Meta's webhook would."""
    bulk_send_start(bulk_send.pk)
    [message] = Message.objects.filter(bulk_send=bulk_send)
    wamid = meta.new_wamid()
    # Found by our callback data: the message gets its wamid, then `delivered`.
    for status in (
        meta.status(wamid, "sent", meta.T0, message_id=message.pk),
        meta.status(wamid, "delivered", meta.T0 + 10),
    ):
        assert meta.post(Client(), meta.statuses_notification(status)).status_code == 200


def test_a_sends_events_also_go_to_its_callback_url_signed_with_the_endpoint_secret(
    tenant: Tenant, receivers: tuple[CallbackReceiver, CallbackReceiver]
) -> None:
    registered, named = receivers
    endpoint = register(tenant, registered, ["bulk_send.status"])
    named.secrets.append(endpoint.secret)  # the organization's one secret signs both

    response = send_bulk(tenant, callback_url=named.url)
    assert response.status_code == 202, response.content
    with_url = BulkSend.objects.get(pk=response.json()["bulk_send_id"])
    other = BulkSend.objects.get(pk=send_bulk(tenant).json()["bulk_send_id"])
    for bulk_send in (with_url, other):
        deliver_a_status(bulk_send)
    callbacks_deliver(budget_seconds=0)

    assert with_url.callback_url == named.url
    # The named URL: every event of its send, whatever the endpoint subscribed to; none of the
    # other send's.
    assert {e["data"]["bulk_send_id"] for e in named.events()} == {str(with_url.pk)}
    # (Delivery order is not promised: each event carries its status and Meta's time.)
    assert sorted(e["data"]["status"] for e in named.events("message.status")) == [
        "delivered",
        "sent",
    ]
    assert sorted(e["data"]["status"] for e in named.events("bulk_send.status")) == [
        "COMPLETED",
        "PROCESSING",
    ]
    # The registered endpoint: what it subscribed to, of both sends.
    assert {e["data"]["bulk_send_id"] for e in registered.events()} == {
        str(with_url.pk),
        str(other.pk),
    }
    assert registered.events("message.status") == []
    assert named.bad_signatures == registered.bad_signatures == 0
    # The send's URL is not one of the organization's endpoints in the API.
    listed = tenant.client.get(ENDPOINTS_URL).json()
    assert [item["url"] for item in listed] == [registered.url]


def test_a_single_send_names_a_callback_url(
    tenant: Tenant,
    receivers: tuple[CallbackReceiver, CallbackReceiver],
    scripted_meta: ScriptedMeta,
) -> None:
    registered, named = receivers
    endpoint = register(tenant, registered, ["bulk_send.status"])
    named.secrets.append(endpoint.secret)
    body = {
        "phone_number_id": tenant.number.phone_number_id,
        "template_name": "welcome_message",
        "language": "es",
        "recipient_phone": "+5491112345678",
        "variables": VARIABLES,
        "button_variables": BUTTONS,
        "callback_url": named.url,
    }

    response = tenant.client.post(SEND_URL, body, format="json")
    assert response.status_code == 200, response.content
    callbacks_deliver(budget_seconds=0)

    [sent] = named.events("message.status")
    assert sent["data"]["status"] == "sent"
    assert sent["data"]["wamid"] == response.json()["message_id"]
    [completed] = named.events("bulk_send.status")
    assert completed["data"]["status"] == "COMPLETED"
    assert named.bad_signatures == 0


@pytest.mark.parametrize("url_for", ["send-bulk", "send"])
def test_a_callback_url_to_a_private_address_is_refused_naming_the_field(
    tenant: Tenant, receivers: tuple[CallbackReceiver, CallbackReceiver], url_for: str
) -> None:
    registered, _ = receivers
    register(tenant, registered, ["bulk_send.status"])
    with override_settings(CALLBACKS_ALLOW_PRIVATE_HOSTS=False):
        if url_for == "send-bulk":
            response = send_bulk(tenant, callback_url="http://127.0.0.1:8000/hooks")
        else:
            response = tenant.client.post(
                SEND_URL,
                {
                    "phone_number_id": tenant.number.phone_number_id,
                    "template_name": "welcome_message",
                    "recipient_phone": "+5491112345678",
                    "variables": VARIABLES,
                    "button_variables": BUTTONS,
                    "callback_url": "http://169.254.169.254/latest/",
                },
                format="json",
            )

    assert response.status_code == 400, response.content
    [problem] = response.json()["callback_url"]
    assert "no pública" in problem
    assert not BulkSend.objects.exists()
    assert not WebhookEndpoint.objects.filter(send_scoped=True).exists()


def test_a_callback_url_needs_an_endpoint_to_sign_with(
    tenant: Tenant, receivers: tuple[CallbackReceiver, CallbackReceiver]
) -> None:
    response = send_bulk(tenant, callback_url=receivers[1].url)

    assert response.status_code == 400, response.content
    assert "webhook-endpoints" in response.json()["callback_url"][0]
    assert not BulkSend.objects.exists()


def test_a_callback_url_is_checked_again_when_delivering(
    tenant: Tenant, receivers: tuple[CallbackReceiver, CallbackReceiver]
) -> None:
    registered, named = receivers
    register(tenant, registered, ["bulk_send.status"])
    response = send_bulk(tenant, callback_url=named.url)
    bulk_send_start(response.json()["bulk_send_id"])

    # The name now resolves to an address that is not public (here: the rule is back on).
    with override_settings(CALLBACKS_ALLOW_PRIVATE_HOSTS=False):
        callbacks_deliver(budget_seconds=0)

    assert named.requests == 0
    [refused] = CallbackEvent.objects.filter(endpoint__send_scoped=True)
    assert refused.failed_at is not None
    [attempt] = DeliveryAttempt.objects.filter(endpoint__send_scoped=True)
    assert "no pública" in attempt.error
