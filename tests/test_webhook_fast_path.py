"""The WSGI fast path gunicorn serves Meta's POSTs through: same answers as the view, applied
after the answer is sent."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test import override_settings

from messaging.models import MessageStatus
from mindo.wsgi import application
from tests import meta_payloads as meta
from tests.conftest import Tenant
from webhooks.models import WebhookEvent
from webhooks.receiving import MAX_BODY_BYTES

pytestmark = pytest.mark.django_db(transaction=True)


def call(
    body: bytes, signature: str | None, *, length: int | None = None
) -> tuple[str, dict[str, Any], list[str]]:
    """POST through the WSGI callable as a server would; `close()` runs after the body is read,
    and the log records what had happened by the time the answer was complete."""
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhooks/meta/",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body) if length is None else length),
        "CONTENT_TYPE": "application/json",
    }
    if signature is not None:
        environ["HTTP_X_HUB_SIGNATURE_256"] = signature
    answered: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answered.append(status)

    result = application(environ, start_response)
    payload = b"".join(result)
    log = [
        f"applied before close: {WebhookEvent.objects.filter(processed_at__isnull=False).count()}"
    ]
    close = getattr(result, "close", None)
    if close is not None:
        close()
    return answered[0], orjson.loads(payload), log


def test_it_stores_a_signed_status_and_applies_it_after_answering(tenant: Tenant) -> None:
    bulk_send, (message,) = meta.send_with_messages(tenant.number, tenant.template, 1)
    body = meta.encode(meta.statuses_notification(meta.status(message.wamid, "read", meta.T0 + 9)))

    status, answer, log = call(body, meta.signature(body))

    assert status == "200 OK"
    assert answer["received"] is True
    assert log == ["applied before close: 0"]  # Meta had its answer before any applying
    message.refresh_from_db()
    assert (message.status, message.read_at) == (MessageStatus.READ, meta.at(meta.T0 + 9))
    event = WebhookEvent.objects.get(pk=answer["event_id"])
    assert event.processed_at is not None
    assert event.messages_changed == 1
    meta.assert_counters_exact(bulk_send)


def test_it_refuses_a_wrong_signature_and_stores_nothing(tenant: Tenant) -> None:
    _, (message,) = meta.send_with_messages(tenant.number, tenant.template, 1)
    body = meta.encode(meta.statuses_notification(meta.status(message.wamid, "read", meta.T0)))

    status, answer, _ = call(body, meta.signature(b"another body"))

    assert (status, answer) == ("403 Forbidden", {"error": "Invalid signature"})
    assert not WebhookEvent.objects.exists()
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT


def test_it_answers_400_to_a_signed_body_that_is_not_json(db: None) -> None:
    body = b"not json"

    status, answer, _ = call(body, meta.signature(body))

    assert status == "400 Bad Request"
    assert answer["error"].startswith("Body is not JSON")
    assert not WebhookEvent.objects.exists()


def test_it_refuses_a_body_larger_than_any_of_metas(db: None) -> None:
    status, _, _ = call(b"{}", meta.signature(b"{}"), length=MAX_BODY_BYTES + 1)

    assert status == "413 Request Entity Too Large"
    assert not WebhookEvent.objects.exists()


def test_it_answers_500_when_the_body_cannot_be_stored(db: None) -> None:
    body = meta.encode(meta.statuses_notification())
    with override_settings(META_APP_SECRET="the-secret"):
        signature = meta.signature(body, "the-secret")
        WebhookEvent.objects.all().delete()
        # A body the database refuses stands for a database that is away: Meta must retry.
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE webhooks_webhookevent"
                " ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"
            )
        try:
            status, answer, _ = call(body, signature)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("ALTER TABLE webhooks_webhookevent DROP CONSTRAINT refuse_all")

    assert (status, answer) == ("500 Internal Server Error", {"error": "Internal error"})


def test_other_requests_go_to_django(db: None) -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/webhooks/meta/",
        "QUERY_STRING": (
            "hub.mode=subscribe&hub.verify_token=mindo-dev-verify-token&hub.challenge=42"
        ),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
    }
    answered: list[str] = []
    with override_settings(META_VERIFY_TOKEN="mindo-dev-verify-token", ALLOWED_HOSTS=["*"]):
        result = application(environ, lambda status, headers: answered.append(status))
        payload = b"".join(result)

    assert (answered, payload) == (["200 OK"], b"42")
