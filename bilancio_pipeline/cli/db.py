"""`db status | upgrade [--dry-run]`: the results store's schema version, and upgrading it in place.

The store is the one the environment names (see README, Configuration). SQLite and Postgres
(BILANCIO_SUPABASE_DB_URL) are upgraded here, through `storage.migrations`, the same code that
upgrades them on first use. A Supabase project reached only over REST cannot be changed through
its API: its schema is checked against what the API describes, and the commands to run are printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from bilancio_pipeline.cli.errors import CommandError, friendly_errors
from bilancio_pipeline.cli.output import echo, format_option, to_json
from bilancio_pipeline.storage import migrations
from bilancio_pipeline.storage.config import bilancio_home, store_from_env

UPGRADE_HINT = "run `bilancio-pipeline db upgrade` (any command that opens the store applies them too)"


@click.group("db")
def command():
    """The results store's schema version, and upgrading it in place."""


def _sqlite_file() -> Path | None:
    """The embedded store's file when it is the configured store, else None."""
    env = os.environ.get
    if env("BILANCIO_SUPABASE_DB_URL") or env("BILANCIO_SUPABASE_URL") or env("BILANCIO_SUPABASE_KEY"):
        return None
    return bilancio_home() / "bilancio.db"


def _open():
    """The configured store, unwrapped from its retry layer (these commands wait for no one)."""
    store = store_from_env()
    return getattr(store, "inner", store)


@command.command()
@format_option()
@friendly_errors
def status(fmt):
    """Show the store's schema version and the migrations it still lacks."""
    sqlite_file = _sqlite_file()
    if sqlite_file is not None and not sqlite_file.exists():
        pending = migrations.available()
        report = {"backend": "sqlite", "location": str(sqlite_file), "exists": False, "version": None,
                  "newest": pending[-1].version, "pending": [m.filename for m in pending]}
        _print(report, fmt, f"no store yet; it is created at the newest version ({pending[-1].version}) on first use")
        return
    store = _open()
    try:
        if store.backend == "supabase-rest":
            _print_rest(store, fmt)
            return
        found = store.schema_status()
        report = {"backend": store.backend, "location": store.location, "exists": True, "version": found.current,
                  "newest": found.newest_known, "version_table": found.version_table, "recorded": found.recorded,
                  "pending": [m.filename for m in found.pending], "unknown": found.unknown}
        if found.refusal():
            _print(report, fmt, None)
            raise CommandError(found.refusal())
        if found.empty:
            note = "empty database; the first use (or `db upgrade`) creates the tables"
        elif not found.recorded:
            note = (f"no version table: made before versions were recorded, at {migrations.BASELINE}; "
                    f"the first upgrade records it in {found.version_table}")
        else:
            note = None
        _print(report, fmt, note)
    finally:
        store.close()


@command.command()
@click.option("--dry-run", is_flag=True, help="Show what would be applied, change nothing.")
@friendly_errors
def upgrade(dry_run):
    """Apply the pending migrations, each in one transaction."""
    sqlite_file = _sqlite_file()
    if dry_run and sqlite_file is not None and not sqlite_file.exists():  # looking creates nothing
        _echo_plan("sqlite", str(sqlite_file), migrations.available())
        return
    store = _open()
    try:
        if store.backend == "supabase-rest":
            missing = _missing_over_rest(store)
            if not missing:
                echo("The schema the API serves has every column this version uses: nothing to do.")
                return
            _echo_rest_instructions(missing)
            if not dry_run:
                raise CommandError("a project reached over REST is upgraded with one of the commands above")
            return
        found = store.schema_status()
        if found.refusal():
            raise CommandError(found.refusal())
        if not found.pending:
            echo(f"Already at the newest schema version, {found.current}.")
            return
        if dry_run:
            _echo_plan(store.backend, store.location, found.pending)
            return
        for migration in store.upgrade_schema():
            echo(f"Applied {migration.filename}")
        echo(f"Schema version: {store.schema_status().current}")
    finally:
        store.close()


def _echo_plan(backend: str, location: str, pending: list[migrations.Migration]) -> None:
    echo(f"Would apply {len(pending)} migration(s) to {location}:")
    for migration in pending:
        echo(f"-- {migration.filename}")
        for statement in migrations.statements_for(backend, migration):
            echo(f"{statement};")


def _print(report: dict, fmt: str, note: str | None) -> None:
    if fmt == "json":
        echo(to_json({**report, "note": note}))
        return
    if fmt == "csv":
        raise CommandError("db status prints a table or JSON, not CSV")
    pending = report["pending"]
    lines = [
        f"backend:        {report['backend']} ({report['location']})",
        f"schema version: {report['version'] or 'none'}",
        f"newest known:   {report['newest']}",
        f"pending:        {len(pending)}" + "".join(f"\n                {name}" for name in pending),
    ]
    if report.get("unknown"):
        lines.append(f"unknown:        {', '.join(report['unknown'])}")
    if note:
        lines.append(note)
    if pending and report.get("exists") and not report.get("unknown"):
        lines.append(UPGRADE_HINT)
    echo("\n".join(lines))


# --- Supabase over REST ---------------------------------------------------------------------------


def _missing_over_rest(store) -> list[tuple[str, str]]:
    """(table, column) pairs of this version's schema that the API does not serve."""
    from bilancio_pipeline.storage import schema

    served = store.exposed_columns()
    return [(name, column) for name, table in schema.TABLES.items() for column in table.columns.keys()
            if column not in served.get(name, set())]


def _pending_for(missing: list[tuple[str, str]]) -> list[migrations.Migration]:
    """The migrations to apply: all if the tables are absent, else those adding a missing column."""
    from bilancio_pipeline.storage import schema

    every = migrations.available()
    if all((name, column) in missing for name in schema.TABLES for column in schema.TABLES[name].columns.keys()):
        return every
    gaps = set(missing)
    return [m for m in every if gaps & set(migrations.added_columns(m))]


def _echo_rest_instructions(missing: list[tuple[str, str]]) -> None:
    pending = _pending_for(missing)
    echo(f"The API serves no column {', '.join(f'{t}.{c}' for t, c in missing)}.")
    echo("Migrations to apply: " + (", ".join(m.filename for m in pending) or "(none adds these columns)"))
    echo("Apply them with one of, from a checkout of this version:")
    echo("  supabase db push                         # a checkout linked to the project (supabase link)")
    echo("  BILANCIO_SUPABASE_DB_URL='postgresql://…' bilancio-pipeline db upgrade")
    echo("                                           # the connection string: Project Settings > Database")
    for migration in pending:
        echo(f"  psql \"$DATABASE_URL\" -v ON_ERROR_STOP=1 --single-transaction -f supabase/migrations/{migration.filename}")
    if pending:
        echo("  (after psql, record each version so that `supabase db push` skips it:")
        values = ", ".join(f"('{m.version}', '{m.name}')" for m in pending)
        echo(f"   insert into supabase_migrations.schema_migrations (version, name) values {values};)")


def _print_rest(store, fmt: str) -> None:
    missing = _missing_over_rest(store)
    pending = _pending_for(missing) if missing else []
    report = {"backend": store.backend, "location": store.location,
              "exists": True, "version": None, "newest": migrations.available()[-1].version,
              "pending": [m.filename for m in pending], "missing_columns": [f"{t}.{c}" for t, c in missing]}
    if fmt == "json":
        echo(to_json(report))
        return
    note = "checked against the columns the API serves" + (
        f": it lacks {len(missing)} (`bilancio-pipeline db upgrade` shows how to add them)" if missing else "")
    _print({**report, "version": "not visible over REST", "exists": False}, fmt, note)
