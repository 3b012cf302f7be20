"""`volume ls | cleanup | rm`: the experiments on the results volume, and deleting them.

The volume is the configured one (see `maintenance.cleanup.volume_kind`), or `--volume`.
Deleting goes through the same code as the Dagster cleanup job: each deleted job gets a
`cleanup` event (or, with --delete-rows, its rows are deleted), and when a Dagster instance is
configured (DAGSTER_HOME) its `sweeps`/`runs` partitions are removed too.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import click

from bilancio_pipeline.cli.errors import friendly_errors, open_store
from bilancio_pipeline.cli.output import echo, format_option, render_rows
from bilancio_pipeline.maintenance.cleanup import VOLUMES, CleanupReport, open_volume, plan_cleanup, run_cleanup, utc, volume_kind
from bilancio_pipeline.storage.artifacts.base import StoredJob
from bilancio_pipeline.storage.base import NotFound, StoreError
from bilancio_pipeline.storage.schema import JOB_STATUSES

COLUMNS = ("job_id", "status", "n_objects", "total_bytes", "size", "last_modified", "age_days")
TABLE_COLUMNS = tuple(c for c in COLUMNS if c != "total_bytes")
HEADERS = {"n_objects": "objects", "age_days": "age (days)"}


def experiments(n: int) -> str:
    return f"{n} experiment{'' if n == 1 else 's'}"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _open_volume(kind: str | None):
    from bilancio_pipeline.storage.config import artifacts_from_env

    resolved = volume_kind(kind)
    return resolved, open_volume(resolved, artifacts_from_env)


def _rows(jobs: list[StoredJob], statuses: dict[str, str | None]) -> list[dict]:
    now = datetime.now(timezone.utc)
    return [
        {
            "job_id": job.job_id,
            "status": statuses.get(job.job_id),
            "n_objects": job.n_objects,
            "total_bytes": job.total_bytes,
            "size": human_bytes(job.total_bytes),
            "last_modified": utc(job.last_modified),
            "age_days": (now - utc(job.last_modified)).days,
        }
        for job in jobs
    ]


def _statuses(store, jobs: list[StoredJob]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for job in jobs:
        try:
            found[job.job_id] = store.get_job(job.job_id).get("status")
        except NotFound:
            found[job.job_id] = None
    return found


volume_option = click.option(
    "--volume", "volume", type=click.Choice(VOLUMES), default=None,
    help="Which volume: local, r2 or modal. Default: BILANCIO_VOLUME, else r2 if BILANCIO_R2_BUCKET is set, "
    "else modal if BILANCIO_EXECUTOR=modal, else local.",
)


@click.group("volume")
def command():
    """The experiments on the results volume: list them, delete old ones."""


@command.command("ls")
@volume_option
@format_option()
@friendly_errors
def ls(volume, fmt):
    """List the experiments (jobs) on the volume with their size and age."""
    kind, store_volume = _open_volume(volume)
    jobs = store_volume.list_jobs()
    try:
        with open_store() as store:
            statuses = _statuses(store, jobs)
    except StoreError as exc:  # listing the volume should not depend on the table store
        click.echo(f"Warning: job statuses unavailable ({exc})", err=True)
        statuses = {}
    rows = _rows(jobs, statuses)
    if fmt != "table":
        echo(render_rows(rows, fmt, COLUMNS))
        return
    if not rows:
        echo(f"The {kind} volume holds no experiments.")
        return
    echo(render_rows(rows, "table", TABLE_COLUMNS, headers=HEADERS))
    echo(f"Total: {experiments(len(rows))}, {human_bytes(sum(j.total_bytes for j in jobs))} on the {kind} volume")


def _delete(plan: list[StoredJob], kind: str, store_volume, store, dry_run: bool, yes: bool, delete_rows: bool) -> CleanupReport:
    """Show the plan, confirm, delete with progress; shared by cleanup and rm."""
    if not plan:
        echo(f"Nothing to delete on the {kind} volume.")
        return CleanupReport(dry_run=dry_run, volume=kind)
    echo(render_rows(_rows(plan, _statuses(store, plan)), "table", TABLE_COLUMNS, headers=HEADERS))
    total = human_bytes(sum(j.total_bytes for j in plan))
    echo(f"Total: {experiments(len(plan))}, {total}")
    if dry_run:
        echo(f"[dry run] nothing deleted; {experiments(len(plan))} ({total}) would be deleted from the {kind} volume.")
        return run_cleanup(plan, store_volume, store, dry_run=True)
    what = "and their rows in the store " if delete_rows else ""
    if not yes:
        click.confirm(f"Delete {'this experiment' if len(plan) == 1 else f'these {len(plan)} experiments'} {what}from the {kind} volume?", abort=True)
    instance = _dagster_instance()

    def progress(job: StoredJob) -> None:
        partitions = ""
        if instance is not None:
            from bilancio_pipeline.defs.maintenance import delete_job_partitions

            partitions = f", {delete_job_partitions(instance, job.job_id)} partitions"
        echo(f"deleted {job.job_id} ({job.n_objects} objects, {human_bytes(job.total_bytes)}{partitions})")

    try:
        report = run_cleanup(plan, store_volume, store, dry_run=False, delete_rows=delete_rows, on_deleted=progress)
    finally:
        if instance is not None:
            instance.dispose()
    for job_id, error in report.failed.items():
        echo(f"FAILED {job_id}: {error}")
    echo(f"Deleted: {experiments(len(report.deleted))} ({human_bytes(report.total_bytes)}), failed: {len(report.failed)}")
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} experiment(s) could not be deleted")
    return report


def _dagster_instance():
    """The Dagster instance when one is configured (its partitions are pruned), else None."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    from dagster import DagsterInstance

    return DagsterInstance.get()


@command.command("cleanup")
@click.option("--older-than", "older_than", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Experiments whose newest file is at least DAYS days old (UTC).")
@click.option("--status", "statuses", type=click.Choice(JOB_STATUSES), multiple=True,
              help="Only jobs with this status (repeatable). With --older-than, both must hold.")
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted and how many bytes.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--delete-rows", is_flag=True, help="Also delete the jobs' rows (runs, metrics, events) from the store.")
@volume_option
@friendly_errors
def cleanup(older_than, statuses, dry_run, yes, delete_rows, volume):
    """Delete old experiments (by age and/or job status) from the volume."""
    if older_than is None and not statuses:
        raise click.UsageError("give --older-than DAYS, --status STATUS, or both")
    kind, store_volume = _open_volume(volume)
    with open_store() as store:
        plan = plan_cleanup(store_volume, store, older_than, list(statuses))
        _delete(plan, kind, store_volume, store, dry_run, yes, delete_rows)


@command.command("rm")
@click.argument("job_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--delete-rows", is_flag=True, help="Also delete the job's rows (runs, metrics, events) from the store.")
@volume_option
@friendly_errors
def rm(job_id, yes, delete_rows, volume):
    """Delete one experiment from the volume."""
    kind, store_volume = _open_volume(volume)
    plan = [job for job in store_volume.list_jobs() if job.job_id == job_id]
    if not plan:
        raise click.ClickException(f"no experiment {job_id!r} on the {kind} volume")
    with open_store() as store:
        _delete(plan, kind, store_volume, store, False, yes, delete_rows)
