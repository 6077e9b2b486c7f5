"""Registering Meta assets by hand: business accounts, their numbers and their templates.

Operators (the admin, the management commands, `demo`) call these. Every function is idempotent:
registering the same asset again updates it in place, so a script can be run as often as needed.
An asset that already belongs to another organization is refused, never moved: Meta's ids are
unique across Meta, and moving one would hand a customer's number or templates to another.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from meta.components import BODY, HEADER, placeholders
from meta.limits import KNOWN_TIERS, MAX_THROUGHPUT, tier_limit
from meta.parameters import CURRENCY_CODE, PLACEHOLDER_TYPES
from mindo.models import Organization
from templates_app.models import (
    MessageTemplate,
    PhoneNumber,
    QualityRating,
    TemplateCategory,
    TemplateStatus,
    WhatsAppBusinessAccount,
)

COMPONENTS_EXAMPLE = '[{"type": "BODY", "text": "Hola {{name}}"}]'


class RegistrationError(ValueError):
    """An asset cannot be registered as asked; the message says why, for an operator to read."""


def tier_validate(tier: str) -> str:
    """`tier` if the quota can read it (`meta.limits.tier_limit`), else RegistrationError."""
    try:
        tier_limit(tier)
    except ValueError:
        raise RegistrationError(
            f"Unknown messaging limit tier {tier!r}: Meta's are {', '.join(KNOWN_TIERS)}."
        ) from None
    return tier


def _choice_validate(value: str, choices: list[str], what: str) -> str:
    if value not in choices:
        raise RegistrationError(f"Unknown {what} {value!r}: use one of {', '.join(choices)}.")
    return value


def components_validate(components: Any) -> list[dict[str, Any]]:
    """`components` when it has the shape of Meta's template components, else RegistrationError.

    Only the shape is checked (what `set_components` walks): Meta is the judge of the content.
    """
    problem = (
        f"Components must be a JSON list of objects with a 'type', as Meta returns them, "
        f"e.g. {COMPONENTS_EXAMPLE}"
    )
    if not isinstance(components, list):
        raise RegistrationError(problem)
    for component in components:
        if not isinstance(component, dict) or not isinstance(component.get("type"), str):
            raise RegistrationError(problem)
        buttons = component.get("buttons", [])
        if not isinstance(buttons, list) or not all(isinstance(b, dict) for b in buttons):
            raise RegistrationError(
                "The 'buttons' of a BUTTONS component must be a list of objects."
            )
    return components


def variable_types_validate(
    variable_types: Any, components: list[dict[str, Any]]
) -> dict[str, str]:
    """`variable_types` when it maps placeholders of `components` to a type an operator may set
    (TEXT, CURRENCY, DATE_TIME), else RegistrationError. A media header's type is its format."""
    if variable_types is None:
        return {}
    if not isinstance(variable_types, dict):
        raise RegistrationError(
            "Variable types must be a JSON object of placeholder name -> type, e.g. "
            '{"total": "CURRENCY"}.'
        )
    names = placeholders(components, HEADER) + placeholders(components, BODY)
    for name, variable_type in variable_types.items():
        if name not in names:
            raise RegistrationError(
                f"The template has no placeholder {{{{{name}}}}}: its placeholders are "
                f"{', '.join(names) or 'none'}."
            )
        if variable_type not in PLACEHOLDER_TYPES:
            raise RegistrationError(
                f"Unknown variable type {variable_type!r} for {name}: use one of "
                f"{', '.join(PLACEHOLDER_TYPES)}."
            )
    return dict(variable_types)


def currency_code_validate(code: str) -> str:
    if code and not CURRENCY_CODE.fullmatch(code):
        raise RegistrationError(f"{code!r} is not an ISO 4217 currency code such as ARS or USD.")
    return code


def _refuse_foreign(asset: str, owner: Organization, organization: Organization) -> None:
    if owner.pk != organization.pk:
        raise RegistrationError(
            f"{asset} belongs to organization {owner.name!r}; it cannot be registered to "
            f"{organization.name!r}."
        )


def business_account_register(
    *,
    organization: Organization,
    waba_id: str,
    name: str,
    access_token: str,
    messaging_limit_tier: str,
) -> WhatsAppBusinessAccount:
    """Create or update the business account `waba_id` of `organization`."""
    if not waba_id.strip():
        raise RegistrationError("The WABA id may not be blank.")
    tier_validate(messaging_limit_tier)
    with transaction.atomic():
        # Locked so that two registrations of one id cannot both pass the ownership check.
        existing = (
            WhatsAppBusinessAccount.objects.select_for_update()
            .select_related("organization")
            .filter(waba_id=waba_id)
            .first()
        )
        if existing is not None:
            _refuse_foreign(f"WABA {waba_id}", existing.organization, organization)
        account, _ = WhatsAppBusinessAccount.objects.update_or_create(
            waba_id=waba_id,
            defaults={
                "organization": organization,
                "name": name,
                "access_token": access_token,
                "messaging_limit_tier": messaging_limit_tier,
            },
        )
    return account


def phone_number_register(
    *,
    business_account: WhatsAppBusinessAccount,
    phone_number_id: str,
    display_phone_number: str,
    verified_name: str,
    quality_rating: str,
    messaging_limit_tier: str,
    throughput_per_second: int,
) -> PhoneNumber:
    """Create or update the number `phone_number_id` under `business_account`.

    A number already registered under another account of the same organization moves to this
    one: that is an operator correcting a mistake, and the organization's data stays its own.
    """
    if not phone_number_id.strip():
        raise RegistrationError("The phone number id may not be blank.")
    if not display_phone_number.strip():
        raise RegistrationError("The display phone number may not be blank.")
    _choice_validate(quality_rating, list(QualityRating.values), "quality rating")
    tier_validate(messaging_limit_tier)
    if not 1 <= throughput_per_second <= MAX_THROUGHPUT:
        raise RegistrationError(
            f"Throughput must be between 1 and {MAX_THROUGHPUT} messages per second, "
            f"not {throughput_per_second}."
        )
    with transaction.atomic():
        existing = (
            PhoneNumber.objects.select_for_update()
            .select_related("business_account__organization")
            .filter(phone_number_id=phone_number_id)
            .first()
        )
        if existing is not None:
            _refuse_foreign(
                f"Phone number {phone_number_id}",
                existing.business_account.organization,
                business_account.organization,
            )
        number, _ = PhoneNumber.objects.update_or_create(
            phone_number_id=phone_number_id,
            defaults={
                "business_account": business_account,
                "display_phone_number": display_phone_number,
                "verified_name": verified_name,
                "quality_rating": quality_rating,
                "messaging_limit_tier": messaging_limit_tier,
                "throughput_per_second": throughput_per_second,
            },
        )
    return number


def template_register(
    *,
    business_account: WhatsAppBusinessAccount,
    name: str,
    language: str,
    category: str,
    status: str,
    components: list[dict[str, Any]],
    variable_types: dict[str, str] | None = None,
    currency_code: str | None = None,
) -> MessageTemplate:
    """Create or update the template (`name`, `language`) of `business_account`.

    Its variables, buttons and parameter format are derived from `components`, so a send is
    checked against exactly what Meta will expect. `variable_types` types its placeholders and
    `currency_code` is the currency of CURRENCY values that name none; left out (None), an
    existing template keeps what an operator set.
    """
    if not name.strip() or not language.strip():
        raise RegistrationError("A template needs a name and a language.")
    _choice_validate(category, list(TemplateCategory.values), "template category")
    _choice_validate(status, list(TemplateStatus.values), "template status")
    derived = MessageTemplate()
    derived.set_components(components_validate(components))
    typing: dict[str, Any] = {}
    if variable_types is not None:
        typing["variable_types"] = variable_types_validate(variable_types, derived.components)
    if currency_code is not None:
        typing["currency_code"] = currency_code_validate(currency_code)
    template, _ = MessageTemplate.objects.update_or_create(
        business_account=business_account,
        name=name,
        language=language,
        defaults={
            "category": category,
            "status": status,
            "components": derived.components,
            "variables": derived.variables,
            "buttons": derived.buttons,
            "parameter_format": derived.parameter_format,
            **typing,
        },
    )
    return template
