"""Every conversion of a column value, in one place: the checks every backend makes before a row
is written, and each backend's wire format on top of the checked value, both ways.

- Checked value (`TableValues.prepare`): what a column holds in Python, the same for every
  backend. Floats (NaN becomes NULL, as SQLite stores it), whole numbers, text, true/false, aware
  UTC datetimes, lists of finite numbers, plain JSON (through orjson: numpy values become
  numbers, NaN and infinities null). A bad value is refused naming its table and column.
- SQL (SQLite, PostgreSQL): the checked values are the statement's parameters; `read_sql` turns
  what the driver returns back into them (UTC datetimes, lists of floats or ints).
- PostgREST JSON (`to_json`, `from_json`): timestamps as ISO text, infinite floats as the text
  float8 reads ("Infinity").
- PostgreSQL COPY text (`COPY_TEXT`, for `storage.pg_copy`).

A column's kind (timestamp, bool, float, int, text, float_list, int_list, json) is read from its
Postgres type in `storage.schema`, the schema of record; SQLite's variants follow it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson
from sqlalchemy import Boolean, Column, DateTime, Float, Integer, MetaData, String, Table
from sqlalchemy.dialects import postgresql

from bilancio_pipeline.storage import schema

Row = dict[str, Any]
FILLED_BY_STORE = ("created_at", "updated_at")  # every store sets these itself
ALLOWED_VALUES = {
    ("jobs", "status"): schema.JOB_STATUSES,
    ("runs", "status"): schema.RUN_STATUSES,
    ("runs", "regime"): ("passive", "active"),
    ("job_events", "event_type"): schema.EVENT_TYPES,
}
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class BadRow(ValueError):
    """A row or value no backend may store; the message names the table and column."""


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


# --- checked values ---------------------------------------------------------------------------


def to_utc(value: Any) -> datetime:
    """An aware UTC datetime from a datetime or ISO text (also Postgres' "2026-01-02 03:04:05+00");
    a naive value is read as UTC, which is what the stores hand out."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def to_bool(value: Any) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # also numpy's bool
        return bool(value)
    raise TypeError(f"expected true or false, got {value!r}")


def _to_float(value: Any) -> float | None:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"expected a number, got {value!r}")
    value = float(value)
    return None if math.isnan(value) else value  # SQLite stores NaN as NULL: do so everywhere


def _finite_float(value: Any) -> float:
    # Lists are JSON in SQLite, where NaN and infinities cannot be written: refuse them everywhere.
    value = _to_float(value)
    if value is None or not math.isfinite(value):
        raise ValueError(f"{value!r} in a list: only finite numbers can be stored")
    return value


def _whole(value: Any) -> int:
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return operator.index(value)
    if hasattr(value, "is_integer"):  # floats, numpy floats
        if not float(value).is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    return operator.index(value)  # numpy ints


def _to_int(value: Any) -> int | None:
    if isinstance(value, float) and math.isnan(value):
        return None
    return _whole(value)


def _to_text(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return str.__str__(value)  # a plain str, also from str subclasses


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot store a value of type {type(value).__name__}")


def json_text(value: Any) -> str:
    """JSON text, as every backend writes it: NaN and infinities become null (jsonb refuses them)."""
    return orjson.dumps(value, default=_json_default, option=JSON_OPTIONS).decode()


def _to_json(value: Any) -> Any:
    # Through orjson and back: the same plain JSON on every backend; anything that is not JSON
    # fails here, naming its column.
    try:
        return orjson.loads(json_text(value))
    except orjson.JSONEncodeError as problem:
        raise TypeError(f"not JSON: {problem}") from None


def list_of(convert: Callable[[Any], Any]) -> Callable[[Any], list]:
    """A converter for a list column whose items each go through `convert`."""
    def to_list(value: Any) -> list:
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return [convert(v) for v in value]

    return to_list


CHECKED: dict[str, Callable[[Any], Any]] = {
    "timestamp": to_utc,
    "float": _to_float,
    "int": _to_int,
    "bool": to_bool,
    "float_list": list_of(_finite_float),
    "int_list": list_of(_whole),
    "json": _to_json,
    "text": _to_text,
}

# --- the wire formats ---------------------------------------------------------------------------


def _float_to_json(value: float) -> float | str:
    return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")  # float8's text


# kind -> checked value to its PostgREST JSON value (kinds not named are sent as they are)
_TO_JSON: dict[str, Callable[[Any], Any]] = {"timestamp": lambda v: v.isoformat(), "float": _float_to_json}
# kind -> value as PostgREST sends it back, as the SQL store returns it
_FROM_JSON: dict[str, Callable[[Any], Any]] = {
    "timestamp": to_utc,
    "float": float,  # also "Infinity"
    "int": int,
    "bool": bool,
    "float_list": lambda v: [None if x is None else float(x) for x in v],
    "int_list": lambda v: [None if x is None else int(x) for x in v],
}
# kind -> value as a SQL driver returns it, as the stores return it
_FROM_SQL: dict[str, Callable[[Any], Any]] = {
    "timestamp": to_utc,
    "float_list": lambda v: [float(x) for x in v],
    "int_list": lambda v: [int(x) for x in v],
}


def _copy_float(value: float) -> str:
    return repr(value) if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")


def _copy_number_array(values) -> str:
    return "{" + ",".join(_copy_float(v) if isinstance(v, float) else str(v) for v in values) + "}"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
COPY_NULL = "\\N"
# kind -> checked value spelled in COPY's text format
COPY_TEXT: dict[str, Callable[[Any], str]] = {
    "text": lambda v: v.translate(_COPY_ESCAPES),
    "int": str,
    "float": _copy_float,
    "bool": lambda v: "t" if v else "f",
    "timestamp": lambda v: v.isoformat(),
    "float_list": _copy_number_array,
    "int_list": _copy_number_array,
    "json": lambda v: json_text(v).translate(_COPY_ESCAPES),
}


# --- per table ----------------------------------------------------------------------------------


class TableValues:
    """A table's (or the run_results view's) columns, kinds, key and checks."""

    def __init__(self, table: Table):
        self.name = table.name
        self.table = table
        self.kinds = {c.name: column_kind(c) for c in table.columns}
        self.key = schema.CONFLICT_KEYS.get(table.name, ())
        # Columns an INSERT cannot do without (the store fills created_at/updated_at).
        self.required = frozenset(
            c.name for c in table.columns
            if not c.nullable and c.server_default is None and c.name not in FILLED_BY_STORE
            and c is not table.autoincrement_column
        )
        self.allowed = {col: values for (tab, col), values in ALLOWED_VALUES.items() if tab == table.name}
        self._checked = {n: CHECKED[k] for n, k in self.kinds.items()}
        self._to_json = {n: _TO_JSON[k] for n, k in self.kinds.items() if k in _TO_JSON}
        self._from_json = {n: _FROM_JSON[k] for n, k in self.kinds.items() if k in _FROM_JSON}
        self._from_sql = {n: _FROM_SQL[k] for n, k in self.kinds.items() if k in _FROM_SQL}

    def prepare(self, rows: Iterable[Row]) -> list[Row]:
        """Checked copies of `rows`, one per key (a later row for the same key adds to or
        overrides an earlier one: a multi-row upsert may not touch a row twice). Raises BadRow."""
        merged: dict[tuple, Row] = {}
        unkeyed: list[Row] = []
        for position, row in enumerate(rows):
            if not isinstance(row, dict):
                raise BadRow(f"{self.name}: row {position} is a {type(row).__name__}, not a dict")
            if not self.kinds.keys() >= row.keys():
                unknown = [name for name in row if name not in self.kinds]
                raise BadRow(f"{self.name} has no column {', '.join(map(repr, unknown))}")
            clean = {}
            for name, value in row.items():
                if value is not None:
                    try:
                        value = self._checked[name](value)
                    except (TypeError, ValueError, OverflowError) as problem:
                        raise BadRow(f"{self.name}.{name}: {problem}") from None
                    allowed = self.allowed.get(name)
                    if allowed and value not in allowed:
                        raise BadRow(f"{self.name}.{name}: {value!r} is not one of {', '.join(allowed)}")
                clean[name] = value
            if self.key:
                missing = [k for k in self.key if clean.get(k) in (None, "")]
                if missing:
                    raise BadRow(f"{self.name}: row {position} has no {', '.join(missing)}")
                ident = tuple(clean[k] for k in self.key)
                merged[ident] = {**merged[ident], **clean} if ident in merged else clean
            else:
                unkeyed.append(clean)
        return list(merged.values()) if self.key else unkeyed

    def to_json(self, row: Row) -> Row:
        """A checked row as PostgREST's JSON body carries it."""
        convert = self._to_json
        return {k: v if v is None or k not in convert else convert[k](v) for k, v in row.items()}

    def from_json(self, row: Mapping[str, Any]) -> Row:
        convert = self._from_json
        return {k: v if v is None or k not in convert else convert[k](v) for k, v in row.items()}

    def read_sql(self, row: Mapping[str, Any]) -> Row:
        out = dict(row)
        for name, convert in self._from_sql.items():
            value = out.get(name)
            if value is not None:
                out[name] = convert(value)
        return out


def _run_results_view() -> Table:
    """The view (created by the migrations) as a typed table to query."""
    runs, metrics = schema.runs, schema.metrics
    sources = [runs.c[name] if name in runs.c else metrics.c[name] for name in schema.RUN_RESULTS_COLUMNS]
    return Table("run_results", MetaData(), *(Column(c.name, c.type) for c in sources))


run_results = _run_results_view()
TABLES: dict[str, TableValues] = {name: TableValues(t) for name, t in {**schema.TABLES, "run_results": run_results}.items()}
