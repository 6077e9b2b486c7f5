"""The endpoint's work, shared by the Django view and the WSGI fast path: check, store, answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from mindo import metrics
from mindo.meta_signature import signature_is_valid
from webhooks.processing import NotJson, webhook_store

SIGNATURE_HEADER = "X-Hub-Signature-256"


@dataclass(frozen=True, slots=True)
class Received:
    status: int
    body: dict[str, Any]

    @property
    def stored(self) -> bool:
        return self.status == 200


def webhook_receive(body: bytes, signature: str | None) -> Received:
    """Check the signature before anything else, then keep the body for the applier.

    403 for a missing, malformed or wrong signature (nothing stored); 400 for a signed body that
    is not JSON; 200 once the body is stored.
    """
    if not signature_is_valid(body, signature, settings.META_APP_SECRET):
        return Received(403, {"error": "Invalid signature"})
    try:
        event_id = webhook_store(body)
    except NotJson as error:
        return Received(400, {"error": f"Body is not JSON: {error}"})
    metrics.WEBHOOKS_STORED.inc()
    return Received(200, {"received": True, "event_id": event_id})
