"""Changes Meta announces by webhook to templates, numbers and business accounts."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from callbacks.outbox import event_record_number_quality, event_record_template_status
from meta.limits import known_tier
from templates_app.models import (
    MessageTemplate,
    PhoneNumber,
    QualityRating,
    TemplateStatus,
    WhatsAppBusinessAccount,
)

# The quality webhook says only that the rating fell low or recovered; the exact colour comes
# with the next listing of the account's numbers (`GET /{waba_id}/phone_numbers`).
QUALITY_BY_EVENT = {"FLAGGED": QualityRating.RED, "UNFLAGGED": QualityRating.GREEN}


def _digits(text: str) -> str:
    return "".join(character for character in text if character.isdigit())


def template_status_update(
    *, waba_id: str, meta_template_id: str, name: str, language: str, status: str
) -> int:
    """Set the status of the template Meta names; returns how many rows changed. Each template
    that changed gets its `template.status` callback, in the same transaction."""
    meta_event = status
    # REINSTATED ends a pause: the template may be sent again. FLAGGED only warns.
    status = {"REINSTATED": TemplateStatus.APPROVED}.get(status, status)
    if status not in TemplateStatus.values:
        return 0
    matches = MessageTemplate.objects.filter(business_account__waba_id=waba_id).filter(
        Q(meta_template_id=meta_template_id) | Q(name=name, language=language)
        if meta_template_id
        else Q(name=name, language=language)
    )
    with transaction.atomic(savepoint=False):
        changing = list(matches.exclude(status=status).values_list("pk", flat=True))
        changed = MessageTemplate.objects.filter(pk__in=changing).update(status=status)
        event_record_template_status(changing, meta_event=meta_event)
    return changed


def phone_number_quality_update(
    *,
    waba_id: str,
    display_phone_number: str,
    event: str,
    current_limit: str | None,
    portfolio_tier: str | None,
) -> int:
    """Apply a number's quality or limit change; the portfolio limit goes to its account."""
    changes: dict[str, str] = {}
    if event in QUALITY_BY_EVENT:
        changes["quality_rating"] = QUALITY_BY_EVENT[event]
    if (tier := known_tier(current_limit)) is not None:
        changes["messaging_limit_tier"] = tier
    changed = 0
    if changes:
        digits = _digits(display_phone_number)
        numbers = PhoneNumber.objects.filter(business_account__waba_id=waba_id)
        ids = [n.pk for n in numbers if _digits(n.display_phone_number) == digits]
        with transaction.atomic(savepoint=False):
            changed += PhoneNumber.objects.filter(pk__in=ids).update(**changes)
            event_record_number_quality(ids, meta_event=event)
    if portfolio_tier is not None:
        changed += account_tier_update(waba_id=waba_id, tier=portfolio_tier)
    return changed


def account_tier_update(*, waba_id: str, tier: str) -> int:
    accounts = WhatsAppBusinessAccount.objects.filter(waba_id=waba_id)
    return accounts.exclude(messaging_limit_tier=tier).update(messaging_limit_tier=tier)


def business_capability_update(
    *, waba_id: str, per_phone_tier: str | None, portfolio_tier: str | None
) -> int:
    changed = 0
    if per_phone_tier is not None:
        numbers = PhoneNumber.objects.filter(business_account__waba_id=waba_id)
        changed += numbers.exclude(messaging_limit_tier=per_phone_tier).update(
            messaging_limit_tier=per_phone_tier
        )
    if portfolio_tier is not None:
        changed += account_tier_update(waba_id=waba_id, tier=portfolio_tier)
    return changed
