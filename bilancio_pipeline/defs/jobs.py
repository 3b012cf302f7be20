"""Jobs: launch a sweep from the Launchpad form, run a batch of its runs, aggregate it."""

import os
from dataclasses import replace

import dagster as dg

from bilancio_pipeline.defs.assets import job_metrics, reset_for_recompute, simulate_runs, sweep_report
from bilancio_pipeline.defs.config import SweepConfig
from bilancio_pipeline.defs.dead_runs import HOST_TAG, this_host
from bilancio_pipeline.defs.handoff import hand_on_batches
from bilancio_pipeline.defs.instance import BATCH_POOL, BATCH_POOL_TAG
from bilancio_pipeline.defs.partitions import runs_partitions, sweeps_partitions
from bilancio_pipeline.defs.resources import ComputeResource, StoreResource
from bilancio_pipeline.defs.run_metadata import sweep_page
from bilancio_pipeline.defs.run_tags import BATCH_JOB, JOB_ID_TAG, LAUNCH_JOB, METRICS_JOB
from bilancio_pipeline.storage.base import StoreError
from bilancio_pipeline.storage.retrying import first_contact
from bilancio_pipeline.sweeps.lifecycle import register_sweep
from bilancio_pipeline.sweeps.spec import DEFAULT_MAX_RUNS, SpecError, expand, validate

# Every job is idempotent (a launch finds its sweep, a batch skips completed runs, job_metrics is
# an upsert), so Dagster's run retries may re-run one whose worker died, up to this many times.
# A failure of the code itself (a spec error, a simulation that raises) is not retried.
RUN_RETRIES = int(os.environ.get("BILANCIO_RUN_RETRIES", "2"))
RETRY_TAGS = {"dagster/max_retries": str(RUN_RETRIES), "dagster/retry_on_asset_or_op_failure": "false"}


def max_runs() -> int:
    return int(os.environ.get("BILANCIO_MAX_RUNS", DEFAULT_MAX_RUNS))


@dg.op(description="Validate the sweep spec, register the sweep and its runs, add their partitions.")
def launch_sweep(context: dg.OpExecutionContext, config: SweepConfig, store: StoreResource,
                 compute: ComputeResource) -> str:
    spec = config.to_spec()
    # Re-executing (or retrying) a launch run resumes the sweep it launched, not a new one.
    resumed = _parent_job_id(context)
    spec = replace(spec, job_id=spec.job_id or resumed, executor=spec.executor or compute.executor)
    db = store.open()
    try:
        try:
            spec = validate(spec, max_runs=max_runs())
            planned = expand(spec)
            first_contact(db)  # a store that never answered fails in seconds, in one line
            todo = register_sweep(db, spec, planned)
        except (SpecError, StoreError) as exc:
            # Dagster shows the stack of every failed step below its message, whatever was raised;
            # a table of the bad fields, one a row, comes between the two.
            problems = dict(exc.problems) if isinstance(exc, SpecError) else None
            raise dg.Failure(description=str(exc), metadata=problems, allow_retries=False) from None
        if config.recompute:
            reset_for_recompute(db, spec.job_id, [p.run_id for p in planned])
            todo = [p.run_id for p in planned]
        instance = context.instance
        if not instance.has_dynamic_partition(sweeps_partitions.name, spec.job_id):
            instance.add_dynamic_partitions(sweeps_partitions.name, [spec.job_id])
        known = set(instance.get_dynamic_partitions(runs_partitions.name))
        instance.add_dynamic_partitions(runs_partitions.name, [p.run_id for p in planned if p.run_id not in known])
        # The host: where this run's process lives, so only this machine judges if it died (dead_runs.py).
        instance.add_run_tags(context.run_id, {JOB_ID_TAG: spec.job_id, HOST_TAG: this_host()})
        hand_on_batches(context, db, spec.job_id)
    finally:
        db.close()
    context.add_output_metadata({
        "job_id": spec.job_id, "total_runs": len(planned), "runs_to_run": len(todo), "executor": spec.executor,
        "sweep": dg.MetadataValue.url(sweep_page(spec.job_id)),
        "first_run": dg.MetadataValue.url(f"/assets/run_metrics?view=partitions&partition={planned[0].run_id}"),
        "batches": dg.MetadataValue.url(f"/runs?q%5B0%5D=tag%3A{JOB_ID_TAG}%3D{spec.job_id}"),
    })
    context.log.info(f"sweep {spec.job_id}{' (resumed)' if resumed else ''}: {len(planned)} runs, {len(todo)} to run")
    return spec.job_id


def _parent_job_id(context: dg.OpExecutionContext) -> str:
    parent = context.run.parent_run_id and context.instance.get_run_by_id(context.run.parent_run_id)
    return (parent.tags.get(JOB_ID_TAG) or "") if parent else ""


@dg.job(
    name=LAUNCH_JOB,
    description="Launch a sweep: fill in the form, and its runs are materialized in batches.",
    executor_def=dg.in_process_executor,  # one small step: a step subprocess costs seconds of start-up
    tags=RETRY_TAGS,
)
def launch_sweep_job():
    launch_sweep()


sweep_batch_job = dg.define_asset_job(
    BATCH_JOB,
    selection=dg.AssetSelection.assets(simulate_runs),
    partitions_def=runs_partitions,
    executor_def=dg.in_process_executor,  # one step per batch: a subprocess would only add start-up
    description="Simulate a range of `runs` partitions (one batch of a sweep).",
    tags={**RETRY_TAGS, BATCH_POOL_TAG: BATCH_POOL},  # batches share the batch slots (instance.py)
)

job_metrics_job = dg.define_asset_job(
    METRICS_JOB,
    selection=dg.AssetSelection.assets(job_metrics, sweep_report),
    partitions_def=sweeps_partitions,
    executor_def=dg.in_process_executor,
    description="Aggregate a finished sweep into job_metrics, then draw its report.",
    tags=RETRY_TAGS,
)

