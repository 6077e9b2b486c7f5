"""Serializers of the endpoints that answer from the organization itself, and what the read
endpoints' plain bodies share.

The read endpoints answer the bodies their serializers document without running them: DRF builds
a serializer's fields anew for every instance, which on a page of messages costs a large share of
the request's CPU. Each plain body is held equal to its serializer's output, byte for byte once
rendered, by tests/test_read_bodies.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework import serializers

from mindo.models import CompanySize, CompanyType, Organization

_MOMENT = serializers.DateTimeField()


def moment_text(value: datetime | None) -> str | None:
    """A moment as DRF's DateTimeField writes it (ISO 8601 in the current time zone, UTC as Z)."""
    return None if value is None else _MOMENT.to_representation(value)


def text_or_none(value: Any) -> str | None:
    """A CharField's value: its text, None as null."""
    return None if value is None else str(value)


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
