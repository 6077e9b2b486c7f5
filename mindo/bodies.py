"""Response bodies built as plain dictionaries, value for value what DRF's fields give.

The read endpoints answer the bodies their serializers document, without running them: DRF builds
a serializer's fields anew for every instance, which on a page of 100 messages costs more CPU than
everything else the request does. Each plain body is held equal to its serializer's output, byte
for byte once rendered, by tests/test_read_bodies.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework import serializers

_MOMENT = serializers.DateTimeField()


def moment_text(value: datetime | None) -> str | None:
    """A moment as DRF's DateTimeField writes it (ISO 8601 in the current time zone, UTC as Z)."""
    return None if value is None else _MOMENT.to_representation(value)


def text_or_none(value: Any) -> str | None:
    """A CharField's value: its text, None as null."""
    return None if value is None else str(value)
