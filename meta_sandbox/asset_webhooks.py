"""`POST /_sandbox/events/...`: Meta's webhooks about templates, numbers and accounts, on demand.

Each endpoint takes a small JSON object, builds the webhook Meta posts for that event in its
2026 shape (from the sandbox's own reading of Meta's webhooks reference), signs it with the app
secret as Meta does (`X-Hub-Signature-256`) and posts it to the configured `webhook_url` at
once. It answers `{"field", "status", "document"}`: the field posted, the service's HTTP status
and the body sent. 400 names a field that is missing or wrong; 409 means no `webhook_url` is set.

- `template-status` (message_template_status_update): `template_id`, or `waba_id`, `name` and
  `language`; `event` (APPROVED, PAUSED, DISABLED, REINSTATED...); optional `reason`, `title`
  and `description` (a pause's `other_info`);
- `template-quality` (message_template_quality_update): the template as above; `score`, optional
  `previous_score`;
- `number-quality` (phone_number_quality_update): `phone_number_id`; `event` (FLAGGED,
  UNFLAGGED, UPGRADE, DOWNGRADE, ONBOARDING); optional `current_limit`, `portfolio_limit`;
- `throughput-upgrade` (phone_number_quality_update, event THROUGHPUT_UPGRADE):
  `phone_number_id`;
- `capability` (business_capability_update): `waba_id`; `max_daily_conversations_per_business`
  (250, 2000, 10000, 100000, or -1 for unlimited);
- `account-update` (account_update): `waba_id`; `event`; optional `violation_type`, `ban_state`,
  `restrictions` (a list of restriction types);
- `account-alert` (account_alerts): `waba_id`; `alert_type`; optional `severity`, `status`,
  `description`, `entity_type`, `entity_id`.

A template's new status is also the catalog's, so the sandbox refuses to send a paused one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from meta_sandbox.catalog import Catalog, CatalogTemplate
from meta_sandbox.graph import json_response
from meta_sandbox.signature import signature_header
from meta_sandbox.state import STATE, SandboxState

POST_TIMEOUT = aiohttp.ClientTimeout(total=10.0)
# Template events that leave the template sendable again.
SENDABLE_AGAIN = {"REINSTATED": "APPROVED", "UNPAUSED": "APPROVED"}


class EventError(ValueError):
    pass


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value:
        raise EventError(f"{key} is required (text).")
    return value


def _optional(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise EventError(f"{key} must be text.")
    return value


def _template(catalog: Catalog, body: dict[str, Any]) -> CatalogTemplate:
    if "template_id" in body:
        template = catalog.templates_by_id.get(_text(body, "template_id"))
    else:
        template = catalog.template(
            _text(body, "waba_id"), _text(body, "name"), _text(body, "language")
        )
    if template is None:
        raise EventError("No template of the catalog has that id, or that name and language.")
    return template


def _number(catalog: Catalog, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    number = catalog.numbers.get(_text(body, "phone_number_id"))
    if number is None:
        raise EventError("phone_number_id is no number of the catalog.")
    digits = "".join(character for character in number.display_phone_number if character.isdigit())
    return number.waba_id, {"display_phone_number": digits}


def _template_value(template: CatalogTemplate) -> dict[str, Any]:
    return {
        "message_template_id": int(template.id) if template.id.isdigit() else template.id,
        "message_template_name": template.name,
        "message_template_language": template.language,
    }


def template_status(state: SandboxState, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    template = _template(state.catalog, body)
    event = _text(body, "event")
    value = {
        "event": event,
        **_template_value(template),
        "reason": _optional(body, "reason") or "NONE",
        "message_template_category": template.category,
    }
    title, description = _optional(body, "title"), _optional(body, "description")
    if title or description:
        value["other_info"] = {"title": title or "", "description": description or ""}
    if event == "DISABLED":
        value["disable_info"] = {"disable_date": int(time.time())}
    status = SENDABLE_AGAIN.get(event, event)
    if status in ("APPROVED", "PAUSED", "DISABLED", "REJECTED"):
        state.catalog.template_put(dataclasses.replace(template, status=status))
    return template.waba_id, "message_template_status_update", value


def template_quality(state: SandboxState, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    template = _template(state.catalog, body)
    value = {
        "previous_quality_score": _optional(body, "previous_score") or "UNKNOWN",
        "new_quality_score": _text(body, "score"),
        **_template_value(template),
    }
    return template.waba_id, "message_template_quality_update", value


def number_quality(state: SandboxState, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    waba_id, value = _number(state.catalog, body)
    value["event"] = _text(body, "event")
    if (limit := _optional(body, "current_limit")) is not None:
        value["current_limit"] = limit
    if (portfolio := _optional(body, "portfolio_limit")) is not None:
        value["max_daily_conversations_per_business"] = portfolio
    return waba_id, "phone_number_quality_update", value


def throughput_upgrade(
    state: SandboxState, body: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    waba_id, value = _number(state.catalog, body)
    # Meta writes the throughput level where a messaging limit would go: TIER_UNLIMITED.
    value.update({"event": "THROUGHPUT_UPGRADE", "current_limit": "TIER_UNLIMITED"})
    return waba_id, "phone_number_quality_update", value


def capability(state: SandboxState, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    limit = body.get("max_daily_conversations_per_business")
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise EventError("max_daily_conversations_per_business is required (a number, -1: none).")
    value = {
        "max_daily_conversations_per_business": limit,
        "max_phone_numbers_per_business": 25,
        "max_phone_numbers_per_waba": 25,
    }
    return _text(body, "waba_id"), "business_capability_update", value


def account_update(state: SandboxState, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    value: dict[str, Any] = {"event": _text(body, "event")}
    if (violation := _optional(body, "violation_type")) is not None:
        value["violation_info"] = {"violation_type": violation}
    if (ban_state := _optional(body, "ban_state")) is not None:
        value["ban_info"] = {"waba_ban_state": ban_state, "waba_ban_date": "2026-01-01"}
    restrictions = body.get("restrictions")
    if restrictions is not None:
        if not isinstance(restrictions, list) or not all(isinstance(r, str) for r in restrictions):
            raise EventError("restrictions must be a list of restriction types.")
        expiration = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(time.time() + 86400))
        value["restriction_info"] = [
            {"restriction_type": kind, "expiration": expiration} for kind in restrictions
        ]
    return _text(body, "waba_id"), "account_update", value


def account_alert(state: SandboxState, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    waba_id = _text(body, "waba_id")
    value = {
        "entity_type": _optional(body, "entity_type") or "BUSINESS",
        "entity_id": _optional(body, "entity_id") or waba_id,
        "alert_info": {
            "alert_severity": _optional(body, "severity") or "WARNING",
            "alert_status": _optional(body, "status") or "ACTIVE",
            "alert_type": _text(body, "alert_type"),
            "alert_description": _optional(body, "description") or "",
        },
    }
    return waba_id, "account_alerts", value


def notification(waba_id: str, field: str, value: dict[str, Any]) -> dict[str, Any]:
    """Meta's envelope around one change of one business account."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": waba_id, "time": int(time.time()), "changes": [{"field": field, "value": value}]}
        ],
    }


Builder = Callable[[SandboxState, dict[str, Any]], tuple[str, str, dict[str, Any]]]
BUILDERS: dict[str, Builder] = {
    "template-status": template_status,
    "template-quality": template_quality,
    "number-quality": number_quality,
    "throughput-upgrade": throughput_upgrade,
    "capability": capability,
    "account-update": account_update,
    "account-alert": account_alert,
}


def _handler(builder: Builder) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        state = request.app[STATE]
        config = state.config
        if not config.webhook_url:
            return json_response({"error": "Set webhook_url first."}, status=409)
        try:
            body: Any = orjson.loads(await request.read() or b"{}")
            if not isinstance(body, dict):
                raise EventError("Send a JSON object.")
            waba_id, field, value = builder(state, body)
        except (EventError, orjson.JSONDecodeError) as error:
            return json_response({"error": str(error)}, status=400)
        document = notification(waba_id, field, value)
        raw = orjson.dumps(document)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature_header(raw, config.app_secret),
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=POST_TIMEOUT) as session,
                session.post(config.webhook_url, data=raw, headers=headers) as answer,
            ):
                await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as error:
            return json_response({"error": f"The webhook POST failed: {error!r}"}, status=502)
        return json_response({"field": field, "status": status, "document": document})

    return handle


def asset_webhook_routes(app: web.Application) -> None:
    for name, builder in BUILDERS.items():
        app.router.add_post(f"/_sandbox/events/{name}", _handler(builder))
