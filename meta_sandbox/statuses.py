"""The status events of an accepted message and the webhook body that carries them.

The fate of a message is drawn when Meta accepts it:
- `sent` at once;
- recipients whose digits end with the fail suffix: `failed` (131026, "Message undeliverable")
  after `delivered_after` seconds, instead of `delivered`;
- otherwise `delivered` after `delivered_after` for `delivered_share` of the messages, and
  `read` after `read_after` for `read_share` of the delivered ones.
Each status's timestamp is the moment of the event, whenever the webhook leaves.

A message sent to a business-scoped user id (`recipient`) is reported as Meta documents it: each
status carries `recipient_user_id` and no `recipient_id` (the sandbox knows no phone for the
user), and the statuses other than `failed` come with `contacts: [{"user_id"}]`.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from meta_sandbox import errors
from meta_sandbox.catalog import CatalogNumber
from meta_sandbox.config import SandboxConfig
from meta_sandbox.records import AcceptedMessage

ERROR_DOCS = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
UNDELIVERABLE_ERROR = {
    "code": errors.UNDELIVERABLE,
    "title": "Message undeliverable",
    "message": "Message undeliverable",
    "error_data": {"details": "Message Undeliverable."},
    "href": ERROR_DOCS,
}
CONVERSATION_SECONDS = 24 * 60 * 60


@dataclass(frozen=True, slots=True)
class ScheduledStatus:
    wamid: str
    status: str
    timestamp: int
    # The phone's digits; "" for a message to a user id.
    recipient_id: str
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    category: str
    conversation_id: str
    biz_opaque_callback_data: str | None
    recipient_user_id: str | None = None

    def item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.wamid,
            "status": self.status,
            "timestamp": str(self.timestamp),
        }
        if self.recipient_id:
            item["recipient_id"] = self.recipient_id
        if self.recipient_user_id is not None:
            item["recipient_user_id"] = self.recipient_user_id
        if self.status in ("sent", "delivered"):
            conversation: dict[str, Any] = {
                "id": self.conversation_id,
                "origin": {"type": self.category},
            }
            if self.status == "sent":
                conversation["expiration_timestamp"] = str(self.timestamp + CONVERSATION_SECONDS)
            item["conversation"] = conversation
            item["pricing"] = {
                "billable": True,
                "pricing_model": "PMP",
                "category": self.category,
                "type": "regular",
            }
        elif self.status == "failed":
            item["errors"] = [UNDELIVERABLE_ERROR]
        if self.biz_opaque_callback_data is not None:
            item["biz_opaque_callback_data"] = self.biz_opaque_callback_data
        return item


def _conversation_id(number: CatalogNumber, wa_id: str, category: str, day: int) -> str:
    # Meta opens one conversation per business number, user and category for 24 h.
    seed = f"{number.phone_number_id}:{wa_id}:{category}:{day}".encode()
    return hashlib.md5(seed, usedforsecurity=False).hexdigest()


def statuses_plan(
    config: SandboxConfig,
    rng: random.Random,
    *,
    message: AcceptedMessage,
    wa_id: str,
    number: CatalogNumber,
    category: str,
    user_id: str | None = None,
) -> list[tuple[float, ScheduledStatus]]:
    """The message's statuses, each with its delay in seconds from acceptance."""
    category = category.lower()
    at = message.received_at
    recipient = wa_id or user_id or ""
    common: dict[str, Any] = {
        "wamid": message.wamid,
        "recipient_id": wa_id,
        "recipient_user_id": user_id,
        "phone_number_id": number.phone_number_id,
        "waba_id": number.waba_id,
        "display_phone_number": "".join(ch for ch in number.display_phone_number if ch.isdigit()),
        "category": category,
        "conversation_id": _conversation_id(number, recipient, category, int(at) // 86400),
        "biz_opaque_callback_data": message.biz_opaque_callback_data,
    }
    plan = [(0.0, ScheduledStatus(status="sent", timestamp=int(at), **common))]
    delivered_after = config.delivered_after
    if config.fail_suffix and recipient.endswith(config.fail_suffix):
        failed = ScheduledStatus(status="failed", timestamp=int(at + delivered_after), **common)
        plan.append((delivered_after, failed))
    elif rng.random() < config.delivered_share:
        delivered_at = int(at + delivered_after)
        status = ScheduledStatus(status="delivered", timestamp=delivered_at, **common)
        plan.append((delivered_after, status))
        if rng.random() < config.read_share:
            # Read never comes before delivered, whatever the two delays say.
            read_after = max(config.read_after, delivered_after)
            read_at = int(at + read_after)
            plan.append((read_after, ScheduledStatus(status="read", timestamp=read_at, **common)))
    # Meta's webhooks can come late (its own backlog, a slow network): each leaves later, still
    # stamped with the moment of its event.
    return [(delay + config.webhook_delay, status) for delay, status in plan]


def webhook_document(statuses: list[ScheduledStatus]) -> dict[str, Any]:
    """Meta's body for statuses of one phone number (the caller groups them so)."""
    first = statuses[0]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": first.display_phone_number,
            "phone_number_id": first.phone_number_id,
        },
        "statuses": [status.item() for status in statuses],
    }
    # Meta names users sent to by user id in `contacts` (never for a failed status).
    contacts = [
        {"user_id": status.recipient_user_id}
        for status in statuses
        if status.recipient_user_id is not None and status.status != "failed"
    ]
    if contacts:
        value["contacts"] = contacts
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": first.waba_id, "changes": [{"field": "messages", "value": value}]}],
    }
