"""Meta's webhook bodies in the shapes the Cloud API really posts, and what they must leave behind.

Shared by the webhook tests and `bench/webhooks.py`. A body is a plain dict until `encode()`
turns it into the compact bytes Meta signs; `signature()` signs them like Meta does.

The shapes follow Meta's webhook reference (`messages` statuses, inbound messages,
`message_template_status_update`, `phone_number_quality_update`, `business_capability_update`).
Django must be set up before this module is imported (it reads messages to recount them).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings
from django.db.models import Count
from django.test import Client

from bulksend.models import BulkSend
from messaging.counters import counted_statuses
from messaging.models import Message, MessageStatus, callback_data_for
from meta.signature import sign
from templates_app.models import MessageTemplate, PhoneNumber, WhatsAppBusinessAccount
from tests import factories
from webhooks.models import WebhookEvent

OBJECT_TYPE = "whatsapp_business_account"
WEBHOOK_PATH = "/webhooks/meta/"
WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "813497231850626"
DISPLAY_PHONE_NUMBER = "5492236750780"
# Meta's 131026, as a `failed` status carries it.
UNDELIVERABLE_CODE = 131026
UNDELIVERABLE_TITLE = "Message undeliverable"
UNDELIVERABLE_DETAILS = "Unable to deliver message. The recipient may not be a WhatsApp user."

# Meta's timestamps in the tests: a fixed moment in the past, so "Meta's time" never looks like
# "now" by accident.
T0 = 1_700_000_000

# Unique per process, so wamids never collide with rows another test run left or holds.
_RUN = secrets.token_bytes(4)
_sequence = itertools.count(1)


# --- identifiers and times -----------------------------------------------------------------------


def new_wamid() -> str:
    """A fresh wamid shaped like Meta's: `wamid.` and base64, which may hold `+`, `/` and `=`."""
    digest = hashlib.sha256(_RUN + next(_sequence).to_bytes(8, "big")).digest()
    return "wamid.HBgNNTQ5MTEx" + base64.b64encode(b"\xfb\xef" + digest[:25]).decode()


def unix(moment: datetime) -> str:
    """Meta's `timestamp`: unix seconds, as a string."""
    return str(int(moment.timestamp()))


def at(seconds: int) -> datetime:
    """The aware datetime of a unix second, as the service stores a webhook's timestamp."""
    return datetime.fromtimestamp(seconds, tz=UTC)


# --- `messages` changes --------------------------------------------------------------------------


def error(
    code: Any = UNDELIVERABLE_CODE,
    title: str = UNDELIVERABLE_TITLE,
    details: str = UNDELIVERABLE_DETAILS,
) -> dict[str, Any]:
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }


def status(
    wamid: str,
    kind: str,
    timestamp: int,
    *,
    recipient_id: str = "5491112345678",
    conversation: bool | None = None,
    pricing: bool | None = None,
    errors: list[dict[str, Any]] | None = None,
    message_id: int | None = None,
    callback_data: str | None = None,
) -> dict[str, Any]:
    """One entry of `value.statuses`. By default it carries what Meta puts in that kind of status:
    conversation and pricing on `sent`/`delivered`, nothing on `read`, an error on `failed`.
    `message_id` sets `biz_opaque_callback_data` to our message's reference."""
    entry: dict[str, Any] = {
        "id": wamid,
        "status": kind,
        "timestamp": str(timestamp),
        "recipient_id": recipient_id,
    }
    billed = kind in ("sent", "delivered")
    if conversation if conversation is not None else billed:
        entry["conversation"] = {"id": f"c{hashlib.md5(wamid.encode()).hexdigest()}"}
        if kind == "sent":
            entry["conversation"]["expiration_timestamp"] = str(timestamp + 24 * 3600)
        entry["conversation"]["origin"] = {"type": "marketing"}
    if pricing if pricing is not None else billed:
        entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "marketing"}
    if errors is None and kind == "failed":
        errors = [error()]
    if errors is not None:
        entry["errors"] = errors
    if message_id is not None:
        callback_data = callback_data_for(message_id)
    if callback_data is not None:
        entry["biz_opaque_callback_data"] = callback_data
    return entry


def inbound_text(sender: str = "5491112345678", text: str = "Hola!") -> dict[str, Any]:
    """A user's message, which Meta posts in the same `messages` field as statuses."""
    return {
        "from": sender,
        "id": new_wamid(),
        "timestamp": "1700000000",
        "type": "text",
        "text": {"body": text},
    }


def messages_change(
    statuses: Iterable[dict[str, Any]] = (),
    *,
    messages: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
    }
    if messages:
        value["contacts"] = [
            {"profile": {"name": "Juan"}, "wa_id": message["from"]} for message in messages
        ]
        value["messages"] = messages
    statuses = list(statuses)
    if statuses:
        value["statuses"] = statuses
    return {"field": "messages", "value": value}


# --- account changes -----------------------------------------------------------------------------


def template_status_change(
    event: str,
    *,
    name: str,
    language: str = "es",
    template_id: int | str = 0,
    reason: str = "NONE",
) -> dict[str, Any]:
    return {
        "field": "message_template_status_update",
        "value": {
            "event": event,
            "message_template_id": template_id,
            "message_template_name": name,
            "message_template_language": language,
            "reason": reason,
        },
    }


def quality_change(
    event: str,
    *,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
    current_limit: Any = "TIER_10K",
    old_limit: Any = "TIER_1K",
    portfolio_limit: Any = None,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "display_phone_number": display_phone_number,
        "event": event,
        "current_limit": current_limit,
        "old_limit": old_limit,
    }
    if portfolio_limit is not None:
        value["max_daily_conversations_per_business"] = portfolio_limit
    return {"field": "phone_number_quality_update", "value": value}


def capability_change(
    *, per_phone: int | None = None, per_business: int | None = None
) -> dict[str, Any]:
    value: dict[str, Any] = {"max_phone_numbers_per_waba": 25}
    if per_phone is not None:
        value["max_daily_conversation_per_phone"] = per_phone
    if per_business is not None:
        value["max_daily_conversations_per_business"] = per_business
    return {"field": "business_capability_update", "value": value}


# --- whole bodies --------------------------------------------------------------------------------


def entry(*changes: dict[str, Any], waba_id: str = WABA_ID) -> dict[str, Any]:
    return {"id": waba_id, "time": 1700000000, "changes": list(changes)}


def notification(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": OBJECT_TYPE, "entry": list(entries)}


def statuses_notification(
    *statuses: dict[str, Any], waba_id: str = WABA_ID, phone_number_id: str = PHONE_NUMBER_ID
) -> dict[str, Any]:
    """The common case: one entry, one `messages` change, these statuses, from the number that
    sent the messages (a status changes only messages of the number it names)."""
    return notification(
        entry(messages_change(statuses, phone_number_id=phone_number_id), waba_id=waba_id)
    )


def encode(document: Any) -> bytes:
    return orjson.dumps(document)


def signature(body: bytes, secret: str | None = None) -> str:
    """`X-Hub-Signature-256` for `body`, signed with the configured app secret by default."""
    return sign(body, settings.META_APP_SECRET if secret is None else secret)


def post(
    client: Client,
    document: Any,
    *,
    body: bytes | None = None,
    secret: str | None = None,
    header: str | None = None,
) -> Any:
    """POST `document` (or raw `body`) to the webhook, signed unless `header` says otherwise."""
    raw = encode(document) if body is None else body
    extra = {"HTTP_X_HUB_SIGNATURE_256": header or signature(raw, secret)}
    return client.post(WEBHOOK_PATH, data=raw, content_type="application/json", **extra)


def post_changes(client: Client, account: WhatsAppBusinessAccount, *changes: Any) -> WebhookEvent:
    """POST `changes` of `account` in one signed body; returns the body as kept and applied."""
    response = post(client, notification(entry(*changes, waba_id=account.waba_id)))
    assert response.status_code == 200, response.content
    return WebhookEvent.objects.get(pk=response.json()["event_id"])


def fresh(row: Any) -> Any:
    row.refresh_from_db()
    return row


# --- sends to post statuses for ------------------------------------------------------------------


def send_with_messages(
    number: PhoneNumber,
    template: MessageTemplate,
    count: int,
    *,
    status: str = MessageStatus.SENT,
    wamids: bool = True,
    **send_fields: Any,
) -> tuple[BulkSend, list[Message]]:
    """A send of `count` messages in `status`, `sent` ones with a wamid and Meta's acceptance time
    (T0), counters exact."""
    bulk_send = factories.make_bulk_send(number, template, **send_fields)
    accepted = status in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
    messages = [
        factories.make_message(
            bulk_send,
            status=status,
            sent_at=at(T0) if accepted else None,
            wamid=new_wamid() if wamids and accepted else None,
        )
        for _ in range(count)
    ]
    return bulk_send, messages


# --- what the events must leave behind -----------------------------------------------------------

COUNTED_STATUSES = {
    "sent_count": (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ),
    "delivered_count": (MessageStatus.DELIVERED, MessageStatus.READ),
    "read_count": (MessageStatus.READ,),
    "failed_count": (MessageStatus.FAILED,),
    "pending_count": (MessageStatus.PENDING, MessageStatus.SENDING),
    "cancelled_count": (MessageStatus.CANCELLED,),
}
COUNTERS = (*COUNTED_STATUSES, "unique_recipients")


def recount(bulk_send: BulkSend) -> dict[str, int]:
    """The send's counters computed from its messages with one GROUP BY on status."""
    rows = (
        Message.objects.filter(bulk_send_id=bulk_send.pk)
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_status = {row["status"]: row["n"] for row in rows}
    # A cancelled send's `pending` messages are cancelled (messaging.counters).
    counted = counted_statuses(send_cancelled=BulkSend.objects.get(pk=bulk_send.pk).is_cancelled)
    counts = {
        counter: sum(by_status.get(status, 0) for status in counted[counter.removesuffix("_count")])
        for counter in COUNTED_STATUSES
    }
    counts["unique_recipients"] = sum(by_status.values())
    return counts


def stored_counters(bulk_send: BulkSend) -> dict[str, int]:
    return BulkSend.objects.filter(pk=bulk_send.pk).values(*COUNTERS).get()


def assert_counters_exact(bulk_send: BulkSend) -> dict[str, int]:
    """Assert the stored counters equal the recount; returns them for further checks."""
    stored = stored_counters(bulk_send)
    assert stored == recount(bulk_send)
    return stored
