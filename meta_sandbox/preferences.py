"""Users who stopped a business's marketing messages, and the `user_preferences` webhook.

On WhatsApp a user may stop (and later resume) a business's marketing messages. Meta then
refuses that business's MARKETING templates to them with 131050, and tells the business with a
`user_preferences` webhook. `POST /_sandbox/user_preferences` plays the user:
`{"phone_number_id": "...", "wa_id": "5491150000001", "value": "stop"}` (or `"resume"`).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from meta_sandbox.graph import json_response
from meta_sandbox.state import STATE

VALUES = {
    "stop": "User requested to stop marketing messages",
    "resume": "User requested to resume marketing messages",
}


def user_preferences_document(
    *, waba_id: str, phone_number_id: str, display_phone_number: str, wa_id: str, value: str
) -> dict[str, Any]:
    """Meta's `user_preferences` body: who, which preference, stop or resume, and when."""
    change = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
        "contacts": [{"wa_id": wa_id, "profile": {"name": ""}}],
        "user_preferences": [
            {
                "wa_id": wa_id,
                "detail": VALUES[value],
                "category": "marketing_messages",
                "value": value,
                "timestamp": int(time.time()),
            }
        ],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"field": "user_preferences", "value": change}]}],
    }


async def user_preferences(request: web.Request) -> web.Response:
    """A user stops or resumes the marketing of the business that owns `phone_number_id`."""
    state = request.app[STATE]
    try:
        asked: Any = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        asked = None
    if not isinstance(asked, dict):
        return json_response({"error": "Send a JSON object."}, status=400)
    number = state.catalog.numbers.get(str(asked.get("phone_number_id")))
    wa_id, value = asked.get("wa_id"), asked.get("value")
    if number is None:
        return json_response({"error": "phone_number_id is not a known number."}, status=400)
    if not (isinstance(wa_id, str) and wa_id.isdigit()):
        return json_response({"error": "wa_id must be the user's digits."}, status=400)
    if value not in VALUES:
        return json_response({"error": "value must be stop or resume."}, status=400)
    state.preferences.set(number.waba_id, wa_id, stop=value == "stop")
    posted = bool(state.config.webhook_url)
    if posted:
        state.webhooks.post_document(
            user_preferences_document(
                waba_id=number.waba_id,
                phone_number_id=number.phone_number_id,
                display_phone_number=number.display_phone_number,
                wa_id=wa_id,
                value=value,
            )
        )
    return json_response({"wa_id": wa_id, "value": value, "webhook": posted})
