"""Meta's events about a business's assets, in their 2026 shapes, and the pricing of a status.

Read from Meta's webhooks reference (WhatsApp Business Account fields):
- `message_template_status_update`: `event` (APPROVED, PAUSED, DISABLED, REINSTATED, ...),
  `reason`, and for a pause `other_info.{title,description}` (FIRST_PAUSE, SECOND_PAUSE, ...);
- `message_template_quality_update`: `previous_quality_score`, `new_quality_score` (GREEN,
  YELLOW, RED, UNKNOWN) and the template's id, name and language;
- `phone_number_quality_update`: `event` FLAGGED / UNFLAGGED (quality), UPGRADE / DOWNGRADE /
  ONBOARDING (limits), THROUGHPUT_UPGRADE (the number now sends up to 1,000 messages/s; its
  `current_limit` then says TIER_UNLIMITED, a throughput level, not a daily limit);
- `business_capability_update`: `max_daily_conversations_per_business` (250, 2000, 10000,
  100000, or -1 for unlimited); `max_daily_conversation_per_phone` is gone since February 2026;
- `account_update`: `event` with `violation_info`, `ban_info`, `restriction_info`;
- `account_alerts`: `entity_type`, `entity_id`, `alert_info.{alert_severity, alert_status,
  alert_type, alert_description}`;
- a status's `pricing`: `billable` (deprecated, still sent), `pricing_model` (PMP since July
  2025), `category` (marketing, utility, authentication, authentication_international,
  service, marketing_lite, referral_conversion) and `type` (regular, free_customer_service,
  free_entry_point).
Nothing here is an error: a part we cannot read is left empty, as elsewhere in the payload.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

# Template events after which Meta refuses the template (132015, 132016): its sends must wait.
TEMPLATE_HALTING_EVENTS = ("PAUSED", "DISABLED")
# The number event that means its quality fell low (Meta names no colour in the webhook).
NUMBER_FLAGGED = "FLAGGED"
THROUGHPUT_UPGRADE = "THROUGHPUT_UPGRADE"
# `max_daily_conversations_per_business` of an unlimited portfolio.
UNLIMITED_COUNT = -1

# account_update events after which the account can no longer send templates.
ACCOUNT_HALTING_EVENTS = frozenset(
    {"ACCOUNT_RESTRICTION", "ACCOUNT_VIOLATION", "ACCOUNT_DELETED", "ACCOUNT_OFFBOARDED"}
)
# A DISABLED_UPDATE's `ban_info.waba_ban_state`: DISABLE stops the account, REINSTATE lifts it,
# SCHEDULE_FOR_DISABLE only warns.
BAN_DISABLE = "DISABLE"
BAN_REINSTATE = "REINSTATE"
# Restrictions that do not stop business-initiated (template) messages: a restriction event
# listing only these leaves the sends running.
HARMLESS_RESTRICTIONS = frozenset(
    {"RESTRICTED_ADD_PHONE_NUMBER_ACTION", "RESTRICTED_CUSTOMER_INITIATED_MESSAGING"}
)
ACCOUNT_LIFTING_EVENTS = frozenset({"ACCOUNT_RECONNECTED"})

SHORT_TEXT = 64
LONG_TEXT = 2_000


def text(value: Any, limit: int = LONG_TEXT) -> str:
    """Text fit for the database (no NUL), cut to `limit`; "" for what is not text or a number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return str(value).replace("\x00", "")[:limit]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def fingerprint(field: str, waba_id: str, entry_time: int | None, value: dict[str, Any]) -> str:
    """The same event Meta posts again (a retry, an operator's replay) has the same fingerprint;
    a new one has another `time`."""
    document = orjson.dumps([field, waba_id, entry_time, value], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(document).hexdigest()


def moment(entry_time: int | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(entry_time, tz=UTC) if entry_time is not None else None
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Pricing:
    """A status's `pricing`, as Meta bills the message."""

    billable: bool | None
    model: str | None
    category: str | None
    type: str | None


def pricing_read(value: Any) -> Pricing | None:
    if not isinstance(value, dict):
        return None
    billable = value.get("billable")
    pricing = Pricing(
        billable=billable if isinstance(billable, bool) else None,
        model=text(value.get("pricing_model"), SHORT_TEXT) or None,
        category=text(value.get("category"), SHORT_TEXT) or None,
        type=text(value.get("type"), SHORT_TEXT) or None,
    )
    return None if pricing == Pricing(None, None, None, None) else pricing


def pricing_document(pricing: Pricing | None) -> dict[str, Any] | None:
    """`pricing` in Meta's own shape, which `pricing_read` reads back."""
    if pricing is None:
        return None
    return {
        "billable": pricing.billable,
        "pricing_model": pricing.model,
        "category": pricing.category,
        "type": pricing.type,
    }


def template_pause_reason(value: dict[str, Any]) -> str:
    """Meta's words for why a template changed: `reason` ("NONE" says nothing), and for a pause
    the title and description of `other_info`."""
    other = _dict(value.get("other_info"))
    parts = [
        part
        for part in (
            text(value.get("reason"), 200),
            text(other.get("title"), 200),
            text(other.get("description"), 1_000),
        )
        if part and part != "NONE"
    ]
    return ": ".join(parts)


@dataclass(frozen=True, slots=True)
class TemplateQualityChange:
    waba_id: str
    meta_template_id: str
    name: str
    language: str
    score: str
    previous_score: str


def template_quality_read(waba_id: str, value: dict[str, Any]) -> TemplateQualityChange:
    return TemplateQualityChange(
        waba_id=waba_id,
        meta_template_id=text(value.get("message_template_id"), SHORT_TEXT),
        name=text(value.get("message_template_name"), 512),
        language=text(value.get("message_template_language"), 16),
        score=text(value.get("new_quality_score"), 16),
        previous_score=text(value.get("previous_quality_score"), 16),
    )


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """One `account_update`: what happened to the account, and the value as Meta sent it."""

    waba_id: str
    event: str
    violation_type: str
    ban_state: str
    restrictions: tuple[str, ...]
    details: dict[str, Any]
    occurred_at: datetime | None
    fingerprint: str

    @property
    def restriction(self) -> str | None:
        """Why the account can no longer send templates after this event, None if it still can."""
        if self.event == "DISABLED_UPDATE":
            return "account disabled by Meta" if self.ban_state == BAN_DISABLE else None
        if self.event not in ACCOUNT_HALTING_EVENTS:
            return None
        if self.event == "ACCOUNT_RESTRICTION" and self.restrictions:
            if set(self.restrictions) <= HARMLESS_RESTRICTIONS:
                return None
            return f"account restricted by Meta ({', '.join(self.restrictions)})"
        if self.event == "ACCOUNT_VIOLATION" and self.violation_type:
            return f"account violation reported by Meta ({self.violation_type})"
        return f"account_update {self.event}"

    @property
    def lifts_restriction(self) -> bool:
        if self.event == "DISABLED_UPDATE":
            return self.ban_state == BAN_REINSTATE
        return self.event in ACCOUNT_LIFTING_EVENTS

    @property
    def summary(self) -> str:
        return ", ".join(
            part
            for part in (self.violation_type, self.ban_state, *self.restrictions)
            if part  # the event itself is kept in its own column
        )


def account_update_read(
    waba_id: str, value: dict[str, Any], entry_time: int | None = None
) -> AccountUpdate:
    restrictions = value.get("restriction_info")
    if isinstance(restrictions, dict):  # one restriction, as some payloads write it
        restrictions = [restrictions]
    kinds = tuple(
        kind
        for item in (restrictions if isinstance(restrictions, list) else [])
        if (kind := text(_dict(item).get("restriction_type"), SHORT_TEXT))
    )
    return AccountUpdate(
        waba_id=waba_id,
        event=text(value.get("event"), SHORT_TEXT),
        violation_type=text(_dict(value.get("violation_info")).get("violation_type"), SHORT_TEXT),
        ban_state=text(_dict(value.get("ban_info")).get("waba_ban_state"), SHORT_TEXT),
        restrictions=kinds,
        details=json_clean(value),
        occurred_at=moment(entry_time),
        fingerprint=fingerprint("account_update", waba_id, entry_time, value),
    )


@dataclass(frozen=True, slots=True)
class AccountAlert:
    waba_id: str
    entity_type: str
    entity_id: str
    severity: str
    status: str
    alert_type: str
    description: str
    details: dict[str, Any]
    occurred_at: datetime | None
    fingerprint: str


def account_alert_read(
    waba_id: str, value: dict[str, Any], entry_time: int | None = None
) -> AccountAlert:
    info = _dict(value.get("alert_info"))
    return AccountAlert(
        waba_id=waba_id,
        entity_type=text(value.get("entity_type"), SHORT_TEXT),
        entity_id=text(value.get("entity_id"), SHORT_TEXT),
        severity=text(info.get("alert_severity"), SHORT_TEXT),
        status=text(info.get("alert_status"), SHORT_TEXT),
        alert_type=text(info.get("alert_type"), SHORT_TEXT),
        description=text(info.get("alert_description")),
        details=json_clean(value),
        occurred_at=moment(entry_time),
        fingerprint=fingerprint("account_alerts", waba_id, entry_time, value),
    )


def json_clean(value: Any) -> Any:
    """`value` with NUL taken out of every string: PostgreSQL's jsonb holds no \\u0000."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [json_clean(item) for item in value]
    if isinstance(value, dict):
        return {json_clean(key): json_clean(item) for key, item in value.items()}
    return value
