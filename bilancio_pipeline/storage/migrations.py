"""Versioned schema migrations: one history, `supabase/migrations/<version>_<name>.sql`, for
every backend.

The files are plain PostgreSQL and the schema of record; `supabase db push` applies them to a
Supabase project. This module applies the pending ones itself to the SQL store's databases, on
first use and through `bilancio-pipeline db upgrade`:

- PostgreSQL: each file as it is, in one transaction with the row recording it, in the table
  the Supabase CLI keeps (`supabase_migrations.schema_migrations(version, statements, name)`),
  so the CLI and this runner share one history.
- SQLite: each file's statements in SQLite's dialect (see `storage.migrations_sqlite`: the
  portable statements are translated, the rest carry their own SQLite text), in one
  transaction with the row recording it in `schema_migrations(version, statements, name)`.

A new SQLite file is built by replaying every migration, and an existing one by replaying the
pending ones, so a fresh store and an upgraded one get the same statements.

Stores made before migrations were recorded (version 0.x: SQLite created by the store, Postgres
by running the files with psql) have the tables but no version table: they are taken to be at
BASELINE, the two migrations of that version, and only later ones are applied (a project set up
with `supabase db push` has its history already). A store that records a migration newer than
any this code knows was written by a newer version: it is refused, never touched.

Two processes opening the same store at once are safe: each migration is applied inside a lock
(SQLite: BEGIN IMMEDIATE, the database's write lock; PostgreSQL: a transaction-level advisory
lock), and the applied versions are re-read under it, so a migration runs exactly once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from bilancio_pipeline.storage.base import StoreError

# supabase/migrations/ (the Supabase CLI's folder), through the package's link to it: in a wheel
# the link becomes a copy of the files, so an installed package finds them too.
MIGRATIONS_DIR = Path(__file__).parent / "sql_migrations"
# The last migration of version 0.x, which created stores without recording versions.
BASELINE = "20261123000100"
# Any number, the same in every process: the advisory lock that serializes upgrades.
_PG_LOCK_KEY = 7_351_202_612
_FILE_NAME = re.compile(r"^(\d{14})_(\w+)\.sql$")


class SchemaTooNew(StoreError):
    """The store records a migration this code does not have."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def filename(self) -> str:
        return self.path.name

    def statements(self) -> list[str]:
        return split_statements(self.sql)


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations shipped with this code, oldest first."""
    if not directory.is_dir():
        raise StoreError("migrations", f"no migrations folder at {directory}: reinstall bilancio-pipeline from its source tree")
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise StoreError("migrations", f"{path.name}: a migration file must be named <14 digits>_<name>.sql")
        found.append(Migration(match[1], match[2], path))
    return found


_ADDED_COLUMN = re.compile(r"alter table (?:only )?public\.(\w+) add column (\w+)", re.IGNORECASE)


def added_columns(migration: Migration) -> list[tuple[str, str]]:
    """(table, column) for each `alter table public.t add column c …` of the migration."""
    return [(m[1], m[2]) for s in migration.statements() if (m := _ADDED_COLUMN.match(" ".join(s.split())))]


# --- reading SQL ----------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$)
  | (?P<end>;)
""", re.VERBOSE | re.DOTALL)


def split_statements(sql: str) -> list[str]:
    """The statements of a SQL script, without their final `;` and without the comments
    between statements (comments and `;` inside quotes or $$ bodies are kept)."""
    statements: list[str] = []
    current: list[str] = []
    position = 0
    while True:
        match = _TOKEN.search(sql, position)
        if match is None:
            current.append(sql[position:])
            break
        current.append(sql[position:match.start()])
        position = match.end()
        if match["comment"]:
            current.append(" ")
        elif match["quoted"]:
            current.append(match[0])
        elif match["dollar"]:
            close = sql.find(match[0], position)
            if close < 0:
                raise ValueError(f"unterminated {match[0]} body")
            current.append(sql[match.start():close + len(match[0])])
            position = close + len(match[0])
        else:
            statements.append("".join(current))
            current = []
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


# --- where versions are recorded ------------------------------------------------------------


class _Database:
    """One backend's version table and transactions, over a raw DBAPI connection."""

    backend: str
    version_table: str

    def __init__(self, engine: Engine):
        self.engine = engine

    @contextmanager
    def connection(self) -> Iterator:
        raw = self.engine.raw_connection()
        try:
            yield raw
        finally:
            raw.close()

    def fetch(self, conn, sql: str, *params) -> list[tuple]:
        cursor = conn.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()

    def state(self, conn) -> tuple[list[str] | None, bool]:
        """(recorded versions, or None without a version table; whether the tables exist)."""
        raise NotImplementedError

    def lock(self, conn) -> None:
        """Begin a transaction holding the lock that serializes upgrades."""
        raise NotImplementedError

    def create_version_table(self, conn) -> None:
        raise NotImplementedError

    def apply(self, conn, migration: Migration, statements: list[str]) -> None:
        raise NotImplementedError

    def record(self, conn, migration: Migration, statements: list[str]) -> None:
        raise NotImplementedError


class _Sqlite(_Database):
    backend = "sqlite"
    version_table = "schema_migrations"

    @contextmanager
    def connection(self) -> Iterator:
        with super().connection() as raw:
            driver = raw.driver_connection
            # Transactions by hand (BEGIN IMMEDIATE), not the driver's implicit ones.
            previous, driver.isolation_level = driver.isolation_level, None
            try:
                yield raw
            finally:
                if driver.in_transaction:
                    driver.rollback()
                driver.isolation_level = previous

    def state(self, conn):
        names = {r[0] for r in self.fetch(conn, "select name from sqlite_master where type = 'table' "
                                                "and name in ('schema_migrations', 'jobs')")}
        recorded = None
        if "schema_migrations" in names:
            recorded = [r[0] for r in self.fetch(conn, "select version from schema_migrations order by version")]
        return recorded, "jobs" in names

    def lock(self, conn) -> None:
        self.fetch(conn, "BEGIN IMMEDIATE")  # the write lock, waited for up to the busy timeout

    def create_version_table(self, conn) -> None:
        self.fetch(conn, "CREATE TABLE schema_migrations (version TEXT NOT NULL PRIMARY KEY, statements JSON, name TEXT)")

    def apply(self, conn, migration, statements):
        for statement in statements:
            self.fetch(conn, statement)

    def record(self, conn, migration, statements):
        self.fetch(conn, "INSERT INTO schema_migrations (version, statements, name) VALUES (?, ?, ?)",
                   migration.version, json.dumps(statements), migration.name)


class _Postgres(_Database):
    backend = "postgres"
    version_table = "supabase_migrations.schema_migrations"

    def state(self, conn):
        # pg_class read by a plain query, under this statement's snapshot: to_regclass() goes
        # through the backend's catalog cache, which an advisory lock does not refresh, so a
        # process that waited on the lock could miss the version table the other one just made.
        table, jobs = self.fetch(conn, "select "
                                       "exists (select from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                                       "where n.nspname = 'supabase_migrations' and c.relname = 'schema_migrations'), "
                                       "exists (select from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                                       "where n.nspname = 'public' and c.relname = 'jobs')")[0]
        recorded = None
        if table:
            recorded = [r[0] for r in self.fetch(conn, "select version from supabase_migrations.schema_migrations "
                                                       "order by version")]
        return recorded, jobs

    def lock(self, conn) -> None:
        self.fetch(conn, "select pg_advisory_xact_lock(%s)", _PG_LOCK_KEY)  # psycopg2 has begun a transaction

    def create_version_table(self, conn) -> None:
        # As the Supabase CLI creates it (the schema may exist: Supabase makes it).
        self.fetch(conn, "create schema if not exists supabase_migrations")
        self.fetch(conn, "create table if not exists supabase_migrations.schema_migrations (version text not null primary key)")
        self.fetch(conn, "alter table supabase_migrations.schema_migrations add column if not exists statements text[]")
        self.fetch(conn, "alter table supabase_migrations.schema_migrations add column if not exists name text")

    def apply(self, conn, migration, statements):
        cursor = conn.cursor()
        try:
            cursor.execute(migration.sql)  # the file exactly as `supabase db push` or psql runs it
        finally:
            cursor.close()

    def record(self, conn, migration, statements):
        self.fetch(conn, "insert into supabase_migrations.schema_migrations (version, statements, name) "
                         "values (%s, %s, %s)", migration.version, statements, migration.name)


def _database(engine: Engine) -> _Database:
    return _Sqlite(engine) if engine.dialect.name == "sqlite" else _Postgres(engine)


# --- status and upgrade -----------------------------------------------------------------------


@dataclass
class Status:
    backend: str
    version_table: str
    recorded: bool  # the store has a version table
    newest_known: str  # the newest migration this code has
    applied: list[str] = field(default_factory=list)  # versions applied (or, for a 0.x store, assumed)
    pending: list[Migration] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # recorded, but not among this code's migrations
    empty: bool = False  # no tables yet: every migration is pending

    @property
    def current(self) -> str | None:
        return self.applied[-1] if self.applied else None

    def refusal(self) -> str | None:
        """Why this code must not touch the store, if it must not: a newer version wrote it.
        (Unknown versions older than ours, e.g. another app's in a shared Supabase project's
        history, are shown by `db status` but do not stop anything.)"""
        newer = [v for v in self.unknown if v > self.newest_known]
        if not newer:
            return None
        return (f"the database is at schema version {max(newer)}, newer than this bilancio-pipeline knows "
                f"(up to {self.newest_known}): upgrade bilancio-pipeline to the version that wrote it")


def _status(database: _Database, conn, migrations: list[Migration]) -> Status:
    recorded, has_tables = database.state(conn)
    known = {m.version for m in migrations}
    if recorded is None:
        # 0.x made the tables without recording versions: it was at the baseline.
        applied = [m.version for m in migrations if m.version <= BASELINE] if has_tables else []
    else:
        applied = [v for v in recorded if v in known]
    done = set(applied)
    return Status(
        backend=database.backend, version_table=database.version_table, recorded=recorded is not None,
        newest_known=migrations[-1].version if migrations else "",
        applied=applied, pending=[m for m in migrations if m.version not in done],
        unknown=[v for v in (recorded or []) if v not in known], empty=not has_tables and not recorded,
    )


def status(engine: Engine, migrations: list[Migration] | None = None) -> Status:
    """Where the store is: applied, pending and unknown migrations. Reads only."""
    database = _database(engine)
    with database.connection() as conn:
        found = _status(database, conn, migrations if migrations is not None else available())
        conn.rollback()
        return found


def statements_for(backend: str, migration: Migration) -> list[str]:
    """What applying `migration` runs on this backend."""
    if backend == "sqlite":
        from bilancio_pipeline.storage.migrations_sqlite import sqlite_statements

        return sqlite_statements(migration)
    return migration.statements()


def upgrade(engine: Engine, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply the pending migrations, each in its own locked transaction; returns those this call
    applied (none when another process got there first). Raises SchemaTooNew for a store newer
    than the code, before writing anything."""
    database = _database(engine)
    migrations = migrations if migrations is not None else available()
    applied: list[Migration] = []
    with database.connection() as conn:
        first = _status(database, conn, migrations)
        conn.rollback()
        if (refusal := first.refusal()) is not None:
            raise SchemaTooNew(database.backend, refusal)
        # Every statement is worked out before the first write: a migration without a form for
        # this backend stops the upgrade with the store untouched.
        plan = {m.version: statements_for(database.backend, m) for m in migrations}
        try:
            for migration in first.pending:
                database.lock(conn)
                now = _status(database, conn, migrations)  # under the lock: another process may have moved on
                if (refusal := now.refusal()) is not None:
                    raise SchemaTooNew(database.backend, refusal)
                if not now.recorded:
                    database.create_version_table(conn)
                    for base in migrations:  # a 0.x store: write down the baseline it has
                        if base.version in now.applied:
                            database.record(conn, base, plan[base.version])
                if migration.version not in now.applied:
                    database.apply(conn, migration, plan[migration.version])
                    database.record(conn, migration, plan[migration.version])
                    applied.append(migration)
                conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return applied
