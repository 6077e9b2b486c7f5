"""Reading Meta's webhook payload into plain events.

`{"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [{"field": ...,
"value": {...}}]}]}`. Whatever we do not handle (other objects, fields, statuses, malformed parts
of a signed body) is skipped, never an error: Meta would only retry it forever.

The events speak Meta's words: a status carries the `biz_opaque_callback_data` it echoes, which
only its sender can read back into a message.

Since April 2026 Meta names users by their business-scoped user id (meta.user_ids) beside their
phone, or instead of it for a user who adopted a username: `contacts[].user_id` beside
`contacts[].wa_id`, `messages[].from_user_id` beside `messages[].from`, `statuses[].
recipient_user_id` beside `statuses[].recipient_id`, `user_preferences[].user_id` beside
`wa_id`. Each is read when present; where one event names both, the pair is kept
(`Payload.identities`) so the user's later id-only events find the contact the phone has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from meta.account_events import (
    UNLIMITED_COUNT,
    AccountAlert,
    AccountUpdate,
    Pricing,
    TemplateQualityChange,
    account_alert_read,
    account_update_read,
    pricing_read,
    template_pause_reason,
    template_quality_read,
)
from meta.limits import TIER_UNLIMITED, known_tier, tier_for_limit
from meta.user_ids import is_user_id

OBJECT_TYPE = "whatsapp_business_account"
INTEGER = re.compile(r"-?[0-9]{1,20}")
# The message statuses Meta reports; others ("deleted", "warning") are skipped.
MESSAGE_STATUSES = ("sent", "delivered", "read", "failed")
# Meta's wamids are under a hundred characters: a longer one names no message anyone sent.
WAMID_MAX_LENGTH = 255
# Meta's error codes are short numbers; a longer code is cut to this.
ERROR_CODE_MAX_LENGTH = 32
PHONE_NUMBER_ID_MAX_LENGTH = 64


@dataclass(frozen=True, slots=True)
class MessageStatusUpdate:
    """One entry of `statuses`: a message Meta accepted moved to `status` at `occurred_at`."""

    wamid: str
    status: str
    occurred_at: datetime
    error_code: str | None = None
    error_message: str | None = None
    # `biz_opaque_callback_data` as the send gave it, when Meta echoes it.
    callback_data: str | None = None
    # The number the event is about (`metadata.phone_number_id`); "" when Meta did not say.
    phone_number_id: str = ""
    # How Meta bills the message (`pricing`), on the statuses that carry it.
    pricing: Pricing | None = None
    # The recipient as Meta names it: `recipient_id` (digits) and `recipient_user_id`, each
    # None when absent (a message sent to a user id may carry no phone).
    recipient_wa_id: str | None = None
    recipient_user_id: str | None = None


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """A webhook named one user by both phone (`wa_id`, digits) and business-scoped user id."""

    phone_number_id: str
    wa_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class InboundUserMessage:
    """One entry of `messages`: a person wrote to the number `phone_number_id`."""

    wamid: str
    # The sender's WhatsApp id as Meta writes it: the number in digits, without `+`; None when
    # Meta named them only by user id (a user with a username whose phone it withholds).
    from_wa_id: str | None
    sent_at: datetime
    message_type: str
    # The text of a text message (or a button's, or a caption); "" for other kinds.
    text: str
    # The name the sender's WhatsApp profile shows, when Meta gives it.
    profile_name: str | None
    phone_number_id: str
    # The sender's business-scoped user id (`from_user_id`), when Meta gives it.
    from_user_id: str | None = None


@dataclass(frozen=True, slots=True)
class MarketingPreference:
    """One entry of `user_preferences`: a user stopped or resumed the business's marketing."""

    # The user's WhatsApp id: the number in digits, without `+`; "" when Meta gave only the
    # user id.
    wa_id: str
    stopped: bool  # "stop"; False for "resume"
    detail: str
    occurred_at: datetime | None
    # The number the user's preference reached (`metadata.phone_number_id`); "" when not said.
    phone_number_id: str
    # The user's business-scoped user id, when Meta gives it.
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateStatusChange:
    waba_id: str
    meta_template_id: str
    name: str
    language: str
    status: str
    # Meta's reason (`reason`, and a pause's `other_info`); "" when it gave none.
    reason: str = ""


@dataclass(frozen=True, slots=True)
class NumberQualityChange:
    waba_id: str
    display_phone_number: str
    event: str
    current_limit: str | None
    portfolio_tier: str | None


@dataclass(frozen=True, slots=True)
class CapabilityChange:
    waba_id: str
    portfolio_tier: str | None


@dataclass(slots=True)
class Payload:
    object_type: str = ""
    fields: list[str] = field(default_factory=list)
    statuses: list[MessageStatusUpdate] = field(default_factory=list)
    inbound: list[InboundUserMessage] = field(default_factory=list)
    templates: list[TemplateStatusChange] = field(default_factory=list)
    numbers: list[NumberQualityChange] = field(default_factory=list)
    capabilities: list[CapabilityChange] = field(default_factory=list)
    preferences: list[MarketingPreference] = field(default_factory=list)
    # Users named by both phone and user id in these bodies.
    identities: list[UserIdentity] = field(default_factory=list)
    template_qualities: list[TemplateQualityChange] = field(default_factory=list)
    account_updates: list[AccountUpdate] = field(default_factory=list)
    account_alerts: list[AccountAlert] = field(default_factory=list)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and INTEGER.fullmatch(value):
        return int(value)
    return None


def _tier(value: Any) -> str | None:
    """A limit as Meta writes it, a tier name ("TIER_10K") or a count (10000), as a tier name."""
    count = _int(value)
    # A count no tier has (negative, or far past any of Meta's) changes nothing.
    return known_tier(tier_for_limit(count) if count is not None else value)


def _text(value: Any, limit: int | None = None) -> str | None:
    """Text fit for the database: PostgreSQL text holds no NUL character."""
    if value is None:
        return None
    text = str(value).replace("\x00", "")
    return text[:limit] if limit else text


def _error(errors: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """Meta's first error: its code and the most telling text it gives."""
    if not errors:
        return None, None
    first = errors[0]
    code = first.get("code")
    details = (
        (first.get("error_data") or {}).get("details")
        if isinstance(first.get("error_data"), dict)
        else None
    )
    title = first.get("message") or first.get("title")
    text = f"{title}: {details}" if title and details and details != title else title or details
    return _text(code, ERROR_CODE_MAX_LENGTH), _text(text) or None


def _moment(timestamp: int | None) -> datetime | None:
    if timestamp is None:
        return None
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _wa_id(value: Any) -> str | None:
    """A phone as Meta writes it in `wa_id`, `from`, `recipient_id`: digits only."""
    return value if isinstance(value, str) and value.isascii() and value.isdigit() else None


def _user_id(value: Any) -> str | None:
    return value if is_user_id(value) else None


def _status_update(raw: dict[str, Any], phone_number_id: str) -> MessageStatusUpdate | None:
    wamid, status = raw.get("id"), raw.get("status")
    occurred_at = _moment(_int(raw.get("timestamp")))
    if status not in MESSAGE_STATUSES or occurred_at is None:
        return None
    # No message can have a wamid that long or holding NUL: nothing to apply.
    if not isinstance(wamid, str) or len(wamid) > WAMID_MAX_LENGTH or "\x00" in wamid:
        return None
    code, message = _error(_dicts(raw.get("errors"))) if status == "failed" else (None, None)
    callback = raw.get("biz_opaque_callback_data")
    return MessageStatusUpdate(
        wamid=wamid,
        status=status,
        occurred_at=occurred_at,
        error_code=code,
        error_message=message,
        callback_data=callback if isinstance(callback, str) else None,
        phone_number_id=phone_number_id,
        pricing=pricing_read(raw.get("pricing")),
        recipient_wa_id=_wa_id(raw.get("recipient_id")),
        recipient_user_id=_user_id(raw.get("recipient_user_id")),
    )


# Where each kind of message keeps its text, when it has one.
_TEXT_PATHS = {"text": "body", "button": "text", "image": "caption", "video": "caption"}
# Kept for the admin's eyes only: a longer text is cut.
INBOUND_TEXT_MAX_LENGTH = 4_096
MESSAGE_TYPE_MAX_LENGTH = 32


def _profile_names(value: dict[str, Any]) -> dict[str, str]:
    """`contacts[].profile.name` by `wa_id`, and by `user_id`."""
    names = {}
    for contact in _dicts(value.get("contacts")):
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        if not (isinstance(name, str) and name.strip()):
            continue
        for key in ("wa_id", "user_id"):
            if isinstance(contact.get(key), str):
                names[contact[key]] = _text(name.strip(), 200) or ""
    return names


def _identities(value: dict[str, Any], phone_number_id: str) -> list[UserIdentity]:
    """The users a `messages` value names by both phone and user id: in `contacts`, in an
    inbound message's `from`/`from_user_id`, in a status's `recipient_id`/`recipient_user_id`."""
    pairs = [
        (contact.get("wa_id"), contact.get("user_id")) for contact in _dicts(value.get("contacts"))
    ]
    pairs += [(raw.get("from"), raw.get("from_user_id")) for raw in _dicts(value.get("messages"))]
    pairs += [
        (raw.get("recipient_id"), raw.get("recipient_user_id"))
        for raw in _dicts(value.get("statuses"))
    ]
    identities = []
    for wa_id, user_id in pairs:
        phone, user = _wa_id(wa_id), _user_id(user_id)
        if phone and user and phone_number_id:
            identities.append(UserIdentity(phone_number_id, phone, user))
    return identities


def _inbound_message(
    raw: dict[str, Any], names: dict[str, str], phone_number_id: str
) -> InboundUserMessage | None:
    wamid, sender = raw.get("id"), raw.get("from")
    user_id = _user_id(raw.get("from_user_id"))
    sent_at = _moment(_int(raw.get("timestamp")))
    if not isinstance(wamid, str) or len(wamid) > WAMID_MAX_LENGTH or "\x00" in wamid:
        return None
    if not isinstance(sender, str):
        sender = None
    if (sender is None and user_id is None) or sent_at is None or not phone_number_id:
        return None
    kind = _text(raw.get("type"), MESSAGE_TYPE_MAX_LENGTH) or ""
    part = raw.get(kind)
    text = part.get(_TEXT_PATHS.get(kind, "")) if isinstance(part, dict) else None
    return InboundUserMessage(
        wamid=wamid,
        from_wa_id=sender,
        sent_at=sent_at,
        message_type=kind,
        text=(_text(text, INBOUND_TEXT_MAX_LENGTH) or "") if isinstance(text, str) else "",
        profile_name=names.get(sender or "") or names.get(user_id or ""),
        phone_number_id=phone_number_id,
        from_user_id=user_id,
    )


# `user_preferences` entries about marketing, and the two values Meta sends.
MARKETING_PREFERENCE = "marketing_messages"
PREFERENCE_VALUES = {"stop": True, "resume": False}


def _marketing_preferences(value: dict[str, Any]) -> list[MarketingPreference]:
    """The `user_preferences` field: {"metadata": {"phone_number_id"}, "user_preferences":
    [{"wa_id", "user_id", "detail", "category": "marketing_messages", "value": "stop" |
    "resume", "timestamp"}]} (`wa_id` or `user_id` may be missing, not both). Entries of another
    category or value are not ours to act on."""
    metadata = value.get("metadata")
    number = (
        _text(metadata.get("phone_number_id"), PHONE_NUMBER_ID_MAX_LENGTH)
        if isinstance(metadata, dict)
        else None
    )
    preferences = []
    for raw in _dicts(value.get("user_preferences")):
        wa_id, user_id = _wa_id(raw.get("wa_id")), _user_id(raw.get("user_id"))
        stopped = PREFERENCE_VALUES.get(str(raw.get("value")))
        if raw.get("category") != MARKETING_PREFERENCE or stopped is None:
            continue
        if wa_id is None and user_id is None:
            continue
        preferences.append(
            MarketingPreference(
                wa_id=wa_id or "",
                user_id=user_id,
                stopped=stopped,
                detail=_text(raw.get("detail"), 500) or "",
                occurred_at=_moment(_int(raw.get("timestamp"))),
                phone_number_id=number or "",
            )
        )
    return preferences


def _read_change(payload: Payload, waba_id: str, kind: str, value: dict[str, Any]) -> None:
    if kind == "user_preferences":
        preferences = _marketing_preferences(value)
        payload.preferences.extend(preferences)
        payload.identities.extend(
            UserIdentity(p.phone_number_id, p.wa_id, p.user_id)
            for p in preferences
            if p.wa_id and p.user_id and p.phone_number_id
        )
    elif kind == "messages":
        metadata = value.get("metadata")
        # Without the number it is about, an event can prove it owns no message: "" owns none.
        number = (
            _text(metadata.get("phone_number_id"), PHONE_NUMBER_ID_MAX_LENGTH)
            if isinstance(metadata, dict)
            else None
        )
        payload.statuses.extend(
            update
            for raw in _dicts(value.get("statuses"))
            if (update := _status_update(raw, number or ""))
        )
        payload.identities.extend(_identities(value, number or ""))
        names = _profile_names(value)
        payload.inbound.extend(
            message
            for raw in _dicts(value.get("messages"))
            if (message := _inbound_message(raw, names, number or ""))
        )
    elif kind == "message_template_status_update":
        payload.templates.append(
            TemplateStatusChange(
                waba_id=waba_id,
                meta_template_id=_text(value.get("message_template_id")) or "",
                name=_text(value.get("message_template_name")) or "",
                language=_text(value.get("message_template_language")) or "",
                status=_text(value.get("event")) or "",
                reason=template_pause_reason(value),
            )
        )
    elif kind == "phone_number_quality_update":
        payload.numbers.append(
            NumberQualityChange(
                waba_id=waba_id,
                display_phone_number=_text(value.get("display_phone_number")) or "",
                event=_text(value.get("event")) or "",
                current_limit=known_tier(value.get("current_limit")),
                portfolio_tier=_tier(value.get("max_daily_conversations_per_business")),
            )
        )
    elif kind == "business_capability_update":
        # The per-phone `max_daily_conversation_per_phone` is gone since February 2026: limits
        # are the portfolio's, and -1 is how this field writes an unlimited one.
        limit = value.get("max_daily_conversations_per_business")
        payload.capabilities.append(
            CapabilityChange(
                waba_id=waba_id,
                portfolio_tier=TIER_UNLIMITED if _int(limit) == UNLIMITED_COUNT else _tier(limit),
            )
        )


def _read_asset_change(
    payload: Payload, waba_id: str, kind: str, value: dict[str, Any], entry_time: int | None
) -> None:
    """The fields about templates' quality and the account itself (meta.account_events); an
    account event keeps its entry's `time`, which tells a retry of it from a new one."""
    if kind == "message_template_quality_update":
        payload.template_qualities.append(template_quality_read(waba_id, value))
    elif kind == "account_update":
        payload.account_updates.append(account_update_read(waba_id, value, entry_time))
    elif kind == "account_alerts":
        payload.account_alerts.append(account_alert_read(waba_id, value, entry_time))


def payload_read(document: Any) -> Payload:
    payload = Payload()
    if not isinstance(document, dict):
        return payload
    object_type = document.get("object")
    payload.object_type = _text(object_type) or ""
    # Compared as sent: a look-alike (a NUL inside, say) is another object, not ours.
    if object_type != OBJECT_TYPE:
        return payload
    for entry in _dicts(document.get("entry")):
        waba_id = _text(entry.get("id")) or ""
        entry_time = _int(entry.get("time"))
        for change in _dicts(entry.get("changes")):
            kind, value = change.get("field"), change.get("value")
            payload.fields.append(_text(kind) or "")
            if isinstance(kind, str) and isinstance(value, dict):
                _read_change(payload, waba_id, kind, value)
                _read_asset_change(payload, waba_id, kind, value, entry_time)
    return payload
