"""Keys of the contract's example bodies, in the contract's order, shared by the tests."""

from __future__ import annotations

DETAIL_KEYS = [
    "id",
    "status",
    "template",
    "phone_number",
    "total_recipients",
    "sent_count",
    "delivered_count",
    "read_count",
    "failed_count",
    "pending_count",
    "progress_percentage",
    "estimated_time_minutes",
    "started_at",
    "completed_at",
    "created_at",
    "created_by",
]

SEND_LIST_ITEM_KEYS = [
    "id",
    "status",
    "template",
    "phone_number",
    "total_recipients",
    "sent_count",
    "delivered_count",
    "read_count",
    "failed_count",
    "pending_count",
    "progress_percentage",
    "created_at",
    "completed_at",
]

# POST send/'s 200 body, in the page's order (more/send-message.md).
SEND_MESSAGE_KEYS = [
    "success",
    "message_id",
    "template_name",
    "recipient_phone",
    "status",
    "sent_at",
]

CONTACT_LOOKUP_KEYS = [
    "found",
    "contact",
    "hasReplied",
    "lastReplyAt",
    "sessionWindowActive",
    "sessionExpiresAt",
]

CONTACT_KEYS = [
    "id",
    "fullName",
    "phone",
    "email",
    "contactListId",
    "contactListName",
    "source",
    "createdAt",
]
