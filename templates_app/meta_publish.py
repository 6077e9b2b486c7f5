"""Telling Meta about a business account's templates, and the Meta sandbox about everything.

Meta learns a template through the Graph API's template creation
(`POST /{waba_id}/message_templates`): `meta_template_create` makes that call, and edits the
template Meta already has under the same name and language instead of failing. Numbers and
accounts are set up in Meta's business settings, which no API reaches; the sandbox, which stands
in for Meta during development, takes them through its own endpoints. `sandbox_catalog_publish`
registers an account, its numbers and its approved templates with the sandbox, so that a send
made right after works (`manage.py demo` and the tests' sandbox use it).

Both raise `GraphRequestError` with Meta's error when a call fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from django.conf import settings

from messaging.graph import GraphRequestError, graph_base_url
from messaging.graph_errors import (
    CODE_BAD_RESPONSE,
    CODE_CONNECTION_ERROR,
    graph_error_from_response,
    transport_error,
)
from templates_app.models import MessageTemplate, TemplateStatus, WhatsAppBusinessAccount

# Meta's subcode of 100 for a name and language the account already has.
TEMPLATE_EXISTS_SUBCODE = 2388024
# The host of the real Graph API: never asked whether it is a sandbox.
META_HOSTS = frozenset(("graph.facebook.com", "graph.facebook.net"))
PROBE_TIMEOUT = 3.0


def _request(
    method: str, url: str, *, token: str | None = None, body: Any = None, params: Any = None
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    timeout = (
        float(settings.META_HTTP_CONNECT_TIMEOUT_SECONDS),
        float(settings.META_HTTP_TIMEOUT_SECONDS),
    )
    try:
        response = requests.request(
            method,
            url,
            data=None if body is None else orjson.dumps(body),
            params=params,
            headers=headers,
            timeout=timeout,
        )
    except requests.RequestException as error:
        raise GraphRequestError(
            transport_error(
                CODE_CONNECTION_ERROR, f"Cannot reach {url}: {error}", maybe_delivered=False
            )
        ) from None
    if not response.ok:
        raise GraphRequestError(graph_error_from_response(response.status_code, response.content))
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        message = f"Unreadable answer from {url}: {response.content[:200]!r}"
        raise GraphRequestError(transport_error(CODE_BAD_RESPONSE, message, maybe_delivered=False))
    return answer


def _already_exists(error: GraphRequestError) -> bool:
    return error.error.subcode == str(TEMPLATE_EXISTS_SUBCODE)


def meta_template_create(template: MessageTemplate) -> str:
    """Create `template` at Meta (or bring Meta's copy up to date); Meta's template id, also
    stored on the template."""
    account = template.business_account
    base = f"{graph_base_url()}/{account.waba_id}/message_templates"
    definition = {
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "parameter_format": template.parameter_format,
        "components": template.components,
    }
    try:
        template_id = str(_request("POST", base, token=account.access_token, body=definition)["id"])
    except GraphRequestError as error:
        if not _already_exists(error):
            raise
        params = {"name": template.name, "language": template.language, "fields": "id,language"}
        listed = _request("GET", base, token=account.access_token, params=params).get("data")
        same = [
            t for t in listed or [] if t.get("language", template.language) == template.language
        ]
        if not same:
            raise
        template_id = str(same[0]["id"])
        edit = {k: definition[k] for k in ("category", "parameter_format", "components")}
        _request("POST", f"{graph_base_url()}/{template_id}", token=account.access_token, body=edit)
    if template.meta_template_id != template_id:
        MessageTemplate.objects.filter(pk=template.pk).update(meta_template_id=template_id)
        template.meta_template_id = template_id
    return template_id


def sandbox_url() -> str | None:
    """META_GRAPH_URL when a Meta sandbox answers there, else None; the real Graph API is never
    asked. Raises GraphRequestError when nothing answers at all."""
    base = str(settings.META_GRAPH_URL).rstrip("/")
    if urlsplit(base).hostname in META_HOSTS:
        return None
    try:
        response = requests.get(f"{base}/_sandbox/stats", timeout=PROBE_TIMEOUT)
    except requests.RequestException as error:
        raise GraphRequestError(
            transport_error(
                CODE_CONNECTION_ERROR, f"No answer at {base}: {error}", maybe_delivered=False
            )
        ) from None
    return base if response.status_code == 200 else None


@dataclass(frozen=True)
class SandboxPublished:
    phone_numbers: int
    templates: int


def sandbox_catalog_publish(account: WhatsAppBusinessAccount) -> SandboxPublished:
    """Register `account` with its token, its numbers and its APPROVED templates with the
    sandbox at META_GRAPH_URL (the others stay unknown to it: Meta answers 132001 for them)."""
    base = str(settings.META_GRAPH_URL).rstrip("/")
    token = account.access_token
    _request(
        "POST",
        f"{base}/_sandbox/accounts",
        body={"waba_id": account.waba_id, "access_token": token},
    )
    numbers = list(account.phone_numbers.all())
    for number in numbers:
        number_document = {
            "id": number.phone_number_id,
            "display_phone_number": number.display_phone_number,
            "verified_name": number.verified_name,
            "quality_rating": number.quality_rating,
            "messaging_limit_tier": number.messaging_limit_tier,
        }
        url = f"{graph_base_url()}/{account.waba_id}/phone_numbers"
        _request("POST", url, token=token, body=number_document)
    templates = list(account.templates.filter(status=TemplateStatus.APPROVED))
    for template in templates:
        template.business_account = account
        meta_template_create(template)
    return SandboxPublished(phone_numbers=len(numbers), templates=len(templates))
