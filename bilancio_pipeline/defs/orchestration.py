"""The Dagster facts the orchestrator's decisions need (sweeps/orchestrator.py), read from the
instance, and the run tags a batch carries. Used by the sensors and the CLI's in-process path."""

from __future__ import annotations

import dagster as dg

from bilancio_pipeline.defs.dead_runs import HOST_TAG, this_host
from bilancio_pipeline.defs.jobs import JOB_ID_TAG, job_metrics_job, range_tags, sweep_batch_job
from bilancio_pipeline.defs.partitions import runs_partitions
from bilancio_pipeline.sweeps.orchestrator import Batch

_IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
_RANGE_START, _RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def partition_order(instance: dg.DagsterInstance) -> list[str]:
    return instance.get_dynamic_partitions(runs_partitions.name)


def batch_tags(batch: Batch, job_id: str) -> dict[str, str]:
    # The host: the batch's worker runs on the machine whose code server evaluates this (the
    # default run launcher), so only that machine judges whether it died (dead_runs.py).
    return {**range_tags(batch.first, batch.last), JOB_ID_TAG: job_id, HOST_TAG: this_host()}


def keys_of_run(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The `runs` partitions a batch run covers (its range, or its single partition)."""
    start = run.tags.get(_RANGE_START) or run.tags.get("dagster/partition")
    end = run.tags.get(_RANGE_END) or start
    if not start:
        return []
    keys = partition_order(instance)
    try:
        return keys[keys.index(start): keys.index(end) + 1]
    except ValueError:
        return []


def will_retry(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Dagster's run retries will re-run this failed run (the instance sets the tag on failure)."""
    fresh = instance.get_run_by_id(run.run_id) or run
    return fresh.tags.get("dagster/will_retry") == "true"


def sweep_busy(instance: dg.DagsterInstance, job_id: str) -> bool:
    """A batch of the sweep is queued, starting, running, or failed and about to be retried; or
    its job_metrics is already on its way."""
    tags = {JOB_ID_TAG: job_id}
    if instance.get_run_records(dg.RunsFilter(job_name=sweep_batch_job.name, tags=tags, statuses=_IN_FLIGHT), limit=1):
        return True
    if instance.get_run_records(dg.RunsFilter(job_name=job_metrics_job.name, tags={"dagster/partition": job_id},
                                              statuses=_IN_FLIGHT), limit=1):
        return True
    retrying = instance.get_runs(dg.RunsFilter(job_name=sweep_batch_job.name, tags={**tags, "dagster/will_retry": "true"},
                                               statuses=[dg.DagsterRunStatus.FAILURE]))
    return any(run.is_complete_and_waiting_to_retry for run in retrying)
