"""Bulk upserts into PostgreSQL through COPY.

A multi-row INSERT … VALUES of thousands of rows spends most of its time in the server's
parser and planner. COPY into a temporary staging table, then one INSERT … SELECT … ON CONFLICT
DO UPDATE, writes the same rows several times faster, in the caller's transaction.

Values arrive already checked and converted by the SQL store (floats, ints, aware UTC
datetimes, lists of numbers, JSON-able values); here they are only spelled in COPY's text format.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import Column, MetaData, Table, select
from sqlalchemy.dialects import postgresql

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"


def _text(value: str) -> str:
    return value.translate(_ESCAPES)


def _float(value: float) -> str:
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _number(value: Any) -> str:
    return _float(value) if isinstance(value, float) else str(value)


def _bool(value: Any) -> str:
    return "t" if value else "f"


def _timestamp(value: dt.datetime) -> str:
    return value.isoformat()


def _number_array(values: Sequence) -> str:
    return "{" + ",".join(_number(v) for v in values) + "}"


def _json(value: Any) -> str:
    # OPT_SERIALIZE_NUMPY as in the engine's serializer; NaN/inf become null as there.
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode().translate(_ESCAPES)


ENCODERS: dict[str, Callable[[Any], str]] = {
    "text": _text,
    "int": str,
    "float": _float,
    "bool": _bool,
    "timestamp": _timestamp,
    "float_list": _number_array,
    "int_list": _number_array,
    "json": _json,
}


def copy_text(rows: Sequence[dict], columns: Sequence[str], kinds: dict[str, str]) -> io.StringIO:
    """The rows as COPY text: tab-separated, one line each, \\N for NULL."""
    encoders = [(name, ENCODERS[kinds[name]]) for name in columns]
    buffer = io.StringIO()
    write = buffer.write
    for row in rows:
        write("\t".join([NULL if (v := row.get(name)) is None else encode(v) for name, encode in encoders]))
        write("\n")
    buffer.seek(0)
    return buffer


def copy_upsert(conn, table: Table, rows: Sequence[dict], columns: Sequence[str], kinds: dict[str, str],
                key: Sequence[str], update_columns: Sequence[str], stage_name: str) -> None:
    """Upsert `rows` (each holding every name in `columns`) into `table`, on `conn` (a SQLAlchemy
    connection in a transaction on psycopg2)."""
    preparer = conn.dialect.identifier_preparer
    quoted = ", ".join(preparer.quote(c) for c in columns)
    target = preparer.format_table(table)
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {preparer.quote(stage_name)} ON COMMIT DROP AS "
                         f"SELECT {quoted} FROM {target} WITH NO DATA")
    cursor = conn.connection.cursor()
    try:
        cursor.copy_expert(f"COPY {preparer.quote(stage_name)} ({quoted}) FROM STDIN", copy_text(rows, columns, kinds))
    finally:
        cursor.close()
    stage = Table(stage_name, MetaData(), *(Column(c, table.c[c].type) for c in columns))
    stmt = postgresql.insert(table).from_select(list(columns), select(*(stage.c[c] for c in columns)))
    stmt = stmt.on_conflict_do_update(index_elements=[table.c[k] for k in key],
                                      set_={c: stmt.excluded[c] for c in update_columns})
    conn.execute(stmt)
