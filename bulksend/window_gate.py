"""The drain's check of claimed messages against their send's quiet hours (bulksend.send_window),
at the moment they are about to go out."""

from __future__ import annotations

from datetime import datetime

from bulksend.lifecycle import batch_settle
from bulksend.models import BulkSend
from bulksend.send_window import RecipientZones, WindowOpenings, send_window_of
from messaging.delivery import ClaimedMessage, DeliveryResult, Settle


class SendWindowGate:
    """The drain's check of a claimed batch against the send's window: a message claimed outside
    its recipient's window goes back to `pending`, untried, until the window's next opening."""

    def __init__(self, bulk_send: BulkSend, *, fallback_timezone: str) -> None:
        self.window = send_window_of(bulk_send)
        self.zones = RecipientZones(fallback_timezone) if self.window is not None else None

    def admit(self, claimed: list[ClaimedMessage], now: datetime) -> list[ClaimedMessage]:
        """The messages inside their window; the others are released at once. Call it in the
        claim's transaction."""
        if self.window is None or self.zones is None or not claimed:
            return claimed
        openings = WindowOpenings(self.window, self.zones, now)
        admitted: list[ClaimedMessage] = []
        waiting: list[DeliveryResult] = []
        for message in claimed:
            opening = openings.of(message.recipient_phone)
            if opening <= now:
                admitted.append(message)
            else:
                waiting.append(DeliveryResult(message.id, Settle.RELEASE, retry_at=opening))
        if waiting:
            batch_settle(waiting, now=now)
        return admitted
