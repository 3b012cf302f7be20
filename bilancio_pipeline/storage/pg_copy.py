"""Bulk upserts into PostgreSQL through COPY.

A multi-row INSERT … VALUES of thousands of rows spends most of its time in the server's
parser and planner. COPY into a temporary staging table, then one INSERT … SELECT … ON CONFLICT
DO UPDATE, writes the same rows several times faster, in the caller's transaction.

Values arrive already checked by the SQL store (`storage.values`), which also spells each kind
in COPY's text format (`values.COPY_TEXT`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from sqlalchemy import Column, MetaData, Table, select
from sqlalchemy.dialects import postgresql

from bilancio_pipeline.storage.values import COPY_NULL, COPY_TEXT


def copy_text(rows: Sequence[dict], columns: Sequence[str], kinds: dict[str, str]) -> io.StringIO:
    """The rows as COPY text: tab-separated, one line each, \\N for NULL."""
    encoders = [(name, COPY_TEXT[kinds[name]]) for name in columns]
    buffer = io.StringIO()
    write = buffer.write
    for row in rows:
        write("\t".join([COPY_NULL if (v := row.get(name)) is None else encode(v) for name, encode in encoders]))
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
