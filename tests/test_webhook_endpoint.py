"""The webhook endpoint: Meta's subscription handshake, the signature gate, and bodies it skips."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from bulksend.models import BulkSend
from messaging.models import DeferredStatus, Message, MessageStatus
from tests import meta_payloads as meta
from tests.conftest import Tenant
from webhooks.models import WebhookEvent

VERIFY_TOKEN = "handshake-token-7f3a"
APP_SECRET = "app-secret-9c1e"
CHALLENGE = "1158201444"


@pytest.fixture
def client() -> Client:
    # Answers, not exceptions: a crash must show up as the 500 Meta would see.
    return Client(raise_request_exception=False)


@pytest.fixture
def sent(tenant: Tenant) -> tuple[BulkSend, Message]:
    bulk_send, [message] = meta.send_with_messages(tenant.number, tenant.template, 1)
    return bulk_send, message


def handshake(client: Client, **params: str) -> Any:
    return client.get(meta.WEBHOOK_PATH, params)


def delivered_body(message: Message) -> bytes:
    assert message.wamid is not None
    return meta.encode(
        meta.statuses_notification(meta.status(message.wamid, "delivered", meta.T0 + 60))
    )


def assert_nothing_changed(bulk_send: BulkSend, message: Message) -> None:
    before = {"status": message.status, "delivered_at": message.delivered_at}
    message.refresh_from_db()
    assert {"status": message.status, "delivered_at": message.delivered_at} == before
    assert meta.assert_counters_exact(bulk_send)["delivered_count"] == 0
    assert not WebhookEvent.objects.exists()
    assert not DeferredStatus.objects.exists()


# --- GET: the subscription handshake -------------------------------------------------------------


@override_settings(META_VERIFY_TOKEN=VERIFY_TOKEN)
def test_the_handshake_echoes_the_challenge_as_plain_text(client: Client) -> None:
    response = handshake(
        client,
        **{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": CHALLENGE},
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == CHALLENGE


@override_settings(META_VERIFY_TOKEN=VERIFY_TOKEN)
@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"hub.mode": "subscribe", "hub.verify_token": "guess"}, id="wrong-token"),
        pytest.param({"hub.mode": "subscribe"}, id="no-token"),
        pytest.param({"hub.verify_token": VERIFY_TOKEN}, id="no-mode"),
        pytest.param(
            {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN}, id="other-mode"
        ),
    ],
)
def test_the_handshake_is_refused_without_the_right_mode_and_token(
    client: Client, params: dict[str, str]
) -> None:
    response = handshake(client, **params, **{"hub.challenge": CHALLENGE})

    assert response.status_code == 403
    assert CHALLENGE not in response.content.decode()


@override_settings(META_VERIFY_TOKEN="")
def test_the_handshake_is_refused_when_no_verify_token_is_configured(client: Client) -> None:
    response = handshake(
        client, **{"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": CHALLENGE}
    )

    assert response.status_code == 403


# --- POST: the signature gate --------------------------------------------------------------------


@override_settings(META_APP_SECRET=APP_SECRET)
def test_a_signed_body_is_applied_and_kept_raw(
    client: Client, sent: tuple[BulkSend, Message]
) -> None:
    bulk_send, message = sent
    # Meta's own spacing: the kept body must be these bytes, not a re-serialization.
    body = delivered_body(message).replace(b",", b", ")

    response = meta.post(client, None, body=body)

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert response.json() == {"received": True, "event_id": event.pk}
    assert event.body == body.decode()
    assert (event.object_type, event.fields) == ("whatsapp_business_account", "messages")
    assert (event.status_events, event.messages_changed, event.deferred) == (1, 1, 0)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert meta.assert_counters_exact(bulk_send)["delivered_count"] == 1


@override_settings(META_APP_SECRET=APP_SECRET)
@pytest.mark.parametrize(
    "header",
    [
        pytest.param(lambda body: meta.signature(body, "another-secret"), id="other-secret"),
        pytest.param(lambda body: "", id="empty"),
        pytest.param(
            lambda body: "sha1=" + meta.signature(body).removeprefix("sha256=")[:40], id="sha1"
        ),
        pytest.param(lambda body: "sha256=" + "zz" * 32, id="sha256-not-hex"),
        pytest.param(lambda body: "sha256=", id="sha256-empty"),
        pytest.param(lambda body: meta.signature(body).removeprefix("sha256="), id="no-prefix"),
        pytest.param(lambda body: meta.signature(body)[:-2], id="truncated"),
        pytest.param(lambda body: meta.signature(body + b" "), id="valid-for-another-body"),
    ],
)
def test_a_bad_signature_is_refused_and_changes_nothing(
    client: Client, sent: tuple[BulkSend, Message], header: Any
) -> None:
    bulk_send, message = sent
    body = delivered_body(message)

    response = client.post(
        meta.WEBHOOK_PATH,
        data=body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=header(body),
    )

    assert response.status_code == 403
    assert_nothing_changed(bulk_send, message)


@override_settings(META_APP_SECRET=APP_SECRET)
def test_a_missing_signature_is_refused_and_changes_nothing(
    client: Client, sent: tuple[BulkSend, Message]
) -> None:
    bulk_send, message = sent

    response = client.post(
        meta.WEBHOOK_PATH, data=delivered_body(message), content_type="application/json"
    )

    assert response.status_code == 403
    assert_nothing_changed(bulk_send, message)


@override_settings(META_APP_SECRET="")
def test_nothing_is_accepted_when_no_app_secret_is_configured(
    client: Client, sent: tuple[BulkSend, Message]
) -> None:
    bulk_send, message = sent

    # Signed with the empty key: an unset secret must not turn into a known one.
    response = meta.post(client, None, body=delivered_body(message), secret="")

    assert response.status_code == 403
    assert_nothing_changed(bulk_send, message)


def test_a_signed_body_that_is_not_json_is_a_client_error(
    client: Client, sent: tuple[BulkSend, Message]
) -> None:
    bulk_send, message = sent

    response = meta.post(client, None, body=b'{"object": "whatsapp_business_account", "entry": [')

    assert response.status_code == 400
    assert_nothing_changed(bulk_send, message)


def test_an_empty_signed_body_is_a_client_error(client: Client) -> None:
    assert meta.post(client, None, body=b"").status_code == 400


def test_other_methods_are_not_allowed(client: Client) -> None:
    assert client.put(meta.WEBHOOK_PATH, data=b"{}").status_code == 405


# --- POST: signed bodies the service does not act on ---------------------------------------------


def _with_status(message: Message, **fields: Any) -> dict[str, Any]:
    assert message.wamid is not None
    return meta.statuses_notification(
        {**meta.status(message.wamid, "delivered", meta.T0 + 60), **fields}
    )


IGNORED_BODIES = {
    "another-object": lambda m: {**_with_status(m), "object": "page"},
    "no-object": lambda m: {"entry": _with_status(m)["entry"]},
    "a-list": lambda m: [_with_status(m)],
    "a-string": lambda m: "whatsapp_business_account",
    "null": lambda m: None,
    "entry-not-a-list": lambda m: {**_with_status(m), "entry": {"id": meta.WABA_ID}},
    "change-not-an-object": lambda m: meta.notification({"id": meta.WABA_ID, "changes": ["x"]}),
    "unknown-field": lambda m: meta.notification(
        meta.entry({"field": "account_alerts", "value": {"entity_type": "WABA"}})
    ),
    "value-not-an-object": lambda m: meta.notification(
        meta.entry({"field": "messages", "value": [1, 2]})
    ),
    "statuses-not-a-list": lambda m: meta.notification(
        meta.entry({"field": "messages", "value": {"statuses": {"id": m.wamid}}})
    ),
    "status-we-do-not-handle": lambda m: _with_status(m, status="deleted"),
    "status-not-a-string": lambda m: _with_status(m, status=["delivered"]),
    "status-entry-a-string": lambda m: meta.statuses_notification(m.wamid),
    "no-id": lambda m: meta.statuses_notification(
        {k: v for k, v in meta.status(m.wamid, "delivered", meta.T0).items() if k != "id"}
    ),
    "id-a-number": lambda m: _with_status(m, id=12345),
    "no-timestamp": lambda m: meta.statuses_notification(
        {k: v for k, v in meta.status(m.wamid, "delivered", meta.T0).items() if k != "timestamp"}
    ),
    "timestamp-not-a-number": lambda m: _with_status(m, timestamp="yesterday"),
    "timestamp-a-float": lambda m: _with_status(m, timestamp=1700000060.5),
    "timestamp-a-boolean": lambda m: _with_status(m, timestamp=True),
    # The next ones are malformed in ways a careless reader crashes on.
    "timestamp-double-minus": lambda m: _with_status(m, timestamp="--1700000060"),
    "timestamp-superscript-digit": lambda m: _with_status(m, timestamp="\u00b2"),
    "timestamp-out-of-range": lambda m: _with_status(m, timestamp="99999999999999999"),
    # PostgreSQL text holds no NUL: such a body is still kept and acknowledged.
    "object-with-nul": lambda m: {**_with_status(m), "object": "whatsapp_business_account\u0000"},
    "field-with-nul": lambda m: meta.notification(
        meta.entry({**meta.messages_change([]), "field": "messages\u0000"})
    ),
}


@pytest.mark.parametrize("build", IGNORED_BODIES.values(), ids=IGNORED_BODIES.keys())
def test_a_signed_body_it_cannot_act_on_is_acknowledged_and_changes_nothing(
    client: Client, sent: tuple[BulkSend, Message], build: Any
) -> None:
    bulk_send, message = sent

    response = meta.post(client, build(message))

    # Meta retries anything but a 2xx: a body we cannot use must not come back forever.
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.delivered_at is None
    assert meta.assert_counters_exact(bulk_send)["delivered_count"] == 0
    assert not DeferredStatus.objects.exists()
    assert WebhookEvent.objects.get().messages_changed == 0


# Parts of a status that are malformed while the status itself is readable: the status applies,
# the odd part is dropped, and nothing crashes.
ODD_PARTS = {
    "errors-not-a-list": {"status": "failed", "errors": {"code": 131026}},
    "error-not-an-object": {"status": "failed", "errors": ["131026"]},
    "error-data-not-an-object": {
        "status": "failed",
        "errors": [{"code": 131026, "title": "Message undeliverable", "error_data": "x"}],
    },
    "callback-data-a-number": {"biz_opaque_callback_data": 42},
    "callback-data-someone-elses": {"biz_opaque_callback_data": "order-1234"},
    "callback-data-superscript-digit": {"biz_opaque_callback_data": "mindo-message:\u00b2"},
    "callback-data-past-bigint": {"biz_opaque_callback_data": "mindo-message:" + "9" * 30},
    "conversation-not-an-object": {"conversation": "c1"},
    "pricing-not-an-object": {"pricing": True},
    "error-code-too-long": {"status": "failed", "errors": [meta.error(code="9" * 40)]},
}


@pytest.mark.parametrize("fields", ODD_PARTS.values(), ids=ODD_PARTS.keys())
def test_a_status_with_an_odd_part_still_applies(
    client: Client, sent: tuple[BulkSend, Message], fields: dict[str, Any]
) -> None:
    bulk_send, message = sent

    response = meta.post(client, _with_status(message, **fields))

    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == fields.get("status", MessageStatus.DELIVERED)
    meta.assert_counters_exact(bulk_send)


@pytest.mark.parametrize(
    "wamid",
    [
        pytest.param("wamid." + "A" * 300, id="longer-than-any-wamid"),
        pytest.param("wamid.\u0000", id="nul-character"),
    ],
)
def test_a_status_for_an_impossible_wamid_is_acknowledged(
    client: Client, sent: tuple[BulkSend, Message], wamid: str
) -> None:
    bulk_send, message = sent

    response = meta.post(client, meta.statuses_notification(meta.status(wamid, "read", meta.T0)))

    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    meta.assert_counters_exact(bulk_send)


def test_an_error_text_with_a_nul_character_is_acknowledged(
    client: Client, sent: tuple[BulkSend, Message]
) -> None:
    bulk_send, message = sent
    failure = meta.error(details="bad\u0000byte")

    response = meta.post(client, _with_status(message, status="failed", errors=[failure]))

    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    meta.assert_counters_exact(bulk_send)
