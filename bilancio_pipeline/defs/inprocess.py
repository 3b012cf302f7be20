"""Run a whole sweep in this process, through the same Dagster jobs and assets the UI uses.

The command line and the tests use this: it executes `launch_sweep_job`, then
`sweep_batch_job` over contiguous ranges of the runs still to do, then `job_metrics_job`,
all against the given instance, so the runs and materializations show up in the UI.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from bilancio_pipeline.defs.jobs import JOB_ID_TAG, LAUNCHED_BY_TAG, batch_size_for, batches, range_tags
from bilancio_pipeline.defs.partitions import runs_partitions
from bilancio_pipeline.sweeps.lifecycle import TERMINAL_RUN_STATUSES, fail_unfinished


# Dagster's console log at DEBUG would bury the progress line; the UI keeps the full log.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class SweepFailed(RuntimeError):
    """The sweep could not be launched or aggregated; the message says why."""


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
            return error.message.strip() if error else "step failed"
    return "the Dagster run failed"


def run_sweep(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    sweep_config: dict,
    batch_size: int | None = None,
    on_progress: Callable[[SweepProgress], None] | None = None,
) -> SweepProgress:
    """Launch (or resume) a sweep and run it to its job_metrics. Returns the final counts."""
    tags = {LAUNCHED_BY_TAG: "cli"}
    launch = defs.resolve_job_def("launch_sweep_job").execute_in_process(
        run_config={**QUIET, "ops": {"launch_sweep": {"config": sweep_config}}}, instance=instance, tags=tags,
        raise_on_error=False,
    )
    if not launch.success:
        raise SweepFailed(failure_message(launch))
    job_id = launch.output_for_node("launch_sweep")

    store = defs.resources["store"].process_config_and_initialize().open()
    try:
        runs = store.list_runs(job_id)
        progress = SweepProgress(job_id, len(runs), store.run_counts(job_id))
        order = {k: i for i, k in enumerate(instance.get_dynamic_partitions(runs_partitions.name))}
        todo = sorted((r["run_id"] for r in runs if r["status"] != "completed"), key=lambda k: order[k])
        if on_progress:
            on_progress(progress)
        batch_job = defs.resolve_job_def("sweep_batch_job")
        for first, last, count in batches(todo, batch_size or batch_size_for(len(todo))):
            result = batch_job.execute_in_process(run_config=QUIET, instance=instance,
                                                  tags={**tags, **range_tags(first, last), JOB_ID_TAG: job_id},
                                                  raise_on_error=False)
            if not result.success:
                # What the batch failure sensor does under the daemon: runs the dead batch left
                # `running` become `failed`, so the job cannot be reported complete or stay running.
                start = todo.index(first)
                fail_unfinished(store, job_id, todo[start:start + count],
                                f"the Dagster run {result.run_id} that was executing this run failed: "
                                f"{failure_message(result)}")
            progress.counts = store.run_counts(job_id)
            if on_progress:
                on_progress(progress)
        aggregate = defs.resolve_job_def("job_metrics_job").execute_in_process(
            run_config=QUIET, instance=instance, partition_key=job_id, tags=tags, raise_on_error=False)
        if not aggregate.success:
            raise SweepFailed(f"job_metrics of {job_id} failed: {failure_message(aggregate)}")
        progress.counts = store.run_counts(job_id)
    finally:
        store.close()
    return progress
