"""The organization's suppression list: phones that get no MARKETING template.

An entry is a phone (E.164) or, when Meta named the user only so, a business-scoped user id
(meta.user_ids): the list holds whatever identifies the recipient a message is addressed to,
and the drain's holds compare a message's recipient (phone or user id) with it.

Filled by Meta (its 131050 answer to a marketing message, its `user_preferences` webhook when a
user stops marketing), by clients (`/api/v1/suppressions/`) and by operators (admin); a
`user_preferences` "resume" takes the phone off again. The drain reads it per claimed batch
(one query) and fails a marketing message to a listed phone without asking Meta.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from messaging.counters import STATUS_SQL
from messaging.models import MarketingCooldown, Suppression, SuppressionSource, recipient_sql
from messaging.status import table_names
from meta.error_codes import USER_STOPPED_MARKETING
from meta.user_ids import is_user_id
from meta.webhook_payload import MarketingPreference
from mindo.json_arrays import json_array, json_array_sql
from mindo.models import Organization
from mindo.phones import phone_normalize
from templates_app.models import PhoneNumber


def listed_recipient(value: str) -> str | None:
    """How the list writes `value`: a phone in E.164 (from any spelling `phone_normalize`
    reads), or a business-scoped user id exactly as Meta writes it; None for anything else."""
    return value if is_user_id(value) else phone_normalize(value)


META_OPT_OUT_REASON = "Meta answered 131050: the user stopped marketing messages."

# The organization of each failed message's send, and its phone, in one statement.
_FROM_FAILED_SQL = """
INSERT INTO {suppressions} (organization_id, phone, source, reason, created_at)
SELECT DISTINCT b.organization_id, {recipient}, %(source)s, %(reason)s, %(now)s
  FROM {messages} m JOIN {sends} b ON b.id = m.bulk_send_id
 WHERE m.id = ANY(%(ids)s::bigint[])
ON CONFLICT (organization_id, phone) DO NOTHING
"""


def suppressions_from_failed(message_ids: list[int], *, now: datetime) -> None:
    """Put the recipients of messages Meta refused with 131050 on their organization's list."""
    if not message_ids:
        return
    sql = _FROM_FAILED_SQL.format(
        **table_names(), suppressions=Suppression._meta.db_table, recipient=recipient_sql("m")
    )
    params: dict[str, Any] = {
        "ids": message_ids,
        "source": SuppressionSource.META_131050,
        "reason": META_OPT_OUT_REASON,
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def suppressed_phones(*, organization_id: int, phones: Iterable[str]) -> set[str]:
    """The phones among `phones` on the organization's list: one query."""
    return set(
        Suppression.objects.filter(
            organization_id=organization_id, phone__in=list(phones)
        ).values_list("phone", flat=True)
    )


def suppression_add(
    *, organization: Organization | int, phone: str, source: str, reason: str = ""
) -> tuple[Suppression, bool]:
    """Add `phone` (E.164) to the list; an entry already there is kept as it is. Returns the
    entry and whether it is new."""
    organization_id = organization if isinstance(organization, int) else organization.pk
    with transaction.atomic():
        return Suppression.objects.get_or_create(
            organization_id=organization_id,
            phone=phone,
            defaults={"source": source, "reason": reason[:500]},
        )


def suppression_remove(*, organization: Organization | int, phone: str) -> bool:
    """Take `phone` off the list; False when it was not on it."""
    organization_id = organization if isinstance(organization, int) else organization.pk
    deleted, _ = Suppression.objects.filter(organization_id=organization_id, phone=phone).delete()
    return bool(deleted)


# Both look-ups of a claimed batch in one round trip, each by its unique index.
# The phones go as one JSON text (mindo.json_arrays): a drain's batch has hundreds. The
# `::text[]` cast adds no type: it makes PostgreSQL read `ANY((SELECT ...))` as one array to
# search rather than as a subquery of rows to compare with (the statement fails without it).
_HOLDS_SQL = f"""
WITH asked AS (SELECT {json_array_sql("%(phones)s", "text")} AS phones)
SELECT phone, NULL::timestamptz FROM {{suppressions}}
 WHERE organization_id = %(organization)s AND phone = ANY((SELECT phones FROM asked)::text[])
UNION ALL
SELECT phone, until FROM {{cooldowns}}
 WHERE business_account_id = %(account)s AND phone = ANY((SELECT phones FROM asked)::text[])
   AND until > %(now)s
"""


@dataclass(frozen=True, slots=True)
class MarketingHolds:
    """Why some recipients get no marketing now: listed, or cooling down until when."""

    suppressed: set[str]
    cooling: dict[str, datetime]


def marketing_holds(
    *, organization_id: int, business_account_id: int, phones: list[str], now: datetime
) -> MarketingHolds:
    """The phones among `phones` that are suppressed or cooling down at `now`: one query."""
    holds = MarketingHolds(set(), {})
    if not phones:
        return holds
    sql = _HOLDS_SQL.format(
        suppressions=Suppression._meta.db_table, cooldowns=MarketingCooldown._meta.db_table
    )
    params: dict[str, Any] = {
        "organization": organization_id,
        "account": business_account_id,
        "phones": json_array(phones),
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for phone, until in cursor.fetchall():
            if until is None:
                holds.suppressed.add(phone)
            else:
                holds.cooling[phone] = until
    return holds


# Meta may also say 131050 in a `failed` status webhook, for a message it had accepted.
_FROM_FAILED_STATUSES_SQL = """
INSERT INTO {suppressions} (organization_id, phone, source, reason, created_at)
SELECT DISTINCT b.organization_id, {recipient}, %(source)s, %(reason)s, %(now)s
  FROM {messages} m JOIN {sends} b ON b.id = m.bulk_send_id
 WHERE m.wamid = ANY(%(wamids)s::text[]) AND m.status = {FAILED} AND m.error_code = %(code)s
ON CONFLICT (organization_id, phone) DO NOTHING
"""


def suppressions_from_failed_statuses(wamids: list[str], *, now: datetime) -> None:
    """Put on their organization's list the recipients of messages a status webhook failed with
    131050 (call it once the statuses are applied)."""
    if not wamids:
        return
    sql = _FROM_FAILED_STATUSES_SQL.format(
        **table_names(),
        **STATUS_SQL,
        suppressions=Suppression._meta.db_table,
        recipient=recipient_sql("m"),
    )
    params: dict[str, Any] = {
        "wamids": wamids,
        "source": SuppressionSource.META_131050,
        "reason": META_OPT_OUT_REASON,
        "now": now,
        "code": USER_STOPPED_MARKETING,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# Sources a user's "resume" takes off the list: Meta's own. An entry a client or an operator
# made stays: they may know of a wish Meta does not.
RESUMABLE_SOURCES = (SuppressionSource.META_131050, SuppressionSource.USER_PREFERENCES)


def marketing_preferences_apply(preferences: list[MarketingPreference]) -> int:
    """Meta's `user_preferences`: a user who stopped marketing goes on the list of the
    organization owning the number they told; one who resumed comes off it (if Meta put them
    there). A number nobody registered changes nothing. Returns how many entries changed."""
    numbers = {p.phone_number_id for p in preferences if p.phone_number_id}
    owners = dict(
        PhoneNumber.objects.filter(phone_number_id__in=numbers).values_list(
            "phone_number_id", "business_account__organization_id"
        )
    )
    changed = 0
    for preference in preferences:
        organization_id = owners.get(preference.phone_number_id)
        if organization_id is None:
            continue
        # The phone and the user id both, when Meta names both: a message may go to either.
        recipients = [f"+{preference.wa_id}"] if preference.wa_id else []
        if preference.user_id:
            recipients.append(preference.user_id)
        for recipient in recipients:
            if preference.stopped:
                _, created = suppression_add(
                    organization=organization_id,
                    phone=recipient,
                    source=SuppressionSource.USER_PREFERENCES,
                    reason=preference.detail,
                )
                changed += created
            else:
                deleted, _ = Suppression.objects.filter(
                    organization_id=organization_id, phone=recipient, source__in=RESUMABLE_SOURCES
                ).delete()
                changed += deleted
    return changed
