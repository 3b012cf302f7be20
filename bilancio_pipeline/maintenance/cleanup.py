"""Delete old experiments from the results volume, and optionally their rows from the store.

Two steps, so every caller (the Dagster job, its schedule, the CLI) shows the same plan and
deletes the same way:

    plan = plan_cleanup(volume, store, older_than_days=30)            # what would go
    report = run_cleanup(plan, volume, store, dry_run=False)          # make it so

Selection: an experiment is chosen when it matches EVERY filter given (AND):
  * older_than_days=N: its newest object was written at least N whole days before `now`
    (timezone-aware UTC on both sides);
  * statuses=[...]: its job row in the store has one of these statuses (an experiment with
    no job row matches no status).
At least one filter is required: nothing is ever deleted "by default".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from bilancio_pipeline.storage.artifacts.base import ArtifactStore, StoredJob
from bilancio_pipeline.storage.base import NotFound, Store
from bilancio_pipeline.storage.schema import JOB_STATUSES

VOLUMES = ("local", "r2", "modal")
_PAGE = 500


@dataclass
class CleanupReport:
    """What a cleanup deleted (or, in a dry run, would delete)."""

    dry_run: bool
    volume: str  # the volume's backend: local, r2 or modal
    deleted: list[StoredJob] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # job_id -> why it could not be deleted
    rows_deleted: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(job.total_bytes for job in self.deleted)

    @property
    def total_objects(self) -> int:
        return sum(job.n_objects for job in self.deleted)

    @property
    def job_ids(self) -> list[str]:
        return [job.job_id for job in self.deleted]


def utc(value: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken to be UTC already)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def check_filters(older_than_days: int | None, statuses: Iterable[str] | None) -> list[str]:
    """Validate the filters; returns the statuses as a list. Raises ValueError naming the field."""
    statuses = list(statuses or [])
    if older_than_days is None and not statuses:
        raise ValueError("choose what to delete: give older_than_days, statuses, or both")
    if older_than_days is not None and (isinstance(older_than_days, bool) or not isinstance(older_than_days, int) or older_than_days < 0):
        raise ValueError(f"invalid older_than_days={older_than_days!r}: must be an integer >= 0")
    for status in statuses:
        if status not in JOB_STATUSES:
            raise ValueError(f"invalid status={status!r}: must be one of {', '.join(JOB_STATUSES)}")
    return statuses


def jobs_with_status(store: Store, statuses: Iterable[str]) -> set[str]:
    """Ids of every job in one of these statuses (all pages)."""
    found: set[str] = set()
    for status in statuses:
        offset = 0
        while True:
            page = store.list_jobs(status=status, limit=_PAGE, offset=offset)
            found.update(row["job_id"] for row in page)
            if len(page) < _PAGE:
                break
            offset += _PAGE
    return found


def plan_cleanup(
    volume: ArtifactStore,
    store: Store | None = None,
    older_than_days: int | None = None,
    statuses: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[StoredJob]:
    """The experiments on the volume that match every filter given (see the module docstring)."""
    statuses = check_filters(older_than_days, statuses)
    if statuses and store is None:
        raise ValueError("selecting by status needs the table store")
    chosen = volume.list_jobs()
    if older_than_days is not None:
        cutoff = utc(now or datetime.now(timezone.utc)) - timedelta(days=older_than_days)
        chosen = [job for job in chosen if utc(job.last_modified) <= cutoff]
    if statuses:
        wanted = jobs_with_status(store, statuses)
        chosen = [job for job in chosen if job.job_id in wanted]
    return sorted(chosen, key=lambda job: (utc(job.last_modified), job.job_id))


def run_cleanup(
    plan: Sequence[StoredJob],
    volume: ArtifactStore,
    store: Store | None = None,
    dry_run: bool = True,
    delete_rows: bool = False,
    on_deleted: Callable[[StoredJob], None] | None = None,
) -> CleanupReport:
    """Delete each planned experiment's objects; then either delete its job's rows
    (`delete_rows`) or record a `cleanup` event on its job row, if there is one. A dry run
    deletes and records nothing. One experiment that cannot be deleted does not stop the rest;
    it is listed in `report.failed`."""
    report = CleanupReport(dry_run=dry_run, volume=volume.backend)
    for job in plan:
        if dry_run:
            report.deleted.append(job)
            continue
        try:
            removed = volume.delete_prefix(f"{job.job_id}/")
        except Exception as exc:
            report.failed[job.job_id] = f"{type(exc).__name__}: {exc}"
            continue
        report.deleted.append(job)
        if store is not None:
            try:
                _after_delete(store, job, removed, volume.backend, delete_rows, report)
            except Exception as exc:  # the objects are gone; say the rows could not follow
                report.failed[job.job_id] = f"objects deleted, but the store failed: {type(exc).__name__}: {exc}"
        if on_deleted is not None:
            on_deleted(job)
    return report


def _after_delete(store: Store, job: StoredJob, removed: int, backend: str, delete_rows: bool, report: CleanupReport) -> None:
    try:
        store.get_job(job.job_id)
    except NotFound:
        return  # objects without a job row: nothing to record or delete
    if delete_rows:
        store.delete_job(job.job_id)
        report.rows_deleted.append(job.job_id)
        return
    store.log_event(
        job.job_id,
        "cleanup",
        {
            "volume": backend,
            "objects_deleted": removed,
            "bytes_deleted": job.total_bytes,
            "last_modified": utc(job.last_modified).isoformat(),
        },
    )


def volume_kind(explicit: str | None = None) -> str:
    """Which results volume is "the configured one", in this order:
    1. `explicit` (a CLI option or job config), else BILANCIO_VOLUME: local, r2 or modal;
    2. r2 when BILANCIO_R2_BUCKET is set (the artifact store sweeps upload to);
    3. modal when BILANCIO_EXECUTOR=modal (runs keep their artifacts on the Modal Volume);
    4. local: the folder under BILANCIO_HOME."""
    kind = (explicit or os.environ.get("BILANCIO_VOLUME") or "").strip().lower()
    if kind:
        if kind not in VOLUMES:
            raise ValueError(f"invalid volume={kind!r}: must be one of {', '.join(VOLUMES)}")
        return kind
    if os.environ.get("BILANCIO_R2_BUCKET"):
        return "r2"
    if (os.environ.get("BILANCIO_EXECUTOR") or "").strip().lower() == "modal":
        return "modal"
    return "local"


def open_volume(kind: str, artifacts: Callable[[], ArtifactStore]) -> ArtifactStore:
    """The volume of this kind. `artifacts` opens the configured artifact store (local folder
    or R2); the Modal Volume is named by BILANCIO_MODAL_VOLUME (default bilancio-results)."""
    if kind == "modal":
        from bilancio_pipeline.maintenance.modal_volume import DEFAULT_VOLUME, ModalVolumeStore

        return ModalVolumeStore(os.environ.get("BILANCIO_MODAL_VOLUME") or DEFAULT_VOLUME)
    store = artifacts()
    if store.backend != kind:
        hint = "set BILANCIO_R2_BUCKET and its endpoint and keys" if kind == "r2" else "unset BILANCIO_R2_BUCKET"
        raise ValueError(f"the {kind} volume is asked for but the configured artifact store is {store.backend}: {hint}")
    return store
