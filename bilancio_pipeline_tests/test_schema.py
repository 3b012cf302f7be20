"""The migrations in supabase/migrations, on a real PostgreSQL: they apply, they create exactly
the columns the code writes (storage/schema.py), their constraints and cascades hold, and
row-level security lets the public roles read but not write."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import errors
from sqlalchemy.dialects import postgresql

from bilancio_pipeline.benchmarks.pg_server import MIGRATIONS_DIR
from bilancio_pipeline.storage import schema
from bilancio_pipeline.storage.sql import SqlStore, run_results

pytestmark = pytest.mark.postgres

# How PostgreSQL's format_type() spells the types SQLAlchemy compiles for schema.py.
PG_TYPE_NAMES = {
    "TEXT": "text",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "FLOAT": "double precision",
    "BOOLEAN": "boolean",
    "JSONB": "jsonb",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
    "FLOAT[]": "double precision[]",
    "BIGINT[]": "bigint[]",
}


def pg_type(sa_type) -> str:
    compiled = sa_type.compile(dialect=postgresql.dialect())
    return PG_TYPE_NAMES.get(compiled, compiled)


@pytest.fixture
def db(postgres_server, postgres_url):
    """A psycopg2 connection (autocommit) to the fresh, migrated test database."""
    conn = postgres_server.connect(postgres_url.rsplit("/", 1)[1])
    yield conn
    conn.close()


def query(conn, sql, *args):
    with conn.cursor() as cur:
        cur.execute(sql, args or None)
        return cur.fetchall() if cur.description else None


def columns_of(conn, relation):
    """[(name, type, not null)] in column order, as the database has them."""
    return query(conn, """
        select a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
        from pg_attribute a
        where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
        order by a.attnum""", f"public.{relation}")


JOB = ("insert into jobs (job_id, sweep_type, n_agents, maturity_days, kappas, concentrations, mus, "
       "outside_mid_ratios, seeds, spec) values (%s, 'ring', 5, 3, '{1}', '{1}', '{0}', '{0.9}', '{42}', '{}')")
RUN = ("insert into runs (run_id, job_id, status, regime, n_agents, maturity_days, kappa, concentration, mu, "
       "outside_mid_ratio, seed, cash_accounting) values (%s, %s, %s, 'passive', 5, 3, 1, 1, 0, 0.9, 42, 'conserving')")


def test_migrations_apply_to_an_empty_database(postgres_server):
    postgres_server.create_database("fresh_for_migrations")
    try:
        applied = postgres_server.apply_migrations("fresh_for_migrations")
        assert applied == sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
        assert applied[0] == "20261123000000_initial_schema.sql"
        conn = postgres_server.connect("fresh_for_migrations")
        tables = {r[0] for r in query(conn, "select tablename from pg_tables where schemaname = 'public'")}
        views = {r[0] for r in query(conn, "select viewname from pg_views where schemaname = 'public'")}
        conn.close()
        assert tables == set(schema.TABLES) and views == {"run_results"}
    finally:
        postgres_server.drop_database("fresh_for_migrations")


@pytest.mark.parametrize("table", list(schema.TABLES))
def test_table_columns_types_and_nullability_match_the_code(db, table):
    expected = [(c.name, pg_type(c.type), not c.nullable) for c in schema.TABLES[table].columns]
    assert columns_of(db, table) == expected


@pytest.mark.parametrize("table", list(schema.TABLES))
def test_primary_and_foreign_keys_match_the_code(db, table):
    sa_table = schema.TABLES[table]
    pk = query(db, """
        select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
        where i.indrelid = %s::regclass and i.indisprimary""", f"public.{table}")
    assert {r[0] for r in pk} == {c.name for c in sa_table.primary_key.columns}
    fks = query(db, """
        select kcu.column_name, ccu.table_name, ccu.column_name, rc.delete_rule
        from information_schema.referential_constraints rc
        join information_schema.key_column_usage kcu on kcu.constraint_name = rc.constraint_name
        join information_schema.constraint_column_usage ccu on ccu.constraint_name = rc.constraint_name
        where kcu.table_name = %s""", table)
    expected = {(fk.parent.name, fk.column.table.name, fk.column.name, fk.ondelete.upper()) for fk in sa_table.foreign_keys}
    assert set(fks) == expected
    assert all(rule == "CASCADE" for *_, rule in fks)


def test_check_constraints_have_the_code_names(db):
    found = {r[0] for r in query(db, "select conname from pg_constraint where contype = 'c' and connamespace = 'public'::regnamespace")}
    named = {c.name for t in schema.TABLES.values() for c in t.constraints if c.__class__.__name__ == "CheckConstraint"}
    assert named == {"jobs_status_check", "runs_status_check", "runs_regime_check", "job_events_event_type_check"}
    assert named <= found


def test_run_results_view_has_exactly_the_code_columns(db):
    view_columns = columns_of(db, "run_results")
    assert [c[0] for c in view_columns] == list(schema.RUN_RESULTS_COLUMNS)
    assert [(name, typ) for name, typ, _ in view_columns] == [(c.name, pg_type(c.type)) for c in run_results.columns]
    info_schema = query(db, "select column_name from information_schema.columns where table_name = 'run_results' order by ordinal_position")
    assert [r[0] for r in info_schema] == list(schema.RUN_RESULTS_COLUMNS)
    options = query(db, "select reloptions from pg_class where oid = 'public.run_results'::regclass")[0][0]
    assert "security_invoker=true" in options


def test_sqlite_schema_has_the_same_columns_and_view(sqlite_url):
    import sqlite3

    store = SqlStore(sqlite_url)
    store.ping()  # creates the file, tables and view
    store.close()
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        for name, table in schema.TABLES.items():
            info = conn.execute(f"pragma table_info({name})").fetchall()
            assert [(r[1], bool(r[3])) for r in info] == [(c.name, not c.nullable) for c in table.columns]
        assert [r[1] for r in conn.execute("pragma table_info(run_results)")] == list(schema.RUN_RESULTS_COLUMNS)
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_indexes_for_the_queries_exist(db):
    indexes = {r[0]: r[1] for r in query(db, "select indexname, indexdef from pg_indexes where schemaname = 'public'")}
    assert "(job_id, status)" in indexes["runs_job_id_status_idx"]
    assert "(job_id)" in indexes["metrics_job_id_idx"]
    assert "(status, created_at DESC)" in indexes["jobs_status_created_at_idx"]


def test_constraints_reject_bad_status_regime_event_and_orphans(db):
    query(db, JOB, "j1")
    query(db, RUN, "r-ok", "j1", "cancelled")  # cancelled is a status
    with pytest.raises(errors.CheckViolation, match="runs_status_check"):
        query(db, RUN, "r-bad", "j1", "exploded")
    with pytest.raises(errors.CheckViolation, match="jobs_status_check"):
        query(db, "update jobs set status = 'done' where job_id = 'j1'")
    with pytest.raises(errors.CheckViolation, match="runs_regime_check"):
        query(db, "update runs set regime = 'bank_passive' where run_id = 'r-ok'")
    with pytest.raises(errors.CheckViolation, match="job_events_event_type_check"):
        query(db, "insert into job_events (job_id, event_type) values ('j1', 'exploded')")
    with pytest.raises(errors.ForeignKeyViolation):
        query(db, RUN, "r-orphan", "no-such-job", "pending")
    with pytest.raises(errors.ForeignKeyViolation):
        query(db, "insert into metrics (run_id, job_id) values ('no-such-run', 'j1')")
    with pytest.raises(errors.UniqueViolation):
        query(db, "insert into metrics (run_id, job_id) values ('r-ok', 'j1'), ('r-ok', 'j1')")
    assert query(db, "select count(*) from runs")[0][0] == 1


def test_delete_cascades_and_defaults_fill_timestamps(db):
    query(db, JOB, "j1")
    query(db, RUN, "r1", "j1", "completed")
    query(db, "insert into metrics (run_id, job_id, delta_total) values ('r1', 'j1', 0.5)")
    query(db, "insert into job_events (job_id, event_type) values ('j1', 'created')")
    query(db, "insert into job_metrics (job_id, n_comparisons, n_pairs) values ('j1', 1, 1)")
    created, updated = query(db, "select created_at, updated_at from runs")[0]
    assert created is not None and updated is not None
    query(db, "delete from jobs where job_id = 'j1'")
    for table in schema.TABLES:
        assert query(db, f"select count(*) from {table}")[0][0] == 0, table


def test_updated_at_trigger_on_every_table_that_has_it(db):
    with_updated_at = [name for name, t in schema.TABLES.items() if "updated_at" in t.c]
    assert with_updated_at == ["jobs", "runs", "metrics", "job_metrics"]
    query(db, JOB, "j1")
    query(db, RUN, "r1", "j1", "pending")
    query(db, "insert into metrics (run_id, job_id) values ('r1', 'j1')")
    query(db, "insert into job_metrics (job_id, n_comparisons, n_pairs) values ('j1', 0, 0)")
    for table in with_updated_at:
        query(db, f"update {table} set updated_at = '2000-01-01T00:00:00Z'")
        (year,) = query(db, f"select extract(year from updated_at)::int from {table}")[0]
        assert year > 2000, table  # the trigger replaced the stale value with now()


# --- row-level security -----------------------------------------------------------------------


def test_rls_is_enabled_on_every_table(db):
    rows = query(db, "select relname, relrowsecurity from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r'")
    assert dict(rows) == dict.fromkeys(schema.TABLES, True)


def role_runner(conn):
    """Run one statement as a Supabase role (SET LOCAL ROLE), in its own transaction."""

    def run(role, sql):
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                cur.execute(f"set local role {role}")
                cur.execute(sql)
                result = cur.fetchall() if cur.description else cur.rowcount
            conn.commit()
            return result
        except psycopg2.Error:
            conn.rollback()
            raise
        finally:
            conn.autocommit = True

    return run


def with_one_result(conn):
    query(conn, JOB, "j1")
    query(conn, RUN, "r1", "j1", "completed")
    query(conn, "insert into metrics (run_id, job_id, delta_total) values ('r1', 'j1', 0.25)")


@pytest.fixture
def as_role(db):
    with_one_result(db)
    return role_runner(db)


@pytest.fixture
def supabase_like_db(postgres_server):
    """A database set up the way Supabase sets up its own before any migration: every new
    table in public is granted in full to anon, authenticated and service_role."""
    name = "supabase_like"
    postgres_server.create_database(name)
    conn = postgres_server.connect(name)
    query(conn, "alter default privileges in schema public grant all on tables to anon, authenticated, service_role")
    query(conn, "alter default privileges in schema public grant all on sequences to anon, authenticated, service_role")
    postgres_server.apply_migrations(name)
    with_one_result(conn)
    yield conn
    conn.close()
    postgres_server.drop_database(name)


PUBLIC_WRITES = [
    JOB.replace("%s", "'j2'"),
    "insert into job_events (job_id, event_type) values ('j1', 'progress')",
    "update jobs set status = 'failed'",
    "update metrics set delta_total = 9",
    "delete from runs",
    "delete from jobs",
    "truncate job_events",
]


def assert_reads_but_cannot_write(conn, role):
    as_role = role_runner(conn)
    assert as_role(role, "select job_id from jobs") == [("j1",)]
    assert as_role(role, "select run_id, delta_total from run_results") == [("r1", 0.25)]
    assert as_role(role, "select count(*) from job_events") == [(0,)]
    for statement in PUBLIC_WRITES:
        with pytest.raises(errors.InsufficientPrivilege):
            as_role(role, statement)
    assert query(conn, "select status from jobs") == [("pending",)]
    assert query(conn, "select count(*) from runs")[0][0] == 1


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_public_roles_read_but_cannot_write(as_role, db, role):
    assert_reads_but_cannot_write(db, role)


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_public_roles_cannot_write_despite_supabase_default_grants(supabase_like_db, role):
    assert_reads_but_cannot_write(supabase_like_db, role)
    assert role_runner(supabase_like_db)("service_role", "update jobs set status = 'running'") == 1


def test_service_role_writes(as_role, db):
    assert as_role("service_role", JOB.replace("%s", "'j2'")) == 1
    assert as_role("service_role", "insert into job_events (job_id, event_type) values ('j2', 'created')") == 1
    assert as_role("service_role", "update jobs set status = 'running' where job_id = 'j2'") == 1
    assert as_role("service_role", "select count(*) from run_results") == [(1,)]
    assert as_role("service_role", "delete from jobs where job_id = 'j1'") == 1
    assert query(db, "select job_id, status from jobs") == [("j2", "running")]
    assert query(db, "select count(*) from runs")[0][0] == 0  # cascaded


def test_roles_exist_without_login(db):
    rows = query(db, "select rolname, rolcanlogin from pg_roles where rolname in ('anon', 'authenticated', 'service_role')")
    assert dict(rows) == {"anon": False, "authenticated": False, "service_role": False}


def test_every_column_has_exactly_one_owner():
    """storage.base.COLUMN_GROUPS names who writes each column: a new column must get an owner."""
    from bilancio_pipeline.storage.base import COLUMN_GROUPS, KEY_AND_STAMP_COLUMNS

    assert set(COLUMN_GROUPS) == set(schema.TABLES)
    for name, table in schema.TABLES.items():
        owned = [column for columns in COLUMN_GROUPS[name].values() for column in columns]
        assert len(owned) == len(set(owned)), f"{name}: a column with two owners"
        assert set(owned) == set(table.columns.keys()) - set(KEY_AND_STAMP_COLUMNS), name
