"""Faults during a sweep, each provoked for real: the database restarts mid-sweep, a worker
process dies, the Dagster run is killed mid-batch, the artifact store refuses uploads, two
sweeps share one store, the aggregate fails. After each: no run lost, none duplicated, and the
job's status tells the truth."""

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from bilancio_pipeline.benchmarks.pg_server import PostgresServer
from bilancio_pipeline.compute.local import LocalCompute
from bilancio_pipeline.defs import sensors
from bilancio_pipeline.defs.inprocess import SweepFailed, run_sweep
from bilancio_pipeline.defs.run_tags import range_tags
from bilancio_pipeline.defs.resources import ArtifactsResource, ComputeResource, StoreResource
from bilancio_pipeline.definitions import build_definitions
from bilancio_pipeline.storage.artifacts.base import ArtifactError
from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
from bilancio_pipeline.storage.config import artifacts_from_env, store_from_env
from bilancio_pipeline.storage.sql import SqlStore
from bilancio_pipeline.compute import uploads as uploads_module
from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate
from bilancio_pipeline_tests import fault_runners

JOB = "fault-sweep"
SPEC = {"n_agents": 10, "maturity_days": 5, "kappas": [0.5, 1.0], "seeds": [1, fault_runners.DOOMED_SEED],
        "job_id": JOB}  # 2 kappas x 2 seeds x 2 regimes = 8 runs
RUN_IDS = {p.run_id for p in expand(validate(SweepSpec(**{**SPEC, "kappas": tuple(SPEC["kappas"]),
                                                           "seeds": tuple(SPEC["seeds"])})))}


def _good_compute() -> ComputeResource:
    return ComputeResource(workers=2)


@pytest.fixture
def sqlite_env(tmp_path, monkeypatch):
    """SQLite store and local volume under a fresh BILANCIO_HOME, an in-memory Dagster instance."""
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    for var in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_KEY", "BILANCIO_R2_BUCKET"):
        monkeypatch.delenv(var, raising=False)
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def assert_complete(store, job_id=JOB, n=8):
    """Every run completed once, with metrics; the aggregate is there and the job completed."""
    runs = store.list_runs(job_id)
    assert len(runs) == n == len({r["run_id"] for r in runs})
    assert {r["status"] for r in runs} == {"completed"}, {r["run_id"]: r["error"] for r in runs}
    assert store.completed_run_ids(job_id) == {r["run_id"] for r in runs}
    assert len(store.get_metrics([r["run_id"] for r in runs])) == n
    assert store.get_job_metrics(job_id)["n_pairs"] == n // 2
    job = store.get_job(job_id)
    assert (job["status"], job["completed_runs"], job["failed_runs"]) == ("completed", n, 0)
    assert [e["event_type"] for e in store.list_events(job_id)].count("created") == 1


# --- (1) the database goes away mid-sweep --------------------------------------------------------


class RestartablePostgres(PostgresServer):
    """The suite's throwaway server, with a stop that keeps the data so it can come back."""

    def halt(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-w", "-t", "60", "-l", str(self.dir / "server.log"),
                  "-o", options, "start")


OUTAGE_SECONDS = 3.0
_outage: dict = {}  # the server to stop, and the threads that bring it back


class OutageCompute(ComputeResource):
    """Simulates the batch, then stops the database; a thread starts it again a few seconds later,
    so the batch's writes meet a dead server."""

    def open(self, executor=None):
        class Outage(LocalCompute):
            def run_batch(self, tasks, artifacts_root):
                outcomes = list(super().run_batch(tasks, artifacts_root))
                server = _outage["server"]
                server.halt()
                _outage["stopped_at"].append(time.monotonic())
                back = threading.Thread(target=lambda: (time.sleep(OUTAGE_SECONDS), server.resume()))
                back.start()
                _outage["threads"].append(back)
                yield from outcomes

        return Outage(workers=2)


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test's own (the shared one is never stopped), migrated."""
    server = RestartablePostgres()
    server.start()
    try:
        server.create_database("faults")
        server.apply_migrations("faults")
        yield server
    finally:
        for thread in _outage.get("threads", []):
            thread.join(timeout=90)
        server.stop()


def test_database_restart_mid_sweep_loses_no_run(own_postgres, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", own_postgres.url("faults"))
    monkeypatch.setenv("BILANCIO_STORE_RETRY_SECONDS", "60")
    monkeypatch.delenv("BILANCIO_R2_BUCKET", raising=False)
    _outage.update(server=own_postgres, threads=[], stopped_at=[])
    caplog.set_level("WARNING", logger="bilancio_pipeline.storage.retrying")
    with dg.DagsterInstance.ephemeral() as instance:
        progress = run_sweep(build_definitions(compute=OutageCompute()), instance, SPEC, batch_size=4)
    assert len(_outage["stopped_at"]) == 2  # the database went away during each of the two batches
    retries = [r for r in caplog.records if "store unavailable, retrying" in r.getMessage()]
    assert retries, "the writes never met the stopped database"
    assert (progress.done, progress.failed) == (8, 0)
    assert_complete(store_from_env())  # runs lost: 0
    # The outage reaches the user as warnings, never with the connection's secrets.
    assert all("password" not in r.getMessage().lower() for r in retries)


def test_an_outage_longer_than_the_deadline_fails_clearly(monkeypatch, caplog):
    """Retries are bounded: past BILANCIO_STORE_RETRY_SECONDS the transient error is raised."""
    from bilancio_pipeline.benchmarks.pg_server import free_port
    from bilancio_pipeline.storage.base import StoreError
    from bilancio_pipeline.storage.config import open_store

    monkeypatch.setenv("BILANCIO_STORE_RETRY_SECONDS", "1")
    caplog.set_level("WARNING", logger="bilancio_pipeline.storage.retrying")
    store = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/gone")
    with pytest.raises(StoreError) as gave_up:
        store.list_jobs()
    assert gave_up.value.transient and "could not" in str(gave_up.value)
    assert any("retrying" in r.getMessage() for r in caplog.records)


# --- (2) a worker process dies -------------------------------------------------------------------


class DyingCompute(ComputeResource):
    def open(self, executor=None):
        return LocalCompute(workers=2, runner=fault_runners.die_on_doomed_run)


def test_dead_worker_fails_only_its_run_and_relaunch_reruns_only_it(sqlite_env):
    instance = sqlite_env
    progress = run_sweep(build_definitions(compute=DyingCompute()), instance, SPEC, batch_size=8)
    assert (progress.done, progress.failed) == (8, 1)
    store = store_from_env()
    runs = {r["run_id"]: r for r in store.list_runs(JOB)}
    (dead,) = [k for k, r in runs.items() if r["status"] == "failed"]
    assert (runs[dead]["regime"], runs[dead]["seed"], runs[dead]["kappa"]) == (
        "active", fault_runners.DOOMED_SEED, fault_runners.DOOMED_KAPPA)
    assert "worker process" in runs[dead]["error"] and "died" in runs[dead]["error"]
    assert {r["status"] for k, r in runs.items() if k != dead} == {"completed"}
    job = store.get_job(JOB)
    assert job["status"] == "failed" and "1 of 8 runs failed" in job["error"]

    finished = {k: r["updated_at"] for k, r in runs.items() if k != dead}
    progress = run_sweep(build_definitions(compute=_good_compute()), instance, SPEC, batch_size=8)
    assert (progress.done, progress.failed) == (8, 0)
    rows = {r["run_id"]: r for r in store.list_runs(JOB)}
    assert {k: rows[k]["updated_at"] for k in finished} == finished  # the 7 others did not run again
    assert rows[dead]["status"] == "completed" and rows[dead]["error"] is None
    assert_complete(store)


_POOL_OWNER = """
import os, sys, time
from bilancio_pipeline.compute import local
if __name__ == "__main__":
    pool = local._pool(2)
    busy = [pool.submit(time.sleep, 60) for _ in range(2)]  # two workers mid-simulation
    time.sleep(1)
    print(os.getpid(), flush=True)
    time.sleep(120)
"""


def test_a_pool_whose_owner_is_killed_does_not_outlive_it(tmp_path):
    """kill -9 of a run worker (or a CLI sweep) takes its simulation pool with it: its forkserver
    and workers end too, rather than holding memory and CPU until the machine restarts."""
    import psutil

    script = tmp_path / "owner.py"
    script.write_text(_POOL_OWNER)
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(owner.stdout.readline())
        pool = [p for p in psutil.Process(pid).children(recursive=True) if "forkserver" in " ".join(p.cmdline())]
        assert len(pool) == 3  # the forkserver and its two workers
        owner.kill()
        owner.wait(10)
        gone, alive = psutil.wait_procs(pool, timeout=10)
        assert not alive, [p.pid for p in alive]
    finally:
        owner.kill()


# --- (3) the Dagster run is killed mid-batch -----------------------------------------------------


class KilledMidBatch(ComputeResource):
    """Two results come back, then the step dies: the batch's results never reach the store."""

    def open(self, executor=None):
        class Killed(LocalCompute):
            def run_batch(self, tasks, artifacts_root):
                for i, outcome in enumerate(super().run_batch(tasks, artifacts_root)):
                    if i == 2:
                        raise SystemError("run worker killed")
                    yield outcome

        return Killed(workers=2)


def _status_context(instance, result, status):
    run = instance.get_run_by_id(result.run_id)
    event = next(e for e in result.all_events if e.event_type_value == status)
    return dg.build_run_status_sensor_context(sensor_name="s", dagster_event=event, dagster_instance=instance,
                                              dagster_run=run)


def test_killed_dagster_run_resumes_without_duplicates_or_gaps(sqlite_env, tmp_path):
    instance = sqlite_env
    defs = build_definitions(compute=KilledMidBatch())
    launch = defs.resolve_job_def("launch_sweep_job").execute_in_process(
        run_config={"ops": {"launch_sweep": {"config": SPEC}}}, instance=instance)
    keys = instance.get_dynamic_partitions("runs")
    batch = defs.resolve_job_def("sweep_batch_job").execute_in_process(
        instance=instance, tags=range_tags(keys[0], keys[-1]), raise_on_error=False)
    assert launch.success and not batch.success
    store = store_from_env()
    assert {r["status"] for r in store.list_runs(JOB)} == {"running"}  # what the killed run leaves

    # The daemon's failure sensor frees them; the completion sensor then settles the job.
    store_resource = StoreResource(home=os.environ["BILANCIO_HOME"])
    list(sensors.batch_failure_sensor(_status_context(instance, batch, "PIPELINE_FAILURE"), store=store_resource) or [])
    assert {r["status"] for r in store.list_runs(JOB)} == {"failed"}
    context = dg.build_sensor_context(instance=instance, resources={"store": store_resource})
    (request,) = list(sensors.sweep_completion_sensor(context))
    assert request.partition_key == JOB

    progress = run_sweep(build_definitions(compute=_good_compute()), instance, SPEC, batch_size=3)
    assert (progress.total, progress.done, progress.failed) == (8, 8, 0)
    assert_complete(store)
    assert set(instance.get_dynamic_partitions("runs")) == RUN_IDS  # no stray or doubled partition
    assert instance.get_materialized_partitions(dg.AssetKey("run_metrics")) == RUN_IDS


def test_killed_batch_in_a_cli_sweep_never_leaves_the_job_completed_or_running(sqlite_env):
    """Without the daemon (the command line drives the batches), a killed batch still ends with
    its runs failed and the job failed, and a re-launch completes it."""
    instance = sqlite_env
    progress = run_sweep(build_definitions(compute=KilledMidBatch()), instance, SPEC, batch_size=4)
    store = store_from_env()
    counts = store.run_counts(JOB)
    assert counts["running"] == counts["pending"] == 0 and counts["failed"] == 8 == progress.failed
    job = store.get_job(JOB)
    assert job["status"] == "failed" and "8 of 8 runs failed" in job["error"]
    run_sweep(build_definitions(compute=_good_compute()), instance, SPEC, batch_size=4)
    assert_complete(store)


# --- (4) the artifact store refuses uploads -------------------------------------------------------

_uploads: Counter = Counter()
REFUSED_SEED = 7  # every upload of these runs is refused; all others are refused once


class RefusingVolume(LocalArtifactStore):
    def move_run(self, job_id, run_id, local_dir):
        _uploads[run_id] += 1
        if run_id in _uploads.get("always", set()) or _uploads[run_id] == 1:
            raise ArtifactError("503 SlowDown: upload refused")
        return super().move_run(job_id, run_id, local_dir)


class RefusingArtifacts(ArtifactsResource):
    def open(self):
        return RefusingVolume(Path(self.home) / "volume")


def test_refused_uploads_are_retried_and_the_missing_ones_reported(sqlite_env, monkeypatch):
    instance = sqlite_env
    monkeypatch.setattr(uploads_module, "UPLOAD_WAIT_INITIAL", 0.01)
    monkeypatch.setattr(uploads_module, "UPLOAD_WAIT_MAX", 0.02)
    planned = expand(validate(SweepSpec(**{**SPEC, "kappas": (0.5, 1.0), "seeds": (1, REFUSED_SEED)})))
    refused = {p.run_id for p in planned if p.params.seed == REFUSED_SEED}
    _uploads.clear()
    _uploads["always"] = refused  # type: ignore[assignment]
    defs = build_definitions(compute=_good_compute(), artifacts=RefusingArtifacts(home=os.environ["BILANCIO_HOME"]))
    progress = run_sweep(defs, instance, SPEC, batch_size=8)
    assert (progress.done, progress.failed) == (8, 0)

    store = store_from_env()
    runs = {r["run_id"]: r for r in store.list_runs(JOB)}
    assert {r["status"] for r in runs.values()} == {"completed"}
    assert len(store.get_metrics(runs)) == 8  # the metrics are stored whatever the uploads did
    for run_id, run in runs.items():
        if run_id in refused:
            assert _uploads[run_id] == uploads_module.UPLOAD_ATTEMPTS
            assert "artifacts not stored after" in run["error"] and "503 SlowDown" in run["error"]
        else:
            assert _uploads[run_id] == 2 and run["error"] is None  # refused once, stored on the retry
            assert artifacts_from_env().list_keys(run["artifact_base"])
    # Reported, not skipped: in the sweep's events, in the completed event, and in Dagster.
    progress_events = [e for e in store.list_events(JOB) if e["event_type"] == "progress"]
    assert sum(e["details"]["missing_artifacts"] for e in progress_events) == len(refused)
    completed = [e for e in store.list_events(JOB) if e["event_type"] == "completed"][-1]
    assert set(completed["details"]["missing_artifacts"]) == refused
    reported = set()
    for record in instance.fetch_materializations(dg.AssetKey("sweep_runs"), limit=100).records:
        reported |= set(record.asset_materialization.metadata["missing_artifacts"].value)
    assert reported == refused


# --- (5) two sweeps at once against one store ----------------------------------------------------


def test_two_sweeps_at_once_do_not_interfere(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILANCIO_", "DAGSTER_"))}
    env.update(BILANCIO_HOME=str(tmp_path / "home"), BILANCIO_WORKERS="1")
    cli = [str(Path(sys.executable).parent / "bilancio-pipeline"), "sweep", "balanced", "--n-agents", "10",
           "--maturity-days", "5", "--kappas", "0.5", "--seeds", "1,2", "--batch-size", "4"]
    procs = {job: subprocess.Popen([*cli, "--job-id", job], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True) for job in ("sweep-a", "sweep-b")}
    outputs = {job: proc.communicate(timeout=240) for job, proc in procs.items()}
    for job, proc in procs.items():
        assert proc.returncode == 0, outputs[job]
        assert f"job_id: {job}" in outputs[job][0] and "status: completed" in outputs[job][0]

    store = SqlStore(f"sqlite:///{tmp_path / 'home' / 'bilancio.db'}")
    ids = {}
    for job in ("sweep-a", "sweep-b"):
        assert_complete(store, job, n=4)
        ids[job] = {r["run_id"] for r in store.list_runs(job)}
        assert all(r.startswith(f"{job}_") for r in ids[job])
        results = store.query_results(job_id=job)
        assert {r["run_id"] for r in results} == ids[job]
    assert not ids["sweep-a"] & ids["sweep-b"]
    # Same parameters, same seeds: the two sweeps' results agree run for run.
    by_params = {job: sorted((r["kappa"], r["seed"], r["regime"], r["delta_total"])
                             for r in store.query_results(job_id=job)) for job in ids}
    assert by_params["sweep-a"] == by_params["sweep-b"]
    store.close()


# --- (6) the job never stays `running` -----------------------------------------------------------


def test_failed_aggregate_leaves_the_job_failed_not_running(sqlite_env, monkeypatch):
    from bilancio_pipeline.defs import assets

    def broken_summary(store, job_id):
        raise ZeroDivisionError("aggregate blew up")

    monkeypatch.setattr(assets, "summarize", broken_summary)
    with pytest.raises(SweepFailed, match="aggregate blew up"):
        run_sweep(build_definitions(compute=_good_compute()), sqlite_env, SPEC, batch_size=8)
    store = store_from_env()
    job = store.get_job(JOB)
    assert job["status"] == "failed" and "job_metrics failed" in job["error"] and "aggregate blew up" in job["error"]
    assert [e["event_type"] for e in store.list_events(JOB)][-1] == "failed"
    assert store.run_counts(JOB)["completed"] == 8  # the runs themselves are kept


def test_ctrl_c_stops_a_cli_sweep_and_the_same_command_resumes(tmp_path):
    """SIGINT (Ctrl-C) stops the command within its current batch, says how to resume, and the
    same command then finishes the sweep, the runs already done left as they are."""
    import signal
    import sqlite3

    from bilancio_pipeline.benchmarks.dagster_server import without_cloud_settings

    env = {**without_cloud_settings(os.environ), "BILANCIO_HOME": str(tmp_path / "home"), "BILANCIO_BATCH_SIZE": "10"}
    command = [str(Path(sys.executable).parent / "bilancio-pipeline"), "sweep", "balanced", "--n-agents", "100",
               "--maturity-days", "8", "--kappas", "0.25,0.5,1,2", "--mus", "0,0.5,1",
               "--seeds", ",".join(map(str, range(1, 11))), "--job-id", "stop-me"]  # 240 runs, 24 batches

    def completed() -> int:
        try:
            with sqlite3.connect(tmp_path / "home" / "bilancio.db") as db:
                return db.execute("select count(*) from runs where status = 'completed'").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0

    sweep = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while completed() < 10 and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=60)
    done = completed()
    assert sweep.returncode != 0 and "interrupted with" in err and "--job-id stop-me" in err, err[-2000:]
    assert 10 <= done < 240  # it stopped, keeping what was done

    resumed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert completed() == 240 and "status: completed" in resumed.stdout
