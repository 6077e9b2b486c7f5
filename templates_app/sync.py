"""Pulling a business account's templates and phone numbers from the Graph API (or the sandbox).

Meta is the source of truth for what it lists: a listed template or number is created or brought
up to date here. What Meta no longer lists is left alone, not deleted: a template registered by
hand for the sandbox, or one a send still refers to, must not vanish under an operator's sync.

Throughput. Meta reports a number's level, not a rate: `"throughput": {"level": "STANDARD"}`
(80 messages/s) or `"HIGH"` (1,000/s). Our `throughput_per_second` is the pace the drainer keeps,
which an operator may set lower on purpose, so a sync treats the level as a ceiling:
- a new number gets 1,000 when HIGH, else the configured default capped at 80;
- an existing number at exactly 80 goes to 1,000 when Meta reports HIGH (Meta upgraded it);
- an existing number above 80 comes down to 80 when Meta reports STANDARD (faster would earn
  130429 errors);
- any other value, an operator's choice, is kept.

Messaging limit. Since October 2025 Meta sets it per business portfolio, shared by all its
numbers, and answers it on each number as `whatsapp_business_manager_messaging_limit` (Graph API
v24.0 and later): that is the account's tier here, and each number's too. The number's own
`messaging_limit_tier` is deprecated; it is read only when the new field is absent (a pinned
older version), and the portfolio then gets its numbers' highest tier, as Meta set it when limits
moved to portfolios. `TIER_NOT_SET` or a spelling we do not know changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from meta.components import NAMED, POSITIONAL
from meta.graph import graph_list_phone_numbers, graph_list_templates
from meta.limits import HIGH_THROUGHPUT, STANDARD_THROUGHPUT, highest_tier, known_tier
from mindo.meta_client import graph_config
from templates_app.meta_updates import account_tier_update
from templates_app.models import (
    DEFAULT_TIER,
    MessageTemplate,
    PhoneNumber,
    QualityRating,
    WhatsAppBusinessAccount,
    default_throughput,
)
from templates_app.services import RegistrationError, components_validate, phone_number_register

TEMPLATE_FIELDS = (
    "meta_template_id",
    "category",
    "status",
    "components",
    "parameter_format",
    "variables",
    "buttons",
)
NUMBER_FIELDS = (
    "business_account_id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "messaging_limit_tier",
    "throughput_per_second",
)


@dataclass
class SyncResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)  # what Meta listed that we could not take
    portfolio_tier: str | None = None  # the account's messaging limit, when a sync changed it

    def __str__(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"
            + (f", {len(self.skipped)} skipped" if self.skipped else "")
            + (f", portfolio tier now {self.portfolio_tier}" if self.portfolio_tier else "")
        )


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return "" if value is None else str(value)


def sync_templates(account: WhatsAppBusinessAccount) -> SyncResult:
    """Create or update the account's templates from Meta's listing; raises GraphRequestError."""
    listed = graph_list_templates(account, graph_config())
    result = SyncResult()
    existing = {
        (t.name, t.language): t for t in MessageTemplate.objects.filter(business_account=account)
    }
    with transaction.atomic():
        for item in listed:
            name, language = _text(item, "name"), _text(item, "language")
            try:
                if not name or not language:
                    raise RegistrationError("a template without a name or language")
                components = components_validate(item.get("components") or [])
            except RegistrationError as error:
                result.skipped.append(f"template {name or '?'} ({language or '?'}): {error}")
                continue
            template = existing.get((name, language))
            if template is None:
                template = MessageTemplate(business_account=account, name=name, language=language)
            before = [getattr(template, f) for f in TEMPLATE_FIELDS] if template.pk else None
            template.meta_template_id = _text(item, "id") or template.meta_template_id
            template.category = _text(item, "category").upper() or template.category
            template.status = _text(item, "status").upper() or template.status
            template.set_components(components)
            # Meta's own word on the format wins over the guess from the placeholders (a NAMED
            # template without variables looks POSITIONAL).
            if _text(item, "parameter_format").upper() in (NAMED, POSITIONAL):
                template.parameter_format = _text(item, "parameter_format").upper()
            if before is None:
                template.save()
                result.created += 1
            elif before != [getattr(template, f) for f in TEMPLATE_FIELDS]:
                template.save()
                result.updated += 1
            else:
                result.unchanged += 1
    return result


def _throughput(level: str, current: int | None) -> int:
    if current is None:
        if level == "HIGH":
            return HIGH_THROUGHPUT
        return min(default_throughput(), STANDARD_THROUGHPUT)
    if level == "HIGH" and current == STANDARD_THROUGHPUT:
        return HIGH_THROUGHPUT
    if level == "STANDARD" and current > STANDARD_THROUGHPUT:
        return STANDARD_THROUGHPUT
    return current


PORTFOLIO_LIMIT = "whatsapp_business_manager_messaging_limit"
DEPRECATED_NUMBER_TIER = "messaging_limit_tier"


def _number_tier(item: dict[str, Any]) -> str | None:
    """The tier a listed number states: the portfolio's, else (older versions) its own."""
    return known_tier(item.get(PORTFOLIO_LIMIT)) or known_tier(item.get(DEPRECATED_NUMBER_TIER))


def _portfolio_tier(listed: list[dict[str, Any]]) -> str | None:
    """The portfolio's tier from a listing: the new field wherever a number has it, else the
    highest of the numbers' deprecated own tiers."""
    portfolio = highest_tier([_text(item, PORTFOLIO_LIMIT) for item in listed])
    return portfolio or highest_tier([_text(item, DEPRECATED_NUMBER_TIER) for item in listed])


def sync_numbers(account: WhatsAppBusinessAccount) -> SyncResult:
    """Create or update the account's phone numbers, and its portfolio's messaging limit, from
    Meta's listing; raises GraphRequestError. A number registered to another organization is
    skipped, never moved."""
    listed = graph_list_phone_numbers(account, graph_config())
    result = SyncResult()
    tier = _portfolio_tier(listed)
    if tier is not None and account_tier_update(waba_id=account.waba_id, tier=tier):
        account.messaging_limit_tier = result.portfolio_tier = tier
    ids = [_text(item, "id") for item in listed]
    existing = {n.phone_number_id: n for n in PhoneNumber.objects.filter(phone_number_id__in=ids)}
    for item in listed:
        phone_number_id = _text(item, "id")
        number = existing.get(phone_number_id)
        throughput = item.get("throughput")
        level = _text(throughput, "level").upper() if isinstance(throughput, dict) else ""
        quality = _text(item, "quality_rating").upper()
        fields: dict[str, Any] = {
            "display_phone_number": _text(item, "display_phone_number"),
            "verified_name": _text(item, "verified_name"),
            "quality_rating": quality if quality in QualityRating.values else QualityRating.UNKNOWN,
            # TIER_NOT_SET, or a spelling we do not know: keep what we have.
            "messaging_limit_tier": _number_tier(item)
            or (number.messaging_limit_tier if number else DEFAULT_TIER),
            "throughput_per_second": _throughput(
                level, number.throughput_per_second if number else None
            ),
        }
        wanted = [account.pk, *fields.values()]
        if number is not None and wanted == [getattr(number, f) for f in NUMBER_FIELDS]:
            result.unchanged += 1
            continue
        try:
            phone_number_register(
                business_account=account, phone_number_id=phone_number_id, **fields
            )
        except RegistrationError as error:
            result.skipped.append(f"number {phone_number_id or '?'}: {error}")
            continue
        if number is None:
            result.created += 1
        else:
            result.updated += 1
    return result
