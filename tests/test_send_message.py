"""POST /api/v1/meta-templates/send/: one message, sent within the request, through the machinery
of a bulk message (quota gate, the number's limiter, the Graph client's error classes, the
lifecycle), recorded so the wamid lookup and the status webhooks treat it as any other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.test import override_settings

from bulksend.models import BulkSend, BulkSendKind, BulkSendStatus
from bulksend.recipients import INVALID_PHONE
from bulksend.views import SendMessageView
from messaging.models import Contact, Message, MessageStatus, message_id_from_callback_data
from meta_sandbox import SandboxThread
from templates_app.models import TemplateStatus
from tests import factories
from tests.conftest import Tenant, TickingClock
from tests.delivery_support import (
    UNDELIVERABLE,
    ScriptedMeta,
    delivery_redis_fixture,  # noqa: F401
    meta_error,
    received,
    sandbox_fixture,  # noqa: F401
    scripted_meta_fixture,  # noqa: F401
    wait_for,
    webhook_url_fixture,  # noqa: F401
)
from tests.spec_shapes import SEND_MESSAGE_KEYS

SEND_URL = "/api/v1/meta-templates/send/"
MESSAGES_URL = "/api/v1/meta-templates/messages/"
PHONE = "+5491112345678"
SOMETHING_WENT_WRONG = meta_error(
    500, 131000, "(#131000) Something went wrong", "Something went wrong"
)


def request_body(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    body = {
        "phone_number_id": tenant.number.phone_number_id,
        "template_name": "welcome_message",
        "language": "es",
        "recipient_phone": PHONE,
        "variables": {"name": "Juan Perez", "code": "ABC123"},
        "button_variables": {"button_0": "ABC-123"},
    }
    body.update(fields)
    return body


def post(tenant: Tenant, **fields: Any) -> Any:
    return tenant.client.post(SEND_URL, request_body(tenant, **fields), format="json")


def nothing_written() -> bool:
    return not (BulkSend.objects.exists() or Message.objects.exists() or Contact.objects.exists())


def test_the_view_needs_the_send_scope() -> None:
    assert SendMessageView.required_scope == "send"


def test_it_answers_200_with_the_page_body_key_for_key(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    response = post(tenant)

    assert response.status_code == 200, response.content
    body = response.json()
    assert list(body) == SEND_MESSAGE_KEYS
    [(wamid, meta_body)] = scripted_meta.accepted
    assert body["success"] is True
    assert body["message_id"] == wamid
    assert body["template_name"] == "welcome_message"
    assert body["recipient_phone"] == PHONE
    assert body["status"] == "sent"
    assert isinstance(body["sent_at"], str)
    assert datetime.fromisoformat(body["sent_at"]).tzinfo is not None
    # Meta received the template message, naming our message in its callback data.
    assert meta_body["to"] == PHONE.lstrip("+")
    assert meta_body["template"]["name"] == "welcome_message"
    message = Message.objects.get()
    assert message_id_from_callback_data(meta_body["biz_opaque_callback_data"]) == message.pk
    assert (message.status, message.wamid) == (MessageStatus.SENT, wamid)


def test_the_single_send_is_finished_and_kept_out_of_the_bulk_send_endpoints(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    assert post(tenant).status_code == 200

    send = BulkSend.objects.get()
    assert (send.kind, send.status) == (BulkSendKind.SINGLE, BulkSendStatus.COMPLETED)
    assert (send.unique_recipients, send.sent_count, send.pending_count) == (1, 1, 0)
    assert send.completed_at is not None
    listing = tenant.client.get("/api/v1/meta-templates/bulk-sends/")
    assert listing.json()["count"] == 0
    detail = tenant.client.get(f"/api/v1/meta-templates/bulk-sends/{send.pk}/")
    assert detail.status_code == 404
    messages = tenant.client.get(f"/api/v1/meta-templates/bulk-sends/{send.pk}/messages/")
    assert messages.status_code == 404


def test_the_recipient_becomes_a_contact_of_the_organization(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    assert post(tenant).status_code == 200

    looked_up = tenant.client.get("/api/v1/contact-lookup/", {"phone": PHONE}).json()
    assert looked_up["found"] is True
    assert (looked_up["contact"]["phone"], looked_up["contact"]["source"]) == (PHONE, "api")


def test_the_message_is_found_by_its_wamid(tenant: Tenant, scripted_meta: ScriptedMeta) -> None:
    wamid = post(tenant).json()["message_id"]

    response = tenant.client.get(f"{MESSAGES_URL}{quote(wamid, safe='')}/")

    assert response.status_code == 200
    body = response.json()
    assert body["meta_message_id"] == wamid
    assert body["delivery_status"]["current"] == "sent"
    assert body["variables_used"] == {"name": "Juan Perez", "code": "ABC123"}


def test_another_organization_finds_neither_the_number_nor_the_message(
    tenant: Tenant, other_tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    wamid = post(tenant).json()["message_id"]

    refused = other_tenant.client.post(SEND_URL, request_body(tenant), format="json")
    lookup = other_tenant.client.get(f"{MESSAGES_URL}{quote(wamid, safe='')}/")

    assert refused.status_code == 404
    number_id = tenant.number.phone_number_id
    assert refused.json() == {"error": f"Numero de WhatsApp con ID '{number_id}' no encontrado"}
    assert lookup.status_code == 403
    assert len(scripted_meta.requests) == 1


# --- refused before anything is written ----------------------------------------------------------


def test_missing_fields_are_named_like_send_bulk(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    response = tenant.client.post(SEND_URL, {}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "phone_number_id": ["This field is required."],
        "template_name": ["This field is required."],
        "recipient_phone": ["This field is required."],
    }
    assert nothing_written()
    assert scripted_meta.requests == []


@pytest.mark.parametrize("phone", ["5491112345678", "+54 9 11 1234-5678", "+12", "+5491112345678 "])
def test_a_recipient_phone_not_in_e164_is_a_400_naming_it(
    tenant: Tenant, scripted_meta: ScriptedMeta, phone: str
) -> None:
    response = post(tenant, recipient_phone=phone)

    assert response.status_code == 400
    assert response.json() == {"recipient_phone": [INVALID_PHONE]}
    assert nothing_written()
    assert scripted_meta.requests == []


def test_variables_that_do_not_fit_the_template_are_a_400(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    response = post(tenant, variables={"name": "Juan"}, button_variables={})

    assert response.status_code == 400
    assert response.json() == {
        "variables": ["Missing variable(s) for template 'welcome_message': code."],
        "button_variables": ["Missing variable for button 0 (URL): button_0."],
    }
    assert nothing_written()
    assert scripted_meta.requests == []


def test_a_blank_variable_is_named(tenant: Tenant, scripted_meta: ScriptedMeta) -> None:
    response = post(tenant, variables={"name": " ", "code": "X"})

    assert response.status_code == 400
    assert response.json() == {"variables": {"name": ["This field may not be blank."]}}
    assert nothing_written()


def test_an_unknown_template_is_the_404_of_send_bulk(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    response = post(tenant, template_name="nope", language="en")

    assert response.status_code == 404
    assert response.json() == {
        "error": "Template 'nope' (language: en) no encontrado en este business account"
    }
    assert nothing_written()


def test_an_unknown_number_is_the_404_of_send_bulk(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    response = post(tenant, phone_number_id="999")

    assert response.status_code == 404
    assert response.json() == {"error": "Numero de WhatsApp con ID '999' no encontrado"}
    assert nothing_written()


def test_a_template_not_approved_is_a_400_naming_template_name(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    tenant.template.status = TemplateStatus.PENDING
    tenant.template.save()

    response = post(tenant)

    assert response.status_code == 400
    assert list(response.json()) == ["template_name"]
    assert "PENDING" in response.json()["template_name"][0]
    assert nothing_written()
    assert scripted_meta.requests == []


def test_no_key_is_the_contracts_401(anonymous_client: Any, db: None) -> None:
    response = anonymous_client.post(SEND_URL, {}, format="json")

    assert response.status_code == 401
    assert response.json() == {
        "error": "Este endpoint requiere autenticacion con API Key (header X-API-Key)"
    }


# --- the portfolio's 24 h quota -------------------------------------------------------------


def fill_window(tenant: Tenant, sent_at: datetime, phones: list[str]) -> None:
    """The portfolio messaged `phones` at `sent_at`, and its tier fits exactly that many."""
    tenant.account.messaging_limit_tier = f"TIER_{len(phones)}"
    tenant.account.save()
    earlier = factories.make_bulk_send(tenant.number, tenant.template)
    for phone in phones:
        factories.make_message(earlier, phone=phone, status=MessageStatus.SENT, sent_at=sent_at)


def test_a_new_recipient_with_no_room_left_gets_a_429_saying_when_room_frees(
    tenant: Tenant, scripted_meta: ScriptedMeta, frozen_now: TickingClock
) -> None:
    two_hours_ago = frozen_now.current - timedelta(hours=2)
    fill_window(tenant, two_hours_ago, ["+5491100000001", "+5491100000002"])
    sends_before = BulkSend.objects.count()

    response = post(tenant)

    assert response.status_code == 429
    frees_at = datetime(2026, 1, 16, 10, 0, tzinfo=UTC)  # 24 h after the oldest place was taken
    assert list(response.json()) == ["error"]
    assert "2026-01-16T10:00:00Z" in response.json()["error"]
    assert int(response["Retry-After"]) == pytest.approx(
        (frees_at - frozen_now.current).total_seconds(), abs=1
    )
    assert BulkSend.objects.count() == sends_before
    assert not Message.objects.filter(recipient_phone=PHONE).exists()
    assert scripted_meta.requests == []


def test_a_recipient_already_in_the_window_costs_no_room(
    tenant: Tenant, scripted_meta: ScriptedMeta, frozen_now: TickingClock
) -> None:
    fill_window(tenant, frozen_now.current - timedelta(hours=2), [PHONE, "+5491100000002"])

    response = post(tenant)

    assert response.status_code == 200, response.content


# --- Meta's answers --------------------------------------------------------------------------


@override_settings(SINGLE_SEND_RETRY_SECONDS=0.01)
def test_a_retryable_error_is_retried_within_the_request_then_sent(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    scripted_meta.answer = lambda index, body: SOMETHING_WENT_WRONG if index == 0 else None

    response = post(tenant)

    assert response.status_code == 200, response.content
    assert response.json()["message_id"] == scripted_meta.accepted[0][0]
    callbacks = [body["biz_opaque_callback_data"] for body in scripted_meta.requests]
    assert len(callbacks) == 2
    assert len(set(callbacks)) == 1  # the same message, tried again
    message = Message.objects.get()
    assert (message.status, message.attempts) == (MessageStatus.SENT, 2)


@override_settings(SINGLE_SEND_RETRY_SECONDS=0.01, SINGLE_SEND_MAX_ATTEMPTS=3)
def test_a_retryable_error_that_persists_is_a_502_with_metas_code(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    scripted_meta.answer = lambda index, body: SOMETHING_WENT_WRONG

    response = post(tenant)

    assert response.status_code == 502
    body = response.json()
    assert body["meta_error"] == {"code": "131000", "message": "(#131000) Something went wrong"}
    assert "131000" in body["error"]
    assert len(scripted_meta.requests) == 3
    # Finished, not half-written: the message failed with Meta's code, the send with it.
    message = Message.objects.get()
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "131000")
    send = BulkSend.objects.get()
    assert (send.status, send.failed_count, send.pending_count) == (BulkSendStatus.FAILED, 1, 0)


def test_metas_refusal_of_the_message_is_a_400_with_metas_code_and_no_retry(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    scripted_meta.answer = lambda index, body: UNDELIVERABLE

    response = post(tenant)

    assert response.status_code == 400
    assert response.json()["meta_error"] == {
        "code": "131026",
        "message": "(#131026) Message Undeliverable.",
    }
    assert len(scripted_meta.requests) == 1
    assert Message.objects.get().status == MessageStatus.FAILED
    assert BulkSend.objects.get().status == BulkSendStatus.FAILED


def test_a_token_meta_refuses_is_a_502(tenant: Tenant, scripted_meta: ScriptedMeta) -> None:
    scripted_meta.answer = lambda index, body: meta_error(
        401, 190, "Error validating access token", "Session has expired"
    )

    response = post(tenant)

    assert response.status_code == 502
    assert response.json()["meta_error"]["code"] == "190"
    assert len(scripted_meta.requests) == 1


def test_a_number_at_its_rate_waits_for_its_permit_within_the_bound(
    tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    # Meta said the number went too fast: the shared limiter grants nothing for a while.
    from messaging.ratelimit import get_rate_limiter

    get_rate_limiter().slow_down(tenant.number.phone_number_id, 30.0)

    with override_settings(SINGLE_SEND_PERMIT_WAIT_SECONDS=0.05):
        response = post(tenant)

    assert response.status_code == 429
    assert scripted_meta.requests == []
    message = Message.objects.get()
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "no_permit")
    assert BulkSend.objects.get().status == BulkSendStatus.FAILED


# --- an answer that never came -------------------------------------------------------------


def test_a_lost_answer_is_a_202_pending_that_metas_sent_webhook_settles(
    tenant: Tenant, sandbox: SandboxThread, webhook_url: str
) -> None:
    # Meta takes the message, then the connection drops before its answer; its webhooks come.
    sandbox.control("config", {"drop_share": 1.0, "webhook_url": webhook_url})

    response = post(tenant)

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["sent_at"], body["success"]) == ("pending", None, True)
    reference = body["message_id"]
    message = Message.objects.get()
    assert message_id_from_callback_data(reference) == message.pk

    settled = wait_for(
        lambda: Message.objects.filter(pk=message.pk, status__in=["sent", "delivered"]).first(),
        what="the sent webhook",
    )
    # Sent once, never again; the wamid Meta gave is the message's, and both ids find it.
    [accepted] = received(sandbox).messages
    assert received(sandbox).duplicates == []
    assert settled.wamid is not None
    for message_id in (reference, settled.wamid):
        lookup = tenant.client.get(f"{MESSAGES_URL}{quote(message_id, safe='')}/")
        assert lookup.status_code == 200
        assert lookup.json()["meta_message_id"] == settled.wamid
    send = BulkSend.objects.get()
    assert (send.status, send.sent_count, send.pending_count) == (BulkSendStatus.COMPLETED, 1, 0)
    assert accepted["to"] == PHONE.lstrip("+")


def test_the_sandbox_receives_and_accepts_a_single_send(
    tenant: Tenant, sandbox: SandboxThread
) -> None:
    response = post(tenant)

    assert response.status_code == 200, response.content
    [accepted] = received(sandbox).messages
    assert accepted["template"] == "welcome_message"
    assert accepted["wamid"] == response.json()["message_id"]
