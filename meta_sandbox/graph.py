"""The Graph API endpoints: the template send and the two listings the service syncs from
(`registry` has those that fill the catalog).

Checks run in Meta's order and stop at the first failure: the token (190), the object (100), the
body (100), the template (132001 unknown or not approved; 132015 paused, 132016 disabled), its
parameters (132000 and kin), the number's throughput (130429); then a transient fault may be
drawn (see `faults`). Only what is accepted is recorded and counted against the rate.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from meta_sandbox import errors
from meta_sandbox.arrivals import arrival_of
from meta_sandbox.catalog import Catalog, CatalogAccount, CatalogNumber, CatalogTemplate
from meta_sandbox.config import SandboxConfig
from meta_sandbox.documented_errors import (
    TEMPLATE_DISABLED,
    TEMPLATE_PAUSED,
    USER_STOPPED_MARKETING,
    documented_error,
)
from meta_sandbox.faults import Fault, fault_draw
from meta_sandbox.paging import page_of
from meta_sandbox.records import AcceptedMessage
from meta_sandbox.state import STATE, SandboxState
from meta_sandbox.statuses import statuses_plan
from meta_sandbox.validation import TemplateSend, send_check, send_read
from meta_sandbox.versions import answers_portfolio_limit


class Arrival(NamedTuple):
    """When a send request arrived: the loop's clock (the rate windows) and the wall's (the
    record)."""

    loop_time: float
    wall_time: float

    @classmethod
    def of(cls, request: web.Request) -> Arrival:
        """When the request reached the machine (see `arrivals`), on both clocks."""
        wall = arrival_of(request)
        return cls(asyncio.get_running_loop().time() - (time.time() - wall), wall)


BAD_GATEWAY_HTML = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    "</center></body></html>"
)


def json_response(document: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json")


def error_response(state: SandboxState, error: errors.MetaError) -> web.Response:
    state.records.reject(error.code)
    return json_response(error.body(), error.status)


def token_of(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # The Graph API also takes the token as a query parameter.
    return request.query.get("access_token", "")


def _token_check(catalog: Catalog, token: str) -> None:
    if not token:
        raise errors.invalid_token("An access token is required.")
    if not catalog.token_knows(token):
        raise errors.invalid_token("The access token is not valid.")


def _owner_check(catalog: Catalog, token: str, waba_id: str) -> None:
    if not catalog.token_owns(token, waba_id):
        raise errors.invalid_token("The access token does not grant access to this object.")


def token_owns(request: web.Request, catalog: Catalog, waba_id: str) -> None:
    """190 unless the request's token is one of the catalog's and grants `waba_id`."""
    token = token_of(request)
    _token_check(catalog, token)
    _owner_check(catalog, token, waba_id)


def recipient_check(
    state: SandboxState,
    config: SandboxConfig,
    number: CatalogNumber,
    template: CatalogTemplate,
    send: TemplateSend,
) -> None:
    """Meta's refusals that depend on who the message is for: a user who stopped the
    business's marketing gets no MARKETING template (131050); a recipient configured with an
    error (`recipient_errors`) gets that error."""
    if template.category == "MARKETING" and state.preferences.stopped(
        number.waba_id, send.recipient
    ):
        raise documented_error(USER_STOPPED_MARKETING)
    code = config.recipient_errors.get(send.recipient)
    if code is not None:
        raise documented_error(code)


# Meta's own answers for a template it paused for low quality (132015) or then disabled
# (132016); any other template it cannot send is unknown to it in that language (132001).
REFUSED_TEMPLATE_CODES = {"PAUSED": TEMPLATE_PAUSED, "DISABLED": TEMPLATE_DISABLED}


def template_sendable(template: CatalogTemplate | None, send: TemplateSend) -> CatalogTemplate:
    """The template, when Meta would send it; else Meta's refusal."""
    if template is not None and template.is_approved:
        return template
    code = REFUSED_TEMPLATE_CODES.get(template.status) if template is not None else None
    if code is not None:
        raise documented_error(code)
    raise errors.template_not_found(send.name, send.language)


def _close_unanswered(request: web.Request) -> web.Response:
    """Close the connection with no answer. aiohttp then fails to write the response below and
    ignores it as a client that went away."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


def _accept(
    state: SandboxState,
    config: SandboxConfig,
    number: CatalogNumber,
    template: CatalogTemplate,
    send: TemplateSend,
    raw: bytes,
    arrival: Arrival,
) -> AcceptedMessage:
    """Record the message, count it against the number's rate and queue its statuses."""
    now = arrival.loop_time
    state.windows.record(number.phone_number_id, now)
    message = AcceptedMessage(
        wamid=state.wamids.new(send.recipient),
        phone_number_id=number.phone_number_id,
        to=send.to,
        template=send.name,
        language=send.language,
        biz_opaque_callback_data=send.callback_data,
        raw_body=raw,
        received_at=arrival.wall_time,
    )
    state.records.accept(message)
    if config.webhook_url:
        plan = statuses_plan(
            config,
            state.rng,
            message=message,
            wa_id=send.wa_id,
            user_id=send.user_id,
            number=number,
            category=template.category,
        )
        for delay, status in plan:
            state.webhooks.schedule(now + delay, status)
    return message


async def send_message(request: web.Request) -> web.StreamResponse:
    """`POST /{version}/{phone_number_id}/messages`: a template message."""
    # Meta counts a number's rate by when a request arrives, not by when this loop got to it,
    # read, parsed and checked it (which on a busy loop would bunch arrivals): see `arrivals`.
    arrival = Arrival.of(request)
    state = request.app[STATE]
    catalog, config = state.catalog, state.config
    phone_number_id = request.match_info["object_id"]
    try:
        token = token_of(request)
        _token_check(catalog, token)
        number = catalog.numbers.get(phone_number_id)
        if number is None:
            raise errors.unknown_object(phone_number_id)
        _owner_check(catalog, token, number.waba_id)
        raw = await request.read()
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise errors.invalid_parameter("The request body is not valid JSON.") from None
        send = send_read(document)
        template = template_sendable(
            catalog.template(number.waba_id, send.name, send.language), send
        )
        send_check(template.rules, send.components)
        recipient_check(state, config, number, template, send)
        rate = config.rate_per_number
        if rate and state.windows.count(phone_number_id, arrival.loop_time) >= rate:
            raise errors.rate_limit_hit()
    except errors.MetaError as error:
        return error_response(state, error)

    fault = fault_draw(config, state.rng)
    if fault is not None:
        state.records.faults[fault.value] += 1
    if fault is Fault.ERROR:
        return error_response(state, errors.something_went_wrong())
    if fault is Fault.HTTP_5XX:
        state.records.reject("http_502")
        return web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html")
    if fault is Fault.TIMEOUT:
        await asyncio.sleep(config.timeout_seconds)
        return _close_unanswered(request)

    # Accepted: from here on the message exists, whatever becomes of the answer.
    message = _accept(state, config, number, template, send, raw, arrival)
    if fault is Fault.DROP:
        return _close_unanswered(request)
    if fault is Fault.SLOW:
        await asyncio.sleep(config.slow_seconds)
    # Meta's `contacts`: `wa_id` for a send to a phone, `user_id` for one to a user id.
    contact = (
        {"input": send.to, "user_id": send.user_id}
        if send.user_id is not None
        else {"input": send.to, "wa_id": send.wa_id}
    )
    return json_response(
        {
            "messaging_product": "whatsapp",
            "contacts": [contact],
            "messages": [{"id": message.wamid, "message_status": "accepted"}],
        }
    )


def account_of(request: web.Request, catalog: Catalog) -> CatalogAccount:
    """The business account the path names, once the token is checked against it."""
    token = token_of(request)
    _token_check(catalog, token)
    waba_id = request.match_info["object_id"]
    account = catalog.accounts.get(waba_id)
    if account is None:
        raise errors.unknown_object(waba_id)
    _owner_check(catalog, token, waba_id)
    return account


async def list_templates(request: web.Request) -> web.Response:
    """`GET /{version}/{waba_id}/message_templates`, `limit`/`after` paging; `name`, `status`
    and `language` filter exactly."""
    state = request.app[STATE]
    try:
        account = account_of(request, state.catalog)
        templates = sorted(account.templates.values(), key=lambda t: (t.name, t.language, t.id))
        for key in ("name", "status", "language"):
            if wanted := request.query.get(key):
                templates = [t for t in templates if getattr(t, key) == wanted]
        page = page_of(request, [template.listing() for template in templates])
    except errors.MetaError as error:
        return error_response(state, error)
    return json_response(page)


def _fields_only(listing: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """`listing` cut to the fields asked for (`?fields=a,b`; the id always), as Meta answers
    only what is asked; every field the version has when none are named."""
    if not fields:
        return listing
    wanted = {name.strip() for name in fields.split(",")} | {"id"}
    return {key: value for key, value in listing.items() if key in wanted}


async def list_numbers(request: web.Request) -> web.Response:
    """`GET /{version}/{waba_id}/phone_numbers[?fields=...]`: the fields of the version asked
    for (see `versions`): the portfolio's messaging limit since v24.0, the number's own tier
    before. A field the version does not have is left out of the answer."""
    state = request.app[STATE]
    try:
        account = account_of(request, state.catalog)
        portfolio = (
            account.portfolio_limit
            if answers_portfolio_limit(request.match_info["version"])
            else None
        )
        listings = [
            _fields_only(number.listing(portfolio_limit=portfolio), request.query.get("fields"))
            for number in account.numbers.values()
        ]
        page = page_of(request, listings)
    except errors.MetaError as error:
        return error_response(state, error)
    return json_response(page)


async def unknown_path(request: web.Request) -> web.Response:
    return error_response(request.app[STATE], errors.unknown_path(request.path))
