"""Meta's rules for who may get a MARKETING template, applied before anything is asked of Meta.

Three holds, checked per claimed batch with one query (messaging.suppression.marketing_holds):
- `opted_out`: the recipient is on the organization's suppression list (they stopped marketing
  messages, told Meta or the business): the message fails with that code, not sent;
- `us_marketing_block`: since 2025-04-01 Meta delivers no marketing template to a United States
  number (+1 and a US area code; Canada and the other +1 countries still get them, as
  `phonenumbers` tells them apart): the message fails with that code, not sent;
- `cooling_down`: Meta's per-user marketing limit (131049) put the recipient on a cooldown
  (messaging.cooldown): the message waits, untried, until it ends.
UTILITY and AUTHENTICATION templates are not held. The failures count as any other (through the
lifecycle's settle); the dry run of a send will name the same verdicts (`recipient_verdicts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum

import phonenumbers
from django.db.models.functions import Coalesce

from bulksend.lifecycle import batch_settle
from bulksend.models import BulkSend
from messaging.delivery import ClaimedMessage, DeliveryResult, Settle
from messaging.models import MarketingCooldown, Message, MessagePhase, MessageStatus
from messaging.suppression import marketing_holds
from mindo.models import Organization
from templates_app.models import MessageTemplate, TemplateCategory


class Verdict(StrEnum):
    OPTED_OUT = "opted_out"
    US_MARKETING_BLOCK = "us_marketing_block"
    COOLING_DOWN = "cooling_down"


# The failed message's `error_message`, beside its code (the verdict's value).
FAILURE_TEXT = {
    Verdict.OPTED_OUT: (
        "Not sent: the recipient stopped marketing messages (on the organization's suppression "
        "list); MARKETING templates do not go to them."
    ),
    Verdict.US_MARKETING_BLOCK: (
        "Not sent: Meta delivers no MARKETING template to United States numbers (+1 with a US "
        "area code) since 2025-04-01."
    ),
}


def is_us_number(phone: str) -> bool:
    """Whether an E.164 phone is a United States number (not Canada or another +1 country), or
    a business-scoped user id of a US user (Meta writes the user's country first: `US.`)."""
    if phone.startswith(US_USER_ID_PREFIX):
        return True
    if not phone.startswith("+1"):
        return False
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(phone)) == "US"
    except phonenumbers.NumberParseException:
        return False


# Meta's user ids start with the user's ISO 3166 country, and a parent id with it too.
US_USER_ID_PREFIX = "US."


def verdicts_of(
    phones: Sequence[str],
    *,
    marketing: bool,
    suppressed: set[str],
    cooling: Mapping[str, datetime],
) -> dict[int, Verdict]:
    """The verdict of each held phone (or user id), by index: pure, given what the holds are. A
    phone both listed and cooling is `opted_out`: it would never go, whatever the wait."""
    if not marketing:
        return {}
    verdicts: dict[int, Verdict] = {}
    for index, phone in enumerate(phones):
        if phone in suppressed:
            verdicts[index] = Verdict.OPTED_OUT
        elif is_us_number(phone):
            verdicts[index] = Verdict.US_MARKETING_BLOCK
        elif phone in cooling:
            verdicts[index] = Verdict.COOLING_DOWN
    return verdicts


def is_marketing(template: MessageTemplate) -> bool:
    return template.category == TemplateCategory.MARKETING


def recipient_verdicts(
    *,
    organization: Organization,
    template: MessageTemplate,
    phones: Sequence[str],
    now: datetime,
) -> dict[int, Verdict]:
    """For a dry run: which of `phones` (E.164) a send of `template` would not send now, and
    why, by index. Reads only; one query for a marketing template, none otherwise."""
    if not is_marketing(template):
        return {}
    holds = marketing_holds(
        organization_id=organization.pk,
        business_account_id=template.business_account_id,
        phones=list(phones),
        now=now,
    )
    return verdicts_of(phones, marketing=True, suppressed=holds.suppressed, cooling=holds.cooling)


class RecipientScreen:
    """The drain's check of a claimed batch against the holds above."""

    def __init__(self, bulk_send: BulkSend) -> None:
        self.marketing = is_marketing(bulk_send.template)
        self.organization_id = bulk_send.organization_id
        self.business_account_id = bulk_send.template.business_account_id

    def screen(self, claimed: list[ClaimedMessage], now: datetime) -> list[ClaimedMessage]:
        """The messages that may go; the held ones are settled at once: failed (opted out, US
        block) or back to pending until their cooldown ends. Call it in the claim's
        transaction."""
        if not self.marketing or not claimed:
            return claimed
        phones = [message.recipient for message in claimed]
        holds = marketing_holds(
            organization_id=self.organization_id,
            business_account_id=self.business_account_id,
            phones=phones,
            now=now,
        )
        verdicts = verdicts_of(
            phones, marketing=True, suppressed=holds.suppressed, cooling=holds.cooling
        )
        if not verdicts:
            return claimed
        held: list[DeliveryResult] = []
        for index, verdict in verdicts.items():
            message = claimed[index]
            if verdict == Verdict.COOLING_DOWN:
                until = holds.cooling[message.recipient]
                held.append(DeliveryResult(message.id, Settle.RELEASE, retry_at=until))
            else:
                held.append(
                    DeliveryResult(
                        message.id,
                        Settle.FAILED,
                        error_code=verdict.value,
                        error_message=FAILURE_TEXT[verdict],
                    )
                )
        batch_settle(held, now=now)
        return [message for index, message in enumerate(claimed) if index not in verdicts]


def send_recipients_cooling_down(bulk_send: BulkSend, *, now: datetime) -> int:
    """How many of a marketing send's pending recipients Meta's per-user limit holds now."""
    if not is_marketing(bulk_send.template):
        return 0
    return (
        MarketingCooldown.objects.filter(
            business_account_id=bulk_send.template.business_account_id, until__gt=now
        )
        .filter(
            phone__in=Message.objects.filter(
                bulk_send_id=bulk_send.pk, phase=MessagePhase.OPEN, status=MessageStatus.PENDING
            )
            .annotate(recipient_key=Coalesce("recipient_phone", "recipient_user_id"))
            .values("recipient_key")
        )
        .count()
    )
