"""A sweep's life in the store: registered (pending), running, then completed or failed.

Every transition writes the job row and a matching `job_events` row. The functions are plain
Python over a `Store`, so the Dagster assets, sensors and the CLI share one implementation.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import bilancio_pipeline
from bilancio_pipeline.storage.base import NotFound, Row, Store, write_rows
from bilancio_pipeline.sweeps import webhook  # POSTs the sweep's end when BILANCIO_WEBHOOK_URL is set
from bilancio_pipeline.sweeps.spec import PlannedRun, SpecError, SweepSpec

TERMINAL_RUN_STATUSES = ("completed", "failed", "cancelled")


def now() -> datetime:
    return datetime.now(timezone.utc)


def _provenance() -> dict[str, Any]:
    return {
        "bilancio_pipeline_version": bilancio_pipeline.__version__,
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    # What must match for a re-launch to be the same sweep (description, executor and the
    # artifact policy may change: none of them changes a run's results).
    return {k: v for k, v in spec.items() if k not in ("description", "executor", "artifact_policy")}


def register_sweep(store: Store, spec: SweepSpec, planned: Sequence[PlannedRun]) -> list[str]:
    """Save a new sweep (job `pending`, a `created` event, one `pending` row per run), or find
    the existing one with the same id. Returns the ids of runs that still need to run, in
    grid order; finished runs are never among them."""
    spec_dict = spec.to_dict()
    try:
        existing = store.get_job(spec.job_id)
    except NotFound:
        existing = None
    if existing is not None and _comparable(existing["spec"]) != _comparable(spec_dict):
        raise SpecError("job_id", f"{spec.job_id!r} already names a sweep with a different spec; choose another id")
    stamp = now()
    if existing is None:
        store.save_job({
            "job_id": spec.job_id, "status": "pending", "sweep_type": spec.sweep_type,
            "description": spec.description or None, "n_agents": spec.n_agents, "maturity_days": spec.maturity_days,
            "kappas": list(spec.kappas), "concentrations": list(spec.concentrations), "mus": list(spec.mus),
            "outside_mid_ratios": list(spec.outside_mid_ratios), "seeds": list(spec.seeds),
            "cash_accounting": spec.cash_accounting, "executor": spec.executor, "cloud": spec.executor == "modal",
            "artifact_policy": spec.artifact_policy,
            "spec": spec_dict, "provenance": _provenance(), "total_runs": len(planned),
            "created_at": stamp,
        })
        store.log_event(spec.job_id, "created", {"spec": spec_dict, "total_runs": len(planned)})
        done: set[str] = set()
    else:
        if existing.get("artifact_policy") != spec.artifact_policy:  # the runs still to do follow the new one
            store.update_job(spec.job_id, artifact_policy=spec.artifact_policy)
        done = store.completed_run_ids(spec.job_id)
    todo = [p for p in planned if p.run_id not in done]
    known = {r["run_id"]: r["status"] for r in store.list_runs(spec.job_id)}
    fresh = [p for p in todo if known.get(p.run_id) not in ("pending",)]
    if fresh:
        store.upsert_runs([_run_row(spec.job_id, p, stamp) for p in fresh])
    return [p.run_id for p in todo]


def _run_row(job_id: str, planned: PlannedRun, stamp: datetime) -> Row:
    p = planned.params
    return {
        "run_id": planned.run_id, "job_id": job_id, "status": "pending", "regime": p.regime,
        "n_agents": p.n_agents, "maturity_days": p.maturity_days, "kappa": p.kappa,
        "concentration": p.concentration, "mu": p.mu, "outside_mid_ratio": p.outside_mid_ratio,
        "seed": p.seed, "cash_accounting": p.cash_accounting, "error": None, "created_at": stamp,
        "started_at": None, "completed_at": None,
    }


def mark_started(store: Store, job_id: str, run_ids: Iterable[str]) -> None:
    """Runs about to execute become `running`; the job becomes `running` with a `started`
    event when its first run starts (and again when a finished sweep is resumed)."""
    stamp = now()
    ids = list(run_ids)
    if ids:
        store.upsert_runs([{"run_id": r, "job_id": job_id, "status": "running", "started_at": stamp, "error": None}
                           for r in ids])
    job = store.get_job(job_id)
    if job["status"] != "running":
        store.update_job(job_id, status="running", started_at=stamp, completed_at=None, error=None)
        store.log_event(job_id, "started", {"resumed": job["status"] != "pending", "runs": len(ids)})


def record_progress(store: Store, job_id: str, batch: dict[str, Any]) -> dict[str, int]:
    """Refresh the job's run counts and log one `progress` event for a finished batch."""
    counts = store.run_counts(job_id)
    store.update_job(job_id, completed_runs=counts.get("completed", 0), failed_runs=counts.get("failed", 0))
    store.log_event(job_id, "progress", {**batch, "counts": counts})
    return counts


def fail_unfinished(store: Store, job_id: str, run_ids: Iterable[str], reason: str) -> list[str]:
    """Runs still `pending`/`running` after their Dagster run ended become `failed`, so a job
    can never stay `running` once nothing is executing its runs."""
    ids = set(run_ids)
    stuck = [r["run_id"] for r in store.list_runs(job_id, run_ids=ids) if r["status"] in ("pending", "running")]
    if stuck:
        stamp = now()
        # The outcome the run's own output would have written, through the same write path.
        write_rows(store, "runs", [{"run_id": r, "job_id": job_id, "status": "failed", "error": reason,
                                    "completed_at": stamp} for r in stuck])
    return stuck


def unfinished_jobs(store: Store) -> list[Row]:
    return store.list_jobs(status="running", limit=1000) + store.list_jobs(status="pending", limit=1000)


def is_settled(counts: dict[str, int]) -> bool:
    """Every run of the job has finished or failed."""
    return sum(counts.values()) > 0 and not (counts.get("pending", 0) or counts.get("running", 0))


def finish_job(store: Store, job_id: str, job_metrics: Row | None) -> str:
    """After job_metrics is written: `completed` if every run completed, else `failed` with an
    error naming how many runs failed (their errors are on the run rows)."""
    counts = store.run_counts(job_id)
    # Runs still pending/running here were abandoned (their batch died): never call that complete.
    failed = sum(counts.get(s, 0) for s in ("failed", "cancelled", "pending", "running"))
    stamp = now()
    # Completed runs whose artifacts could not be uploaded carry the upload error: list them.
    missing = sorted(r["run_id"] for r in store.list_runs(job_id, status="completed") if r.get("error"))
    summary = {"counts": counts, "n_pairs": (job_metrics or {}).get("n_pairs"), "missing_artifacts": missing}
    if failed:
        error = f"{failed} of {sum(counts.values())} runs failed; see their rows in `runs` and re-launch to retry them"
        store.update_job(job_id, status="failed", error=error, completed_at=stamp,
                         completed_runs=counts.get("completed", 0), failed_runs=failed)
        store.log_event(job_id, "failed", {**summary, "error": error})
        webhook.notify(job_id, "failed", counts, job_metrics)
        return "failed"
    store.update_job(job_id, status="completed", error=None, completed_at=stamp,
                     completed_runs=counts.get("completed", 0), failed_runs=0)
    store.log_event(job_id, "completed", summary)
    webhook.notify(job_id, "completed", counts, job_metrics)
    return "completed"


def fail_job(store: Store, job_id: str, error: str) -> None:
    """The sweep itself failed (not one of its runs): record why and stop calling it running."""
    store.update_job(job_id, status="failed", error=error, completed_at=now())
    store.log_event(job_id, "failed", {"error": error})
    webhook.notify_failed_sweep(store, job_id)
