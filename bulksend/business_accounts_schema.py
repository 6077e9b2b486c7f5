"""The OpenAPI shape of `GET /api/v1/business-accounts/` (the body is built in
`bulksend.business_accounts`; these serializers only describe it, in the contract's camelCase)."""

from __future__ import annotations

from rest_framework import serializers

from meta.parameters import VARIABLE_TYPES


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
