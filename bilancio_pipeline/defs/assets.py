"""The sweep assets.

`sweep_runs`, `run_metrics` and `run_artifacts` (partitioned by `runs`) are one multi-asset:
one step simulates a whole partition range through the compute resource, uploads the
artifacts and hands each table its rows, so a batch of runs costs one Dagster step instead of
three per run. `job_metrics` (partitioned by `sweeps`) aggregates a finished sweep, and
`sweep_report` draws it.

The batch step stores its finished runs every few seconds while it runs (`_Progress`): each
table's rows go through the IO manager's one write path (`io_managers.write_rows`, a bulk
upsert), and each run's partition is materialized with that run's own metadata (parameters,
headline metrics, a link to its files). A ranged `Output` cannot do either: Dagster writes it
once, at the step's end, and gives every partition of the range the same metadata
(dagster#18123), so the outputs are declared (the IO manager and table of each asset, for
readers and the UI) but not returned.
"""

import json
import os
import time

import dagster as dg

from bilancio_pipeline.defs.asset_events import log_materializations
from bilancio_pipeline.defs.handoff import hand_on_job_metrics
from bilancio_pipeline.defs.config import BatchConfig
from bilancio_pipeline.defs.invariant_checks import ACCOUNTING_CHECK, accounting_check
from bilancio_pipeline.defs.io_managers import write_rows
from bilancio_pipeline.defs.partitions import job_id_of, runs_partitions, sweeps_partitions
from bilancio_pipeline.defs.resources import ArtifactsResource, ComputeResource, StoreResource
from bilancio_pipeline.defs.run_metadata import run_metadata, summary_metadata, sweep_page
from bilancio_pipeline.reports.sweep_report import render_sweep_report
from bilancio_pipeline.storage.artifacts.base import manifest_key, run_key
from bilancio_pipeline.storage.base import NotFound
from bilancio_pipeline.sweeps import lifecycle
from bilancio_pipeline.sweeps.batch import BatchResult, run_batch
from bilancio_pipeline.sweeps.orchestrator import MAX_BATCH
from bilancio_pipeline.sweeps.summary import delta_plot_png, summarize, sweep_pairs
from bilancio_pipeline.volume_http import browser_url

# The largest partition range one Dagster run takes when a user materializes partitions from the
# UI: a sweep's own largest batch, since one run already fans out over every core (or Modal) and
# shows its runs as they finish. Dagster starts one run per contiguous range of the selection.
BACKFILL_BATCH_SIZE = int(os.environ.get("BILANCIO_BATCH_SIZE") or MAX_BATCH)
TABLE_IO = "table_io_manager"
# While a batch runs, its finished runs are stored and shown as materialized this often.
FLUSH_SECONDS = float(os.environ.get("BILANCIO_PROGRESS_SECONDS", "3"))

_OUTPUTS = {  # output name -> (table, BatchResult field), in the topological order Dagster needs
    "sweep_runs": ("runs", "runs"),
    "run_metrics": ("metrics", "metrics"),
    "run_artifacts": ("runs", "artifacts"),
}


@dg.multi_asset(
    outs={
        "sweep_runs": dg.AssetOut(
            io_manager_key=TABLE_IO, metadata={"table": "runs"}, is_required=False, group_name="sweeps",
            description="One simulation per partition: its status, timings and error on the `runs` row.",
        ),
        "run_metrics": dg.AssetOut(
            io_manager_key=TABLE_IO, metadata={"table": "metrics"}, is_required=False, group_name="sweeps",
            description="The run's metrics (MODEL.md §5.3-5.4), one `metrics` row per run.",
        ),
        "run_artifacts": dg.AssetOut(
            io_manager_key=TABLE_IO, metadata={"table": "runs"}, is_required=False, group_name="sweeps",
            description="The run's artifacts on R2 (or the local volume); their URLs on the `runs` row.",
        ),
    },
    internal_asset_deps={
        "sweep_runs": set(),
        "run_metrics": {dg.AssetKey("sweep_runs")},
        "run_artifacts": {dg.AssetKey("sweep_runs")},
    },
    partitions_def=runs_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=BACKFILL_BATCH_SIZE),
    check_specs=[dg.AssetCheckSpec("delta_phi_in_unit_interval", asset="run_metrics",
                                   description="delta_total and phi_total of every run lie in [0, 1]"),
                 ACCOUNTING_CHECK],
)
def simulate_runs(context: dg.AssetExecutionContext, config: BatchConfig, store: StoreResource,
                  artifacts: ArtifactsResource, compute: ComputeResource):
    keys = list(context.partition_keys)
    started = time.perf_counter()
    db, volume = store.open(), artifacts.open()
    merged = BatchResult()
    try:
        for job_id, (job, params) in _registered_runs(db, keys).items():
            if config.recompute:
                reset_for_recompute(db, job_id, list(params))
            progress = _Progress(context, db, volume, job_id, params)
            batch = run_batch(db, volume, compute.open(job.get("executor")), list(params),
                              on_outcome=progress.tick, result=progress.result)
            progress.flush()
            lifecycle.record_progress(db, job_id, {"batch_runs": len(batch.runs), "failed": len(batch.failed),
                                                   "skipped": len(batch.skipped),
                                                   "missing_artifacts": len(batch.missing_artifacts),
                                                   "simulate_seconds": round(batch.simulate_seconds, 3),
                                                   "upload_seconds": round(batch.upload_seconds, 3),
                                                   "compute": batch.usage})  # Modal seconds and cost, or None
            _merge_into(merged, batch)
            hand_on_job_metrics(context, db, job_id)  # if this was the sweep's last batch
    finally:
        db.close()
    # After the materializations, so the check's result belongs to them (else the UI shows the
    # latest materialization as "Not evaluated").
    yield _unit_interval_check(merged)
    yield accounting_check(merged.metrics)
    ok = len(merged.runs) - len(merged.failed)
    context.log.info(f"{len(keys)} runs: {ok} ok, {len(merged.failed)} failed, {len(merged.skipped)} already complete"
                     f"{', recomputed' if config.recompute else ''}, {time.perf_counter() - started:.1f} s "
                     f"(simulating {merged.simulate_seconds:.1f} s, storing files {merged.upload_seconds:.1f} s)")
    if merged.failed:
        failed = sorted(merged.failed.items())
        raise dg.Failure(
            description=f"{len(failed)} of {len(keys)} runs failed; the other runs are stored",
            metadata={"failed_runs": dg.MetadataValue.json(dict(failed[:50]))},
        )


def _registered_runs(db, keys: list[str]) -> dict[str, tuple[dict, dict[str, dict]]]:
    """{job_id: (job row, {run_id: run row})} for these partitions, in their order; a partition
    that is not a registered run fails the step with one line before anything runs."""
    by_job: dict[str, list[str]] = {}
    for key in keys:
        by_job.setdefault(job_id_of(key), []).append(key)
    found, missing = {}, []
    for job_id, run_ids in by_job.items():
        try:
            job = db.get_job(job_id)
        except NotFound:
            missing += run_ids
            continue
        rows = {r["run_id"]: r for r in db.list_runs(job_id, run_ids=run_ids)}
        missing += [k for k in run_ids if k not in rows]
        found[job_id] = (job, {k: rows[k] for k in run_ids if k in rows})
    if missing:
        raise dg.Failure(
            description=f"{len(missing)} partition(s) are not runs of a launched sweep ({', '.join(missing[:3])}"
                        f"{', …' if len(missing) > 3 else ''}): launch a sweep from launch_sweep_job to add runs",
            allow_retries=False,
        )
    return found


def reset_for_recompute(db, job_id: str, run_ids: list[str]) -> None:
    """Completed runs become `pending` again, so the next batch re-runs them (on purpose)."""
    done = db.completed_run_ids(job_id) & set(run_ids)
    if done:
        db.upsert_runs([{"run_id": r, "job_id": job_id, "status": "pending", "completed_at": None} for r in sorted(done)])


class _Progress:
    """Stores a batch's finished runs every FLUSH_SECONDS while it runs: their rows through the
    IO manager's write path, and one materialization per run and asset carrying the run's
    metadata, logged as one batch of events (one event-log write per flush)."""

    def __init__(self, context, db, volume, job_id: str, params: dict[str, dict]):
        self.context, self.db, self.volume, self.job_id, self.params = context, db, volume, job_id, params
        self.result = BatchResult()
        self.written = {attr: 0 for _, attr in _OUTPUTS.values()}
        self.last = time.monotonic()

    def tick(self, _outcome) -> None:
        if time.monotonic() - self.last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        fresh = {}
        for table, attr in _OUTPUTS.values():
            fresh[attr] = getattr(self.result, attr)[self.written[attr]:]
            self.written[attr] += len(fresh[attr])
            write_rows(self.db, table, fresh[attr])
        done = [r["run_id"] for r in fresh["runs"] if r["status"] == "completed"]
        if not done:
            return
        metrics = {m["run_id"]: m for m in self.result.metrics}
        files = {a["run_id"]: a.get("artifact_urls") or {} for a in self.result.artifacts}
        sweep = sweep_page(self.job_id)
        events = []
        for run_id in done:
            link = (browser_url(self.volume, run_key(self.job_id, run_id, "run.html"))
                    if "run.html" in files.get(run_id, {}) else None)
            meta = run_metadata(self.params[run_id], metrics.get(run_id), link, sweep)
            missing = [run_id] if run_id in self.result.missing_artifacts else []
            events += [dg.AssetMaterialization(asset_key=name, partition=run_id, metadata=meta) for name in _OUTPUTS]
            events[-3].metadata["missing_artifacts"] = dg.MetadataValue.json(missing)  # sweep_runs: files not stored
        log_materializations(self.context, events)


def _merge_into(merged: BatchResult, b: BatchResult) -> None:
    merged.runs += b.runs
    merged.metrics += b.metrics
    merged.artifacts += b.artifacts
    merged.failed.update(b.failed)
    merged.skipped += b.skipped
    merged.missing_artifacts.update(b.missing_artifacts)
    merged.simulate_seconds += b.simulate_seconds
    merged.upload_seconds += b.upload_seconds


def _unit_interval_check(batch: BatchResult) -> dg.AssetCheckResult:
    bad = {
        m["run_id"]: {"delta_total": m.get("delta_total"), "phi_total": m.get("phi_total")}
        for m in batch.metrics
        if not all(v is not None and 0.0 <= v <= 1.0 for v in (m.get("delta_total"), m.get("phi_total")))
    }
    return dg.AssetCheckResult(
        check_name="delta_phi_in_unit_interval", asset_key="run_metrics", passed=not bad,
        metadata={"runs_checked": len(batch.metrics), "out_of_range": dg.MetadataValue.json(bad)},
    )


@dg.asset(
    partitions_def=sweeps_partitions,
    io_manager_key=TABLE_IO,
    metadata={"table": "job_metrics"},
    group_name="sweeps",
    deps=[dg.AssetDep("run_metrics", partition_mapping=dg.AllPartitionMapping())],
    check_specs=[
        dg.AssetCheckSpec("every_run_has_metrics", asset="job_metrics",
                          description="every completed run of the sweep has a metrics row"),
        dg.AssetCheckSpec("balanced_pairs_complete", asset="job_metrics",
                          description="every passive run of a balanced sweep has its active twin"),
    ],
    description="The sweep's aggregate (MODEL.md §5.5): passive vs active trading effect.",
)
def job_metrics(context: dg.AssetExecutionContext, store: StoreResource, artifacts: ArtifactsResource):
    job_id = context.partition_key
    db, volume = store.open(), artifacts.open()
    try:
        yield from _aggregate(context, db, volume, job_id)
    except Exception as exc:
        # A sweep whose aggregate cannot be written must not stay `running`.
        lifecycle.fail_job(db, job_id, f"job_metrics failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        db.close()


def _aggregate(context, db, volume, job_id: str):
    """Aggregate the sweep, check it, store its manifest, and finish the job."""
    job = db.get_job(job_id)
    summary = summarize(db, job_id)
    row = summary.row
    yield dg.Output(row, metadata=summary_metadata(row))
    yield from _sweep_checks(job, summary)  # after the output: the checks belong to this materialization
    status = lifecycle.finish_job(db, job_id, row)
    volume.put_bytes(manifest_key(job_id), _manifest(db, job_id))
    context.log.info(f"sweep {job_id} {status}: {row.get('n_pairs')} pairs")


def _sweep_checks(job, summary):
    results = summary.results
    completed = [r for r in results if r["status"] == "completed"]
    without = [r["run_id"] for r in completed if r["delta_total"] is None]
    yield dg.AssetCheckResult(check_name="every_run_has_metrics", passed=not without,
                              metadata={"completed_runs": len(completed), "without_metrics": dg.MetadataValue.json(without[:50])})
    cells: dict[tuple, set[str]] = {}
    for r in completed:
        cells.setdefault((r["kappa"], r["concentration"], r["mu"], r["outside_mid_ratio"], r["seed"]), set()).add(r["regime"])
    incomplete = [list(cell) for cell, regimes in cells.items() if regimes != {"passive", "active"}]
    balanced = job["sweep_type"] == "balanced"
    yield dg.AssetCheckResult(check_name="balanced_pairs_complete", passed=not balanced or not incomplete,
                              metadata={"cells": len(cells), "incomplete_cells": dg.MetadataValue.json(incomplete[:50]),
                                        "applies": balanced})


@dg.asset(
    partitions_def=sweeps_partitions,
    deps=[job_metrics],
    group_name="sweeps",
    description="The sweep's HTML report beside its artifacts: δ and φ across the grid, every pair's "
                "trading effect, the tables behind them. Drawn after job_metrics is stored, so the "
                "numbers never wait for the figures.",
)
def sweep_report(context: dg.AssetExecutionContext, store: StoreResource, artifacts: ArtifactsResource):
    job_id = context.partition_key
    db, volume = store.open(), artifacts.open()
    try:
        job, results, row = db.get_job(job_id), db.query_results(job_id=job_id), db.get_job_metrics(job_id)
    finally:
        db.close()
    html = render_sweep_report(job, results, row, sweep_pairs(results))
    volume.put_bytes(report_key(job_id), html.encode())
    metadata = {"report": dg.MetadataValue.url(browser_url(volume, report_key(job_id)))}
    png = delta_plot_png(results)
    if png:
        # A short markdown entry is drawn inline on the asset page; a data: URL would be too
        # long for that and hide behind [Show Markdown]. So the image is a file beside the report.
        volume.put_bytes(f"{job_id}/delta_by_kappa.png", png)
        url = browser_url(volume, f"{job_id}/delta_by_kappa.png")
        metadata["delta_by_kappa"] = dg.MetadataValue.md(f"![mean δ by κ, passive and active]({url})")
    return dg.MaterializeResult(metadata=metadata)


def report_key(job_id: str) -> str:
    return f"{job_id}/report.html"


def _manifest(db, job_id: str) -> bytes:
    """The sweep's record beside its artifacts: spec, provenance, events and aggregate."""
    job = db.get_job(job_id)
    manifest = {"job": job, "events": db.list_events(job_id), "job_metrics": db.get_job_metrics(job_id),
                "run_counts": db.run_counts(job_id)}
    return json.dumps(manifest, default=str, indent=2).encode()
