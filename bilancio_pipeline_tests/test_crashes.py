"""Crashes, for real: `bilancio-pipeline ui` (webserver, daemon, code server, run workers) and
CLI sweeps killed with SIGKILL mid-sweep. After each, the sweep must finish by itself, without
a relaunch: every run completed exactly once, its job_metrics written, no Dagster run left
STARTED or QUEUED, and a new sweep starts at once. Plus a store that never answers, which must
fail a launch in seconds with one clear line.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bilancio_pipeline.benchmarks.dagster_server import _group_alive
from bilancio_pipeline.benchmarks.pg_server import free_port
from bilancio_pipeline.defs.dead_runs import WORKER_GONE_TAG, worker_of
from bilancio_pipeline.defs.run_tags import HANDED_ON_TAG, JOB_ID_TAG
from bilancio_pipeline.storage.config import open_store

# 5 kappas x 2 mus x 2 seeds x 2 regimes = 40 runs: 5 batches of 8 (the fixture's batch size)
SWEEP = {"sweep_type": "balanced", "n_agents": 16, "maturity_days": 5, "kappas": [0.25, 0.5, 1.0, 2.0, 4.0],
         "mus": [0.0, 1.0], "seeds": [1, 2]}
SMALL = {**SWEEP, "kappas": [0.5, 1.0], "mus": [0.5], "seeds": [1]}  # 4 runs
RECOVERY_TIMEOUT = 300  # seconds for a sweep to finish after a crash: a bound for a busy machine
UNFINISHED = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}


def _launch(ui, job_id: str, spec: dict = SWEEP) -> str:
    return ui.launch_run("launch_sweep_job", {"ops": {"launch_sweep": {"config": {**spec, "job_id": job_id}}}})


def _job(ui, job_id: str) -> dict | None:
    store = open_store(home=ui.bilancio_home)
    try:
        return next((j for j in store.list_jobs(limit=1000) if j["job_id"] == job_id), None)
    finally:
        store.close()


def _finished(ui, job_id: str) -> dict | None:
    job = _job(ui, job_id)
    return job if job and job["status"] in ("completed", "failed") else None


def _started_batch(ui, job_id: str) -> dict | None:
    runs = ui.runs("sweep_batch_job", tags={JOB_ID_TAG: job_id})
    return next((r for r in runs if r["status"] == "STARTED"), None)


def _assert_complete_once(ui, job_id: str, n_runs: int) -> None:
    """Every run completed once, one metrics row each, job_metrics there, the job completed."""
    db = sqlite3.connect(ui.bilancio_home / "bilancio.db")
    try:
        statuses = dict(db.execute("select status, count(*) from runs where job_id = ? group by status", (job_id,)))
        assert statuses == {"completed": n_runs}, statuses
        rows, distinct = db.execute("select count(*), count(distinct run_id) from metrics where job_id = ?",
                                    (job_id,)).fetchone()
        assert rows == distinct == n_runs  # 0 duplicate metrics rows
        (n_pairs,) = db.execute("select n_pairs from job_metrics where job_id = ?", (job_id,)).fetchone()
        assert n_pairs == n_runs // 2
    finally:
        db.close()
    job = _job(ui, job_id)
    assert (job["status"], job["completed_runs"], job["failed_runs"]) == ("completed", n_runs, 0)


def _assert_nothing_stuck(ui) -> None:
    """Every Dagster run ends (the last job_metrics run may still be drawing its report)."""
    def unfinished():
        return [(r["jobName"], r["status"]) for r in ui.runs() if r["status"] in UNFINISHED]

    ui.wait_for(lambda: not unfinished(), timeout=90, what="every Dagster run to end")


def _a_new_sweep_runs(ui, job_id: str) -> None:
    _launch(ui, job_id, SMALL)
    ui.wait_for(lambda: _finished(ui, job_id), timeout=RECOVERY_TIMEOUT, what=f"the new sweep {job_id}")
    _assert_complete_once(ui, job_id, 4)
    # Handed on by the runs themselves through the webserver, not by a sensor's tick.
    (launch,) = ui.runs("launch_sweep_job", tags={JOB_ID_TAG: job_id})
    assert launch["tags"].get(HANDED_ON_TAG) == "true"
    followers = ui.runs("sweep_batch_job", tags={JOB_ID_TAG: job_id}) + ui.runs("job_metrics_job",
                                                                                tags={"dagster/partition": job_id})
    assert len(followers) >= 2 and not [r for r in followers if "dagster/sensor_name" in r["tags"]]


def _stops_cleanly_on(ui, sig: signal.Signals) -> None:
    """The signal to `ui`'s own process (as a process manager sends it) stops every process of
    its tree, with exit code 0."""
    pgid = ui.process.pid
    ui.process.send_signal(sig)
    assert ui.process.wait(60) == 0
    deadline = time.monotonic() + 30
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(pgid), [p.cmdline() for p in psutil.process_iter() if os.getpgid(p.pid) == pgid]


def _kill_a_run_worker(ui, instance, job_id: str, attempts: int = 5) -> tuple[str, float]:
    """SIGKILL the worker process of a running batch of the sweep. A batch lasts seconds: if it
    ended before the kill landed, try the next one. Returns the run id and the kill's time."""
    import dagster as dg

    for _ in range(attempts):
        batch = ui.wait_for(lambda: _started_batch(ui, job_id), timeout=120, what="a batch running")
        worker = worker_of(instance, batch["runId"])
        if worker is None or instance.get_run_by_id(batch["runId"]).status != dg.DagsterRunStatus.STARTED:
            continue
        try:
            os.kill(worker[0], signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed = time.monotonic()
        ended = ui.wait_for(lambda: next((r["status"] for r in ui.runs("sweep_batch_job")
                                          if r["runId"] == batch["runId"] and r["status"] not in UNFINISHED), None),
                            timeout=60, what="the killed batch to end")
        if ended == "FAILURE":
            return batch["runId"], killed
    pytest.fail(f"no batch of {job_id} was still running when its worker was killed, {attempts} times")


def _ui_process(ui, marker: str) -> psutil.Process:
    return next(p for p in ui.process_tree() if marker in " ".join(p.cmdline()))


def test_the_whole_ui_killed_mid_sweep_finishes_after_a_restart(bilancio_ui):
    ui = bilancio_ui
    _launch(ui, "crash-all")
    ui.wait_for(lambda: _started_batch(ui, "crash-all"), timeout=120, what="a batch running")
    ui.kill_all()  # webserver, daemon, code server, run workers: a reboot

    with ui.instance() as instance:  # what the crash left: runs STARTED whose process is gone
        left = [r for r in instance.get_runs() if r.status.value in UNFINISHED]
    assert any(r.status.value in ("STARTED", "STARTING") for r in left), [(r.job_name, r.status) for r in left]
    assert _job(ui, "crash-all")["status"] in ("pending", "running")  # never completed

    restarted = time.monotonic()
    ui.start()
    ui.wait_for(lambda: _finished(ui, "crash-all"), timeout=RECOVERY_TIMEOUT, what="the sweep after the restart")
    print(f"measured: whole UI killed, {len(left)} runs left unfinished; completed {time.monotonic() - restarted:.0f} s "
          "after the restart")
    _assert_complete_once(ui, "crash-all", 40)
    assert len(ui.runs("launch_sweep_job")) == 1  # finished without a relaunch
    dead = [r for r in ui.runs("sweep_batch_job") if r["tags"].get(WORKER_GONE_TAG) == r["runId"]]
    assert dead and all(r["status"] == "FAILURE" for r in dead)
    retried = {r["tags"].get("dagster/parent_run_id") for r in ui.runs("sweep_batch_job")}
    assert {r["runId"] for r in dead} <= retried  # each dead batch was retried by Dagster's run retries
    _a_new_sweep_runs(ui, "after-all")
    _assert_nothing_stuck(ui)
    console = ui.log_tail(10**7)
    assert "bilancio - INFO - sweep crash-all: every run has ended; job_metrics requested" in console
    assert "SensorDaemon - INFO" not in console and "RUN_START" not in console  # no ticks, no DEBUG events
    _stops_cleanly_on(ui, signal.SIGTERM)


def test_a_run_worker_the_daemon_and_a_cli_sweep_killed(bilancio_ui, tmp_path):
    ui = bilancio_ui
    _launch(ui, "crash-parts", {**SWEEP, "seeds": [1, 2, 3, 4]})  # 80 runs: batches enough for two kills

    # One run worker, killed alone: found dead by the periodic check, retried.
    with ui.instance() as instance:
        killed_run, killed = _kill_a_run_worker(ui, instance, "crash-parts")
    ui.wait_for(lambda: next((r for r in ui.runs("sweep_batch_job") if r["runId"] == killed_run
                              and r["status"] == "FAILURE"), None), timeout=60, what="the dead batch reported failed")
    print(f"measured: run worker killed, reported failed after {time.monotonic() - killed:.0f} s")

    # The daemon, killed alone: `dagster dev` stops, `ui` starts it again.
    ui.wait_for(lambda: _started_batch(ui, "crash-parts"), timeout=120, what="another batch running")
    _ui_process(ui, "dagster._daemon").kill()
    killed = time.monotonic()
    ui.wait_for(lambda: _finished(ui, "crash-parts"), timeout=RECOVERY_TIMEOUT, what="the sweep after the kills")
    print(f"measured: daemon killed, sweep completed {time.monotonic() - killed:.0f} s later")
    _assert_complete_once(ui, "crash-parts", 80)
    assert len(ui.runs("launch_sweep_job")) == 1

    # A CLI sweep on the same instance, killed mid-batch: the UI ends its dead run, takes the
    # sweep over, and launches a new sweep meanwhile.
    env = {**ui.env, "BILANCIO_BATCH_SIZE": "8"}
    cli = [str(Path(sys.executable).parent / "bilancio-pipeline"), "sweep", "balanced", "--n-agents", "16",
           "--maturity-days", "5", "--kappas", "0.25,0.5,1,2,4", "--mus", "0,1", "--seeds", "1,2",
           "--job-id", "crash-cli"]  # 40 runs
    sweep = subprocess.Popen(cli, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        ui.wait_for(lambda: _started_batch(ui, "crash-cli"), timeout=180, what="the CLI's batch running")
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait(10)
    killed = time.monotonic()
    _launch(ui, "after-cli", SMALL)
    ui.wait_for(lambda: _finished(ui, "crash-cli"), timeout=RECOVERY_TIMEOUT, what="the CLI sweep taken over")
    print(f"measured: CLI sweep killed, taken over and completed {time.monotonic() - killed:.0f} s later")
    _assert_complete_once(ui, "crash-cli", 40)
    ui.wait_for(lambda: _finished(ui, "after-cli"), timeout=RECOVERY_TIMEOUT, what="the sweep launched meanwhile")
    _assert_complete_once(ui, "after-cli", 4)
    cli_runs = [r for r in ui.runs() if r["tags"].get("bilancio/launched_by") == "cli"]
    assert any(r["tags"].get(WORKER_GONE_TAG) == r["runId"] and r["status"] == "FAILURE" for r in cli_runs)
    _assert_nothing_stuck(ui)
    _stops_cleanly_on(ui, signal.SIGINT)


def test_a_store_that_never_answers_fails_a_launch_in_seconds(tmp_path):
    """A wrong port: one line naming the database (no password, no Python class path), in
    seconds, not after the outage deadline (120 s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILANCIO_", "DAGSTER_"))}
    env.update(BILANCIO_HOME=str(tmp_path / "home"),
               BILANCIO_SUPABASE_DB_URL=f"postgresql://researcher:pa55word@127.0.0.1:{free_port()}/results")
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "bilancio-pipeline"), "sweep", "balanced",
                           "--n-agents", "10", "--kappas", "1", "--seeds", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert "127.0.0.1" in lines[0] and "/results" in lines[0] and "did not answer" in lines[0]
    assert "pa55word" not in done.stderr + done.stdout and "bilancio_pipeline." not in lines[0]
    assert elapsed < 30, f"took {elapsed:.1f} s"  # the bound is ~10 s; the rest is slack for a busy machine
    print(f"measured: unreachable database, the CLI gave up after {elapsed:.1f} s")


def test_the_launch_op_says_in_one_line_that_the_store_never_answered(tmp_path, monkeypatch):
    """The same check in the launch op the UI's Launchpad runs: one line, no traceback, no class
    path, no password; the run fails rather than waiting out the outage deadline."""
    import dagster as dg

    from bilancio_pipeline.defs.inprocess import SweepFailed, run_sweep
    from bilancio_pipeline.definitions import build_definitions

    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path))
    monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", f"postgresql://researcher:pa55word@127.0.0.1:{free_port()}/results")
    with dg.DagsterInstance.ephemeral() as instance, pytest.raises(SweepFailed) as failed:
        run_sweep(build_definitions(), instance, {**SMALL, "job_id": "never"})
    message = str(failed.value)
    assert "did not answer" in message and "127.0.0.1" in message and "/results" in message
    assert "\n" not in message and "pa55word" not in message and "bilancio_pipeline." not in message
