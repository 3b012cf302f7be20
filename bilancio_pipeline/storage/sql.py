"""The table store on SQL databases: SQLite (the embedded default) and PostgreSQL (Supabase's
database), one code path through SQLAlchemy Core.

The schema is the migrations in `supabase/migrations`; on first use the store applies those the
database lacks (`storage.migrations`), on SQLite and PostgreSQL alike, and refuses a database
newer than the code. SQLite runs in WAL mode with foreign keys on and a busy timeout, so
several processes can share the file.

Writes are idempotent upserts on each table's key (`schema.CONFLICT_KEYS`), sent in chunks of
many rows per statement (large PostgreSQL batches through COPY, see `storage.pg_copy`), one
transaction per call: a refused row rolls back the whole call.
Every database error becomes a `StoreError` naming the backend, without the URL's password.
"""

from __future__ import annotations

import datetime as dt
import operator
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    exc,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

from bilancio_pipeline.storage import migrations, schema, values
from bilancio_pipeline.storage.base import NotFound, Row, Store, StoreError
from bilancio_pipeline.storage.values import run_results

CHUNK_ROWS = 2_000  # rows per executemany call; the driver pages these into multi-row statements
COPY_MIN_ROWS = 200  # from this many rows on, PostgreSQL upserts go through COPY (storage.pg_copy)
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_HINT = "see `bilancio-pipeline db status`"

_UTC = dt.timezone.utc
_INFO = values.TABLES  # per table: kinds, key, required columns, checks and readers
_VIEW_INFO = values.TABLES["run_results"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(_UTC)


def _chunks(items: Sequence, size: int = CHUNK_ROWS) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- the store --------------------------------------------------------------------------------


class SqlStore(Store):
    """Jobs, runs, metrics, events and job metrics in SQLite or PostgreSQL, chosen by URL:
    `sqlite:///path/to/file.db`, or `postgresql://user:password@host:port/db` (also
    `postgres://…`, as Supabase writes it)."""

    def __init__(self, url: str):
        self.backend = "sqlite" if str(url).startswith("sqlite") else "postgres"
        self.url = self._parse_url(url)
        self._password = self.url.password
        self._engine = self._create_engine()
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqlStore({self.location!r})"

    @property
    def location(self) -> str:
        """The database URL without its password."""
        return self.url.render_as_string(hide_password=True)

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- connection ---------------------------------------------------------------------
    def _parse_url(self, raw: str) -> URL:
        try:
            url = make_url(raw)
        except (exc.ArgumentError, ValueError, TypeError):
            # The parser's message repeats the whole URL, password included: do not pass it on.
            raise StoreError(self.backend, "cannot parse the database URL; expected sqlite:///path/file.db "
                                           "or postgresql://user:password@host:port/dbname") from None
        backend, _, driver = url.drivername.partition("+")
        if backend in ("postgres", "postgresql"):
            self.backend = "postgres"
            return url.set(drivername="postgresql+psycopg2" if driver in ("", "psycopg2") else url.drivername)
        if backend == "sqlite":
            self.backend = "sqlite"
            return url
        raise StoreError(self.backend, f"unsupported database URL scheme {url.drivername!r}; use sqlite:/// or postgresql://")

    def _create_engine(self) -> Engine:
        json_args = {"json_serializer": values.json_text, "json_deserializer": orjson.loads}
        if self.backend == "sqlite":
            in_memory = self.url.database in (None, "", ":memory:")
            if not in_memory:
                Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            extra = {"poolclass": StaticPool} if in_memory else {}
            engine = create_engine(self.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                                   **json_args, **extra)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        connect_args = {} if "connect_timeout" in self.url.query else {"connect_timeout": 10}
        # pre-ping: a pooled connection the server (or Supabase's pooler) closed is replaced
        # instead of failing the next call.
        return create_engine(self.url, pool_pre_ping=True, connect_args=connect_args, **json_args)

    def close(self) -> None:
        self._engine.dispose()

    # --- errors -------------------------------------------------------------------------
    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except exc.SQLAlchemyError as error:
            raise self._store_error(action, error) from None
        except Exception as error:
            # The driver's own errors, from the few calls made on its cursor directly (COPY).
            dbapi = self._engine.dialect.loaded_dbapi
            if isinstance(error, dbapi.Error):
                raise self._store_error(action, error, transient=isinstance(
                    error, (dbapi.OperationalError, dbapi.InterfaceError))) from None
            raise

    def _store_error(self, action: str, error: Exception, transient: bool | None = None) -> StoreError:
        original = getattr(error, "orig", None)
        detail = " ".join(str(original if original is not None else error).split())
        if self._password:
            detail = detail.replace(self._password, "***")
        if transient is None:
            transient = isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError,
                                           exc.TimeoutError)) or bool(getattr(error, "connection_invalidated", False))
        if self.backend == "sqlite" and transient:
            # SQLite reports "no such table" and syntax errors as OperationalError too.
            transient = any(word in detail.lower() for word in ("locked", "busy", "unable to open", "disk i/o"))
        if "does not exist" in detail and ("relation" in detail or "column" in detail):
            detail += f" (is the schema up to date? {MIGRATIONS_HINT})"
        where = f" at {self.location}" if transient and self.backend == "postgres" else ""
        return StoreError(self.backend, f"could not {action}{where}: {detail}", transient=transient)

    # --- schema -------------------------------------------------------------------------
    def _ready(self) -> Engine:
        """The engine, once the database is at this code's schema version (pending migrations
        are applied on first use; see `storage.migrations`)."""
        if not self._schema_ready:
            self.upgrade_schema()
        return self._engine

    def schema_status(self) -> migrations.Status:
        """Applied and pending migrations; reads only."""
        with self._errors("read the schema version"):
            return migrations.status(self._engine)

    def upgrade_schema(self) -> list[migrations.Migration]:
        """Apply the pending migrations now; returns those applied."""
        with self._schema_lock, self._errors("bring the database schema up to date"):
            applied = migrations.upgrade(self._engine)
            self._schema_ready = True
            return applied

    # --- row conversion -----------------------------------------------------------------
    def _prepare(self, info: values.TableValues, rows: Iterable[Row]) -> list[Row]:
        """Checked copies of `rows`, one per key (see `values.TableValues.prepare`)."""
        try:
            return info.prepare(rows)
        except values.BadRow as bad:
            raise StoreError(self.backend, str(bad)) from None

    @staticmethod
    def _read(info: values.TableValues, row: Any) -> Row:
        return info.read_sql(row._mapping)

    # --- writes -------------------------------------------------------------------------
    def _insert(self, table: Table):
        return (postgresql.insert if self.backend == "postgres" else sqlite.insert)(table)

    def _upsert(self, table_name: str, rows: Iterable[Row]) -> None:
        info = _INFO[table_name]
        prepared = self._prepare(info, rows)
        if not prepared:
            return
        now = utc_now()
        # One statement shape per set of columns given, so absent columns are left alone.
        groups: dict[frozenset, list[Row]] = {}
        for row in prepared:
            groups.setdefault(frozenset(row), []).append(row)
        engine = self._ready()
        with self._errors(f"write {len(prepared)} {table_name} row(s)"), engine.begin() as conn:
            for columns, group in groups.items():
                if info.required <= columns:
                    self._insert_or_update(conn, info, columns, group, now)
                else:
                    self._update_existing(conn, info, columns, group, now)

    def _insert_or_update(self, conn, info: values.TableValues, columns: frozenset, group: list[Row], now) -> None:
        table = info.table
        changed = [c for c in table.columns.keys() if c in columns and c not in info.key and c != "created_at"]
        if self.backend == "postgres" and len(group) >= COPY_MIN_ROWS:
            from bilancio_pipeline.storage.pg_copy import copy_upsert

            names = [c for c in table.columns.keys() if c in columns or c in values.FILLED_BY_STORE]
            stamped = [{"created_at": now, **row, "updated_at": now} for row in group]
            stage = f"bilancio_stage_{table.name}_{len(changed)}_{id(group)}"
            copy_upsert(conn, table, stamped, names, info.kinds, info.key, [*changed, "updated_at"], stage)
            return
        stmt = self._insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[k] for k in info.key],
            set_={**{c: stmt.excluded[c] for c in changed}, "updated_at": stmt.excluded.updated_at},
        )
        if self.backend == "postgres":
            # SQLAlchemy batches many rows into one INSERT … VALUES (…), (…) only when the
            # statement returns something if it has an ON CONFLICT clause; without this, psycopg2
            # would send one statement per row.
            stmt = stmt.returning(*(table.c[k] for k in info.key))
        for chunk in _chunks(group):
            conn.execute(stmt, [{"created_at": now, **row, "updated_at": now} for row in chunk])

    def _update_existing(self, conn, info: values.TableValues, columns: frozenset, group: list[Row], now) -> None:
        """Rows without every required column can only change rows already stored."""
        table = info.table
        (key,) = info.key
        wanted = [row[key] for row in group]
        found: set = set()
        for chunk in _chunks(wanted):
            found.update(conn.execute(select(table.c[key]).where(table.c[key].in_(chunk))).scalars())
        absent = [k for k in wanted if k not in found]
        if absent:
            need = ", ".join(sorted(info.required - columns))
            raise StoreError(self.backend, f"{info.name}: {len(absent)} row(s) not stored yet (first: {absent[0]!r}) "
                                           f"and cannot be inserted without {need}")
        stmt = update(table).where(table.c[key] == bindparam("_key"))
        for chunk in _chunks(group):
            params = [{**{c: v for c, v in row.items() if c != key}, "updated_at": now, "_key": row[key]}
                      for row in chunk]
            conn.execute(stmt, params)

    # --- jobs ---------------------------------------------------------------------------
    def save_job(self, job: Row) -> None:
        self._upsert("jobs", [job])

    def get_job(self, job_id: str) -> Row:
        jobs = schema.jobs
        with self._errors(f"read job {job_id!r}"), self._ready().connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()
        if row is None:
            raise NotFound(self.backend, f"job {job_id!r} not found")
        return self._read(_INFO["jobs"], row)

    def list_jobs(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Row]:
        if limit < 0 or offset < 0:
            raise StoreError(self.backend, f"list_jobs: limit and offset must be >= 0 (got {limit}, {offset})")
        jobs = schema.jobs
        stmt = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc()).limit(limit).offset(offset)
        if status is not None:
            stmt = stmt.where(jobs.c.status == status)
        with self._errors("list jobs"), self._ready().connect() as conn:
            return [self._read(_INFO["jobs"], row) for row in conn.execute(stmt)]

    def update_job(self, job_id: str, **fields: Any) -> None:
        info = _INFO["jobs"]
        if "job_id" in fields:
            raise StoreError(self.backend, "jobs.job_id cannot be changed")
        (values,) = self._prepare(info, [{**fields, "job_id": job_id}])
        values.pop("job_id")
        values["updated_at"] = utc_now()
        jobs = schema.jobs
        with self._errors(f"update job {job_id!r}"), self._ready().begin() as conn:
            result = conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(**values))
        if result.rowcount == 0:
            raise NotFound(self.backend, f"job {job_id!r} not found")

    def delete_job(self, job_id: str) -> None:
        jobs = schema.jobs
        with self._errors(f"delete job {job_id!r}"), self._ready().begin() as conn:
            conn.execute(delete(jobs).where(jobs.c.job_id == job_id))

    # --- events -------------------------------------------------------------------------
    def log_events(self, events: Sequence[Row]) -> None:
        info = _INFO["job_events"]
        rows = self._prepare(info, events)
        if not rows:
            return
        now = utc_now()
        for row in rows:
            row.setdefault("timestamp", now)
            row.setdefault("details", {})
            if not row.get("job_id") or not row.get("event_type"):
                raise StoreError(self.backend, "job_events: every event needs job_id and event_type")
        # Same columns in every row, so one executemany covers them all.
        rows = [{"job_id": r["job_id"], "event_type": r["event_type"], "timestamp": r["timestamp"],
                 "details": r["details"]} for r in rows]
        with self._errors(f"log {len(rows)} job event(s)"), self._ready().begin() as conn:
            for chunk in _chunks(rows):
                conn.execute(schema.job_events.insert(), list(chunk))

    def list_events(self, job_id: str) -> list[Row]:
        events = schema.job_events
        stmt = select(events).where(events.c.job_id == job_id).order_by(events.c.timestamp, events.c.id)
        with self._errors(f"list events of job {job_id!r}"), self._ready().connect() as conn:
            return [self._read(_INFO["job_events"], row) for row in conn.execute(stmt)]

    # --- runs and metrics ---------------------------------------------------------------
    def upsert_runs(self, rows: Sequence[Row]) -> None:
        self._upsert("runs", rows)

    def upsert_metrics(self, rows: Sequence[Row]) -> None:
        self._upsert("metrics", rows)

    def list_runs(self, job_id: str, status: str | None = None, run_ids: Iterable[str] | None = None) -> list[Row]:
        runs = schema.runs
        stmt = select(runs).where(runs.c.job_id == job_id)
        if status is not None:
            stmt = stmt.where(runs.c.status == status)
        statements = [stmt] if run_ids is None else [stmt.where(runs.c.run_id.in_(chunk))
                                                     for chunk in _chunks(sorted(set(run_ids)))]
        with self._errors(f"list runs of job {job_id!r}"), self._ready().connect() as conn:
            found = [self._read(_INFO["runs"], row) for s in statements for row in conn.execute(s)]
        return sorted(found, key=operator.itemgetter("run_id"))

    def get_metrics(self, run_ids: Iterable[str]) -> list[Row]:
        metrics = schema.metrics
        ids = sorted(set(run_ids))
        with self._errors(f"read metrics of {len(ids)} run(s)"), self._ready().connect() as conn:
            found = [self._read(_INFO["metrics"], row) for chunk in _chunks(ids)
                     for row in conn.execute(select(metrics).where(metrics.c.run_id.in_(chunk)))]
        return sorted(found, key=operator.itemgetter("run_id"))

    def run_counts(self, job_id: str) -> dict[str, int]:
        runs = schema.runs
        stmt = select(runs.c.status, func.count()).where(runs.c.job_id == job_id).group_by(runs.c.status)
        with self._errors(f"count runs of job {job_id!r}"), self._ready().connect() as conn:
            counted = dict(conn.execute(stmt).all())
        return {status: int(counted.get(status, 0)) for status in schema.RUN_STATUSES}

    def completed_run_ids(self, job_id: str) -> set[str]:
        runs, metrics = schema.runs, schema.metrics
        stmt = (select(runs.c.run_id).join(metrics, metrics.c.run_id == runs.c.run_id)
                .where(runs.c.job_id == job_id, runs.c.status == "completed"))
        with self._errors(f"read completed runs of job {job_id!r}"), self._ready().connect() as conn:
            return set(conn.execute(stmt).scalars())

    def query_results(
        self,
        where: Any = None,
        *,
        job_id: str | None = None,
        regime: str | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[Row]:
        view = run_results
        stmt = select(view)
        if where is not None:
            from bilancio_pipeline.storage.filters import parse_filter, to_sqlalchemy

            if isinstance(where, str):
                where = parse_filter(where)
            stmt = stmt.where(to_sqlalchemy(where, view))
        if job_id is not None:
            stmt = stmt.where(view.c.job_id == job_id)
        if regime is not None:
            stmt = stmt.where(view.c.regime == regime)
        if order_by is not None:
            if order_by not in view.c:
                raise StoreError(self.backend, f"cannot order by {order_by!r}: run_results has no such column "
                                               f"(columns: {', '.join(schema.RUN_RESULTS_COLUMNS)})")
            column = view.c[order_by]
            # NULLs last both ways, on both backends (their defaults differ).
            stmt = stmt.order_by((column.desc() if descending else column.asc()).nulls_last())
        stmt = stmt.order_by(view.c.job_id, view.c.run_id)
        if limit is not None:
            if limit < 0:
                raise StoreError(self.backend, f"query_results: limit must be >= 0 (got {limit})")
            stmt = stmt.limit(limit)
        with self._errors("query run_results"), self._ready().connect() as conn:
            return [self._read(_VIEW_INFO, row) for row in conn.execute(stmt)]

    # --- job metrics --------------------------------------------------------------------
    def save_job_metrics(self, row: Row) -> None:
        self._upsert("job_metrics", [row])

    def get_job_metrics(self, job_id: str) -> Row | None:
        table = schema.job_metrics
        with self._errors(f"read job metrics of {job_id!r}"), self._ready().connect() as conn:
            row = conn.execute(select(table).where(table.c.job_id == job_id)).first()
        return None if row is None else self._read(_INFO["job_metrics"], row)

    # --- housekeeping -------------------------------------------------------------------
    def ping(self) -> None:
        with self._errors("reach the database"), self._ready().connect() as conn:
            conn.execute(text("select 1"))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """Per connection: WAL lets readers and one writer work at once across processes; foreign
    keys are off in SQLite unless asked for (cascades need them)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()
