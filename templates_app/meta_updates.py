"""Changes Meta announces by webhook to templates, numbers and business accounts.

These change Meta's assets only; what the changes mean for the sends that use them (halting
them) is decided by the webhook applier through bulksend.lifecycle.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from callbacks.outbox import event_record_number_quality, event_record_template_status
from meta.account_events import (
    THROUGHPUT_UPGRADE,
    AccountAlert,
    AccountUpdate,
    TemplateQualityChange,
)
from meta.limits import HIGH_THROUGHPUT, known_tier
from meta.webhook_payload import TemplateStatusChange
from templates_app.models import (
    AccountEvent,
    AccountEventField,
    MessageTemplate,
    PhoneNumber,
    QualityRating,
    TemplateStatus,
    WhatsAppBusinessAccount,
)

# The quality webhook says only that the rating fell low or recovered; the exact colour comes
# with the next listing of the account's numbers (`GET /{waba_id}/phone_numbers`).
QUALITY_BY_EVENT = {"FLAGGED": QualityRating.RED, "UNFLAGGED": QualityRating.GREEN}
TEMPLATE_QUALITY_SCORES = frozenset(QualityRating.values)


def _digits(text: str) -> str:
    return "".join(character for character in text if character.isdigit())


def templates_named(
    change: TemplateStatusChange | TemplateQualityChange,
) -> QuerySet[MessageTemplate]:
    """The account's template Meta names: by its id, or by name and language."""
    by_name = Q(name=change.name, language=change.language)
    return MessageTemplate.objects.filter(business_account__waba_id=change.waba_id).filter(
        Q(meta_template_id=change.meta_template_id) | by_name
        if change.meta_template_id
        else by_name
    )


def template_status_update(change: TemplateStatusChange) -> int:
    """Set the status of the template Meta names; returns how many rows changed. Each template
    that changed gets its `template.status` callback, in the same transaction."""
    # REINSTATED ends a pause: the template may be sent again. FLAGGED only warns.
    status = {"REINSTATED": TemplateStatus.APPROVED}.get(change.status, change.status)
    if status not in TemplateStatus.values:
        return 0
    with transaction.atomic(savepoint=False):
        changing = list(templates_named(change).exclude(status=status).values_list("pk", flat=True))
        changed = MessageTemplate.objects.filter(pk__in=changing).update(status=status)
        event_record_template_status(changing, meta_event=change.status)
    return changed


def template_quality_update(change: TemplateQualityChange, *, now: datetime) -> int:
    """Keep the template's quality score and when Meta gave it; returns how many rows changed."""
    if change.score not in TEMPLATE_QUALITY_SCORES:
        return 0
    return templates_named(change).update(quality_score=change.score, quality_updated_at=now)


def numbers_named(*, waba_id: str, display_phone_number: str) -> list[int]:
    """The ids of the account's numbers Meta names by their digits."""
    digits = _digits(display_phone_number)
    if not digits:
        return []
    numbers = PhoneNumber.objects.filter(business_account__waba_id=waba_id)
    return [
        n.pk
        for n in numbers.only("display_phone_number")
        if _digits(n.display_phone_number) == digits
    ]


def phone_number_quality_update(
    *,
    waba_id: str,
    display_phone_number: str,
    event: str,
    current_limit: str | None,
    portfolio_tier: str | None,
    now: datetime | None = None,
) -> int:
    """Apply a number's quality, throughput or limit change; the portfolio limit goes to its
    account. Returns how many rows changed."""
    changes: dict[str, object] = {}
    if event in QUALITY_BY_EVENT:
        changes["quality_rating"] = QUALITY_BY_EVENT[event]
        changes["quality_updated_at"] = now or timezone.now()
    if event == THROUGHPUT_UPGRADE:
        # Its `current_limit` (TIER_UNLIMITED) is the throughput level, not a daily limit.
        changes["throughput_per_second"] = HIGH_THROUGHPUT
    elif (tier := known_tier(current_limit)) is not None:
        changes["messaging_limit_tier"] = tier
    changed = 0
    if changes:
        ids = numbers_named(waba_id=waba_id, display_phone_number=display_phone_number)
        with transaction.atomic(savepoint=False):
            changed += PhoneNumber.objects.filter(pk__in=ids).update(**changes)
            event_record_number_quality(ids, meta_event=event)
    if portfolio_tier is not None:
        changed += account_tier_update(waba_id=waba_id, tier=portfolio_tier)
    return changed


def account_tier_update(*, waba_id: str, tier: str) -> int:
    accounts = WhatsAppBusinessAccount.objects.filter(waba_id=waba_id)
    return accounts.exclude(messaging_limit_tier=tier).update(messaging_limit_tier=tier)


def business_capability_update(*, waba_id: str, portfolio_tier: str | None) -> int:
    """The portfolio's messaging limit; Meta sets no per-number limit since February 2026."""
    if portfolio_tier is None:
        return 0
    return account_tier_update(waba_id=waba_id, tier=portfolio_tier)


def account_event_known(account: WhatsAppBusinessAccount, fingerprint: str) -> bool:
    """Whether this very event was kept already: applying it again must change nothing (not
    restrict again an account an operator has since released)."""
    return AccountEvent.objects.filter(business_account=account, fingerprint=fingerprint).exists()


def account_update_record(
    account: WhatsAppBusinessAccount, update: AccountUpdate, *, sends_halted: int, now: datetime
) -> AccountEvent:
    """Keep an `account_update` for the account's operators and set or lift its restriction."""
    restriction = update.restriction
    lifted = False
    if restriction is not None:
        WhatsAppBusinessAccount.objects.filter(pk=account.pk).update(
            restriction=restriction, restricted_at=now
        )
    elif update.lifts_restriction:
        lifted = bool(account_restriction_lift(account_id=account.pk))
    return AccountEvent.objects.create(
        business_account=account,
        field=AccountEventField.ACCOUNT_UPDATE,
        event=update.event,
        summary=update.summary,
        sends_halted=sends_halted,
        lifted=lifted,
        details=update.details,
        occurred_at=update.occurred_at,
        fingerprint=update.fingerprint,
    )


def account_alert_record(alert: AccountAlert) -> AccountEvent | None:
    """Keep an `account_alerts` for the account's operators; None when no account here has
    that WABA id, or the alert was kept already."""
    account = WhatsAppBusinessAccount.objects.filter(waba_id=alert.waba_id).first()
    if account is None or account_event_known(account, alert.fingerprint):
        return None
    entity = f"{alert.entity_type} {alert.entity_id}".strip()
    return AccountEvent.objects.create(
        business_account=account,
        field=AccountEventField.ACCOUNT_ALERTS,
        event=alert.alert_type,
        severity=alert.severity,
        summary=" · ".join(part for part in (alert.status, entity, alert.description) if part),
        details=alert.details,
        occurred_at=alert.occurred_at,
        fingerprint=alert.fingerprint,
    )


def account_restriction_lift(*, account_id: int) -> int:
    """The account may send again (Meta lifted the restriction, or an operator says so): its
    halted sends can be resumed. Returns 1 when it was restricted."""
    return (
        WhatsAppBusinessAccount.objects.filter(pk=account_id)
        .exclude(restriction="")
        .update(restriction="", restricted_at=None)
    )
