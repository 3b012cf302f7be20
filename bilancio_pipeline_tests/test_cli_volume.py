"""`bilancio-pipeline volume ls | cleanup | rm` on the local volume and SQLite store."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from bilancio_pipeline.cli.main import cli
from bilancio_pipeline.storage.artifacts.base import run_key
from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
from bilancio_pipeline.storage.sql import SqlStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def job_row(job_id: str, status: str) -> dict:
    return {
        "job_id": job_id, "status": status, "sweep_type": "balanced", "n_agents": 5, "maturity_days": 3,
        "kappas": [0.5], "concentrations": [1.0], "mus": [0.5], "outside_mid_ratios": [1.0], "seeds": [42],
        "spec": {}, "total_runs": 2, "created_at": T0, "updated_at": T0,
    }


@pytest.fixture
def home(tmp_path, monkeypatch):
    """BILANCIO_HOME with old-a (40 days, failed), old-b (31 days, no job row) and new-c
    (1 day, completed) on the local volume."""
    for name in ("BILANCIO_VOLUME", "BILANCIO_R2_BUCKET", "BILANCIO_EXECUTOR", "BILANCIO_SUPABASE_URL",
                 "BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_KEY", "DAGSTER_HOME", "BILANCIO_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path))
    volume = LocalArtifactStore(tmp_path / "volume")
    now = datetime.now(timezone.utc)
    for job_id, days, size in (("old-a", 40, 2048), ("old-b", 31, 100), ("new-c", 1, 10)):
        volume.put_bytes(run_key(job_id, f"{job_id}_passive_{0:012d}", "scenario.yaml"), b"x" * size)
        stamp = (now - timedelta(days=days)).timestamp()
        for path in (volume.root / job_id).rglob("*"):
            if path.is_file():
                os.utime(path, (stamp, stamp))
    with SqlStore(f"sqlite:///{tmp_path / 'bilancio.db'}") as store:
        store.save_job(job_row("old-a", "failed"))
        store.save_job(job_row("new-c", "completed"))
    return tmp_path


def run(*args, input=None):
    return CliRunner().invoke(cli, ["volume", *args], input=input)


def on_volume(home) -> list[str]:
    return [job.job_id for job in LocalArtifactStore(home / "volume").list_jobs()]


def events(home, job_id):
    with SqlStore(f"sqlite:///{home / 'bilancio.db'}") as store:
        return [e["event_type"] for e in store.list_events(job_id)]


def test_ls_json_lists_every_experiment(home):
    result = run("ls", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {row["job_id"]: row for row in json.loads(result.output)}
    assert set(rows) == {"old-a", "old-b", "new-c"}
    assert rows["old-a"]["total_bytes"] == 2048 and rows["old-a"]["status"] == "failed"
    assert rows["old-b"]["status"] is None and rows["old-a"]["age_days"] == 40
    assert rows["new-c"]["last_modified"].endswith("+00:00")


def test_ls_table_and_csv(home):
    table = run("ls")
    assert table.exit_code == 0 and "old-a" in table.output and "Total: 3 experiments" in table.output
    csv = run("ls", "--format", "csv")
    assert csv.output.splitlines()[0] == "job_id,status,n_objects,total_bytes,size,last_modified,age_days"


def test_cleanup_dry_run_deletes_nothing(home):
    result = run("cleanup", "--older-than", "30", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "old-a" in result.output and "old-b" in result.output and "new-c" not in result.output
    assert "[dry run]" in result.output and "2.1 KiB" in result.output
    assert sorted(on_volume(home)) == ["new-c", "old-a", "old-b"]
    assert events(home, "old-a") == []


def test_cleanup_asks_first_and_a_no_keeps_everything(home):
    result = run("cleanup", "--older-than", "30", input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert sorted(on_volume(home)) == ["new-c", "old-a", "old-b"]


def test_cleanup_yes_deletes_the_old_and_records_events(home):
    result = run("cleanup", "--older-than", "30", "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted old-a" in result.output and "Deleted: 2 experiments" in result.output
    assert on_volume(home) == ["new-c"]
    assert events(home, "old-a") == ["cleanup"] and events(home, "new-c") == []


def test_cleanup_by_status_and_age_with_rows(home):
    result = run("cleanup", "--older-than", "0", "--status", "failed", "--delete-rows", "--yes")
    assert result.exit_code == 0, result.output
    assert sorted(on_volume(home)) == ["new-c", "old-b"]
    got = run("ls", "--format", "json")
    assert {row["job_id"]: row["status"] for row in json.loads(got.output)} == {"old-b": None, "new-c": "completed"}


def test_rm_one_experiment(home):
    result = run("rm", "old-b", input="y\n")
    assert result.exit_code == 0, result.output
    assert sorted(on_volume(home)) == ["new-c", "old-a"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("rm", "nope", "--yes"), 1, "no experiment 'nope' on the local volume"),
        (("cleanup",), 2, "give --older-than DAYS, --status STATUS, or both"),
        (("cleanup", "--status", "done"), 2, "Invalid value for '--status'"),
        (("cleanup", "--older-than", "-3"), 2, "--older-than"),
        (("ls", "--volume", "s3"), 2, "Invalid value for '--volume'"),
    ],
)
def test_clear_errors(home, args, code, message):
    result = run(*args)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output
    assert sorted(on_volume(home)) == ["new-c", "old-a", "old-b"]


def test_r2_asked_but_not_configured_is_a_clear_error(home):
    result = run("ls", "--volume", "r2")
    assert result.exit_code == 1
    assert "the r2 volume is asked for but the configured artifact store is local" in result.output


def test_cleanup_prunes_partitions_of_the_configured_dagster_instance(home, tmp_path_factory, monkeypatch):
    import dagster as dg

    dagster_home = tmp_path_factory.mktemp("dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("sweeps", ["old-a", "new-c"])
        instance.add_dynamic_partitions("runs", ["old-a_passive_aaaaaaaaaaaa", "new-c_passive_cccccccccccc"])
    result = run("cleanup", "--older-than", "35", "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted old-a (1 objects, 2.0 KiB, 2 partitions)" in result.output
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions("sweeps") == ["new-c"]
        assert instance.get_dynamic_partitions("runs") == ["new-c_passive_cccccccccccc"]


def test_ls_still_lists_the_volume_when_the_store_is_unreachable(home, monkeypatch):
    monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", "postgresql+psycopg2://nobody:pw@127.0.0.1:1/none?connect_timeout=2")
    result = CliRunner().invoke(cli, ["volume", "ls", "--format", "json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert sorted(r["job_id"] for r in rows) == ["new-c", "old-a", "old-b"] and {r["status"] for r in rows} == {None}
    assert "job statuses unavailable" in result.stderr and "pw@" not in result.stderr
