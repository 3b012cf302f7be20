"""The Dagster facts the orchestrator's decisions need (sweeps/orchestrator.py), read from the
instance, and the run tags a batch carries. Used by the sensors, the runs that hand a sweep on
themselves (handoff.py) and the CLI's in-process path."""

from __future__ import annotations

import dagster as dg

from bilancio_pipeline.defs.dead_runs import HOST_TAG, this_host
from bilancio_pipeline.defs.partitions import runs_partitions
from bilancio_pipeline.defs.run_tags import (BATCH_JOB, JOB_ID_TAG, METRICS_JOB, PARTITION_TAG, RANGE_END_TAG,
                                             RANGE_START_TAG, range_tags)
from bilancio_pipeline.storage.base import Store
from bilancio_pipeline.sweeps import orchestrator
from bilancio_pipeline.sweeps.orchestrator import Batch

_IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def partition_order(instance: dg.DagsterInstance) -> list[str]:
    return instance.get_dynamic_partitions(runs_partitions.name)


def batch_tags(batch: Batch, job_id: str) -> dict[str, str]:
    # The host: the batch's worker runs on the machine whose code server evaluates this (the
    # default run launcher), so only that machine judges whether it died (dead_runs.py).
    return {**range_tags(batch.first, batch.last), JOB_ID_TAG: job_id, HOST_TAG: this_host()}


def batches_to_request(db: Store, instance: dg.DagsterInstance, job_id: str) -> list[Batch]:
    """The sweep's unfinished runs as batches, leaving out those a batch already in flight covers
    (so two batches never run the same run at once, whoever requested them)."""
    order = partition_order(instance)
    return orchestrator.next_batches(db, job_id, order, busy=_keys_in_flight(instance, job_id, order))


def keys_of_run(instance: dg.DagsterInstance, run: dg.DagsterRun, order: list[str] | None = None) -> list[str]:
    """The `runs` partitions a batch run covers (its range, or its single partition)."""
    start = run.tags.get(RANGE_START_TAG) or run.tags.get(PARTITION_TAG)
    end = run.tags.get(RANGE_END_TAG) or start
    if not start:
        return []
    keys = order if order is not None else partition_order(instance)
    try:
        return keys[keys.index(start): keys.index(end) + 1]
    except ValueError:
        return []


def will_retry(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Dagster's run retries will re-run this failed run (the instance sets the tag on failure)."""
    fresh = instance.get_run_by_id(run.run_id) or run
    return fresh.tags.get("dagster/will_retry") == "true"


def sweep_busy(instance: dg.DagsterInstance, job_id: str, besides: str | None = None) -> bool:
    """A batch of the sweep (other than the run `besides`) is queued, starting, running, or failed
    and about to be retried; or its job_metrics is already on its way."""
    if any(run.run_id != besides for run in _batches_in_flight(instance, job_id)):
        return True
    return bool(instance.get_run_records(dg.RunsFilter(job_name=METRICS_JOB, tags={PARTITION_TAG: job_id},
                                                       statuses=_IN_FLIGHT), limit=1))


def _batches_in_flight(instance: dg.DagsterInstance, job_id: str) -> list[dg.DagsterRun]:
    tags = {JOB_ID_TAG: job_id}
    running = instance.get_runs(dg.RunsFilter(job_name=BATCH_JOB, tags=tags, statuses=_IN_FLIGHT))
    retrying = instance.get_runs(dg.RunsFilter(job_name=BATCH_JOB, tags={**tags, "dagster/will_retry": "true"},
                                               statuses=[dg.DagsterRunStatus.FAILURE]))
    return list(running) + [run for run in retrying if run.is_complete_and_waiting_to_retry]


def _keys_in_flight(instance: dg.DagsterInstance, job_id: str, order: list[str]) -> set[str]:
    return {key for run in _batches_in_flight(instance, job_id) for key in keys_of_run(instance, run, order)}
