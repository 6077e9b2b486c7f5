"""What the sandbox accepted and refused, for tests and benchmarks to inspect."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    wamid: str
    phone_number_id: str
    to: str
    template: str
    language: str
    biz_opaque_callback_data: str | None
    # The body exactly as received; listed verbatim (an orjson fragment), never re-encoded.
    raw_body: bytes
    received_at: float

    def listing(self) -> dict[str, Any]:
        return {
            "wamid": self.wamid,
            "phone_number_id": self.phone_number_id,
            "to": self.to,
            "template": self.template,
            "language": self.language,
            "biz_opaque_callback_data": self.biz_opaque_callback_data,
            "request_body": orjson.Fragment(self.raw_body),
            "received_at": self.received_at,
        }


@dataclass(slots=True)
class Records:
    messages: list[AcceptedMessage] = field(default_factory=list)
    rejected_by_code: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    # Sends per (phone_number_id, biz_opaque_callback_data): above 1 means a message went twice.
    per_callback: Counter[tuple[str, str]] = field(default_factory=Counter)

    def accept(self, message: AcceptedMessage) -> None:
        self.messages.append(message)
        if message.biz_opaque_callback_data is not None:
            self.per_callback[(message.phone_number_id, message.biz_opaque_callback_data)] += 1

    def reject(self, code: int | str) -> None:
        self.rejected_by_code[str(code)] += 1

    def listing(self, phone_number_id: str | None = None) -> dict[str, Any]:
        """`GET /_sandbox/messages`: every accepted message in arrival order, and duplicates."""
        messages = [
            message.listing()
            for message in self.messages
            if phone_number_id is None or message.phone_number_id == phone_number_id
        ]
        duplicates: list[dict[str, Any]] = [
            {"phone_number_id": number, "biz_opaque_callback_data": data, "count": count}
            for (number, data), count in self.per_callback.items()
            if count > 1 and (phone_number_id is None or number == phone_number_id)
        ]
        return {
            "count": len(messages),
            "messages": messages,
            "duplicates": duplicates,
            "duplicate_sends": sum(entry["count"] - 1 for entry in duplicates),
        }

    def clear(self) -> None:
        self.messages.clear()
        self.rejected_by_code.clear()
        self.faults.clear()
        self.per_callback.clear()
