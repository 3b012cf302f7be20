"""Sensors that move a sweep along: batches after launch, job_metrics when the last run ends,
and failed runs when a batch's Dagster run dies, so no job stays `running` forever."""

import dagster as dg

from bilancio_pipeline.defs.jobs import (
    JOB_ID_TAG, LAUNCHED_BY_TAG, batch_size_for, batches, job_metrics_job, launch_sweep_job, range_tags, sweep_batch_job,
)
from bilancio_pipeline.defs.partitions import job_id_of, runs_partitions
from bilancio_pipeline.defs.resources import StoreResource
from bilancio_pipeline.sweeps import lifecycle


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[launch_sweep_job],
    request_job=sweep_batch_job,
    minimum_interval_seconds=2,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a sweep is launched, request its unfinished runs in batches of contiguous partitions.",
)
def sweep_batches_sensor(context: dg.RunStatusSensorContext, store: StoreResource):
    run = context.dagster_run
    job_id = run.tags.get(JOB_ID_TAG)
    if not job_id or run.tags.get(LAUNCHED_BY_TAG) == "cli":
        return
    db = store.open()
    try:
        todo = [r["run_id"] for r in db.list_runs(job_id) if r["status"] != "completed"]
    finally:
        db.close()
    order = {key: i for i, key in enumerate(context.instance.get_dynamic_partitions(runs_partitions.name))}
    todo.sort(key=lambda key: order.get(key, len(order)))
    for i, (first, last, _) in enumerate(batches(todo, batch_size_for(len(todo)))):
        yield dg.RunRequest(run_key=f"{run.run_id}:{i}", tags={**range_tags(first, last), JOB_ID_TAG: job_id})


@dg.sensor(
    job=job_metrics_job,
    minimum_interval_seconds=2,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When every run of a sweep has finished or failed, materialize its job_metrics.",
)
def sweep_completion_sensor(context: dg.SensorEvaluationContext, store: StoreResource):
    db = store.open()
    try:
        for job in lifecycle.unfinished_jobs(db):
            counts = db.run_counts(job["job_id"])
            # A batch marks its runs completed before its metrics output is written: wait until
            # no batch of this sweep is still queued or running.
            if lifecycle.is_settled(counts) and not _batches_in_flight(context.instance, job["job_id"]):
                state = "-".join(f"{k}{v}" for k, v in sorted(counts.items()))
                yield dg.RunRequest(run_key=f"job_metrics:{job['job_id']}:{state}", partition_key=job["job_id"])
    finally:
        db.close()


def _batches_in_flight(instance: dg.DagsterInstance, job_id: str) -> bool:
    in_flight = instance.get_run_records(
        dg.RunsFilter(job_name=sweep_batch_job.name, tags={JOB_ID_TAG: job_id},
                      statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                                dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]),
        limit=1,
    )
    return bool(in_flight)


def _fail_runs_of(context: dg.RunStatusSensorContext, store: StoreResource, what: str) -> None:
    run = context.dagster_run
    start = run.tags.get("dagster/asset_partition_range_start") or run.tags.get("dagster/partition")
    end = run.tags.get("dagster/asset_partition_range_end") or start
    if not start:
        return
    keys = context.instance.get_dynamic_partitions(runs_partitions.name)
    try:
        selected = keys[keys.index(start): keys.index(end) + 1]
    except ValueError:
        return
    db = store.open()
    try:
        for job_id in {job_id_of(k) for k in selected}:
            stuck = lifecycle.fail_unfinished(db, job_id, [k for k in selected if job_id_of(k) == job_id],
                                              f"the Dagster run {run.run_id} that was executing this run {what}")
            if stuck:
                context.log.info(f"marked {len(stuck)} runs of {job_id} failed")
    finally:
        db.close()


@dg.run_failure_sensor(
    monitored_jobs=[sweep_batch_job],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A batch whose Dagster run failed leaves no run `running`: they become `failed`.",
)
def batch_failure_sensor(context: dg.RunFailureSensorContext, store: StoreResource):
    _fail_runs_of(context, store, "failed")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.CANCELED,
    monitored_jobs=[sweep_batch_job],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A batch whose Dagster run was cancelled leaves no run `running`: they become `failed`.",
)
def batch_canceled_sensor(context: dg.RunStatusSensorContext, store: StoreResource):
    _fail_runs_of(context, store, "was cancelled")
