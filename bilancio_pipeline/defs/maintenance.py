"""Housekeeping jobs and their schedules.

* `cleanup_volume_job` (launch it from the UI, or let `cleanup_volume_schedule` run it daily
  at 04:00 UTC): deletes experiments from the configured results volume that are older than
  N days and/or have given job statuses, records a `cleanup` event per deleted job (or
  deletes the job's rows when asked), and removes the deleted jobs' `sweeps` and `runs`
  partitions. Launched by hand it defaults to a dry run, which only reports what it would
  delete and how many bytes. The schedule starts switched off (turn it on in the UI): it
  deletes for real, experiments older than BILANCIO_CLEANUP_OLDER_THAN_DAYS (default 30).
* `supabase_keepalive_job`, weekly (Mondays 06:00 UTC) by `supabase_keepalive_schedule`: one
  cheap read of the configured Supabase project so a free-tier project is not paused. The
  schedule skips when no Supabase project is configured.
"""

import os  # no `from __future__ import annotations`: Dagster reads the op annotations at definition time

import dagster as dg
from pydantic import Field

from bilancio_pipeline.defs.partitions import job_id_of, runs_partitions, sweeps_partitions
from bilancio_pipeline.defs.resources import ArtifactsResource, StoreResource
from bilancio_pipeline.maintenance.cleanup import open_volume, plan_cleanup, run_cleanup, volume_kind

DEFAULT_OLDER_THAN_DAYS = 30
SUPABASE_SETTINGS = ("BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_DB_URL")


class CleanupConfig(dg.Config):
    older_than_days: int | None = Field(
        default=DEFAULT_OLDER_THAN_DAYS,
        description="Delete experiments whose newest file is at least this many days old (UTC). Null: no age filter.",
    )
    statuses: list[str] = Field(
        default=[],
        description="Only jobs with one of these statuses (pending, running, completed, failed, cancelled). "
        "Combined with the age filter by AND.",
    )
    dry_run: bool = Field(default=True, description="Only report what would be deleted and how many bytes.")
    delete_rows: bool = Field(default=False, description="Also delete the jobs' rows (runs, metrics, events) from the store.")
    volume: str = Field(
        default="",
        description="local, r2 or modal; empty: BILANCIO_VOLUME, else r2 if BILANCIO_R2_BUCKET is set, "
        "else modal if BILANCIO_EXECUTOR=modal, else local.",
    )


def delete_job_partitions(instance: dg.DagsterInstance, job_id: str) -> int:
    """Remove a job's `sweeps` partition and every `runs` partition of it; returns how many."""
    removed = 0
    if instance.has_dynamic_partition(sweeps_partitions.name, job_id):
        instance.delete_dynamic_partition(sweeps_partitions.name, job_id)
        removed += 1
    for key in instance.get_dynamic_partitions(runs_partitions.name):
        if job_id_of(key) == job_id:
            instance.delete_dynamic_partition(runs_partitions.name, key)
            removed += 1
    return removed


@dg.op(description="Delete old experiments from the results volume (dry run by default).")
def cleanup_volume(context: dg.OpExecutionContext, config: CleanupConfig, store: StoreResource, artifacts: ArtifactsResource) -> dict:
    try:
        kind = volume_kind(config.volume or None)
        volume = open_volume(kind, artifacts.open)
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from None
    table_store = store.open()
    try:
        try:
            plan = plan_cleanup(volume, table_store, config.older_than_days, config.statuses)
        except ValueError as exc:
            raise dg.Failure(description=str(exc)) from None
        verb = "would delete" if config.dry_run else "deleting"
        context.log.info(f"{verb} {len(plan)} experiment(s) from the {kind} volume, {sum(j.total_bytes for j in plan)} bytes")

        def forget(job) -> None:
            n = delete_job_partitions(context.instance, job.job_id)
            context.log.info(f"deleted {job.job_id}: {job.n_objects} objects, {job.total_bytes} bytes, {n} partitions")

        report = run_cleanup(plan, volume, table_store, dry_run=config.dry_run, delete_rows=config.delete_rows, on_deleted=forget)
    finally:
        table_store.close()
    for job in report.deleted if report.dry_run else []:
        context.log.info(f"would delete {job.job_id}: {job.n_objects} objects, {job.total_bytes} bytes, last written {job.last_modified:%Y-%m-%d %H:%M} UTC")
    summary = {
        "volume": kind,
        "dry_run": report.dry_run,
        "jobs": report.job_ids,
        "bytes": report.total_bytes,
        "objects": report.total_objects,
        "rows_deleted": report.rows_deleted,
        "failed": report.failed,
    }
    context.add_output_metadata({k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v for k, v in summary.items()})
    if report.failed:
        raise dg.Failure(description=f"{len(report.failed)} experiment(s) could not be deleted", metadata={"failed": dg.MetadataValue.json(report.failed)})
    return summary


@dg.job(description="Delete experiments from the results volume by age and/or job status; dry run by default.")
def cleanup_volume_job():
    cleanup_volume()


def scheduled_cleanup_config() -> dict:
    """The daily run's config: a real cleanup of experiments older than
    BILANCIO_CLEANUP_OLDER_THAN_DAYS (default 30) days."""
    raw = os.environ.get("BILANCIO_CLEANUP_OLDER_THAN_DAYS") or str(DEFAULT_OLDER_THAN_DAYS)
    try:
        days = int(raw)
        if days < 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"invalid BILANCIO_CLEANUP_OLDER_THAN_DAYS={raw!r}: must be an integer >= 0") from None
    return {"ops": {"cleanup_volume": {"config": {"older_than_days": days, "dry_run": False}}}}


@dg.schedule(
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    job=cleanup_volume_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,  # deleting data is opted into in the UI
    description="Daily: delete experiments older than BILANCIO_CLEANUP_OLDER_THAN_DAYS (default 30) days.",
)
def cleanup_volume_schedule(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_config=scheduled_cleanup_config(), tags={"bilancio/maintenance": "cleanup"})


@dg.op(description="One cheap read of the table store, so a free-tier Supabase project stays active.")
def ping_store(context: dg.OpExecutionContext, store: StoreResource) -> str:
    table_store = store.open()
    try:
        table_store.ping()
    finally:
        table_store.close()
    context.log.info(f"pinged the {table_store.backend} store")
    return table_store.backend


@dg.job(description="Keep the Supabase project awake with one cheap read.")
def supabase_keepalive_job():
    ping_store()


@dg.schedule(
    cron_schedule="0 6 * * 1",
    execution_timezone="UTC",
    job=supabase_keepalive_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly: one cheap read of the configured Supabase project (skipped when none is configured).",
)
def supabase_keepalive_schedule(context: dg.ScheduleEvaluationContext):
    if not any(os.environ.get(name) for name in SUPABASE_SETTINGS):
        return dg.SkipReason("no Supabase project is configured (BILANCIO_SUPABASE_URL or BILANCIO_SUPABASE_DB_URL)")
    return dg.RunRequest()


defs = dg.Definitions(
    jobs=[cleanup_volume_job, supabase_keepalive_job],
    schedules=[cleanup_volume_schedule, supabase_keepalive_schedule],
)
