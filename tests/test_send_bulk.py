"""POST /api/v1/meta-templates/send-bulk/: the 202, what it stores and the wake-up it publishes."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message, MessageStatus
from mindo.celery import app as celery_app
from tests import factories
from tests.conftest import Tenant

URL = "/api/v1/meta-templates/send-bulk/"

# The request of the contract's example, as the cURL and Python examples send it.
SPEC_REQUEST: dict[str, Any] = {
    "phone_number_id": "813497231850626",
    "template_name": "welcome_message",
    "language": "es",
    "recipients": [
        {
            "phone": "+5491112345678",
            "variables": {"name": "Juan Perez", "code": "ABC123"},
            "button_variables": {"button_0": "ABC-123"},
        },
        {
            "phone": "+5491187654321",
            "variables": {"name": "Maria Garcia", "code": "DEF456"},
            "button_variables": {"button_0": "DEF-456"},
        },
        {
            "phone": "+5491199887766",
            "variables": {"name": "Carlos Lopez", "code": "GHI789"},
            "button_variables": {"button_0": "GHI-789"},
        },
    ],
}

# The same request with a third phone from an allocated range (the example's +54 9 11 9988-7766 is
# not), so that the tests of everything else hold whichever phone check the service makes.
REQUEST: dict[str, Any] = {
    **SPEC_REQUEST,
    "recipients": [
        *SPEC_REQUEST["recipients"][:2],
        {**SPEC_REQUEST["recipients"][2], "phone": "+5491155667788"},
    ],
}


def recipient(phone: str, name: str = "Juan", code: str = "A1") -> dict[str, Any]:
    return {
        "phone": phone,
        "variables": {"name": name, "code": code},
        "button_variables": {"button_0": f"{code}-x"},
    }


def send(client: APIClient, body: dict[str, Any]) -> Any:
    return client.post(URL, body, format="json")


def accepted(client: APIClient, body: dict[str, Any]) -> dict[str, Any]:
    response = send(client, body)
    assert response.status_code == 202, response.content
    return response.json()


def parse_iso(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.tzinfo is not None
    return moment


# --- The 202 body ---------------------------------------------------------------------------


def test_it_answers_the_spec_example_with_every_field_of_the_202(tenant: Tenant) -> None:
    body = accepted(tenant.client, SPEC_REQUEST)

    assert set(body) == {
        "bulk_send_id",
        "task_id",
        "status",
        "template_name",
        "total_recipients",
        "unique_recipients",
        "estimated_time_minutes",
        "created_at",
        "whatsapp_phone_number",
        "quota_info",
    }
    assert str(uuid.UUID(body["bulk_send_id"])) == body["bulk_send_id"]
    assert isinstance(body["task_id"], str)
    assert body["task_id"]
    assert body["status"] == "queued"
    assert body["template_name"] == "welcome_message"
    assert body["total_recipients"] == 3
    assert body["unique_recipients"] == 3
    assert isinstance(body["estimated_time_minutes"], float)
    assert body["created_at"].endswith("Z")
    parse_iso(body["created_at"])
    assert body["whatsapp_phone_number"] == {
        "id": tenant.number.pk,
        "phone_number_id": "813497231850626",
        "display_phone_number": "+54 9 223 675-0780",
        "verified_name": "Mindo Software",
        "quality_rating": "GREEN",
        "messaging_limit_tier": "TIER_1000",
    }
    assert body["quota_info"] == {
        "can_send": True,
        "quota_needed": 3,
        "quota_available": 997,
        "quota_total": 1000,
        "tier": "TIER_1000",
    }


def test_it_stores_the_send_queued_with_exact_counters(tenant: Tenant) -> None:
    body = accepted(tenant.client, REQUEST)

    bulk_send = BulkSend.objects.get(pk=body["bulk_send_id"])
    assert bulk_send.status == BulkSendStatus.QUEUED
    assert bulk_send.organization == tenant.organization
    assert bulk_send.phone_number == tenant.number
    assert bulk_send.template == tenant.template
    assert bulk_send.task_id == body["task_id"]
    assert bulk_send.created_by == tenant.api_key.user
    assert bulk_send.submitted_recipients == 3
    assert bulk_send.unique_recipients == 3
    assert bulk_send.pending_count == 3
    assert (
        bulk_send.sent_count,
        bulk_send.delivered_count,
        bulk_send.read_count,
        bulk_send.failed_count,
        bulk_send.cancelled_count,
    ) == (0, 0, 0, 0, 0)
    assert bulk_send.started_at is None
    assert bulk_send.completed_at is None
    assert bulk_send.estimated_time_minutes == body["estimated_time_minutes"]
    assert parse_iso(body["created_at"]) == bulk_send.created_at


def test_it_stores_one_pending_message_per_recipient_with_its_variables(tenant: Tenant) -> None:
    body = accepted(tenant.client, REQUEST)

    messages = Message.objects.filter(bulk_send_id=body["bulk_send_id"]).order_by("id")
    stored = [
        (m.recipient_phone, m.variables, m.button_variables, m.status, m.wamid) for m in messages
    ]
    assert stored == [
        (
            r["phone"],
            r["variables"],
            r["button_variables"],
            MessageStatus.PENDING,
            None,
        )
        for r in REQUEST["recipients"]
    ]
    assert {m.business_account_id for m in messages} == {tenant.account.pk}


def test_it_defaults_the_language_to_es(tenant: Tenant) -> None:
    factories.make_template(tenant.account, language="en")
    body = {key: value for key, value in REQUEST.items() if key != "language"}

    bulk_send = BulkSend.objects.get(pk=accepted(tenant.client, body)["bulk_send_id"])

    assert bulk_send.template == tenant.template
    assert bulk_send.template.language == "es"


def test_it_sends_the_template_of_the_requested_language(tenant: Tenant) -> None:
    english = factories.make_template(tenant.account, language="en")

    body = accepted(tenant.client, {**REQUEST, "language": "en"})

    assert BulkSend.objects.get(pk=body["bulk_send_id"]).template == english


def test_it_gives_each_send_its_own_ids(tenant: Tenant) -> None:
    first = accepted(tenant.client, REQUEST)
    second = accepted(tenant.client, REQUEST)

    assert first["bulk_send_id"] != second["bulk_send_id"]
    assert first["task_id"] != second["task_id"]
    assert BulkSend.objects.count() == 2
    assert Message.objects.count() == 6


def test_it_accepts_numbers_as_variable_values_and_stores_them_as_text(tenant: Tenant) -> None:
    body = {
        **REQUEST,
        "recipients": [
            {
                "phone": "+5491112345678",
                "variables": {"name": "Juan", "code": 123456},
                "button_variables": {"button_0": 42},
            }
        ],
    }

    message = Message.objects.get(bulk_send_id=accepted(tenant.client, body)["bulk_send_id"])

    assert message.variables == {"name": "Juan", "code": "123456"}
    assert message.button_variables == {"button_0": "42"}


def test_it_accepts_a_url_button_variable_given_as_a_list_of_one(tenant: Tenant) -> None:
    body = {
        **REQUEST,
        "recipients": [
            {
                "phone": "+5491112345678",
                "variables": {"name": "Juan", "code": "A"},
                "button_variables": {"button_0": ["ABC-123"]},
            }
        ],
    }

    message = Message.objects.get(bulk_send_id=accepted(tenant.client, body)["bulk_send_id"])

    assert message.button_variables == {"button_0": "ABC-123"}


def test_it_accepts_a_template_without_variables_or_buttons(tenant: Tenant) -> None:
    factories.make_template(
        tenant.account, name="plain_notice", components=[{"type": "BODY", "text": "Hola!"}]
    )
    body = {
        "phone_number_id": "813497231850626",
        "template_name": "plain_notice",
        "recipients": [{"phone": "+5491112345678"}, {"phone": "+5491187654321"}],
    }

    response = accepted(tenant.client, body)

    messages = Message.objects.filter(bulk_send_id=response["bulk_send_id"])
    assert [(m.variables, m.button_variables) for m in messages] == [({}, {}), ({}, {})]


@pytest.mark.parametrize("buttons", [{}, {"button_0": "promo-2025"}])
def test_it_takes_an_optional_quick_reply_payload(tenant: Tenant, buttons: dict[str, str]) -> None:
    factories.make_template(
        tenant.account,
        name="promo",
        components=[
            {"type": "BODY", "text": "Hola {{name}}"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Quiero"}]},
        ],
    )
    body = {
        "phone_number_id": "813497231850626",
        "template_name": "promo",
        "recipients": [
            {"phone": "+5491112345678", "variables": {"name": "Juan"}, "button_variables": buttons}
        ],
    }

    message = Message.objects.get(bulk_send_id=accepted(tenant.client, body)["bulk_send_id"])

    assert message.button_variables == buttons


def test_it_takes_the_variables_of_a_text_header_and_the_body(tenant: Tenant) -> None:
    factories.make_template(
        tenant.account,
        name="shipping",
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Hola {{name}}"},
            {"type": "BODY", "text": "Tu pedido {{order_id}} esta {{status}}."},
        ],
    )
    body = {
        "phone_number_id": "813497231850626",
        "template_name": "shipping",
        "recipients": [
            {
                "phone": "+5491112345678",
                "variables": {"status": "en camino", "order_id": "ORD-001", "name": "Juan"},
            }
        ],
    }

    message = Message.objects.get(bulk_send_id=accepted(tenant.client, body)["bulk_send_id"])

    assert message.variables == {"name": "Juan", "order_id": "ORD-001", "status": "en camino"}


def test_it_sends_positional_templates_by_number(tenant: Tenant) -> None:
    factories.make_template(
        tenant.account,
        name="order_update",
        components=[{"type": "BODY", "text": "Pedido {{1}}: {{2}}"}],
    )
    body = {
        "phone_number_id": "813497231850626",
        "template_name": "order_update",
        "recipients": [{"phone": "+5491112345678", "variables": {"1": "ORD-001", "2": "Shipped"}}],
    }

    message = Message.objects.get(bulk_send_id=accepted(tenant.client, body)["bulk_send_id"])

    assert message.variables == {"1": "ORD-001", "2": "Shipped"}


def test_it_sends_from_any_number_of_the_organization(tenant: Tenant) -> None:
    second_account = factories.make_account(tenant.organization, messaging_limit_tier="TIER_10K")
    number = factories.make_number(second_account, phone_number_id="900000000000001")
    factories.make_template(second_account)

    body = accepted(tenant.client, {**REQUEST, "phone_number_id": "900000000000001"})

    bulk_send = BulkSend.objects.get(pk=body["bulk_send_id"])
    assert bulk_send.phone_number == number
    assert bulk_send.template.business_account == second_account
    assert body["whatsapp_phone_number"]["id"] == number.pk
    assert body["quota_info"]["quota_total"] == 10_000


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_it_takes_only_post(tenant: Tenant, method: str) -> None:
    response = getattr(tenant.client, method)(URL)

    assert response.status_code == 405
    assert response.json() == {"detail": f'Method "{method.upper()}" not allowed.'}


# --- Deduplication ----------------------------------------------------------------------------


def test_it_removes_duplicated_phones_and_counts_both_totals(tenant: Tenant) -> None:
    body = {
        **REQUEST,
        "recipients": [
            recipient("+5491112345678", "Juan", "A1"),
            recipient("+5491187654321", "Maria", "B1"),
            recipient("+5491112345678", "Juan again", "A2"),
            recipient("+5491155667788", "Carlos", "C1"),
            recipient("+5491187654321", "Maria again", "B2"),
        ],
    }

    response = accepted(tenant.client, body)

    assert response["total_recipients"] == 5
    assert response["unique_recipients"] == 3
    assert response["quota_info"]["quota_needed"] == 3
    bulk_send = BulkSend.objects.get(pk=response["bulk_send_id"])
    assert (bulk_send.submitted_recipients, bulk_send.unique_recipients) == (5, 3)
    assert bulk_send.pending_count == 3


def test_it_keeps_the_first_occurrence_of_a_duplicated_phone(tenant: Tenant) -> None:
    body = {
        **REQUEST,
        "recipients": [
            recipient("+5491112345678", "Juan", "A1"),
            recipient("+5491187654321", "Maria", "B1"),
            recipient("+5491112345678", "Juan again", "A2"),
        ],
    }

    response = accepted(tenant.client, body)

    messages = Message.objects.filter(bulk_send_id=response["bulk_send_id"]).order_by("id")
    assert [(m.recipient_phone, m.variables, m.button_variables) for m in messages] == [
        ("+5491112345678", {"name": "Juan", "code": "A1"}, {"button_0": "A1-x"}),
        ("+5491187654321", {"name": "Maria", "code": "B1"}, {"button_0": "B1-x"}),
    ]


def test_it_accepts_a_list_of_one_phone_repeated(tenant: Tenant) -> None:
    body = {**REQUEST, "recipients": [recipient("+5491112345678")] * 4}

    response = accepted(tenant.client, body)

    assert (response["total_recipients"], response["unique_recipients"]) == (4, 1)
    assert Message.objects.filter(bulk_send_id=response["bulk_send_id"]).count() == 1


# --- The wake-up ------------------------------------------------------------------------------


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The real Redis the tests use as Celery broker, with the default queue emptied."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("celery")
    yield client
    client.delete("celery")
    client.close()


def published(broker: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    """Celery messages waiting in the default queue for `task_id`, decoded."""
    found = []
    for raw in broker.lrange("celery", 0, -1):
        message = json.loads(raw)
        if message["headers"]["id"] == task_id:
            args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append({"task": message["headers"]["task"], "args": args, "kwargs": kwargs})
    return found


@pytest.mark.django_db(transaction=True)
def test_it_publishes_the_drain_task_to_the_broker_after_commit(
    tenant: Tenant, broker: redis.Redis
) -> None:
    body = accepted(tenant.client, REQUEST)

    assert published(broker, body["task_id"]) == [
        {"task": "bulksend.drain", "args": [body["bulk_send_id"]], "kwargs": {}}
    ]


def test_it_publishes_nothing_before_the_send_is_committed(
    tenant: Tenant, broker: redis.Redis, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        body = accepted(tenant.client, REQUEST)
        assert published(broker, body["task_id"]) == []

    for callback in callbacks:
        callback()

    assert [task["args"] for task in published(broker, body["task_id"])] == [[body["bulk_send_id"]]]


@pytest.fixture
def unreachable_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the Celery app's publishing connection at a port where nothing listens.

    Celery reads `CELERY_BROKER_WRITE_URL` from the environment before its settings, and keeps
    its connection and producer pools once made, so both pools are dropped for the test.
    """
    monkeypatch.setenv("CELERY_BROKER_WRITE_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("unreachable_broker")
def test_it_accepts_and_keeps_the_send_when_the_broker_is_unreachable(
    tenant: Tenant, broker: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    body = accepted(tenant.client, REQUEST)

    # Publishing really failed (the service logs it) and reached no broker.
    assert f"Could not enqueue the wake-up of bulk send {body['bulk_send_id']}" in caplog.text
    assert published(broker, body["task_id"]) == []
    # The send is committed and waits for the reaper.
    bulk_send = BulkSend.objects.get(pk=body["bulk_send_id"])
    assert bulk_send.status == BulkSendStatus.QUEUED
    assert bulk_send.pending_count == 3
    assert Message.objects.filter(bulk_send=bulk_send, status=MessageStatus.PENDING).count() == 3
