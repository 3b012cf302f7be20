"""Run a whole sweep in this process, through the same Dagster jobs and assets the UI uses.

The command line and the tests use this: it executes `launch_sweep_job`, then
`sweep_batch_job` over the batches the orchestrator plans (sweeps/orchestrator.py), then
`job_metrics_job`, all against the given instance, so the runs and materializations show up in
the UI. Runs left STARTED by an earlier process that died (a CLI sweep killed with kill -9) are
ended first, so they never hold a run slot; a UI's daemon takes such a sweep over by itself
(defs/sensors.py) unless this command resumes it.
"""

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg

from bilancio_pipeline.defs.dead_runs import (HOST_TAG, end_dead_runs, mark_driver_done, mark_taken_over,
                                              orphaned_cli_runs, this_host)
from bilancio_pipeline.defs.run_tags import JOB_ID_TAG, LAUNCHED_BY_TAG
from bilancio_pipeline.defs.orchestration import batch_tags, partition_order
from bilancio_pipeline.sweeps import orchestrator
from bilancio_pipeline.sweeps.lifecycle import TERMINAL_RUN_STATUSES


# Dagster's console log at DEBUG would bury the progress line; the UI keeps the full log.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# While a batch runs, the progress line is redrawn from the store's run counts this often.
PROGRESS_SECONDS = 2.0


class SweepFailed(RuntimeError):
    """The sweep could not be launched or aggregated; the message says why."""


class SweepInterrupted(SweepFailed):
    """The user stopped the command (Ctrl-C): what is done is kept, the same command resumes."""


@dataclass
class SweepProgress:
    job_id: str
    total: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in TERMINAL_RUN_STATUSES)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            user = event.step_failure_data.user_failure_data
            if user and user.description:
                return user.description
            while error is not None and error.cause is not None:  # the user's error, not Dagster's wrapper
                error = error.cause
            if error is None:
                return "step failed"
            # "pkg.module.SomeError: text" -> "text": the user reads what went wrong, not where.
            return re.sub(r"^[\w.]+\.\w+: ", "", error.message.strip())
    return "the Dagster run failed"


def run_sweep(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    sweep_config: dict,
    batch_size: int | None = None,
    on_progress: Callable[[SweepProgress], None] | None = None,
    on_aggregated: Callable[[SweepProgress], None] | None = None,
) -> SweepProgress:
    """Launch (or resume) a sweep and run it to its job_metrics and report. Returns the final
    counts. `on_aggregated` is called once job_metrics is stored, before the report is drawn."""
    end_dead_runs(instance)
    store = defs.resources["store"].process_config_and_initialize().open()
    try:
        # This process settles its own failed batches; Dagster cannot re-execute an in-process run.
        tags = {LAUNCHED_BY_TAG: "cli", HOST_TAG: this_host(), "dagster/max_retries": "0"}
        launch = defs.resolve_job_def("launch_sweep_job").execute_in_process(
            run_config={**QUIET, "ops": {"launch_sweep": {"config": sweep_config}}}, instance=instance, tags=tags,
            raise_on_error=False,
        )
        if not launch.success:
            raise SweepFailed(failure_message(launch))
        progress = SweepProgress(launch.output_for_node("launch_sweep"), 0)
        try:
            _drive(defs, instance, store, launch.run_id, tags, batch_size, progress, on_progress)
            _aggregate(defs, instance, store, tags, progress, on_aggregated)
        finally:  # this command no longer drives the sweep: nobody need take it over (dead_runs.py)
            mark_driver_done(instance, launch.run_id)
    finally:
        store.close()
    return progress


def _drive(defs: dg.Definitions, instance: dg.DagsterInstance, store, launch_run_id: str, tags: dict,
           batch_size: int | None, progress: SweepProgress, on_progress) -> None:
    """Run what the sweep has left, batch by batch."""
    job_id = progress.job_id
    for orphan in orphaned_cli_runs(instance):  # a dead command line's runs of this sweep: ours now
        if orphan.tags.get(JOB_ID_TAG) == job_id:
            mark_taken_over(instance, orphan, by=launch_run_id)
    progress.counts = store.run_counts(job_id)
    progress.total = sum(progress.counts.values())
    if on_progress:
        on_progress(progress)
    batch_job = defs.resolve_job_def("sweep_batch_job")
    for batch in orchestrator.next_batches(store, job_id, partition_order(instance), batch_size):
        with _watching(defs, progress, on_progress):
            result = batch_job.execute_in_process(run_config=QUIET, instance=instance,
                                                  tags={**tags, **batch_tags(batch, job_id)}, raise_on_error=False)
        # Ctrl-C: Dagster fails the batch's run and returns; the command must stop, not go on.
        stopped = not result.success and _interrupted(result)
        if not result.success:
            reason = ("interrupted (Ctrl-C) before it ran" if stopped else
                      f"the Dagster run {result.run_id} that was executing this run failed: {failure_message(result)}")
            orchestrator.batch_ended_badly(store, job_id, batch.run_ids, reason, will_retry=False)
        progress.counts = store.run_counts(job_id)
        if on_progress:
            on_progress(progress)
        if stopped:
            raise SweepInterrupted(f"interrupted with {progress.done} of {progress.total} runs done; "
                                   f"run the same command (--job-id {job_id}) to resume")


def _aggregate(defs: dg.Definitions, instance: dg.DagsterInstance, store, tags: dict, progress: SweepProgress,
               on_aggregated) -> None:
    """job_metrics, then the report, as two runs of job_metrics_job: the numbers are shown
    without waiting for the figures (the report imports a plotting library, about a second)."""
    _materialize(defs, instance, tags, progress.job_id, "job_metrics", "job_metrics")
    progress.counts = store.run_counts(progress.job_id)
    if on_aggregated:
        on_aggregated(progress)
    _materialize(defs, instance, tags, progress.job_id, "sweep_report", "the report")


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, tags: dict, job_id: str, asset: str,
                 what: str) -> None:
    result = defs.resolve_job_def("job_metrics_job").execute_in_process(
        run_config=QUIET, instance=instance, partition_key=job_id, tags=tags, asset_selection=[dg.AssetKey(asset)],
        raise_on_error=False)
    if not result.success:
        raise SweepFailed(f"{what} of {job_id} failed: {failure_message(result)}")


@contextmanager
def _watching(defs: dg.Definitions, progress: SweepProgress, on_progress) -> Iterator[None]:
    """While a batch runs in this thread, another reads the sweep's run counts from the store and
    redraws the progress line, so the command line's sweep is one batch over every core, as the
    UI's is (a batch stores its finished runs every few seconds). The line is a courtesy: a store
    that does not answer it is left alone, and nothing is drawn once the batch has returned."""
    if on_progress is None:
        yield
        return
    done, lock = threading.Event(), threading.Lock()

    def watch() -> None:
        try:
            store = defs.resources["store"].process_config_and_initialize().open()
        except Exception:  # a store that is down: the batch itself reports it
            return
        try:
            while not done.wait(PROGRESS_SECONDS):
                counts = store.run_counts(progress.job_id)
                with lock:
                    if done.is_set():
                        return
                    progress.counts = counts
                    on_progress(progress)
        except Exception:  # likewise
            return
        finally:
            store.close()

    thread = threading.Thread(target=watch, name="sweep-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with lock:
            done.set()
        thread.join(timeout=PROGRESS_SECONDS)  # a read stuck in the store's retries is not waited for


def _interrupted(result: dg.ExecuteInProcessResult) -> bool:
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            if error.cls_name == "DagsterExecutionInterruptedError":
                return True
            error = error.cause
    return False
