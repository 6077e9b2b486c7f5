"""Applying what Meta says of a business's templates, numbers and accounts, and halting the sends
those changes stop.

Runs in the transaction that applies the webhook body, so a template's new status and the halt
of its sends commit together (or are applied again, idempotently, with the body).

- `message_template_status_update` PAUSED / DISABLED: the template's status, and every active
  send of it halted with Meta's reason; APPROVED / REINSTATED makes it sendable, and the operator
  resumes the halted sends.
- `message_template_quality_update`: the template's quality score and when it came.
- `phone_number_quality_update`: FLAGGED turns the number RED and halts its active sends;
  THROUGHPUT_UPGRADE raises its rate to 1,000 messages/s; a portfolio limit sets the account's tier.
- `business_capability_update`: the portfolio's tier.
- `account_update`: kept; one that restricts the account halts the sends of all its numbers, one
  that lifts the restriction lets the operator resume them. `account_alerts`: kept.
"""

from __future__ import annotations

from django.utils import timezone

from bulksend.lifecycle import (
    sends_halt_for_account,
    sends_halt_for_numbers,
    sends_halt_for_templates,
)
from meta.account_events import NUMBER_FLAGGED, TEMPLATE_HALTING_EVENTS
from meta.webhook_payload import NumberQualityChange, Payload, TemplateStatusChange
from templates_app import meta_updates
from templates_app.models import PhoneNumber, WhatsAppBusinessAccount


def _template_change(change: TemplateStatusChange) -> tuple[int, int]:
    """(templates changed, sends halted)."""
    changed = meta_updates.template_status_update(change)
    if change.status not in TEMPLATE_HALTING_EVENTS:
        return changed, 0
    templates = list(meta_updates.templates_named(change))
    halted = sends_halt_for_templates(templates, status=change.status, meta_reason=change.reason)
    return changed, halted


def _number_change(change: NumberQualityChange) -> tuple[int, int]:
    """(numbers or accounts changed, sends halted)."""
    changed = meta_updates.phone_number_quality_update(
        waba_id=change.waba_id,
        display_phone_number=change.display_phone_number,
        event=change.event,
        current_limit=change.current_limit,
        portfolio_tier=change.portfolio_tier,
    )
    if change.event != NUMBER_FLAGGED:
        return changed, 0
    ids = meta_updates.numbers_named(
        waba_id=change.waba_id, display_phone_number=change.display_phone_number
    )
    numbers = list(PhoneNumber.objects.filter(pk__in=ids))
    return changed, sends_halt_for_numbers(numbers, event=change.event)


def _account_changes(payload: Payload) -> tuple[int, int]:
    """(account events kept, sends halted)."""
    now = timezone.now()
    kept = halted = 0
    for update in payload.account_updates:
        account = WhatsAppBusinessAccount.objects.filter(waba_id=update.waba_id).first()
        if account is None or meta_updates.account_event_known(account, update.fingerprint):
            continue  # no account of ours, or applied already: nothing to keep or halt
        restriction = update.restriction
        stopped = (
            sends_halt_for_account(account, restriction=restriction)
            if restriction is not None
            else 0
        )
        meta_updates.account_update_record(account, update, sends_halted=stopped, now=now)
        kept += 1
        halted += stopped
    for alert in payload.account_alerts:
        kept += meta_updates.account_alert_record(alert) is not None
    return kept, halted


def asset_changes_apply(payload: Payload) -> dict[str, int]:
    """Apply the payload's changes to templates, numbers and accounts; returns what changed, for
    the body's outcome."""
    now = timezone.now()
    templates = halted = 0
    for template_change in payload.templates:
        changed, stopped = _template_change(template_change)
        templates += changed
        halted += stopped
    templates += sum(
        meta_updates.template_quality_update(quality, now=now)
        for quality in payload.template_qualities
    )
    numbers = 0
    for number_change in payload.numbers:
        changed, stopped = _number_change(number_change)
        numbers += changed
        halted += stopped
    numbers += sum(
        meta_updates.business_capability_update(
            waba_id=capability.waba_id, portfolio_tier=capability.portfolio_tier
        )
        for capability in payload.capabilities
    )
    account_events, stopped = _account_changes(payload)
    outcome = {"templates_changed": templates, "numbers_or_accounts_changed": numbers}
    if account_events:
        outcome["account_events"] = account_events
    if halted + stopped:
        outcome["sends_halted"] = halted + stopped
    return outcome
