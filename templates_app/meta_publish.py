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
from urllib.parse import urlsplit

from django.conf import settings

from meta.graph import GraphRequestError, graph_request
from mindo.meta_client import graph_config
from templates_app.models import MessageTemplate, TemplateStatus, WhatsAppBusinessAccount

# Meta's subcode of 100 for a name and language the account already has.
TEMPLATE_EXISTS_SUBCODE = 2388024
# The host of the real Graph API: never asked whether it is a sandbox.
META_HOSTS = frozenset(("graph.facebook.com", "graph.facebook.net"))


def meta_template_create(template: MessageTemplate) -> str:
    """Create `template` at Meta (or bring Meta's copy up to date); Meta's template id, also
    stored on the template."""
    account = template.business_account
    config = graph_config()
    base = f"{config.base_url}/{account.waba_id}/message_templates"
    definition = {
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "parameter_format": template.parameter_format,
        "components": template.components,
    }
    try:
        created = graph_request(
            config, "POST", base, access_token=account.access_token, body=definition
        )
        template_id = str(created["id"])
    except GraphRequestError as error:
        if error.error.subcode != str(TEMPLATE_EXISTS_SUBCODE):
            raise
        params = {"name": template.name, "language": template.language, "fields": "id,language"}
        page = graph_request(config, "GET", base, access_token=account.access_token, params=params)
        listed = page.get("data")
        ids = [
            str(item["id"])
            for item in (listed if isinstance(listed, list) else [])
            if isinstance(item, dict) and item.get("language") == template.language
        ]
        if not ids:
            raise
        template_id = ids[0]
        edit = {key: definition[key] for key in ("category", "parameter_format", "components")}
        url = f"{config.base_url}/{template_id}"
        graph_request(config, "POST", url, access_token=account.access_token, body=edit)
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
        graph_request(graph_config(), "GET", f"{base}/_sandbox/stats")
    except GraphRequestError as error:
        if error.error.http_status is None:
            raise
        return None  # something answers, but not as the sandbox
    return base


@dataclass(frozen=True)
class SandboxPublished:
    phone_numbers: int
    templates: int


def sandbox_catalog_publish(account: WhatsAppBusinessAccount) -> SandboxPublished:
    """Register `account` with its token, its numbers and its APPROVED templates with the
    sandbox at META_GRAPH_URL (the others stay unknown to it: Meta answers 132001 for them)."""
    config = graph_config()
    base = str(settings.META_GRAPH_URL).rstrip("/")
    token = account.access_token
    graph_request(
        config,
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
        url = f"{config.base_url}/{account.waba_id}/phone_numbers"
        graph_request(config, "POST", url, access_token=token, body=number_document)
    templates = list(account.templates.filter(status=TemplateStatus.APPROVED))
    for template in templates:
        template.business_account = account
        meta_template_create(template)
    return SandboxPublished(phone_numbers=len(numbers), templates=len(templates))
