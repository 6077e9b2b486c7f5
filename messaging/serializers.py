"""The wamid lookup's and the contact lookup's bodies, exactly as the contract shows them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from messaging.contacts import ContactLookup
from messaging.lookup import MessageLookup
from messaging.models import Suppression, in_template_order
from messaging.suppression import listed_recipient
from meta.user_ids import USER_ID_MAX_LENGTH
from mindo.serializers import moment_text, text_or_none


class MessageTemplateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    language = serializers.CharField()
    category = serializers.CharField()


class RecipientSerializer(serializers.Serializer):
    phone = serializers.CharField(source="message.recipient_phone", allow_null=True)
    contact_name = serializers.CharField(allow_null=True)
    contact_id = serializers.IntegerField(allow_null=True)

    def to_representation(self, instance: MessageLookup) -> dict[str, Any]:
        # The contract's three fields; a message to a business-scoped user id adds it (its
        # `phone` is null unless the contact is known by both).
        body: dict[str, Any] = super().to_representation(instance)
        user_id = instance.message.recipient_user_id
        if user_id is not None:
            body["user_id"] = user_id
        return body


class DeliveryStatusSerializer(serializers.Serializer):
    current = serializers.CharField(source="public_status")
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)
    error_message = serializers.CharField(allow_null=True)


class MessageLookupSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="message.id")
    template = MessageTemplateSerializer(source="message.bulk_send.template")
    recipient = serializers.SerializerMethodField()
    variables_used = serializers.SerializerMethodField()
    delivery_status = DeliveryStatusSerializer(source="message")
    meta_message_id = serializers.CharField(source="message.wamid", allow_null=True)
    was_successful = serializers.SerializerMethodField()
    error_message = serializers.SerializerMethodField()
    sent_at = serializers.SerializerMethodField()

    def get_recipient(self, lookup: MessageLookup) -> dict[str, Any]:
        return RecipientSerializer(lookup).data

    def get_variables_used(self, lookup: MessageLookup) -> dict[str, str]:
        message = lookup.message
        return in_template_order(message.variables, message.bulk_send.template.variables)

    def get_was_successful(self, lookup: MessageLookup) -> bool:
        # Meta gave a wamid, so Meta accepted the initial send.
        return lookup.message.wamid is not None

    def get_error_message(self, lookup: MessageLookup) -> str | None:
        """The initial send's error; a later delivery failure is in `delivery_status`."""
        return None if lookup.message.wamid is not None else lookup.message.error_message

    def get_sent_at(self, lookup: MessageLookup) -> str:
        moment = lookup.message.sent_at or lookup.message.created_at
        return serializers.DateTimeField().to_representation(moment)


class ContactSerializer(serializers.Serializer):
    """The contact as the contact-lookup page shows it (camelCase keys)."""

    id = serializers.IntegerField()
    fullName = serializers.CharField(source="name", allow_null=True)
    phone = serializers.CharField(allow_null=True)
    email = serializers.CharField(allow_null=True)
    contactListId = serializers.IntegerField(source="contact_list_id", allow_null=True)
    contactListName = serializers.CharField(
        source="contact_list.name", allow_null=True, default=None
    )
    # DRF takes declared fields off the class, so this `source` never shadows Field.source.
    source = serializers.CharField()  # type: ignore[assignment]
    createdAt = serializers.DateTimeField(source="created_at")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        # The contract's fields; a contact Meta named by its business-scoped user id adds it
        # (`phone` is null for one known only by it).
        body: dict[str, Any] = super().to_representation(instance)
        if instance.user_id is not None:
            body["userId"] = instance.user_id
        return body


class ContactLookupSerializer(serializers.Serializer):
    found = serializers.BooleanField()
    contact = ContactSerializer(allow_null=True)
    hasReplied = serializers.SerializerMethodField()
    lastReplyAt = serializers.DateTimeField(source="last_reply_at", allow_null=True)
    sessionWindowActive = serializers.SerializerMethodField()
    sessionExpiresAt = serializers.DateTimeField(source="session_expires_at", allow_null=True)

    def get_hasReplied(self, lookup: ContactLookup) -> bool:
        return lookup.last_reply_at is not None

    def get_sessionWindowActive(self, lookup: ContactLookup) -> bool:
        return lookup.session_expires_at is not None


def message_lookup_body(lookup: MessageLookup) -> dict[str, Any]:
    """MessageLookupSerializer(lookup).data, as a plain dictionary (mindo.serializers)."""
    message = lookup.message
    template = message.bulk_send.template
    recipient: dict[str, Any] = {
        "phone": text_or_none(message.recipient_phone),
        "contact_name": text_or_none(lookup.contact_name),
        "contact_id": None if lookup.contact_id is None else int(lookup.contact_id),
    }
    if message.recipient_user_id is not None:
        recipient["user_id"] = message.recipient_user_id
    return {
        "id": int(message.pk),
        "template": None
        if template is None
        else {
            "id": int(template.pk),
            "name": str(template.name),
            "language": str(template.language),
            "category": str(template.category),
        },
        "recipient": recipient,
        "variables_used": in_template_order(message.variables, template.variables),
        "delivery_status": {
            "current": message.public_status,
            "sent_at": moment_text(message.sent_at),
            "delivered_at": moment_text(message.delivered_at),
            "read_at": moment_text(message.read_at),
            "failed_at": moment_text(message.failed_at),
            "error_code": text_or_none(message.error_code),
            "error_message": text_or_none(message.error_message),
        },
        "meta_message_id": text_or_none(message.wamid),
        "was_successful": message.wamid is not None,
        "error_message": None if message.wamid is not None else message.error_message,
        "sent_at": moment_text(message.sent_at or message.created_at),
    }


def contact_lookup_body(lookup: ContactLookup) -> dict[str, Any]:
    """ContactLookupSerializer(lookup).data, as a plain dictionary (mindo.serializers)."""
    contact = lookup.contact
    body: dict[str, Any] | None = None
    if contact is not None:
        contact_list = contact.contact_list
        body = {
            "id": int(contact.pk),
            "fullName": text_or_none(contact.name),
            "phone": text_or_none(contact.phone),
            "email": text_or_none(contact.email),
            "contactListId": None if contact_list is None else int(contact_list.pk),
            "contactListName": None if contact_list is None else text_or_none(contact_list.name),
            "source": text_or_none(contact.source),
            "createdAt": moment_text(contact.created_at),
        }
        if contact.user_id is not None:
            body["userId"] = contact.user_id
    return {
        "found": bool(lookup.found),
        "contact": body,
        "hasReplied": lookup.last_reply_at is not None,
        "lastReplyAt": moment_text(lookup.last_reply_at),
        "sessionWindowActive": lookup.session_expires_at is not None,
        "sessionExpiresAt": moment_text(lookup.session_expires_at),
    }


PHONE_INVALID = "Enter a valid phone number in international format, e.g. +5491112345678."


class SuppressionSerializer(serializers.ModelSerializer[Suppression]):
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Suppression
        fields = ["phone", "source", "reason", "createdAt"]
        read_only_fields = ["source"]


class SuppressionCreateSerializer(serializers.Serializer[Any]):
    phone = serializers.CharField(
        max_length=USER_ID_MAX_LENGTH,
        help_text="A phone in any spelling, or a business-scoped user id (AR.1502576394655843).",
    )
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    def validate_phone(self, value: str) -> str:
        phone = listed_recipient(value)
        if phone is None:
            raise serializers.ValidationError(PHONE_INVALID)
        return phone
