"""Rows written to a CSV file with COPY before retention deletes them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.db import connection


def query_archive(query: str, params: Sequence[Any], path: Path) -> int:
    """Write the rows of `query` (with a header line) to the CSV file `path`, streamed by COPY
    without holding them in Python; returns how many rows it wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with connection.cursor() as cursor, path.open("wb") as file:
        with cursor.cursor.copy(
            f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", params or None
        ) as copy:
            for chunk in copy:
                file.write(chunk)
        return max(cursor.cursor.rowcount, 0)
