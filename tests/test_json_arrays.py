"""Arrays passed to PostgreSQL as JSON texts (mindo.json_arrays) come out as the arrays psycopg
would have sent: the same values, the same order, NULLs where None was."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from mindo.json_arrays import json_array, json_array_sql, json_arrays_sql

pytestmark = pytest.mark.django_db

# What PostgreSQL's text holds: no NUL, no lone surrogate.
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
BIGINT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ZONES = [UTC, ZoneInfo("America/Argentina/Buenos_Aires"), ZoneInfo("Asia/Kolkata")]
MOMENTS = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(ZONES),
)


def through_postgresql(values: list[Any], sql_type: str) -> list[Any]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {json_array_sql('%s', sql_type)}", [json_array(values)])
        (array,) = cursor.fetchone()
    return list(array)


@settings(max_examples=150)
@given(
    st.one_of(
        st.tuples(st.just("text"), st.lists(st.none() | TEXT, max_size=40)),
        st.tuples(st.just("bigint"), st.lists(st.none() | BIGINT, max_size=40)),
        st.tuples(st.just("timestamptz"), st.lists(st.none() | MOMENTS, max_size=40)),
        st.tuples(st.just("boolean"), st.lists(st.none() | st.booleans(), max_size=40)),
    )
)
def test_an_array_comes_out_as_it_went_in(case: tuple[str, list[Any]]) -> None:
    sql_type, values = case
    assert through_postgresql(values, sql_type) == values


def test_arrays_of_one_statement_line_up_by_position_in_unnest() -> None:
    ids, wamids = [3, 1, 2], ["wamid.c", None, 'wamid."a",\\{b}']
    arrays = json_arrays_sql({"ids": "bigint", "wamids": "text"})
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM unnest({arrays}, '{{}}'::text[])",
            {"ids": json_array(ids), "wamids": json_array(wamids)},
        )
        rows = cursor.fetchall()
    assert rows == [(3, "wamid.c", None), (1, None, None), (2, 'wamid."a",\\{b}', None)]
