"""Cleanup of old experiments: the local volume, the real S3 server, the Modal Volume adapter,
the store (events, rows), the Dagster job (partitions) and the schedules."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from bilancio_pipeline.defs import maintenance
from bilancio_pipeline.defs.resources import ArtifactsResource, StoreResource
from bilancio_pipeline.maintenance.cleanup import plan_cleanup, run_cleanup, volume_kind
from bilancio_pipeline.maintenance.modal_volume import ModalVolumeStore
from bilancio_pipeline.storage.artifacts.base import run_key
from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
from bilancio_pipeline.storage.base import NotFound
from bilancio_pipeline.storage.sql import SqlStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def job_row(job_id: str, status: str = "completed") -> dict:
    return {
        "job_id": job_id, "status": status, "sweep_type": "balanced", "n_agents": 5, "maturity_days": 3,
        "kappas": [0.5], "concentrations": [1.0], "mus": [0.5], "outside_mid_ratios": [1.0], "seeds": [42],
        "spec": {"kappas": [0.5]}, "total_runs": 2, "created_at": T0, "updated_at": T0,
    }


def seed(volume, job_id: str, sizes=(100, 250)) -> int:
    for i, size in enumerate(sizes):
        volume.put_bytes(run_key(job_id, f"{job_id}_passive_{i:012d}", f"out/file{i}.bin"), b"x" * size)
    return sum(sizes)


def age_local(volume: LocalArtifactStore, job_id: str, days: float) -> None:
    stamp = (NOW - timedelta(days=days)).timestamp()
    for path in (volume.root / job_id).rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))


@pytest.fixture
def env_clean(monkeypatch):
    for name in ("BILANCIO_VOLUME", "BILANCIO_R2_BUCKET", "BILANCIO_EXECUTOR", "BILANCIO_SUPABASE_URL",
                 "BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_KEY", "BILANCIO_CLEANUP_OLDER_THAN_DAYS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def local(tmp_path, env_clean):
    """A local volume with two old experiments (40 and 31 days) and a new one (2 days), and a
    SQLite store holding rows for old-a (failed), old-b (completed) and new-c (failed)."""
    volume = LocalArtifactStore(tmp_path / "volume")
    sizes = {"old-a": seed(volume, "old-a", (100, 200)), "old-b": seed(volume, "old-b", (300,)), "new-c": seed(volume, "new-c", (50, 60))}
    age_local(volume, "old-a", 40)
    age_local(volume, "old-b", 31)
    age_local(volume, "new-c", 2)
    store = SqlStore(f"sqlite:///{tmp_path / 'bilancio.db'}")
    store.save_job(job_row("old-a", "failed"))
    store.save_job(job_row("old-b", "completed"))
    store.save_job(job_row("new-c", "failed"))
    yield volume, store, sizes
    store.close()


def ids(jobs) -> list[str]:
    return [job.job_id for job in jobs]


# --- planning ---------------------------------------------------------------------------


def test_plan_by_age_is_utc_and_inclusive(local):
    volume, store, _ = local
    assert ids(plan_cleanup(volume, store, older_than_days=30, now=NOW)) == ["old-a", "old-b"]
    assert ids(plan_cleanup(volume, store, older_than_days=35, now=NOW)) == ["old-a"]
    assert ids(plan_cleanup(volume, store, older_than_days=31, now=NOW)) == ["old-a", "old-b"]  # exactly 31 days
    # a naive "now" is read as UTC, and an offset "now" is the same instant
    assert ids(plan_cleanup(volume, store, older_than_days=31, now=NOW.replace(tzinfo=None))) == ["old-a", "old-b"]
    assert ids(plan_cleanup(volume, store, older_than_days=31, now=NOW.astimezone(timezone(timedelta(hours=-8))))) == ["old-a", "old-b"]


def test_plan_filters_combine_with_and(local):
    volume, store, _ = local
    assert ids(plan_cleanup(volume, store, statuses=["failed"], now=NOW)) == ["old-a", "new-c"]
    assert ids(plan_cleanup(volume, store, older_than_days=30, statuses=["failed"], now=NOW)) == ["old-a"]
    assert ids(plan_cleanup(volume, store, older_than_days=30, statuses=["running"], now=NOW)) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "older_than_days, statuses"), ({"older_than_days": -1}, "older_than_days=-1"),
     ({"statuses": ["done"]}, "status='done'"), ({"older_than_days": "7"}, "older_than_days='7'")],
)
def test_plan_rejects_bad_filters(local, kwargs, message):
    volume, store, _ = local
    with pytest.raises(ValueError, match=message):
        plan_cleanup(volume, store, now=NOW, **kwargs)


# --- deleting on the local volume -------------------------------------------------------


def test_dry_run_deletes_nothing_and_reports_bytes(local):
    volume, store, sizes = local
    report = run_cleanup(plan_cleanup(volume, store, older_than_days=30, now=NOW), volume, store, dry_run=True)
    assert report.dry_run and report.job_ids == ["old-a", "old-b"]
    assert report.total_bytes == sizes["old-a"] + sizes["old-b"]
    assert ids(volume.list_jobs()) == ["new-c", "old-a", "old-b"]
    assert store.list_events("old-a") == []


def test_cleanup_deletes_exactly_the_old_experiments_and_records_events(local):
    volume, store, sizes = local
    seen = []
    report = run_cleanup(plan_cleanup(volume, store, older_than_days=30, now=NOW), volume, store, dry_run=False, on_deleted=seen.append)
    assert report.job_ids == ["old-a", "old-b"] and report.failed == {}
    assert ids(seen) == ["old-a", "old-b"]
    assert ids(volume.list_jobs()) == ["new-c"]
    assert volume.list_keys("new-c") and not volume.list_keys("old-a")
    (event,) = store.list_events("old-a")
    assert event["event_type"] == "cleanup"
    assert event["details"]["bytes_deleted"] == sizes["old-a"] and event["details"]["objects_deleted"] == 2
    assert store.list_events("new-c") == []
    assert store.get_job("old-a")["status"] == "failed"  # rows kept


def test_cleanup_can_delete_the_rows(local):
    volume, store, _ = local
    report = run_cleanup(plan_cleanup(volume, store, older_than_days=30, now=NOW), volume, store, dry_run=False, delete_rows=True)
    assert report.rows_deleted == ["old-a", "old-b"]
    for job_id in ("old-a", "old-b"):
        with pytest.raises(NotFound):
            store.get_job(job_id)
    assert store.get_job("new-c")["job_id"] == "new-c"


def test_a_job_that_cannot_be_deleted_does_not_stop_the_others(local):
    volume, store, _ = local

    class Flaky(LocalArtifactStore):
        def delete_prefix(self, prefix):
            if prefix.startswith("old-a"):
                raise OSError("disk on fire")
            return super().delete_prefix(prefix)

    flaky = Flaky(volume.root)
    report = run_cleanup(plan_cleanup(flaky, store, older_than_days=30, now=NOW), flaky, store, dry_run=False)
    assert report.job_ids == ["old-b"] and "disk on fire" in report.failed["old-a"]
    assert ids(volume.list_jobs()) == ["new-c", "old-a"]


# --- deleting on the real S3 server -----------------------------------------------------


@pytest.mark.s3
def test_cleanup_on_s3_deletes_exactly_the_old_experiments(s3_server, s3_bucket):
    from bilancio_pipeline.storage.artifacts.s3 import S3ArtifactStore

    volume = S3ArtifactStore(s3_bucket, s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key)
    old_bytes = seed(volume, "old-a", (120, 80)) + seed(volume, "old-b", (64,))
    time.sleep(1.2)  # LastModified has one-second resolution; the new ones must be strictly later
    seed(volume, "new-c", (10, 20, 30))
    seed(volume, "new-cd", (5,))  # shares a prefix with no old job but starts like "new-c"
    listed = {job.job_id: job.last_modified for job in volume.list_jobs()}
    # LastModified cannot be backdated, so "now" moves forward instead: 30 days after the old ones
    now = max(listed["old-a"], listed["old-b"]) + timedelta(days=30, milliseconds=500)
    assert now - timedelta(days=30) < min(listed["new-c"], listed["new-cd"])

    plan = plan_cleanup(volume, None, older_than_days=30, now=now)
    assert ids(plan) and sorted(ids(plan)) == ["old-a", "old-b"]

    dry = run_cleanup(plan, volume, None, dry_run=True)
    assert dry.total_bytes == old_bytes
    assert sorted(ids(volume.list_jobs())) == ["new-c", "new-cd", "old-a", "old-b"]

    report = run_cleanup(plan, volume, None, dry_run=False)
    assert sorted(report.job_ids) == ["old-a", "old-b"] and report.failed == {}
    assert sorted(ids(volume.list_jobs())) == ["new-c", "new-cd"]
    assert len(volume.list_keys("new-c")) == 3 and len(volume.list_keys("new-cd")) == 1


# --- the Modal Volume adapter (Modal's cloud faked at the Volume's methods) -------------------


@dataclass
class FakeEntry:
    path: str
    type: int
    mtime: int
    size: int


class FakeModalVolume:
    """The four methods ModalVolumeStore uses, over a dict {path: (bytes, mtime)}."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, int]] = {}
        self.removed: list[tuple[str, bool]] = []

    def listdir(self, path, *, recursive=False):
        from modal.types import FileEntryType

        assert recursive
        base = "" if path in ("/", "") else path.strip("/") + "/"
        if base and not any(p.startswith(base) for p in self.files):
            raise FileNotFoundError(path)
        return [FakeEntry(p, FileEntryType.FILE, m, len(d)) for p, (d, m) in self.files.items() if p.startswith(base)]

    def remove_file(self, path, recursive=False):
        self.removed.append((path, recursive))
        for p in [p for p in self.files if p.startswith(path.rstrip("/") + "/")]:
            del self.files[p]

    def read_file(self, path):
        yield self.files[path][0]


def test_modal_volume_cleanup_uses_the_python_api():
    fake = FakeModalVolume()
    old, new = int((NOW - timedelta(days=45)).timestamp()), int((NOW - timedelta(days=1)).timestamp())
    fake.files = {
        "old-a/runs/r1/scenario.yaml": (b"a" * 10, old),
        "old-a/runs/r1/out/events.jsonl": (b"b" * 30, old - 50),
        "new-c/runs/r2/scenario.yaml": (b"c" * 7, new),
        "loose.txt": (b"zz", old),
    }
    volume = ModalVolumeStore("bilancio-results", volume=fake)
    jobs = {job.job_id: job for job in volume.list_jobs()}
    assert set(jobs) == {"old-a", "new-c"}
    assert jobs["old-a"].total_bytes == 40 and jobs["old-a"].n_objects == 2
    assert jobs["old-a"].last_modified == datetime.fromtimestamp(old, tz=timezone.utc)

    report = run_cleanup(plan_cleanup(volume, None, older_than_days=30, now=NOW), volume, None, dry_run=False)
    assert report.job_ids == ["old-a"] and report.total_bytes == 40
    assert fake.removed == [("old-a", True)]
    assert sorted(fake.files) == ["loose.txt", "new-c/runs/r2/scenario.yaml"]
    assert volume.get_bytes("new-c/runs/r2/scenario.yaml") == b"c" * 7


def test_volume_kind_rule(monkeypatch, env_clean):
    assert volume_kind() == "local"
    monkeypatch.setenv("BILANCIO_EXECUTOR", "modal")
    assert volume_kind() == "modal"
    monkeypatch.setenv("BILANCIO_R2_BUCKET", "results")
    assert volume_kind() == "r2"
    monkeypatch.setenv("BILANCIO_VOLUME", "local")
    assert volume_kind() == "local" and volume_kind("modal") == "modal"
    with pytest.raises(ValueError, match="volume='s3'"):
        volume_kind("s3")


# --- the Dagster job, its partitions, the schedules -------------------------------------


def dagster_resources(home: Path) -> dict:
    return {"store": StoreResource(home=str(home)), "artifacts": ArtifactsResource(home=str(home))}


def test_cleanup_job_deletes_old_experiments_and_their_partitions(tmp_path, env_clean):
    volume = LocalArtifactStore(tmp_path / "volume")
    seed(volume, "old-a")
    seed(volume, "new-c")
    # the job compares against the real clock: age old-a by 40 days from today
    stamp = (datetime.now(timezone.utc) - timedelta(days=40)).timestamp()
    for path in (volume.root / "old-a").rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))
    store = SqlStore(f"sqlite:///{tmp_path / 'bilancio.db'}")
    store.save_job(job_row("old-a"))
    store.save_job(job_row("new-c"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("sweeps", ["old-a", "new-c"])
    instance.add_dynamic_partitions("runs", ["old-a_passive_aaaaaaaaaaaa", "old-a_active_bbbbbbbbbbbb", "new-c_passive_cccccccccccc"])
    resources = dagster_resources(tmp_path)

    dry = maintenance.cleanup_volume_job.execute_in_process(instance=instance, resources=resources)  # UI default: dry run
    assert dry.success and dry.output_for_node("cleanup_volume")["jobs"] == ["old-a"]
    assert ids(volume.list_jobs()) == ["new-c", "old-a"]
    assert len(instance.get_dynamic_partitions("runs")) == 3

    config = {"ops": {"cleanup_volume": {"config": {"older_than_days": 30, "dry_run": False}}}}
    result = maintenance.cleanup_volume_job.execute_in_process(run_config=config, instance=instance, resources=resources)
    assert result.success
    assert result.output_for_node("cleanup_volume")["jobs"] == ["old-a"]
    assert ids(volume.list_jobs()) == ["new-c"]
    assert instance.get_dynamic_partitions("sweeps") == ["new-c"]
    assert instance.get_dynamic_partitions("runs") == ["new-c_passive_cccccccccccc"]
    assert [e["event_type"] for e in store.list_events("old-a")] == ["cleanup"]
    store.close()


def test_cleanup_job_rejects_a_bad_status_before_deleting(tmp_path, env_clean):
    volume = LocalArtifactStore(tmp_path / "volume")
    seed(volume, "old-a")
    config = {"ops": {"cleanup_volume": {"config": {"statuses": ["finished"], "dry_run": False}}}}
    result = maintenance.cleanup_volume_job.execute_in_process(
        run_config=config, instance=dg.DagsterInstance.ephemeral(), resources=dagster_resources(tmp_path), raise_on_error=False
    )
    assert not result.success
    assert ids(volume.list_jobs()) == ["old-a"]


def test_cleanup_schedule_runs_a_real_cleanup_with_the_configured_age(monkeypatch, env_clean):
    context = dg.build_schedule_context(scheduled_execution_time=NOW)
    request = maintenance.cleanup_volume_schedule(context)
    assert request.run_config == {"ops": {"cleanup_volume": {"config": {"older_than_days": 30, "dry_run": False}}}}
    monkeypatch.setenv("BILANCIO_CLEANUP_OLDER_THAN_DAYS", "7")
    request = maintenance.cleanup_volume_schedule(dg.build_schedule_context(scheduled_execution_time=NOW))
    assert request.run_config["ops"]["cleanup_volume"]["config"] == {"older_than_days": 7, "dry_run": False}
    assert dg.validate_run_config(maintenance.cleanup_volume_job, request.run_config)
    assert maintenance.cleanup_volume_schedule.cron_schedule == "0 4 * * *"
    assert maintenance.cleanup_volume_schedule.execution_timezone == "UTC"
    monkeypatch.setenv("BILANCIO_CLEANUP_OLDER_THAN_DAYS", "a month")
    with pytest.raises(Exception, match="BILANCIO_CLEANUP_OLDER_THAN_DAYS"):
        maintenance.cleanup_volume_schedule(dg.build_schedule_context(scheduled_execution_time=NOW))


def test_keepalive_schedule_skips_without_supabase_and_runs_weekly_with_it(monkeypatch, env_clean):
    assert isinstance(maintenance.supabase_keepalive_schedule(dg.build_schedule_context()), dg.SkipReason)
    monkeypatch.setenv("BILANCIO_SUPABASE_URL", "https://project.supabase.co")
    assert isinstance(maintenance.supabase_keepalive_schedule(dg.build_schedule_context()), dg.RunRequest)
    assert maintenance.supabase_keepalive_schedule.cron_schedule == "0 6 * * 1"


@pytest.mark.postgres
def test_keepalive_job_pings_the_configured_postgres(postgres_url):
    result = maintenance.supabase_keepalive_job.execute_in_process(
        resources={"store": StoreResource(db_url=postgres_url)}, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success and result.output_for_node("ping_store") == "postgres"


def test_keepalive_job_fails_when_the_project_cannot_be_reached(tmp_path):
    unreachable = "postgresql+psycopg2://nobody:pw@127.0.0.1:1/none?connect_timeout=2"
    result = maintenance.supabase_keepalive_job.execute_in_process(
        resources={"store": StoreResource(db_url=unreachable)}, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success


def test_definitions_load_with_the_shared_resources(tmp_path):
    defs = dg.Definitions.merge(maintenance.defs, dg.Definitions(resources=dagster_resources(tmp_path)))
    assert {job.name for job in defs.resolve_all_job_defs()} >= {"cleanup_volume_job", "supabase_keepalive_job"}
