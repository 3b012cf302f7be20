"""What a table column holds, and the checks every store backend makes on a value before it is
written. Each backend adds its own wire format on top (SQL parameters, PostgREST JSON)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Boolean, DateTime, Float, Integer, String
from sqlalchemy.dialects import postgresql


def column_kind(column) -> str:
    """timestamp, bool, float, int, text, float_list, int_list or json, read from the column's
    Postgres form (the schema of record; SQLite's variants follow it)."""
    impl = column.type.dialect_impl(postgresql.dialect())
    if isinstance(impl, postgresql.ARRAY):
        return "float_list" if isinstance(impl.item_type, Float) else "int_list"
    for sql_type, kind in ((DateTime, "timestamp"), (Boolean, "bool"), (Float, "float"), (Integer, "int"),
                           (String, "text")):
        if isinstance(impl, sql_type):
            return kind
    return "json"


def to_utc(value: Any) -> datetime:
    """An aware UTC datetime from a datetime or ISO text; a naive value is read as UTC, which is
    what the stores hand out."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def to_bool(value: Any) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # also numpy's bool
        return bool(value)
    raise TypeError(f"expected true or false, got {value!r}")


def list_of(convert: Callable[[Any], Any]) -> Callable[[Any], list]:
    """A converter for a list column whose items each go through `convert`."""
    def to_list(value: Any) -> list:
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return [convert(v) for v in value]

    return to_list
