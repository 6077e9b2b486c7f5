"""`manage.py demo [--json] [--org NAME]`: everything a client needs to try the API locally."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.text import slugify

from messaging.contacts import contact_list_default
from messaging.models import Contact, ContactSource
from meta.graph import GraphRequestError
from mindo.api_keys import api_key_create
from mindo.members import member_ensure
from mindo.models import CompanySize, CompanyType, Organization
from templates_app.meta_publish import sandbox_catalog_publish, sandbox_url
from templates_app.models import (
    MessageTemplate,
    QualityRating,
    TemplateCategory,
    TemplateStatus,
    WhatsAppBusinessAccount,
)
from templates_app.services import (
    business_account_register,
    phone_number_register,
    template_register,
)

DEFAULT_ORG = "Mindo Demo"
# Room for the walk-through and a 10,000-recipient trial on the same day, several times over:
# with the 1,000 tier the first trial would wait a day for most of its recipients.
DEMO_TIER = "TIER_100K"
# Placeholders: the sandbox accepts the token stored on the account; the real Graph API needs
# the operator's own.
DEMO_ACCESS_TOKEN = "demo-access-token"


@dataclass(frozen=True)
class DemoNumber:
    waba_id: str
    phone_number_id: str
    display_phone_number: str
    verified_name: str


# The default organization's number is the one of the contract's examples, so they run as written.
DEFAULT_NUMBER = DemoNumber(
    waba_id="102290129340398",
    phone_number_id="813497231850626",
    display_phone_number="+54 9 223 675-0780",
    verified_name="Mindo Software",
)


def _body(text: str) -> list[dict[str, Any]]:
    return [{"type": "BODY", "text": text}]


# Every template the contract's examples send, with NAMED placeholders.
DEMO_TEMPLATES: list[tuple[str, str, list[dict[str, Any]]]] = [
    (
        "welcome_message",
        TemplateCategory.MARKETING,
        [
            *_body("Hola {{name}}, tu codigo es {{code}}."),
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Ver", "url": "https://mindo.example/w/{{1}}"}],
            },
        ],
    ),
    (
        "order_confirmation",
        TemplateCategory.UTILITY,
        _body("Hola {{name}}, recibimos tu pedido {{order_id}}. Te avisamos cuando salga."),
    ),
    (
        "verification_code",
        TemplateCategory.UTILITY,
        _body("Hola {{name}}, tu codigo de verificacion es {{code}}. No lo compartas."),
    ),
    (
        "order_update",
        TemplateCategory.UTILITY,
        _body("Tu pedido {{order_id}} cambio de estado: {{status}}."),
    ),
    (
        "event_reminder",
        TemplateCategory.MARKETING,
        _body("Hola {{name}}, te esperamos en {{event_name}} el {{event_date}}."),
    ),
]


# A media header, a price and a date: the walk-through's typed send.
MEDIA_TEMPLATE_NAME = "product_launch"
MEDIA_TEMPLATE_COMPONENTS: list[dict[str, Any]] = [
    {"type": "HEADER", "format": "IMAGE"},
    *_body("Hola {{name}}, {{product}} llega el {{launch_date}} a {{price}}."),
]
MEDIA_TEMPLATE_TYPES = {"price": "CURRENCY", "launch_date": "DATE_TIME"}
MEDIA_TEMPLATE_CURRENCY = "ARS"


def demo_media_template_register(account: WhatsAppBusinessAccount) -> MessageTemplate:
    """An APPROVED template with an IMAGE header (its `header_image` variable takes the image's
    https URL), a CURRENCY price in pesos unless the value names a currency, and a DATE_TIME."""
    return template_register(
        business_account=account,
        name=MEDIA_TEMPLATE_NAME,
        language="es",
        category=TemplateCategory.MARKETING,
        status=TemplateStatus.APPROVED,
        components=MEDIA_TEMPLATE_COMPONENTS,
        variable_types=MEDIA_TEMPLATE_TYPES,
        currency_code=MEDIA_TEMPLATE_CURRENCY,
    )


def _digits(org_name: str, salt: str, length: int) -> str:
    """`length` digits, the first not 0, that depend only on the organization's name."""
    value = int(hashlib.sha256(f"{salt}:{org_name}".encode()).hexdigest(), 16)
    low = 10 ** (length - 1)
    return str(low + value % (9 * low))


def demo_number(org_name: str) -> DemoNumber:
    """The default organization's number, or a stable one of its own for any other.

    Meta's ids are unique, so another organization cannot share the default one; ids from a hash
    of the name stay the same from run to run.
    """
    if org_name == DEFAULT_ORG:
        return DEFAULT_NUMBER
    digits = _digits(org_name, "number", 15)
    return DemoNumber(
        waba_id=_digits(org_name, "waba", 15),
        phone_number_id=digits,
        # 555-01XX is reserved for fiction, so the display can never be someone's real number.
        display_phone_number=f"+1 202-555-01{digits[-2:]}",
        verified_name=org_name,
    )


def demo_email(org_name: str) -> str:
    if org_name == DEFAULT_ORG:
        return "demo@example.com"
    # The hash keeps names that slugify alike ("Acme SA", "acme-sa") on distinct users.
    tag = "-".join(filter(None, [slugify(org_name)[:80], _digits(org_name, "email", 8)]))
    return f"demo+{tag}@example.com"


# The contact of the contact-lookup page's example, so its request answers as the page shows.
DEMO_CONTACT = {"phone": "+5492235961983", "name": "Juan Perez", "email": "juan@ejemplo.com"}


def demo_contacts(organization: Organization) -> None:
    """The organization's default contact list with the page's example contact in it."""
    contact_list = contact_list_default(organization.pk)
    Contact.objects.update_or_create(
        organization=organization,
        phone=DEMO_CONTACT["phone"],
        defaults={
            "contact_list": contact_list,
            "name": DEMO_CONTACT["name"],
            "email": DEMO_CONTACT["email"],
            "source": ContactSource.ADMIN,
        },
    )


def demo_profile_fill(organization: Organization, number: DemoNumber) -> None:
    """The business profile business-info answers, in the shape of the contract's example (its
    addresses on example.com, reserved for examples)."""
    organization.email = "contacto@example.com"
    organization.phone = number.display_phone_number
    organization.website = "https://example.com"
    organization.address = "Av. Siempre Viva 123, Mar del Plata"
    organization.description = "Tienda de indumentaria deportiva."
    organization.timezone = "America/Argentina/Buenos_Aires"
    organization.company_size = CompanySize.SMALL
    organization.company_types = [CompanyType.ECOMMERCE]
    organization.categories = ["Indumentaria", "Retail"]
    organization.save()


@dataclass(frozen=True)
class Demo:
    organization: Organization
    raw_key: str
    number: DemoNumber
    templates: list[MessageTemplate]


def demo_provision(org_name: str) -> Demo:
    """Create or update the demo assets of `org_name`, and a fresh API key for them."""
    number = demo_number(org_name)
    with transaction.atomic():
        organization, _ = Organization.objects.get_or_create(name=org_name)
        demo_profile_fill(organization, number)
        user = member_ensure(
            organization=organization,
            email=demo_email(org_name),
            first_name="Demo",
            last_name="User",
        )
        _, raw_key = api_key_create(organization=organization, user=user, name="demo")
        account = business_account_register(
            organization=organization,
            waba_id=number.waba_id,
            name=number.verified_name,
            access_token=DEMO_ACCESS_TOKEN,
            messaging_limit_tier=DEMO_TIER,
        )
        phone_number_register(
            business_account=account,
            phone_number_id=number.phone_number_id,
            display_phone_number=number.display_phone_number,
            verified_name=number.verified_name,
            quality_rating=QualityRating.GREEN,
            messaging_limit_tier=DEMO_TIER,
            throughput_per_second=settings.DEFAULT_THROUGHPUT_PER_SECOND,
        )
        templates = [
            template_register(
                business_account=account,
                name=name,
                language="es",
                category=category,
                status=TemplateStatus.APPROVED,
                components=components,
            )
            for name, category, components in DEMO_TEMPLATES
        ]
        templates.append(demo_media_template_register(account))
        demo_contacts(organization)
    return Demo(organization=organization, raw_key=raw_key, number=number, templates=templates)


def demo_sandbox_publish(number: DemoNumber) -> str | None:
    """Register the demo's account, number and templates with the Meta sandbox when
    META_GRAPH_URL is one, so that a send made right after works; a line saying what happened,
    or None against the real Graph API (whose templates are created through its own review)."""
    try:
        base = sandbox_url()
        if base is None:
            return None
        account = WhatsAppBusinessAccount.objects.get(waba_id=number.waba_id)
        published = sandbox_catalog_publish(account)
    except GraphRequestError as error:
        return (
            f"The Meta sandbox at {settings.META_GRAPH_URL} did not take the demo's catalog "
            f"({error}); start it and run demo again."
        )
    return (
        f"Meta sandbox at {base}: registered WABA {number.waba_id}, "
        f"{published.phone_numbers} number(s) and {published.templates} template(s)."
    )


class Command(BaseCommand):
    help = (
        "Provision a demo organization (default 'Mindo Demo') with a user, a business account, "
        "a phone number, the APPROVED templates of the API reference's examples and a contact "
        "list with the contact lookup's example contact, and register "
        "them with the Meta sandbox when META_GRAPH_URL points at one. Safe to run again: it "
        "updates the same rows. Each run prints a new API key named 'demo' (only "
        "hashes are stored, so an old key cannot be shown again); earlier keys keep working."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help='Print only {"api_key", "phone_number_id", "templates"} as JSON on stdout.',
        )
        parser.add_argument("--org", default=DEFAULT_ORG, help=f"Default {DEFAULT_ORG!r}.")

    def handle(self, *args: Any, **options: Any) -> None:
        org_name: str = options["org"].strip()
        if not org_name:
            raise CommandError("--org may not be blank.")
        try:
            demo = demo_provision(org_name)
        except ValueError as error:
            raise CommandError(str(error)) from None
        sandbox_note = demo_sandbox_publish(demo.number)
        if sandbox_note is not None:
            # Beside the JSON, never in it: a script reads stdout.
            (self.stderr if options["json"] else self.stdout).write(sandbox_note)
        if options["json"]:
            payload = {
                "api_key": demo.raw_key,
                "phone_number_id": demo.number.phone_number_id,
                "templates": [
                    {"id": t.pk, "name": t.name, "language": t.language} for t in demo.templates
                ],
            }
            self.stdout.write(json.dumps(payload))
            return
        self.stdout.write(f"Organization: {demo.organization.name}")
        self.stdout.write(f"API key:      {demo.raw_key}  (shown once: copy it now)")
        self.stdout.write(
            f"Number:       {demo.number.display_phone_number} "
            f"(phone_number_id {demo.number.phone_number_id}, WABA {demo.number.waba_id})"
        )
        self.stdout.write("Templates (es, APPROVED):")
        for template in demo.templates:
            variables = ", ".join(
                spec["name"] if spec["type"] == "TEXT" else f"{spec['name']} ({spec['type']})"
                for spec in template.variable_specs
            )
            self.stdout.write(f"  {template.pk:>4}  {template.name}  variables: {variables}")
