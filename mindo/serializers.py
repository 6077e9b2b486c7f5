"""Serializers of the endpoints that answer from the organization itself."""

from __future__ import annotations

from rest_framework import serializers

from mindo.models import CompanySize, CompanyType, Organization


class BusinessInfoSerializer(serializers.Serializer[Organization]):
    """The contract's fields, in its camelCase. Empty text fields are `""`; only the size and its
    label are `null` when the size is unset, as the contract has it."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    email = serializers.CharField(read_only=True)
    phone = serializers.CharField(read_only=True)
    website = serializers.CharField(read_only=True)
    address = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    timezone = serializers.CharField(read_only=True)
    companySize = serializers.ChoiceField(
        choices=CompanySize.choices, source="company_size", allow_null=True, read_only=True
    )
    # Django's `get_<field>_display` reads the Spanish label of CompanySize, None when unset.
    companySizeDisplay = serializers.CharField(
        source="get_company_size_display", allow_null=True, read_only=True
    )
    companyTypes = serializers.ListField(
        child=serializers.ChoiceField(choices=CompanyType.choices),
        source="company_types",
        read_only=True,
    )
    categories = serializers.ListField(child=serializers.CharField(), read_only=True)
