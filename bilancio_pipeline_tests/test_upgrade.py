"""A store written by version 0.x (commit 00f1fd8: one real sweep, run by that version's CLI,
kept in fixtures/store_0x, see regenerate.py there) is read, upgraded, resumed and extended by
this version, in SQLite and in PostgreSQL, every old row intact. Also: a fresh store and an
upgraded one end up with the same schema, a store newer than the code is refused untouched, and
two processes upgrading one store at once apply each migration once."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from bilancio_pipeline.cli.main import cli
from bilancio_pipeline.storage import migrations, schema
from bilancio_pipeline.storage.base import StoreError
from bilancio_pipeline.storage.sql import SqlStore
from bilancio_pipeline_tests.fixtures.store_0x.regenerate import JOB_ID, SWEEP, apply_baseline_by_hand

FIXTURE = Path(__file__).parent / "fixtures" / "store_0x"
KEYS = {"jobs": "job_id", "runs": "run_id", "metrics": "run_id", "job_events": "id", "job_metrics": "job_id"}


def restore_sqlite(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURE / "sqlite.sql").read_text())
    conn.close()
    return f"sqlite:///{path}"


def restore_postgres(server, name: str) -> str:
    server.create_database(name)
    apply_baseline_by_hand(server, name, migrations.MIGRATIONS_DIR)  # as 0.x users did: no version table
    conn = server.connect(name)
    with conn.cursor() as cur:
        cur.execute((FIXTURE / "postgres_rows.sql").read_text())
    conn.close()
    return server.url(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_store(request, tmp_path, monkeypatch):
    """The 0.x store, configured as the CLI's store; its URL."""
    for name in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_KEY", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    if request.param == "sqlite":
        yield restore_sqlite(tmp_path / "home" / "bilancio.db")
        return
    server = request.getfixturevalue("postgres_server")
    url = restore_postgres(server, "upgrade_0x")
    monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", url)
    yield url
    server.drop_database("upgrade_0x")


def every_row(url: str) -> dict[str, dict]:
    """table -> key -> row, as the database holds them (no store code in between)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {table: {row[key]: dict(row) for row in conn.execute(text(f"select * from {table}")).mappings()}
                    for table, key in KEYS.items()}
    finally:
        engine.dispose()


def unchanged(old: dict[str, dict], new: dict[str, dict], tables=tuple(KEYS), ignore=()) -> None:
    """Every old row is still there with the same values in every column it had."""
    for table in tables:
        for key, row in old[table].items():
            assert key in new[table], f"{table} row {key} is gone"
            kept = {c: v for c, v in row.items() if c not in ignore}
            assert {c: new[table][key][c] for c in kept} == kept, f"{table} row {key} changed"


def details(event: dict) -> dict:
    value = event["details"]
    return json.loads(value) if isinstance(value, str) else value  # JSON text in SQLite, jsonb in Postgres


def run(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def columns_of(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        found = inspect(engine)
        return {t: [c["name"] for c in found.get_columns(t)] for t in (*schema.TABLES, "run_results")}
    finally:
        engine.dispose()


def test_a_0x_store_is_read_upgraded_resumed_and_extended(old_store):
    before = every_row(old_store)
    assert len(before["runs"]) == 8 and len(before["metrics"]) == 8 and len(before["job_metrics"]) == 1
    status = json.loads(run("db", "status", "--format", "json"))
    assert status["version"] == migrations.BASELINE and not status["recorded"]
    assert status["pending"] == [m.filename for m in migrations.available() if m.version > migrations.BASELINE]
    assert status["pending"], "no migration after the baseline: this test would upgrade nothing"

    # Read by the new CLI (which upgrades the store on first use).
    assert [j["job_id"] for j in json.loads(run("jobs", "ls", "--format", "json"))] == [JOB_ID]
    job = json.loads(run("jobs", "get", JOB_ID, "--format", "json"))["job"]
    assert (job["status"], job["total_runs"], job["completed_runs"]) == ("completed", 8, 8)
    results = json.loads(run("metrics", "query", "--job", JOB_ID, "--format", "json"))
    assert sorted(r["run_id"] for r in results) == sorted(before["runs"])

    upgraded = json.loads(run("db", "status", "--format", "json"))
    assert upgraded["recorded"] and upgraded["pending"] == [] and upgraded["version"] == upgraded["newest"]
    assert columns_of(old_store) == {**{n: list(t.columns.keys()) for n, t in schema.TABLES.items()},
                                     "run_results": list(schema.RUN_RESULTS_COLUMNS)}
    after_upgrade = every_row(old_store)
    unchanged(before, after_upgrade)
    added = [(t, c) for m in migrations.available() if m.version > migrations.BASELINE
             for t, c in migrations.added_columns(m)]
    for table, column in added:  # the new columns are there for old rows too, at their default
        default = schema.TABLES[table].c[column].server_default
        assert all(row[column] == (default.arg if default is not None else None)
                   for row in after_upgrade[table].values()), (table, column)

    # Resumed: nothing re-run (no run row touched, no metric changed, no run started). The
    # aggregate step rewrites each pair's trading_effect onto its metrics rows, same values.
    run(*SWEEP)
    resumed = every_row(old_store)
    unchanged(after_upgrade, resumed, tables=("runs",))
    unchanged(after_upgrade, resumed, tables=("metrics",), ignore=("updated_at",))
    started = [details(e) for key, e in resumed["job_events"].items()
               if key not in before["job_events"] and e["event_type"] == "started"]
    assert not any(d.get("runs") for d in started), started

    # Extended: a new sweep in the same store, next to the old one.
    new_sweep = [a if a != JOB_ID else "new-sweep" for a in SWEEP]
    new_sweep[new_sweep.index("--kappas") + 1] = "2"
    new_sweep[new_sweep.index("--seeds") + 1] = "1"
    run(*new_sweep)
    extended = every_row(old_store)
    unchanged(resumed, extended, tables=("runs",))
    unchanged(resumed, extended, tables=("metrics",), ignore=("updated_at",))
    unchanged(before, extended, tables=("job_events",))
    new_job = json.loads(run("jobs", "get", "new-sweep", "--format", "json"))["job"]
    assert (new_job["status"], new_job["completed_runs"]) == ("completed", 2)
    assert set(extended["job_metrics"]) == {JOB_ID, "new-sweep"}
    assert {r["job_id"] for r in json.loads(run("metrics", "query", "--format", "json"))} == {JOB_ID, "new-sweep"}


def sqlite_schema(url: str) -> dict:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type in ('table', 'view') order by name")]
        return {
            "columns": {n: conn.execute(f"pragma table_info({n})").fetchall() for n in names},
            "indexes": sorted(conn.execute("select name, tbl_name from sqlite_master where type = 'index'").fetchall()),
            "foreign_keys": {n: conn.execute(f"pragma foreign_key_list({n})").fetchall() for n in names},
        }
    finally:
        conn.close()


def test_fresh_and_upgraded_sqlite_stores_have_the_same_schema_as_the_code(tmp_path):
    fresh, old = f"sqlite:///{tmp_path / 'fresh.db'}", restore_sqlite(tmp_path / "old.db")
    for url in (fresh, old):
        with SqlStore(url) as store:
            store.ping()
    assert sqlite_schema(fresh) == sqlite_schema(old)
    # Column by column, the types SQLAlchemy gives schema.py in SQLite: the code reads what it wrote.
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    for name, table in schema.TABLES.items():
        expected = [(c.name, c.type.compile(dialect=sqlite_dialect.dialect()), not c.nullable) for c in table.columns]
        found = [(r[1], r[2], bool(r[3])) for r in sqlite_schema(fresh)["columns"][name]]
        assert found == expected, name


def test_every_migration_has_a_sqlite_form():
    for migration in migrations.available():
        migrations.statements_for("sqlite", migration)  # raises, naming the statement, if not


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_store_newer_than_the_code_is_refused_untouched(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'b.db'}"
        table = "schema_migrations"
    else:
        url = request.getfixturevalue("postgres_url")
        table = "supabase_migrations.schema_migrations"
    with SqlStore(url) as store:
        store.ping()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"insert into {table} (version, name) values ('29991231000000', 'future')"))
    engine.dispose()
    before = every_row(url)
    with SqlStore(url) as store, pytest.raises(StoreError) as refused:
        store.list_jobs()
    message = str(refused.value)
    assert "29991231000000" in message and "newer" in message and "\n" not in message
    assert not refused.value.transient
    assert every_row(url) == before
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"BILANCIO_SUPABASE_DB_URL": url})
    assert result.exit_code == 1 and "29991231000000" in result.output


def _upgrade_in_a_process(url: str) -> int:
    return len(migrations.upgrade(create_engine(url)))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_processes_upgrading_at_once_apply_each_migration_once(backend, tmp_path, request):
    if backend == "sqlite":
        url = restore_sqlite(tmp_path / "old.db")
    else:
        url = restore_postgres(request.getfixturevalue("postgres_server"), "upgrade_race")
    try:
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            counts = pool.map(_upgrade_in_a_process, [url, url])
        pending = [m for m in migrations.available() if m.version > migrations.BASELINE]
        assert sum(counts) == len(pending)  # each applied by one of the two
        status = migrations.status(create_engine(url))
        assert status.recorded and not status.pending
        assert status.applied == [m.version for m in migrations.available()]
    finally:
        if backend == "postgres":
            request.getfixturevalue("postgres_server").drop_database("upgrade_race")


def test_an_older_unknown_version_in_a_shared_history_is_shown_not_refused(tmp_path):
    """Another app's migration in a shared Supabase history is not a newer bilancio-pipeline."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with SqlStore(url) as store:
        store.ping()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("insert into schema_migrations (version, name) values ('20200101000000', 'other_app')"))
    found = migrations.status(engine)
    engine.dispose()
    assert found.unknown == ["20200101000000"] and found.refusal() is None and not found.pending
    with SqlStore(url) as store:
        assert store.list_jobs() == []


def test_db_commands_on_a_new_folder_look_without_creating_then_upgrade(tmp_path, monkeypatch):
    for name in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    every = [m.filename for m in migrations.available()]
    assert json.loads(run("db", "status", "--format", "json"))["pending"] == every
    assert run("db", "upgrade", "--dry-run").count("-- ") == len(every)
    assert not (tmp_path / "home").exists()  # looking created nothing
    assert run("db", "upgrade").splitlines()[:-1] == [f"Applied {name}" for name in every]
    status = json.loads(run("db", "status", "--format", "json"))
    assert status["pending"] == [] and status["version"] == migrations.available()[-1].version
    assert "Already at the newest schema version" in run("db", "upgrade")
