"""Request and response shapes of the send endpoints, exactly as the contract shows them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from bulksend.models import BulkSend
from bulksend.quota import bulk_send_estimate_minutes, bulk_send_quota_wait
from bulksend.recipients import Recipient, parse_recipients
from messaging.models import Message, in_template_order
from meta.parameters import VARIABLE_TYPES
from meta.user_ids import USER_ID_MAX_LENGTH
from mindo.parsers import request_data_exact

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

    def to_internal_value(self, data: Any) -> list[Recipient]:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        if not data:
            self.fail("empty")
        if len(data) > settings.BULK_SEND_MAX_RECIPIENTS:
            self.fail("max_length", max_length=settings.BULK_SEND_MAX_RECIPIENTS)
        # Only for a variable that is a JSON number with a fraction, or too long for 64 bits:
        # the body is read again (slower, so only then) to send it as the client wrote it.
        recipients, errors = parse_recipients(
            data, lambda: request_data_exact(self.context["request"])[self.field_name]
        )
        if errors:
            raise serializers.ValidationError(errors)
        return recipients


class SendBulkRequestSerializer(serializers.Serializer):
    phone_number_id = serializers.CharField(max_length=64)
    template_name = serializers.CharField(max_length=512)
    language = serializers.CharField(max_length=16, default="es")
    recipients = RecipientsField(
        help_text=f"1 to {settings.BULK_SEND_MAX_RECIPIENTS} recipients; duplicates by phone "
        "or user id are sent once (the first one's variables)."
    )


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
    status_reason = serializers.CharField(
        required=False,
        help_text="Only on a send stopped before its end (why: Meta halted it, an operator "
        "cancelled it) or waiting for the portfolio's 24 h quota window (how many recipients, "
        "until when). Absent otherwise, so the body is the contract's exactly.",
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
        ]

    def to_representation(self, instance: BulkSend) -> dict[str, Any]:
        body = dict(super().to_representation(instance))
        reason = instance.status_reason or quota_wait_reason(instance)
        if reason:
            body["status_reason"] = reason
        else:
            body.pop("status_reason")
        return body

    def get_estimated_time_minutes(self, bulk_send: BulkSend) -> float:
        return bulk_send_estimate_minutes(bulk_send)


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
        return with_user_id(super().to_representation(instance), instance.recipient_user_id)


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
