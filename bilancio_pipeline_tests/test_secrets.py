"""No secret leaks: with a database password, the R2 key pair of a real S3 server and a Supabase
key set, a sweep (with one failing run) goes through the Dagster jobs, the command line reads
it back, and errors are provoked on purpose; then every place a secret could end up is scanned:
the Dagster instance (runs, every event log entry with its metadata and errors, its files), the
logs and output of this process, every row of every table, every artifact and the job manifest,
the CLI's output, and the text of the errors."""

import re
import traceback
import uuid

import dagster as dg
import psycopg2
import pytest
from click.testing import CliRunner
from dagster._serdes import serialize_value

from bilancio_pipeline.cli.main import cli
from bilancio_pipeline.compute.base import RunOutcome
from bilancio_pipeline.compute.local import LocalCompute
from bilancio_pipeline.defs.inprocess import run_sweep
from bilancio_pipeline.defs.resources import ComputeResource
from bilancio_pipeline.definitions import build_definitions
from bilancio_pipeline.benchmarks.pg_server import free_port
from bilancio_pipeline.storage.config import open_artifacts, open_store
from bilancio_pipeline.storage.schema import TABLES

JOB = "secret-sweep"
SPEC = {"n_agents": 10, "maturity_days": 5, "kappas": [0.5, 1.0], "seeds": [1], "job_id": JOB}
PASSWORD = "pw-" + uuid.uuid4().hex  # trust authentication: the test server takes any password
SUPABASE_KEY = "sb-" + uuid.uuid4().hex


class OneFailingRun(ComputeResource):
    """The local pool, but the first active run fails, so an error path is exercised too."""

    def open(self, executor=None):
        class Wrapped(LocalCompute):
            def run_batch(self, tasks, artifacts_root):
                doomed = next(t for t in tasks if t.params["regime"] == "active")
                yield RunOutcome(run_id=doomed.run_id, ok=False, error="RuntimeError: injected failure")
                yield from super().run_batch([t for t in tasks if t is not doomed], artifacts_root)

        return Wrapped(workers=2)


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


@pytest.fixture
def secrets(postgres_url, s3_server, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", _with_password(postgres_url))
    monkeypatch.setenv("BILANCIO_SUPABASE_KEY", SUPABASE_KEY)  # ignored beside a database URL
    monkeypatch.delenv("BILANCIO_SUPABASE_URL", raising=False)
    monkeypatch.setenv("BILANCIO_R2_BUCKET", s3_bucket)
    monkeypatch.setenv("BILANCIO_R2_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("BILANCIO_R2_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("BILANCIO_R2_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("BILANCIO_STORE_RETRY_SECONDS", "1")
    return {"database password": PASSWORD, "R2 access key id": s3_server.access_key,
            "R2 secret access key": s3_server.secret_key, "Supabase key": SUPABASE_KEY}


# A presigned link (the report and run links in Dagster's metadata on R2) names the access key id
# in its X-Amz-Credential parameter: S3's signature scheme requires it, and the id alone grants
# nothing. Only that parameter is let through; the id anywhere else is still a leak.
_PRESIGNED_CREDENTIAL = re.compile(r"X-Amz-Credential=[^&\"'\s]*")


def _leaks(secrets: dict[str, str], where: str, text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = _PRESIGNED_CREDENTIAL.sub("X-Amz-Credential=", text)
    return [f"{name} in {where}" for name, value in secrets.items() if value in text]


def _error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


def test_no_secret_anywhere_after_a_sweep(secrets, postgres_url, s3_server, s3_bucket, tmp_path, capfd, caplog):
    caplog.set_level("DEBUG")
    texts: dict[str, str | bytes] = {}

    with dg.DagsterInstance.get() as instance:
        progress = run_sweep(build_definitions(compute=OneFailingRun()), instance, SPEC, batch_size=4)
        assert (progress.done, progress.failed) == (4, 1)  # the sweep really ran, with its error path
        for run in instance.get_runs():
            texts[f"Dagster run {run.run_id}"] = serialize_value(run)
            for entry in instance.all_logs(run.run_id):
                texts[f"Dagster event {entry.dagster_event_type} of {run.run_id}"] = serialize_value(entry)
        assert any("injected failure" in t for t in texts.values())  # the error text is in what we scan
    for path in (tmp_path / "dagster").rglob("*"):
        if path.is_file():
            texts[f"Dagster file {path.name}"] = path.read_bytes()

    # The command line, reading the sweep back, and failing on a store it cannot reach.
    runner = CliRunner()
    for args in (["jobs", "get", JOB], ["jobs", "get", JOB, "--format", "json"], ["jobs", "runs", JOB],
                 ["metrics", "query", "--job", JOB], ["jobs", "ls"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        texts[f"CLI {' '.join(args)}"] = result.output
    assert JOB in texts["CLI jobs get secret-sweep"]
    dead_url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/bilancio"
    result = runner.invoke(cli, ["jobs", "ls"], env={"BILANCIO_SUPABASE_DB_URL": dead_url})
    assert result.exit_code != 0 and "postgres" in result.output
    texts["CLI jobs ls on an unreachable database"] = result.output

    # Errors provoked on purpose: an unreachable database, an unparseable URL, a refused upload.
    for name, provoke in {
        "unreachable database": lambda: open_store(dead_url).list_jobs(),  # retried, then given up
        "unparseable database URL": lambda: open_store(f"postgresql://postgres:{PASSWORD}@127.0.0.1:port/x").ping(),
        "missing bucket": lambda: open_artifacts("no-such-bucket-" + uuid.uuid4().hex[:8], s3_server.endpoint_url,
                                                 None, s3_server.access_key, s3_server.secret_key).get_bytes("x"),
        "unreachable S3": lambda: open_artifacts(s3_bucket, f"http://127.0.0.1:{free_port()}", None,
                                                 s3_server.access_key, s3_server.secret_key).put_bytes("x", b"x"),
    }.items():
        with pytest.raises(Exception) as provoked:
            provoke()
        texts[f"error: {name}"] = _error_text(provoked.value)

    # Every row of every table.
    db = postgres_url.replace("postgresql+psycopg2", "postgresql")
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        for table in TABLES:
            cur.execute(f"SELECT coalesce(json_agg(t)::text, '') FROM {table} t")
            texts[f"table {table}"] = cur.fetchone()[0]
    assert JOB in texts["table jobs"] and "injected failure" in texts["table runs"]

    # Every artifact, the job manifest among them.
    client = s3_server.client()
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
            for o in page.get("Contents", [])]
    assert f"{JOB}/manifest.json" in keys or any(k.endswith("manifest.json") for k in keys)
    assert len(keys) > 20
    for key in keys:
        texts[f"artifact {key}"] = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()

    # Everything this process logged or printed, at every level.
    out, err = capfd.readouterr()
    texts["stdout"], texts["stderr"] = out, err
    texts["log records"] = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}"
                                     for r in caplog.records)

    leaks = [leak for where, text in texts.items() for leak in _leaks(secrets, where, text)]
    assert leaks == []
    # The scan looked at real material: the provoked errors say what went wrong.
    assert "could not" in texts["error: unreachable database"]
    assert len(texts) > 40
