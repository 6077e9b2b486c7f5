"""Querysets compiled to SQL once per process and run with each request's values.

Django builds and compiles a queryset's SQL at every evaluation: for the reads whose statement
has a fixed shape (the same joins, filters, annotations and order, only the values change), that
costs several times the round trip to PostgreSQL. A `CompiledQuery` is compiled once from the
queryset itself, built with a stand-in for each value a request brings, so its SQL is the ORM's
own; a run puts the request's values where the stand-ins were among the parameters and turns the
rows into model instances as Django's `ModelIterable` does (select_related and annotations
included). Values the SQL text holds (LIMIT, OFFSET) are part of the shape: a shape compiled
for one page size and offset serves only those.

A statement compiled `prepared` runs on `prepared_cursor`, so PostgreSQL plans it once per
connection as well: for reads by a unique key, whose one plan fits every value. Not for pages:
past five runs PostgreSQL may keep a generic plan, blind to the values, and a deep page of a
send's messages took 8 times as long with it (the range of one send is then guessed, not read
off the statistics).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators  # type: ignore[attr-defined]

from mindo.prepared import prepared_cursor

M = TypeVar("M", bound=Model)

# Stand-ins no request brings: integers past any serial this service will reach (yet within
# PostgreSQL's integer, which Django checks), UUIDs and moments no row holds.
_STAND_IN_INT = 2_000_000_000
_STAND_IN_MOMENT = datetime(1901, 1, 1, tzinfo=UTC)


def stand_in_int(n: int) -> int:
    return _STAND_IN_INT + n


def stand_in_uuid(n: int) -> uuid.UUID:
    return uuid.UUID(int=0xFEED_0000_0000_0000_0000_0000_0000_0000 + n)


def stand_in_moment(n: int) -> datetime:
    return _STAND_IN_MOMENT + timedelta(microseconds=n + 1)


@dataclass(frozen=True, slots=True)
class CompiledQuery(Generic[M]):
    """One statement of a queryset and how its rows become instances of `model`."""

    sql: str | None  # None: Django found the queryset empty without running it
    # For each parameter: the name of the request's value it takes, or None for `constants`'.
    slots: tuple[str | None, ...]
    constants: tuple[Any, ...]
    model: type[M]
    fields: slice
    init_list: tuple[str, ...]
    populators: tuple[Any, ...]
    annotations: tuple[tuple[str, int], ...]
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]
    prepared: bool = False

    def objects(self, **values: Any) -> list[M]:
        """The queryset's instances for these values, in its order."""
        if self.sql is None:
            return []
        with _cursor(self.prepared) as cursor:
            cursor.execute(self.sql, _params(self.slots, self.constants, values))
            rows = cursor.fetchall()
        return [self._instance(list(row)) for row in rows]

    def _instance(self, row: list[Any]) -> M:
        connection = connections[DEFAULT_DB_ALIAS]
        for position, converters, expression in self.converters:
            value = row[position]
            for converter in converters:
                value = converter(value, expression, connection)
            row[position] = value
        instance = self.model.from_db(DEFAULT_DB_ALIAS, list(self.init_list), row[self.fields])
        for populator in self.populators:
            populator.populate(row, instance)
        for name, position in self.annotations:
            setattr(instance, name, row[position])
        return instance


@dataclass(frozen=True, slots=True)
class CompiledCount:
    """How many rows a queryset has, as one statement."""

    sql: str | None  # None: Django found the queryset empty without running it
    slots: tuple[str | None, ...]
    constants: tuple[Any, ...]
    prepared: bool = False

    def count(self, **values: Any) -> int:
        if self.sql is None:
            return 0
        with _cursor(self.prepared) as cursor:
            cursor.execute(self.sql, _params(self.slots, self.constants, values))
            (count,) = cursor.fetchone()
        return int(count)


def first_of(queryset: QuerySet[M]) -> QuerySet[M]:
    """The one row `queryset.first()` reads, as a queryset to compile."""
    return (queryset if queryset.ordered else queryset.order_by("pk"))[:1]


def compile_count(
    queryset: QuerySet[Any], stand_ins: Mapping[str, Any], *, prepared: bool = False
) -> CompiledCount:
    """`queryset.count()` as a `CompiledCount` (see `compile_queryset`): its keys counted."""
    compiler = queryset.order_by().values("pk").query.get_compiler(using=DEFAULT_DB_ALIAS)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return CompiledCount(None, (), ())
    slots, constants = _slots(params, stand_ins)
    return CompiledCount(f"SELECT COUNT(*) FROM ({sql}) counted", slots, constants, prepared)


def compile_queryset(
    queryset: QuerySet[M], stand_ins: Mapping[str, Any], *, prepared: bool = False
) -> CompiledQuery[M]:
    """`queryset`, built with `stand_ins` (name: stand-in value, each one distinct) where a
    request's values go, as a `CompiledQuery` whose runs take those names. Refuses a queryset
    in which a stand-in does not reach the parameters (a value Django wrote into the SQL text, or
    a filter it simplified away): its statement could not take the request's value."""
    if queryset._known_related_objects or queryset._prefetch_related_lookups:  # type: ignore[attr-defined]
        raise ValueError("a compiled queryset takes no prefetch and no known related objects")
    compiler = queryset.query.get_compiler(using=DEFAULT_DB_ALIAS)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:  # an empty slice, an empty IN: what Django answers without a query
        return CompiledQuery(None, (), (), queryset.model, slice(0), (), (), (), ())
    slots, constants = _slots(params, stand_ins)
    klass_info = compiler.klass_info
    assert klass_info is not None, "a compiled queryset yields model instances"
    select = compiler.select
    select_fields = klass_info["select_fields"]
    start, end = select_fields[0], select_fields[-1] + 1
    converters = compiler.get_converters([column[0] for column in select])
    return CompiledQuery(
        sql=sql,
        slots=slots,
        constants=constants,
        model=klass_info["model"],
        fields=slice(start, end),
        init_list=tuple(column[0].target.attname for column in select[start:end]),
        populators=tuple(get_related_populators(klass_info, select, DEFAULT_DB_ALIAS)),
        annotations=tuple(compiler.annotation_col_map.items()),
        converters=tuple(
            (position, tuple(functions), expression)
            for position, (functions, expression) in converters.items()
        ),
        prepared=prepared,
    )


def _slots(
    params: tuple[Any, ...] | list[Any], stand_ins: Mapping[str, Any]
) -> tuple[tuple[str | None, ...], tuple[Any, ...]]:
    """Which stand-in each parameter is (None: a constant of the shape), and the constants."""
    names = {_key(value): name for name, value in stand_ins.items()}
    slots = tuple(names.get(_key(param)) for param in params)
    missing = set(stand_ins) - set(slots)
    if missing:
        raise ValueError(f"stand-ins not among the statement's parameters: {sorted(missing)}")
    constants = tuple(None if slot else param for slot, param in zip(slots, params, strict=True))
    return slots, constants


def _cursor(prepared: bool) -> Any:
    return prepared_cursor() if prepared else connections[DEFAULT_DB_ALIAS].cursor()


def _params(
    slots: tuple[str | None, ...], constants: tuple[Any, ...], values: Mapping[str, Any]
) -> list[Any]:
    return [
        constant if slot is None else values[slot]
        for slot, constant in zip(slots, constants, strict=True)
    ]


def _key(value: Any) -> tuple[type, Any]:
    # By type too: the stand-in 2,000,000,001 is not a float or a Decimal of a parameter.
    try:
        hash(value)
    except TypeError:
        return (type(value), id(value))
    return (type(value), value)
