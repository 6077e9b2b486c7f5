"""Users who stopped a business's marketing messages, and the `user_preferences` webhook.

On WhatsApp a user may stop (and later resume) a business's marketing messages. Meta then
refuses that business's MARKETING templates to them with 131050, and tells the business with a
`user_preferences` webhook. `POST /_sandbox/user_preferences` plays the user:
`{"phone_number_id": "...", "wa_id": "5491150000001", "value": "stop"}` (or `"resume"`). A user
known by business-scoped user id gives `"user_id"` instead of (or beside) `"wa_id"`, and the
webhook names them as Meta does: `user_id` beside `wa_id`, or alone.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from meta_sandbox.graph import json_response
from meta_sandbox.state import STATE
from meta_sandbox.validation import USER_ID

VALUES = {
    "stop": "User requested to stop marketing messages",
    "resume": "User requested to resume marketing messages",
}


def user_preferences_document(
    *,
    waba_id: str,
    phone_number_id: str,
    display_phone_number: str,
    wa_id: str | None,
    value: str,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Meta's `user_preferences` body: who, which preference, stop or resume, and when."""
    who = {key: name for key, name in (("wa_id", wa_id), ("user_id", user_id)) if name is not None}
    change = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
        "contacts": [{**who, "profile": {"name": ""}}],
        "user_preferences": [
            {
                **who,
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
    wa_id, user_id, value = asked.get("wa_id"), asked.get("user_id"), asked.get("value")
    if number is None:
        return json_response({"error": "phone_number_id is not a known number."}, status=400)
    if wa_id is None and user_id is None:
        return json_response({"error": "Give the user's wa_id or user_id."}, status=400)
    if wa_id is not None and not (isinstance(wa_id, str) and wa_id.isdigit()):
        return json_response({"error": "wa_id must be the user's digits."}, status=400)
    if user_id is not None and not (isinstance(user_id, str) and USER_ID.fullmatch(user_id)):
        return json_response({"error": "user_id must be a business-scoped user ID."}, status=400)
    if value not in VALUES:
        return json_response({"error": "value must be stop or resume."}, status=400)
    # A send reaches the user by either name: both are stopped (or resumed).
    for name in (wa_id, user_id):
        if name is not None:
            state.preferences.set(number.waba_id, name, stop=value == "stop")
    posted = bool(state.config.webhook_url)
    if posted:
        state.webhooks.post_document(
            user_preferences_document(
                waba_id=number.waba_id,
                phone_number_id=number.phone_number_id,
                display_phone_number=number.display_phone_number,
                wa_id=wa_id,
                value=value,
                user_id=user_id,
            )
        )
    return json_response({"wa_id": wa_id, "user_id": user_id, "value": value, "webhook": posted})
