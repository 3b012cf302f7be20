"""Run one batch of a sweep's runs: simulate, upload artifacts, and build the rows to store.

Plain Python over the store, artifact and compute interfaces; the Dagster asset that runs a
partition range is a thin wrapper around `run_batch`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bilancio_pipeline.compute.base import Compute, RunOutcome, RunTask
from bilancio_pipeline.compute.uploads import not_stored, store_run
from bilancio_pipeline.engine.params import InvalidParameter, RunParams
from bilancio_pipeline.storage.artifacts.base import ArtifactStore, run_prefix
from bilancio_pipeline.storage.base import Row, Store
from bilancio_pipeline.storage.schema import metrics as metrics_table
from bilancio_pipeline.sweeps import lifecycle
from bilancio_pipeline.sweeps.spec import run_id_for

# A run's parameters: these columns of its row, plus the sweep's `extra` (q_total, face_value, …),
# which are the same for every run of a sweep and kept in the job's spec.
_PARAM_COLUMNS = ("n_agents", "maturity_days", "kappa", "concentration", "mu", "outside_mid_ratio", "seed",
                  "regime", "cash_accounting")
_METRIC_COLUMNS = tuple(c for c in metrics_table.columns.keys()
                        if c not in ("run_id", "job_id", "raw_metrics", "created_at", "updated_at", "trading_effect"))


@dataclass
class BatchResult:
    runs: list[Row] = field(default_factory=list)  # status, timings, error per executed run
    metrics: list[Row] = field(default_factory=list)  # one per completed run
    artifacts: list[Row] = field(default_factory=list)  # artifact_base/urls per completed run
    failed: dict[str, str] = field(default_factory=dict)  # run_id -> error
    skipped: list[str] = field(default_factory=list)  # already completed: never recomputed
    missing_artifacts: dict[str, str] = field(default_factory=dict)  # run_id -> upload error
    simulate_seconds: float = 0.0
    upload_seconds: float = 0.0
    usage: dict[str, Any] | None = None  # Modal CPU-seconds and estimated cost (compute.cost), if on Modal

    @property
    def completed(self) -> list[str]:
        return [r["run_id"] for r in self.runs if r["status"] == "completed"]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def metrics_row(job_id: str, outcome: RunOutcome) -> Row:
    summary = _json_safe(outcome.summary)
    row = {"run_id": outcome.run_id, "job_id": job_id, "raw_metrics": summary}
    row.update({c: summary.get(c) for c in _METRIC_COLUMNS})
    return row


def run_params(job_id: str, row: Row, extra: dict[str, Any]) -> dict[str, Any]:
    """The parameters that named the run: its row's columns and the sweep's extra ones. The run
    id is a hash of all of them, so recomputing it proves nothing was lost on the way."""
    run_id = row["run_id"]
    try:
        params = RunParams(**{**extra, **{c: row[c] for c in _PARAM_COLUMNS}})
    except (InvalidParameter, TypeError) as exc:
        raise ValueError(f"run {run_id}: its stored parameters are invalid: {exc}") from None
    if run_id_for(job_id, params) != run_id:
        raise ValueError(f"run {run_id}: its stored parameters do not give back its run id "
                         "(its runs row or the job's spec changed after launch)")
    return params.to_dict()


def run_batch(
    store: Store,
    artifacts: ArtifactStore,
    compute: Compute,
    run_ids: Sequence[str],
    on_outcome: Callable[[RunOutcome], None] | None = None,
    result: BatchResult | None = None,
) -> BatchResult:
    """Run every run id that has not completed yet (all of one job) and return the rows. Given
    `result`, fills that one: `on_outcome` can then read the rows as they come."""
    result = BatchResult() if result is None else result
    if not run_ids:
        return result
    job_ids = {r.split("_", 1)[0] for r in run_ids}
    if len(job_ids) != 1:
        raise ValueError(f"a batch runs the runs of one sweep; got runs of {sorted(job_ids)}")
    job_id = job_ids.pop()
    rows = {r["run_id"]: r for r in store.list_runs(job_id, run_ids=run_ids)}
    done = store.completed_run_ids(job_id) & set(run_ids)
    result.skipped = [r for r in run_ids if r in done]
    todo = []
    for run_id in run_ids:
        if run_id in done:
            continue
        if run_id not in rows:
            result.failed[run_id] = f"run {run_id} is not registered in the store; launch its sweep first"
            continue
        todo.append(rows[run_id])
    if not todo:
        return result
    job = store.get_job(job_id)
    policy = job.get("artifact_policy") or "all"
    extra = dict((job.get("spec") or {}).get("extra") or {})
    tasks = []
    for row in todo:
        try:
            tasks.append(RunTask(row["run_id"], job_id, run_params(job_id, row, extra), policy))
        except ValueError as exc:  # never run something other than what the run id names
            result.failed[row["run_id"]] = str(exc)
            result.runs.append({"run_id": row["run_id"], "job_id": job_id, "status": "failed", "error": str(exc),
                                "completed_at": lifecycle.now()})
    if not tasks:
        return result

    compute.check(artifacts)  # before any run is marked running: a compute that cannot run touches nothing
    lifecycle.mark_started(store, job_id, [t.run_id for t in tasks])
    scratch = tempfile.mkdtemp(prefix=f"bilancio-{job_id}-")
    started = time.perf_counter()
    try:
        for outcome in compute.run_batch(tasks, scratch):
            _collect(result, artifacts, job_id, outcome)
            if on_outcome:
                on_outcome(outcome)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.simulate_seconds = time.perf_counter() - started - result.upload_seconds
    result.usage = compute.usage_summary()
    return result


def _collect(result: BatchResult, artifacts: ArtifactStore, job_id: str, outcome: RunOutcome) -> None:
    stamp = lifecycle.now()
    if not outcome.ok:
        result.failed[outcome.run_id] = outcome.error or "failed without an error message"
        result.runs.append({"run_id": outcome.run_id, "job_id": job_id, "status": "failed", "error": result.failed[outcome.run_id],
                            "execution_time_ms": outcome.wall_ms or None, "modal_call_id": outcome.call_id,
                            "completed_at": stamp})
        return
    urls = dict(outcome.artifacts)  # stored by the compute itself (a Modal container), or:
    error = outcome.artifacts_error
    if outcome.artifact_dir:
        t0 = time.perf_counter()
        try:
            urls = store_run(artifacts, job_id, outcome.run_id, outcome.artifact_dir)
        except Exception as exc:  # the metrics are kept; the gap is reported, never silent
            error = not_stored(exc)
        result.upload_seconds += time.perf_counter() - t0
    if error:
        result.missing_artifacts[outcome.run_id] = error
    result.runs.append({"run_id": outcome.run_id, "job_id": job_id, "status": "completed", "error": error,
                        "execution_time_ms": outcome.wall_ms, "modal_call_id": outcome.call_id, "completed_at": stamp})
    result.metrics.append(metrics_row(job_id, outcome))
    result.artifacts.append({"run_id": outcome.run_id, "job_id": job_id,
                             "artifact_base": run_prefix(job_id, outcome.run_id), "artifact_urls": urls})
