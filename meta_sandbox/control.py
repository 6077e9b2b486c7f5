"""`/_sandbox/...`: what tests and benchmarks use to watch and steer the sandbox.

- `GET /_sandbox/stats`: counters (accepted, rejected by code, faults, webhooks posted, failed
  and pending, the most sends seen in one second per number, the catalog's size);
- `GET /_sandbox/messages[?phone_number_id=]`: every accepted message with its exact request
  body, and the (phone_number_id, biz_opaque_callback_data) pairs sent more than once;
- `POST /_sandbox/reset`: forget messages, counters, rate windows and unsent webhooks;
- `GET|POST /_sandbox/config`: read or change the runtime settings (JSON, the flags' names);
- `POST /_sandbox/refresh`: read the `--catalog` file again now, without waiting for the check of
  its modification time;
- `POST /_sandbox/accounts`: create a business account with its access token, or give it a new
  token (`{"waba_id", "access_token"}`), as Meta's business settings do; `POST /_sandbox/catalog`
  adds the accounts of a catalog document (the `--catalog` form) at once;
- `POST /_sandbox/user_preferences`: a user stops or resumes a business's marketing messages
  (`{"phone_number_id", "wa_id", "value": "stop" | "resume"}`): Meta's `user_preferences`
  webhook is posted, and MARKETING sends to a stopped user are answered 131050.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from meta_sandbox.config import config_update
from meta_sandbox.graph import json_response
from meta_sandbox.preferences import user_preferences
from meta_sandbox.state import STATE


async def stats(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].stats())


async def messages(request: web.Request) -> web.Response:
    number = request.query.get("phone_number_id")
    return json_response(request.app[STATE].records.listing(number))


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return json_response({"reset": True})


async def config_read(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].config.public())


async def config_change(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        changes: Any = orjson.loads(await request.read())
        if not isinstance(changes, dict):
            raise ValueError("Send a JSON object of settings.")
        state.configure(config_update(state.config, changes))
    except (ValueError, TypeError) as error:
        return json_response({"error": str(error)}, status=400)
    return json_response(state.config.public())


async def refresh(request: web.Request) -> web.Response:
    state = request.app[STATE]
    refreshed = state.store.refresh_now()
    return json_response({"refreshed": refreshed, "catalog": state.catalog.summary()})


def control_routes(app: web.Application) -> None:
    app.router.add_get("/_sandbox/stats", stats)
    app.router.add_get("/_sandbox/messages", messages)
    app.router.add_post("/_sandbox/reset", reset)
    app.router.add_get("/_sandbox/config", config_read)
    app.router.add_post("/_sandbox/config", config_change)
    app.router.add_post("/_sandbox/refresh", refresh)
    app.router.add_post("/_sandbox/user_preferences", user_preferences)
