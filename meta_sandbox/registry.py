"""Filling the catalog the way Meta's is filled.

Graph API endpoints, called with the account's access token:
- `POST /{version}/{waba_id}/message_templates` `{"name", "language", "category",
  "parameter_format"?, "components"}` creates a template and answers `{"id", "status",
  "category"}`; the sandbox approves it at once. A name and language the account already has is
  Meta's 100 (subcode 2388024), a template against Meta's rules (`templates`) 100 (2388040).
- `POST /{version}/{template_id}` `{"components", "category"?}` edits a template, `{"success":
  true}`.
- `POST /{version}/{waba_id}/phone_numbers` `{"cc", "phone_number", "verified_name"}` adds a
  number and answers `{"id"}`. Meta picks the id; here a caller may choose it (`"id"`), and may
  give `display_phone_number`, `quality_rating` and `messaging_limit_tier`. Registering a known
  id again updates it.

What Meta does in its business settings, not through the API, is a sandbox control endpoint:
- `POST /_sandbox/accounts` `{"waba_id", "access_token", "messaging_limit"?}` creates a business
  account or gives it a new token (and the portfolio's messaging limit, e.g. `TIER_10K`);
- `POST /_sandbox/catalog` adds the accounts of a catalog document (see `catalog`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from meta_sandbox import errors
from meta_sandbox.catalog import CatalogNumber, CatalogTemplate
from meta_sandbox.graph import account_of, error_response, json_response, token_owns
from meta_sandbox.state import STATE
from meta_sandbox.templates import POSITIONAL, TemplateRuleError

NUMBER_TEXT_FIELDS = ("verified_name", "quality_rating", "messaging_limit_tier")


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        document = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise errors.invalid_parameter("The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise errors.invalid_parameter("The request body must be a JSON object.")
    return document


def _text(document: dict[str, Any], key: str, default: str | None = None) -> str:
    value = document.get(key, default)
    if not isinstance(value, str) or not value:
        raise errors.invalid_parameter(f"The parameter {key} is required.")
    return value


def _template_build(**fields: Any) -> CatalogTemplate:
    try:
        return CatalogTemplate.build(**fields)
    except TemplateRuleError as error:
        raise errors.template_not_valid(str(error)) from None


async def template_create(request: web.Request) -> web.Response:
    """`POST /{version}/{waba_id}/message_templates`."""
    state = request.app[STATE]
    try:
        account = account_of(request, state.catalog)
        document = await _json_object(request)
        name, language = _text(document, "name"), _text(document, "language")
        if account.templates.get((name, language)) is not None:
            raise errors.template_exists(name, language)
        template = _template_build(
            id=state.catalog.new_template_id(),
            waba_id=account.waba_id,
            name=name,
            language=language,
            category=_text(document, "category"),
            components=document.get("components"),
            parameter_format=str(document.get("parameter_format") or POSITIONAL),
        )
    except errors.MetaError as error:
        return error_response(state, error)
    state.catalog.template_put(template)
    state.store.save()
    return json_response(
        {"id": template.id, "status": template.status, "category": template.category}
    )


async def template_edit(request: web.Request) -> web.Response:
    """`POST /{version}/{template_id}`: new components (and category) for a template."""
    state = request.app[STATE]
    template_id = request.match_info["object_id"]
    try:
        existing = state.catalog.templates_by_id.get(template_id)
        if existing is None:
            raise errors.unknown_object(template_id)
        token_owns(request, state.catalog, existing.waba_id)
        document = await _json_object(request)
        template = _template_build(
            id=existing.id,
            waba_id=existing.waba_id,
            name=existing.name,
            language=existing.language,
            category=str(document.get("category") or existing.category),
            components=document.get("components", existing.components),
            parameter_format=str(document.get("parameter_format") or existing.parameter_format),
            status=existing.status,
        )
    except errors.MetaError as error:
        return error_response(state, error)
    state.catalog.template_put(template)
    state.store.save()
    return json_response({"success": True})


def _number_id(waba_id: str, digits: str) -> str:
    """A stable 15-digit id for a number registered without one."""
    value = int(hashlib.sha256(f"{waba_id}:{digits}".encode()).hexdigest(), 16)
    return str(10**14 + value % (9 * 10**14))


async def phone_number_register(request: web.Request) -> web.Response:
    """`POST /{version}/{waba_id}/phone_numbers`."""
    state = request.app[STATE]
    try:
        account = account_of(request, state.catalog)
        document = await _json_object(request)
        display = document.get("display_phone_number")
        if not isinstance(display, str) or not display:
            display = f"+{_text(document, 'cc')} {_text(document, 'phone_number')}"
        digits = "".join(ch for ch in display if ch.isdigit())
        if not digits:
            raise errors.invalid_parameter("The parameter phone_number is required.")
        phone_number_id = str(document.get("id") or _number_id(account.waba_id, digits))
        if not phone_number_id.isdigit():
            raise errors.invalid_parameter("A phone number id is made of digits.")
        fields = {key: str(document[key]) for key in NUMBER_TEXT_FIELDS if document.get(key)}
        number = CatalogNumber(phone_number_id, account.waba_id, display, **fields)
        try:
            state.catalog.number_put(number)
        except ValueError as error:
            raise errors.invalid_parameter(str(error)) from None
    except errors.MetaError as error:
        return error_response(state, error)
    state.store.save()
    return json_response({"id": phone_number_id})


async def account_put(request: web.Request) -> web.Response:
    """`POST /_sandbox/accounts`."""
    state = request.app[STATE]
    try:
        document = await _json_object(request)
        waba_id, token = _text(document, "waba_id"), _text(document, "access_token")
        limit = document.get("messaging_limit")
        if limit is not None:
            limit = _text(document, "messaging_limit")
    except errors.MetaError as error:
        return json_response({"error": error.details}, status=400)
    state.catalog.account_put(waba_id, token, limit)
    state.store.save()
    return json_response({"waba_id": waba_id, "catalog": state.catalog.summary()})


async def catalog_merge(request: web.Request) -> web.Response:
    """`POST /_sandbox/catalog`: a catalog document's accounts, all or none."""
    state = request.app[STATE]
    try:
        state.store.merge(orjson.loads(await request.read()))
    except (ValueError, TypeError) as error:
        return json_response({"error": str(error)}, status=400)
    return json_response({"catalog": state.catalog.summary()})


def registry_routes(app: web.Application, version: str) -> None:
    app.router.add_post(f"/{version}/{{object_id}}/message_templates", template_create)
    app.router.add_post(f"/{version}/{{object_id}}/phone_numbers", phone_number_register)
    app.router.add_post(f"/{version}/{{object_id}}", template_edit)
    app.router.add_post("/_sandbox/accounts", account_put)
    app.router.add_post("/_sandbox/catalog", catalog_merge)
