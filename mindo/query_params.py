"""Whole numbers from the query string, refused before anything large is built from them.

A query string is the client's: `?template=-1e1000000` once made django-filter build a Decimal
of a million digits. Here a value is read only when it is 1 to 19 ASCII digits (a bigint holds
19), so refusing any value costs one match of a short regular expression.
"""

from __future__ import annotations

import re
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError

BIGINT_MAX = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def positive_int_message(maximum: int = BIGINT_MAX) -> str:
    return f"Enter a whole number from 1 to {maximum}."


def positive_int_parse(text: str, *, maximum: int = BIGINT_MAX) -> int:
    """`text` as a whole number from 1 to `maximum`; ValueError for anything else."""
    if not _DIGITS.fullmatch(text):
        raise ValueError(positive_int_message(maximum))
    value = int(text)
    if not 1 <= value <= maximum:
        raise ValueError(positive_int_message(maximum))
    return value


class PositiveIntegerField(forms.Field):
    """A form field for ids and counts: a bigint from 1 up, or empty."""

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        try:
            return positive_int_parse(str(value))
        except ValueError as error:
            raise ValidationError(str(error), code="invalid") from None


class PositiveIntegerFilter(django_filters.Filter):
    """Use instead of `NumberFilter`, which parses any number as a Decimal, however long."""

    field_class = PositiveIntegerField
