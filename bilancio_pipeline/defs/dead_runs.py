"""Find Dagster runs whose worker process is gone and end them through the instance's API.

Dagster's run monitoring cannot see a dead worker under the default run launcher (it has no
worker health check), nor one of the command line's in-process runs: after a crash such runs
stay STARTED for ever and hold a run slot. Dagster records which process runs a run: the pid on
the run's RUN_START event (the run worker, or the CLI process for an in-process run). A run whose
process no longer exists, or whose pid now belongs to a process started later, is dead: it is
reported failed (`instance.report_run_failed`), which frees its slot, lets Dagster's run retries
re-run it, and lets the failure sensor settle its sweep's rows.

Only runs this machine can judge are judged: those tagged with this host's name, and untagged
ones when the instance's run storage is local (SQLite or in memory), hence on this machine.
Called at the start of `bilancio-pipeline ui` and of a CLI sweep, and every few seconds by a sensor.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import dagster as dg
import psutil

from bilancio_pipeline.defs import console

HOST_TAG = "bilancio/host"  # the machine whose process runs the run (the sensors, the launch op and the CLI set it)
# Set to the run's own id on a run this module reported failed (a retry copies its parent's
# tags: compare with the id, `reported_dead`).
WORKER_GONE_TAG = "bilancio/worker_gone"
TAKEN_OVER_TAG = "bilancio/taken_over"  # on a dead CLI run whose sweep someone else now runs
# On a command line's launch run once it no longer drives its sweep (it finished, or gave up):
# a launch run without it whose process is gone is a command line that died between its runs.
DRIVER_DONE_TAG = "bilancio/driver_done"
_CLI = {"bilancio/launched_by": "cli"}
_CLOCK_SLACK_S = 1.0  # a process created this much after the run started is another process

log = console.events()


@dataclass(frozen=True)
class DeadRun:
    run: dg.DagsterRun
    pid: int | None


def this_host() -> str:
    return socket.gethostname()


def _storage_is_local(instance: dg.DagsterInstance) -> bool:
    from dagster._core.storage.runs import InMemoryRunStorage, SqliteRunStorage

    return isinstance(instance.run_storage, (SqliteRunStorage, InMemoryRunStorage))


def _judged_here(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    host = run.tags.get(HOST_TAG)
    return host == this_host() if host else _storage_is_local(instance)


def worker_of(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, timestamp) of the process running the run: the pid on its RUN_START event, or, for a
    run still STARTING, the one its launcher reported ("Started process for run")."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    if records and records[0].event_log_entry.dagster_event and records[0].event_log_entry.dagster_event.pid:
        entry = records[0].event_log_entry
        return entry.dagster_event.pid, entry.timestamp
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event else None
        pid = data.metadata.get("pid") if data and data.metadata else None
        if pid is not None and (record.event_log_entry.message or "").startswith("Started process for run"):
            return int(pid.value), record.event_log_entry.timestamp
    return None


def process_gone(pid: int, started_at: float) -> bool:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped by its parent
            return True
        return process.create_time() > started_at + _CLOCK_SLACK_S  # the pid now names a newer process
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:  # someone else's process: it exists
        return False


def reported_dead(run: dg.DagsterRun) -> bool:
    """This run (not a parent it was retried from) was reported failed because its process died."""
    return run.tags.get(WORKER_GONE_TAG) == run.run_id


def find_dead_runs(instance: dg.DagsterInstance, no_launcher: bool = False) -> list[DeadRun]:
    """STARTING, STARTED and CANCELING runs whose process is gone. A STARTING run whose process
    is not known yet is being launched; with `no_launcher` (no daemon can be launching it: the
    caller is about to start the only one) it is dead too. Dagster's run monitoring fails such
    runs anyway, after its start timeout."""
    statuses = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    dead = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=statuses)):
        run = record.dagster_run
        if not _judged_here(instance, run):
            continue
        worker = worker_of(instance, run.run_id)
        if worker is None:
            if run.status == dg.DagsterRunStatus.STARTING and no_launcher:
                dead.append(DeadRun(run, None))
            continue
        if process_gone(*worker):
            dead.append(DeadRun(run, worker[0]))
    return dead


def end_dead_runs(instance: dg.DagsterInstance, no_launcher: bool = False) -> list[str]:
    """Report every dead run failed (a dead CANCELING run: canceled). Returns their run ids.
    A dead run of a command-line sweep means the command line died: `orphaned_cli_runs` finds it
    until someone takes its sweep over."""
    ended = []
    for dead in find_dead_runs(instance, no_launcher):
        run = instance.get_run_by_id(dead.run.run_id)
        if run is None or run.is_finished:  # it ended on its own meanwhile
            continue
        what = f"its process (pid {dead.pid})" if dead.pid else "the process launching it"
        message = (f"{what} is gone: it ended without reporting (killed, out of memory, or the machine "
                   "restarted). Reported failed by bilancio-pipeline so the run frees its slot.")
        instance.add_run_tags(run.run_id, {WORKER_GONE_TAG: run.run_id})
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
        else:
            instance.report_run_failed(run, message)
        log.warning("run %s of %s: %s", run.run_id, run.job_name, message.split(".")[0])
        ended.append(run.run_id)
    return ended


def orphaned_cli_runs(instance: dg.DagsterInstance, limit: int = 100) -> list[dg.DagsterRun]:
    """Runs of command-line sweeps whose command line died, and whose sweep nobody has taken over
    yet: runs reported dead (it died mid-run), and succeeded launch runs whose process is gone
    without saying it was done (it died between two runs, when none of them was left STARTED)."""
    failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], tags=_CLI), limit=limit)
    orphans = [run for run in failed if reported_dead(run) and TAKEN_OVER_TAG not in run.tags]
    launched = instance.get_runs(dg.RunsFilter(job_name="launch_sweep_job", statuses=[dg.DagsterRunStatus.SUCCESS],
                                               tags=_CLI), limit=limit)
    for run in launched:
        if DRIVER_DONE_TAG in run.tags or TAKEN_OVER_TAG in run.tags or not _judged_here(instance, run):
            continue
        worker = worker_of(instance, run.run_id)
        if worker and process_gone(*worker):
            orphans.append(run)
    return orphans


def mark_driver_done(instance: dg.DagsterInstance, run_id: str) -> None:
    instance.add_run_tags(run_id, {DRIVER_DONE_TAG: "true"})


def mark_taken_over(instance: dg.DagsterInstance, run: dg.DagsterRun, by: str) -> None:
    instance.add_run_tags(run.run_id, {TAKEN_OVER_TAG: by})
