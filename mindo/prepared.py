"""Prepared statements for the hot path's large statements (see mindo.postgresql)."""

from __future__ import annotations

from typing import Any

from django.db import connection


def prepared_cursor() -> Any:
    """A cursor of the default connection whose often-run statements PostgreSQL plans once per
    connection (`DatabaseWrapper.prepared_cursor`); use it as `connection.cursor()`."""
    return connection.prepared_cursor()  # type: ignore[attr-defined]
