"""Request and response shapes of the send endpoints, exactly as the contract shows them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers

from bulksend.dry_run import DryRun, Reason, RecipientItems
from bulksend.json_stream import StreamedRecipients
from bulksend.models import BulkSend
from bulksend.quota import bulk_send_estimate_minutes, bulk_send_quota_wait
from bulksend.recipients import Recipient, parse_recipients
from bulksend.retry import RetryScope, retries_of
from bulksend.schedule import (
    SEND_AT_MAX_AHEAD,
    ScheduleError,
    bulk_send_schedule_estimate,
    schedule_reason,
    send_at_parse,
    send_window_parse,
)
from bulksend.send_window import SendWindow, send_window_of
from messaging.models import Message, in_template_order, public_status_of
from meta.parameters import VARIABLE_TYPES
from meta.user_ids import USER_ID_MAX_LENGTH
from meta.webhook_payload import ERROR_CODE_MAX_LENGTH
from mindo.parsers import request_data_exact
from mindo.serializers import moment_text, text_or_none

EMPTY_RECIPIENTS = "recipients es requerido y no puede estar vacio"


class RecipientSerializer(serializers.Serializer):
    """Documents one recipient; validation is `bulksend.recipients.parse_recipients`."""

    phone = serializers.CharField(
        required=False,
        help_text="International E.164, no spaces: +5491112345678. Give it or `user_id`.",
    )
    user_id = serializers.CharField(
        required=False,
        help_text="Instead of `phone`: Meta's business-scoped user id of the recipient "
        "(e.g. US.13491208655302741918), as its webhooks name users who hide their number.",
    )
    variables = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="Exactly the template's variables."
    )
    button_variables = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="`button_<index>` to the button's one variable (URL suffix, payload, code).",
    )


@extend_schema_field(RecipientSerializer(many=True))
class RecipientsField(serializers.Field):
    default_error_messages = {
        "not_a_list": 'Expected a list of items but got type "{input_type}".',
        "empty": EMPTY_RECIPIENTS,
        "max_length": "Ensure this field has no more than {max_length} elements.",
    }

    def to_internal_value(self, data: Any) -> list[Recipient] | StreamedRecipients:
        if isinstance(data, StreamedRecipients):
            return self.streamed_checked(data)
        items = self.items_checked(data)
        recipients, errors = parse_recipients(items, self.exact_items)
        if errors:
            raise serializers.ValidationError(errors)
        return recipients

    def streamed_checked(self, data: StreamedRecipients) -> StreamedRecipients:
        """A streamed body's array checked as a list is, with the same errors."""
        limit = settings.BULK_SEND_MAX_RECIPIENTS
        refusal, errors = data.check(limit)
        if refusal is not None:
            self.fail(refusal, max_length=limit)
        if errors:
            raise serializers.ValidationError(errors)
        return data

    def items_checked(self, data: Any) -> list[Any]:
        """The list itself checked: a non-empty list, within the limit."""
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        if not data:
            self.fail("empty")
        if len(data) > settings.BULK_SEND_MAX_RECIPIENTS:
            self.fail("max_length", max_length=settings.BULK_SEND_MAX_RECIPIENTS)
        return data

    def exact_items(self) -> list[Any]:
        # Only for a variable that is a JSON number with a fraction, or too long for 64 bits:
        # the body is read again (slower, so only then) to send it as the client wrote it.
        items: list[Any] = request_data_exact(self.context["request"])[self.field_name]
        return items


@extend_schema_field(RecipientSerializer(many=True))
class DryRunRecipientsField(RecipientsField):
    """The recipients of a dry run: the list is checked as send-bulk checks it (a 400 when it is
    not one, empty or too long), each recipient is judged by `bulksend.dry_run`."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, StreamedRecipients):
            limit = settings.BULK_SEND_MAX_RECIPIENTS
            refusal = data.length_refusal(limit)
            if refusal is not None:
                self.fail(refusal, max_length=limit)
            return data
        return RecipientItems(self.items_checked(data), self.exact_items)


@extend_schema_field(serializers.DateTimeField())
class SendAtField(serializers.Field):
    """`send_at`, read by `bulksend.schedule.send_at_parse` (an offset is required)."""

    def to_internal_value(self, data: Any) -> datetime:
        try:
            return send_at_parse(data, now=timezone.now())
        except ScheduleError as error:
            raise serializers.ValidationError(str(error)) from None

    def to_representation(self, value: Any) -> Any:
        return serializers.DateTimeField().to_representation(value)


class SendWindowSerializer(serializers.Serializer):
    """Documents `send_window`; validation is `bulksend.schedule.send_window_parse`."""

    start = serializers.CharField(help_text="HH:MM, 24-hour, the recipient's local time.")
    end = serializers.CharField(help_text="HH:MM; before `start`: the window wraps midnight.")


@extend_schema_field(SendWindowSerializer)
class SendWindowField(serializers.Field):
    def to_internal_value(self, data: Any) -> SendWindow:
        try:
            return send_window_parse(data)
        except ScheduleError as error:
            raise serializers.ValidationError(str(error)) from None

    def to_representation(self, value: SendWindow) -> dict[str, str]:
        return {"start": f"{value.start:%H:%M}", "end": f"{value.end:%H:%M}"}


def callback_url_field() -> serializers.URLField:
    return serializers.URLField(
        max_length=2_000,
        required=False,
        help_text="Optional: this send's `message.status` and `bulk_send.status` events also go "
        "to this URL, signed with the secret of the organization's first webhook endpoint "
        "(one must be registered). http(s) to a public address only.",
    )


class SendBulkRequestSerializer(serializers.Serializer):
    phone_number_id = serializers.CharField(max_length=64)
    template_name = serializers.CharField(max_length=512)
    language = serializers.CharField(max_length=16, default="es")
    recipients = RecipientsField(
        help_text=f"1 to {settings.BULK_SEND_MAX_RECIPIENTS} recipients; duplicates by phone "
        "or user id are sent once (the first one's variables)."
    )
    send_at = SendAtField(
        required=False,
        help_text="When to start, ISO 8601 with its UTC offset, in the future and at most "
        f"{SEND_AT_MAX_AHEAD.days} days ahead: the send stays QUEUED until then and nothing goes "
        "out before.",
    )
    send_window = SendWindowField(
        required=False,
        help_text="Quiet hours: each message goes out only between `start` and `end` of its "
        "recipient's local time (the time zone of the number's country and area; the "
        "organization's where the number does not tell). Outside them it waits for the next "
        "opening.",
    )
    callback_url = callback_url_field()


class SendBulkDryRunRequestSerializer(SendBulkRequestSerializer):
    recipients = DryRunRecipientsField()


class WhatsAppPhoneNumberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phone_number_id = serializers.CharField()
    display_phone_number = serializers.CharField()
    verified_name = serializers.CharField()
    quality_rating = serializers.CharField()
    messaging_limit_tier = serializers.CharField()


class QuotaInfoSerializer(serializers.Serializer):
    can_send = serializers.BooleanField()
    quota_needed = serializers.IntegerField()
    quota_available = serializers.IntegerField(allow_null=True)
    quota_total = serializers.IntegerField(allow_null=True)
    tier = serializers.CharField()


# --- POST send-bulk/?dry_run=true --------------------------------------------------------------

DRY_RUN = "dry_run"
DRY_RUN_PARAMETER = OpenApiParameter(
    DRY_RUN,
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    description="`true`: check everything and answer 200 with what the send would be and a "
    "verdict for each recipient that would not be sent; nothing is created (no send, no "
    "quota held, no Idempotency-Key kept). JSON and CSV bodies alike.",
)


class RecipientVerdictSerializer(serializers.Serializer):
    """Documents one verdict (bulksend.dry_run builds them)."""

    index = serializers.IntegerField(
        required=False, help_text="The recipient's index (absent for a CSV line that was none)."
    )
    line = serializers.IntegerField(required=False, help_text="Its CSV line (CSV bodies only).")
    phone = serializers.CharField(allow_null=True, required=False)
    reasons = serializers.ListField(
        child=serializers.ChoiceField(choices=[reason.value for reason in Reason]),
        help_text="Why it would not be sent: `invalid_phone`, `invalid_recipient`, "
        "`duplicate_of`, `missing_variables`, `extra_variables`, `invalid_variables` (send-bulk "
        "refuses the list for these but `duplicate_of`), `opted_out`, `us_marketing_block`, "
        "`cooling_down` (accepted, but failed or held when the send goes out).",
    )
    duplicate_of = serializers.IntegerField(
        required=False, help_text="The index of the earlier recipient with the same phone."
    )
    duplicate_of_line = serializers.IntegerField(required=False)
    missing_variables = serializers.ListField(child=serializers.CharField(), required=False)
    extra_variables = serializers.ListField(child=serializers.CharField(), required=False)
    # Named as the body names it; this serializer only describes the body, so the attribute
    # it hides (a serializer's own `errors`) is never read.
    errors = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="What send-bulk would answer for this recipient (its 400's)."
    )


class SendBulkDryRunSerializer(serializers.Serializer):
    dry_run = serializers.SerializerMethodField()
    template_name = serializers.CharField()
    total_recipients = serializers.IntegerField(help_text="The length of the list given.")
    unique_recipients = serializers.IntegerField(
        help_text="The send's messages: unique phones, without the recipients send-bulk refuses."
    )
    sendable_recipients = serializers.IntegerField(
        help_text="Unique recipients with no verdict at all."
    )
    estimated_time_minutes = serializers.FloatField()
    quota_info = QuotaInfoSerializer(source="quota")
    verdicts = RecipientVerdictSerializer(many=True)

    def get_dry_run(self, result: Any) -> bool:
        return True

    def to_representation(self, instance: DryRun) -> dict[str, Any]:
        # The fields above describe the body; it is built here, since the verdicts are already
        # as they are shown, and 100,000 of them through a serializer each would take seconds.
        return {
            "dry_run": True,
            "template_name": instance.template_name,
            "total_recipients": instance.total_recipients,
            "unique_recipients": instance.unique_recipients,
            "sendable_recipients": instance.sendable_recipients,
            "estimated_time_minutes": instance.estimated_time_minutes,
            "quota_info": QuotaInfoSerializer(instance.quota).data,
            "verdicts": instance.verdicts,
        }


class SendBulkAcceptedSerializer(serializers.Serializer):
    bulk_send_id = serializers.UUIDField(source="bulk_send.id")
    task_id = serializers.CharField(source="bulk_send.task_id")
    status = serializers.SerializerMethodField()
    template_name = serializers.CharField(source="bulk_send.template.name")
    total_recipients = serializers.IntegerField(source="bulk_send.submitted_recipients")
    unique_recipients = serializers.IntegerField(source="bulk_send.unique_recipients")
    estimated_time_minutes = serializers.FloatField(source="bulk_send.estimated_time_minutes")
    created_at = serializers.DateTimeField(source="bulk_send.created_at")
    whatsapp_phone_number = WhatsAppPhoneNumberSerializer(source="bulk_send.phone_number")
    quota_info = QuotaInfoSerializer(source="quota")

    def get_status(self, accepted: Any) -> str:
        return "queued"


class BulkSendTemplateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    template_name = serializers.CharField(source="name")
    language = serializers.CharField()
    status = serializers.CharField()


class BulkSendPhoneNumberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    display_phone_number = serializers.CharField()
    verified_name = serializers.CharField()


class CreatedBySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()


class BulkSendListItemSerializer(serializers.ModelSerializer[BulkSend]):
    template = BulkSendTemplateSerializer()
    phone_number = BulkSendPhoneNumberSerializer()
    # The messages of the send, one per unique recipient.
    total_recipients = serializers.IntegerField(source="unique_recipients")
    progress_percentage = serializers.FloatField()

    class Meta:
        model = BulkSend
        fields = [
            "id",
            "status",
            "template",
            "phone_number",
            "total_recipients",
            "sent_count",
            "delivered_count",
            "read_count",
            "failed_count",
            "pending_count",
            "progress_percentage",
            "created_at",
            "completed_at",
        ]


class BulkSendDetailSerializer(BulkSendListItemSerializer):
    estimated_time_minutes = serializers.SerializerMethodField()
    created_by = CreatedBySerializer(allow_null=True)
    # Rendered by `retry_links`, each only when there is one; declared for the OpenAPI document.
    retry_of = serializers.UUIDField(
        source="retry_of_id",
        required=False,
        help_text="Only on a retry (POST bulk-sends/{id}/retry/): the send it retries.",
    )
    retries = serializers.ListField(
        child=serializers.UUIDField(),
        source="retry_ids",
        required=False,
        help_text="Only on a send that was retried: its retries' ids, oldest first (each "
        "shows this send as its `retry_of`).",
    )
    status_reason = serializers.CharField(
        required=False,
        help_text="Only on a send stopped before its end (why: Meta halted it, an operator "
        'cancelled it), paused (`"paused"`), waiting for the portfolio\'s 24 h quota window '
        "(how many recipients, until when), for its `send_at` or for its recipients' "
        "`send_window` (when the last window opens). Absent otherwise, so the body is the "
        "contract's exactly.",
    )
    send_at = serializers.DateTimeField(
        required=False, help_text="Only on a scheduled send: nothing goes out before it."
    )
    send_window = SendWindowSerializer(
        required=False, help_text="Only on a send with quiet hours: as it was given."
    )
    paused_at = serializers.DateTimeField(
        required=False,
        help_text="Only on a paused send (POST bulk-sends/{id}/pause/): when it was paused. "
        "Absent otherwise.",
    )

    class Meta(BulkSendListItemSerializer.Meta):
        fields = [
            *BulkSendListItemSerializer.Meta.fields[:-2],
            "estimated_time_minutes",
            "started_at",
            "completed_at",
            "created_at",
            "created_by",
            "status_reason",
            "send_at",
            "send_window",
            "retry_of",
            "retries",
            "paused_at",
        ]

    def to_representation(self, instance: BulkSend) -> dict[str, Any]:
        return _detail_optional_fields(dict(super().to_representation(instance)), instance)

    def get_estimated_time_minutes(self, bulk_send: BulkSend) -> float:
        return _estimated_time_minutes(bulk_send)


def _estimated_time_minutes(bulk_send: BulkSend) -> float:
    return bulk_send_schedule_estimate(
        bulk_send,
        lambda start: bulk_send_estimate_minutes(bulk_send, now=start),
        now=timezone.now(),
    )


def _detail_optional_fields(body: dict[str, Any], instance: BulkSend) -> dict[str, Any]:
    """The status body's fields that are there only when they say something, in their order."""
    reason = instance.status_reason or " ".join(
        filter(None, (quota_wait_reason(instance), _schedule_reason(instance)))
    )
    if reason:
        body["status_reason"] = reason
    else:
        body.pop("status_reason")
    _schedule_fields(body, instance)
    body.pop("retry_of", None)
    body.pop("retries", None)
    body.update(retry_links(instance))
    if instance.paused_at is None:
        body.pop("paused_at")
    return body


# --- the read bodies as plain dictionaries (see mindo.serializers) -----------------------------


def _list_item_head(bulk_send: BulkSend) -> dict[str, Any]:
    """The fields the list item and the status body share, up to `progress_percentage`."""
    template, number = bulk_send.template, bulk_send.phone_number
    return {
        "id": str(bulk_send.pk),
        "status": text_or_none(bulk_send.status),
        "template": None
        if template is None
        else {
            "id": int(template.pk),
            "template_name": str(template.name),
            "language": str(template.language),
            "status": str(template.status),
        },
        "phone_number": None
        if number is None
        else {
            "id": int(number.pk),
            "display_phone_number": str(number.display_phone_number),
            "verified_name": str(number.verified_name),
        },
        "total_recipients": int(bulk_send.unique_recipients),
        "sent_count": int(bulk_send.sent_count),
        "delivered_count": int(bulk_send.delivered_count),
        "read_count": int(bulk_send.read_count),
        "failed_count": int(bulk_send.failed_count),
        "pending_count": int(bulk_send.pending_count),
        "progress_percentage": float(bulk_send.progress_percentage),
    }


def bulk_send_list_item_body(bulk_send: BulkSend) -> dict[str, Any]:
    """BulkSendListItemSerializer(bulk_send).data, as a plain dictionary."""
    body = _list_item_head(bulk_send)
    body["created_at"] = moment_text(bulk_send.created_at)
    body["completed_at"] = moment_text(bulk_send.completed_at)
    return body


def bulk_send_detail_body(bulk_send: BulkSend) -> dict[str, Any]:
    """BulkSendDetailSerializer(bulk_send).data, as a plain dictionary."""
    creator = bulk_send.created_by
    body = _list_item_head(bulk_send)
    body.update(
        estimated_time_minutes=_estimated_time_minutes(bulk_send),
        started_at=moment_text(bulk_send.started_at),
        completed_at=moment_text(bulk_send.completed_at),
        created_at=moment_text(bulk_send.created_at),
        created_by=None
        if creator is None
        else {
            "id": int(creator.pk),
            "email": str(creator.email),
            "first_name": str(creator.first_name),
            "last_name": str(creator.last_name),
        },
        status_reason=bulk_send.status_reason,
        send_at=moment_text(bulk_send.send_at),
        paused_at=moment_text(bulk_send.paused_at),
    )
    return _detail_optional_fields(body, bulk_send)


def _schedule_reason(bulk_send: BulkSend) -> str:
    return schedule_reason(
        bulk_send, now=timezone.now(), moment=serializers.DateTimeField().to_representation
    )


def _schedule_fields(body: dict[str, Any], bulk_send: BulkSend) -> None:
    """`send_at` and `send_window` on a scheduled send's body only: others keep the contract's."""
    if bulk_send.send_at is None:
        body.pop("send_at", None)
    window = send_window_of(bulk_send)
    if window is None:
        body.pop("send_window", None)
    else:
        body["send_window"] = SendWindowField().to_representation(window)


def quota_wait_reason(bulk_send: BulkSend) -> str:
    """Why an active send's last recipients have not gone out: computed when read, never stored,
    so it is gone by itself once the window has room."""
    wait = bulk_send_quota_wait(bulk_send, timezone.now())
    if wait is None:
        return ""
    until = serializers.DateTimeField().to_representation(wait.until)
    return (
        f"Waiting for the messaging quota: {wait.recipients} recipients do not fit the "
        f"portfolio's 24 h window of unique recipients and wait until {until}."
    )


class BulkSendMessageSerializer(serializers.ModelSerializer[Message]):
    status = serializers.CharField(source="public_status")
    meta_message_id = serializers.CharField(source="wamid", allow_null=True)
    variables_used = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "recipient_phone",
            "status",
            "meta_message_id",
            "variables_used",
            "sent_at",
            "delivered_at",
            "read_at",
            "error_message",
        ]

    def get_variables_used(self, message: Message) -> dict[str, str]:
        return in_template_order(message.variables, self.context.get("template_variables", []))

    def to_representation(self, instance: Message) -> dict[str, Any]:
        body = super().to_representation(instance)
        # The page's messages come without their send: the view says whether it is cancelled.
        body["status"] = public_status_of(
            instance.status, send_cancelled=self.context.get("send_cancelled", False)
        )
        return with_user_id(body, instance.recipient_user_id)


def bulk_send_message_body(
    message: Message, template_variables: list[str], *, send_cancelled: bool = False
) -> dict[str, Any]:
    """BulkSendMessageSerializer(message).data, as a plain dictionary (see moment_text); the
    page's messages come without their send: `send_cancelled` says whether it is cancelled."""
    body = {
        "id": int(message.pk),
        "recipient_phone": text_or_none(message.recipient_phone),
        "status": public_status_of(message.status, send_cancelled=send_cancelled),
        "meta_message_id": text_or_none(message.wamid),
        "variables_used": in_template_order(message.variables, template_variables),
        "sent_at": moment_text(message.sent_at),
        "delivered_at": moment_text(message.delivered_at),
        "read_at": moment_text(message.read_at),
        "error_message": text_or_none(message.error_message),
    }
    return with_user_id(body, message.recipient_user_id)


def with_user_id(body: dict[str, Any], user_id: str | None) -> dict[str, Any]:
    """A message's body, with `recipient_user_id` when it went to a user id: a message to a
    phone keeps the contract's fields, and only those."""
    if user_id is not None:
        body["recipient_user_id"] = user_id
    return body


# --- POST send/: one message ---------------------------------------------------------------

# The recipient checks name a recipient's fields; this endpoint names them at the top level.
_FIELD_NAMES = {"phone": "recipient_phone", "user_id": "recipient_user_id"}


@extend_schema_field(serializers.DictField(child=serializers.CharField()))
class ParametersField(serializers.Field):
    """An object of strings, checked with the recipients' rules (bulksend.recipients), which keep
    a number as the client wrote it."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class SendMessageRequestSerializer(serializers.Serializer):
    phone_number_id = serializers.CharField(max_length=64)
    template_name = serializers.CharField(max_length=512)
    language = serializers.CharField(max_length=16, default="es")
    # Not trimmed: a phone with spaces is refused, as the contract asks for none.
    recipient_phone = serializers.CharField(
        max_length=32,
        trim_whitespace=False,
        help_text="International E.164, no spaces: +5491112345678. Required unless "
        "`recipient_user_id` is given.",
    )
    recipient_user_id = serializers.CharField(
        max_length=USER_ID_MAX_LENGTH,
        trim_whitespace=False,
        required=False,
        help_text="Instead of `recipient_phone`: Meta's business-scoped user id of the recipient "
        "(e.g. US.13491208655302741918).",
    )
    variables = ParametersField(required=False, help_text="Exactly the template's variables.")
    button_variables = ParametersField(
        required=False,
        help_text="`button_<index>` to the button's one variable (URL suffix, payload, code).",
    )
    callback_url = callback_url_field()

    def to_internal_value(self, data: Any) -> Any:
        # A recipient given by user id needs no phone (both given: the recipient check names it).
        if isinstance(data, Mapping) and "recipient_user_id" in data:
            self.fields["recipient_phone"].required = False
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The recipient as send-bulk checks one, its errors under this endpoint's field names."""

        def item(data: dict[str, Any]) -> dict[str, Any]:
            identity = {key: attrs[field] for key, field in _FIELD_NAMES.items() if field in attrs}
            return {
                **identity,
                "variables": data.get("variables"),
                "button_variables": data.get("button_variables"),
            }

        recipients, errors = parse_recipients(
            [item(attrs)], lambda: [item(request_data_exact(self.context["request"]))]
        )
        if errors:
            raise serializers.ValidationError(
                {_FIELD_NAMES.get(name, name): problems for name, problems in errors["0"].items()}
            )
        attrs["recipient"] = recipients[0]
        return attrs


class SendMessageResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message_id = serializers.CharField(
        help_text="Meta's wamid; while `status` is `pending`, a reference the message lookup "
        "accepts until Meta's webhook brings the wamid."
    )
    template_name = serializers.CharField()
    recipient_phone = serializers.CharField(
        allow_null=True,
        help_text="null for a message to a business-scoped user id; the body then ends with "
        "`recipient_user_id`.",
    )
    status = serializers.CharField(help_text="`sent`, or `pending` (answered 202).")
    sent_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        # The contract's six keys; a message to a user id adds it, after them.
        return with_user_id(super().to_representation(instance), instance.recipient_user_id)


# GET /api/v1/business-accounts/: the body is built in `bulksend.business_accounts`; these
# only describe it to the OpenAPI document, in the contract's camelCase.


class AccountQuotaSerializer(serializers.Serializer):
    dailyLimit = serializers.IntegerField(
        allow_null=True, help_text="The portfolio's unique recipients per 24 h; null: unlimited."
    )
    uniqueNumbersSent24h = serializers.IntegerField(
        help_text="Recipients holding a place: sent to in the last 24 h or waiting in a send."
    )
    remaining = serializers.IntegerField(allow_null=True)
    usagePercentage = serializers.FloatField(allow_null=True)
    canSend = serializers.BooleanField()


class AccountPhoneNumberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phoneNumberId = serializers.CharField(help_text="Meta's id: the phone_number_id to send with.")
    displayPhoneNumber = serializers.CharField()
    verifiedName = serializers.CharField()
    isPrimary = serializers.BooleanField()
    messagingLimitTier = serializers.CharField()
    quota = AccountQuotaSerializer()


class TemplateVariableSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The key of a recipient's `variables`.")
    type = serializers.ChoiceField(choices=VARIABLE_TYPES)
    position = serializers.IntegerField(help_text="1-based place in its component.")
    isRequired = serializers.BooleanField()
    component = serializers.ChoiceField(choices=["HEADER", "BODY"])


class AccountTemplateSerializer(serializers.Serializer):
    name = serializers.CharField()
    language = serializers.CharField()
    category = serializers.CharField()
    variables = TemplateVariableSerializer(many=True)


class BusinessAccountSerializer(serializers.Serializer):
    businessAccountId = serializers.IntegerField()
    businessName = serializers.CharField()
    phoneNumbers = AccountPhoneNumberSerializer(many=True)
    templates = AccountTemplateSerializer(many=True)


class BusinessAccountsSerializer(serializers.Serializer):
    companyName = serializers.CharField()
    apiKeyName = serializers.CharField()
    businessAccounts = BusinessAccountSerializer(many=True)


# --- POST bulk-sends/{id}/retry/ --------------------------------------------------------------


def retry_links(bulk_send: BulkSend) -> dict[str, Any]:
    """`retry_of` on a retry and `retries` on a retried send, each only when there is one, so a
    send with neither has the contract's status body exactly. `retry_ids` is read with the send
    (`bulksend.retry.with_retry_ids`) where the view can; else it is read here."""
    links: dict[str, Any] = {}
    if bulk_send.retry_of_id is not None:
        links["retry_of"] = str(bulk_send.retry_of_id)
    retry_ids = getattr(bulk_send, "retry_ids", None)
    if retry_ids is None:
        retry_ids = retries_of(bulk_send.pk)
    if retry_ids:
        links["retries"] = [str(retry_id) for retry_id in retry_ids]
    return links


class RetryRequestSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(
        choices=[scope.value for scope in RetryScope],
        help_text="`failed`: the failed messages; `pending`: the ones never handed to Meta "
        "(pending in a finished send, or cancelled); `all_unsent`: both. A recipient whose "
        "message reached `sent` in this send or any send of its retry chain is never taken.",
    )
    error_codes = serializers.ListField(
        child=serializers.CharField(max_length=ERROR_CODE_MAX_LENGTH),
        required=False,
        allow_empty=False,
        max_length=100,
        help_text="Only failed messages with one of these error codes (Meta's, e.g. `131026`, "
        "or the service's own, e.g. `opted_out`). Not with scope `pending`.",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Codes as numbers (Meta's are) are taken as their text.
        if isinstance(data, dict) and isinstance(data.get("error_codes"), list):
            data = {
                **data,
                "error_codes": [
                    str(code) if isinstance(code, int) and not isinstance(code, bool) else code
                    for code in data["error_codes"]
                ],
            }
        return dict(super().to_internal_value(data))


class RetryAcceptedSerializer(SendBulkAcceptedSerializer):
    """send-bulk's 202 body, and the send the retry retries."""

    retry_of = serializers.UUIDField(source="bulk_send.retry_of_id")
