"""Immutable input records (grants, subscriptions, …) as Arrow tables and back, exactly.

A bucket's customer inputs travel as Parquet files. Each dataclass field becomes one column:
`Decimal` as its exact text (a Parquet decimal would need one scale for every row and would
rewrite `1.50` as `1.5`), `datetime` as a UTC microsecond timestamp, tuples of text as lists,
`int` and `str` as themselves, a nested record (a recurring entitlement's `Rollover`) as a struct of
its fields. Reading a table back gives records equal to those written.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import pyarrow as pa

Record = TypeVar("Record")

_TIMESTAMP = pa.timestamp("us", tz="UTC")


def _column_kind(hint: Any) -> tuple[pa.DataType, Callable[[Any], Any], Callable[[Any], Any]]:
    """The Arrow type of a field's type hint, with the conversions to and from that column."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _column_kind(args[0])
    if hint is Decimal:
        return pa.string(), lambda v: None if v is None else str(v), _to_decimal
    if hint is datetime:
        return _TIMESTAMP, _to_utc, _to_utc
    if hint is int:
        return pa.int64(), _same, _same
    if hint is bool:
        return pa.bool_(), _same, _same
    if origin is tuple:
        return pa.list_(pa.string()), lambda v: list(v), lambda v: tuple(v or ())
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _record_kind(hint)
    # str, type aliases of str and Literal[...] of text
    return pa.string(), _same, _same


def _record_kind(kind: type) -> tuple[pa.DataType, Callable[[Any], Any], Callable[[Any], Any]]:
    """A nested record as a struct column of its fields (None stays null)."""
    fields = {name: _column_kind(hint) for name, hint in _fields(kind)}

    def to_column(value: Any) -> Any:
        if value is None:
            return None
        return {name: f[1](getattr(value, name)) for name, f in fields.items()}

    def from_column(value: Any) -> Any:
        if value is None:
            return None
        return kind(**{name: f[2](value[name]) for name, f in fields.items()})

    struct = pa.struct([(name, f[0]) for name, f in fields.items()])
    return struct, to_column, from_column


def _same(value: Any) -> Any:
    return value


def _to_decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _to_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _fields(kind: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(kind)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(kind)]


def records_table(records: Sequence[Any], kind: type) -> pa.Table:
    """`records` (instances of the dataclass `kind`) as a table, one column per field."""
    columns = {}
    for name, hint in _fields(kind):
        arrow_type, to_column, _ = _column_kind(hint)
        columns[name] = pa.array(
            [to_column(getattr(record, name)) for record in records], type=arrow_type
        )
    return pa.table(columns)


def table_records(table: pa.Table, kind: type[Record]) -> tuple[Record, ...]:
    """The records of a table written by `records_table(…, kind)`."""
    readers = {name: _column_kind(hint)[2] for name, hint in _fields(kind)}
    rows = table.select(list(readers)).to_pylist()
    return tuple(
        kind(**{name: readers[name](value) for name, value in row.items()}) for row in rows
    )
