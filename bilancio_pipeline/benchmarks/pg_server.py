"""A throwaway PostgreSQL server on loopback, for the test suite and the benchmarks.

It runs the `initdb` and `pg_ctl` of an installed PostgreSQL (found under
/usr/lib/postgresql/*/bin, or in the PGBIN directory), with trust authentication and fsync off,
listening on 127.0.0.1 at a free port, its socket and data in a temporary directory. PostgreSQL
refuses to run as root, so as root those two programs run as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg2

from bilancio_pipeline.storage.migrations import MIGRATIONS_DIR

INSTALL_HINT = "PostgreSQL is not installed: run `bash .ci/install --test` (it installs the postgresql package)"


class PostgresNotInstalled(RuntimeError):
    pass


def find_pg_bin() -> Path:
    """The directory holding initdb and pg_ctl: $PGBIN, else the newest /usr/lib/postgresql/*/bin."""
    chosen = os.environ.get("PGBIN")
    candidates = [chosen] if chosen else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for directory in candidates:
        if (Path(directory) / "initdb").is_file() and (Path(directory) / "pg_ctl").is_file():
            return Path(directory)
    raise PostgresNotInstalled(f"PGBIN={chosen} has no initdb and pg_ctl; fix or unset PGBIN" if chosen else INSTALL_HINT)


def _version_key(path: str) -> int:
    version = Path(path).parent.name
    return int(version) if version.isdigit() else 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """`with PostgresServer() as pg: pg.url("postgres")`; stopped and deleted on exit."""

    def __init__(self, pg_bin: Path | None = None):
        self.pg_bin = pg_bin or find_pg_bin()
        self.port = 0
        self.dir: Path | None = None
        self._as_postgres = os.geteuid() == 0

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        self.dir = Path(tempfile.mkdtemp(prefix="bilancio-pg-"))
        if self._as_postgres:
            shutil.chown(self.dir, user="postgres", group="postgres")
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
                  "-E", "UTF8", "--locale=C")
        self.port = free_port()
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(data), "-w", "-t", "60", "-l", str(self.dir / "server.log"),
                  "-o", options, "start")
        return self

    def stop(self) -> None:
        if self.dir is None:
            return
        try:
            if (self.dir / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.pg_bin / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, cwd=self.dir, capture_output=True, text=True)
        if done.returncode != 0:
            log = self.dir / "server.log" if self.dir else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")

    # --- databases ------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres"):
        """A psycopg2 connection in autocommit mode (CREATE DATABASE needs it)."""
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)
        conn.autocommit = True
        return conn

    def create_database(self, name: str, template: str | None = None) -> str:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                clause = f' TEMPLATE "{template}"' if template else ""
                cur.execute(f'CREATE DATABASE "{name}"{clause}')
        finally:
            conn.close()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()

    def apply_migrations(self, dbname: str, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
        """Bring the database to the newest schema, as the store does (storage.migrations: each
        file in one transaction, recorded in supabase_migrations.schema_migrations); returns the
        files applied."""
        from sqlalchemy import create_engine

        from bilancio_pipeline.storage import migrations

        engine = create_engine(self.url(dbname))
        try:
            return [m.filename for m in migrations.upgrade(engine, migrations.available(migrations_dir))]
        finally:
            engine.dispose()
