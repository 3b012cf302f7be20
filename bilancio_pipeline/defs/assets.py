"""The sweep assets.

`sweep_runs`, `run_metrics` and `run_artifacts` (partitioned by `runs`) are one multi-asset:
one step simulates a whole partition range through the compute resource, uploads the
artifacts and hands each table its rows, so a batch of runs costs one Dagster step instead of
three per run. `job_metrics` (partitioned by `sweeps`) aggregates a finished sweep, and
`sweep_report` draws it.
"""

import json
import os

import dagster as dg

from bilancio_pipeline.defs.io_managers import write_rows
from bilancio_pipeline.defs.partitions import job_id_of, runs_partitions, sweeps_partitions
from bilancio_pipeline.defs.resources import ArtifactsResource, ComputeResource, StoreResource
from bilancio_pipeline.reports.sweep_report import render_sweep_report
from bilancio_pipeline.storage.artifacts.base import manifest_key
from bilancio_pipeline.sweeps import lifecycle
from bilancio_pipeline.sweeps.batch import BatchResult, run_batch
from bilancio_pipeline.sweeps.summary import delta_plot_png, png_markdown, summarize, sweep_pairs

# The largest partition range one Dagster run takes when a user backfills from the UI.
BACKFILL_BATCH_SIZE = int(os.environ.get("BILANCIO_BATCH_SIZE", "100"))
TABLE_IO = "table_io_manager"

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
                                   description="delta_total and phi_total of every run lie in [0, 1]")],
)
def simulate_runs(context: dg.AssetExecutionContext, store: StoreResource, artifacts: ArtifactsResource,
                  compute: ComputeResource):
    keys = list(context.partition_keys)
    db, volume = store.open(), artifacts.open()
    try:
        by_job: dict[str, list[str]] = {}
        for key in keys:
            by_job.setdefault(job_id_of(key), []).append(key)
        results = []
        for job_id, run_ids in by_job.items():
            job = db.get_job(job_id)
            batch = run_batch(db, volume, compute.open(job.get("executor")), run_ids)
            results.append((job_id, batch))
        merged = _merge(r for _, r in results)
        yield _unit_interval_check(merged)
        if merged.failed:
            # A range output would mark every partition materialized; instead record the
            # completed ones one by one and fail the step, so only the failed runs show failed.
            for name, (table, attr) in _OUTPUTS.items():
                write_rows(db, table, getattr(merged, attr))
                for row in getattr(merged, attr):
                    if row.get("status", "completed") == "completed":
                        context.log_event(dg.AssetMaterialization(asset_key=name, partition=row["run_id"]))
        else:
            for name, (_, attr) in _OUTPUTS.items():
                yield dg.Output(getattr(merged, attr), output_name=name, metadata=_batch_metadata(merged))
        for job_id, batch in results:
            lifecycle.record_progress(db, job_id, {"batch_runs": len(batch.runs), "failed": len(batch.failed),
                                                   "skipped": len(batch.skipped),
                                                   "missing_artifacts": len(batch.missing_artifacts)})
    finally:
        db.close()
    if merged.failed:
        failed = sorted(merged.failed.items())
        raise dg.Failure(
            description=f"{len(failed)} of {len(keys)} runs failed; the other runs are stored",
            metadata={"failed_runs": dg.MetadataValue.json(dict(failed[:50]))},
        )


def _merge(batches) -> BatchResult:
    merged = BatchResult()
    for b in batches:
        merged.runs += b.runs
        merged.metrics += b.metrics
        merged.artifacts += b.artifacts
        merged.failed.update(b.failed)
        merged.skipped += b.skipped
        merged.missing_artifacts.update(b.missing_artifacts)
        merged.simulate_seconds += b.simulate_seconds
        merged.upload_seconds += b.upload_seconds
    return merged


def _batch_metadata(batch: BatchResult) -> dict:
    return {
        "runs_executed": len(batch.runs),
        "runs_skipped_already_complete": len(batch.skipped),
        "simulate_seconds": round(batch.simulate_seconds, 3),
        "upload_seconds": round(batch.upload_seconds, 3),
        "missing_artifacts": dg.MetadataValue.json(batch.missing_artifacts),
    }


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
    yield from _sweep_checks(job, summary)
    row = summary.row
    yield dg.Output(row, metadata={
        "n_pairs": row.get("n_pairs") or 0,
        "mean_trading_effect": dg.MetadataValue.float(float(row["mean_trading_effect"]))
        if row.get("mean_trading_effect") is not None else dg.MetadataValue.text("no complete pairs"),
    })
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
    url = volume.put_bytes(f"{job_id}/report.html", html.encode())
    png = delta_plot_png(results)
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.url(url),
        "delta_by_kappa": dg.MetadataValue.md(png_markdown(png, "mean delta by kappa") if png else "no runs"),
    })


def _manifest(db, job_id: str) -> bytes:
    """The sweep's record beside its artifacts: spec, provenance, events and aggregate."""
    job = db.get_job(job_id)
    manifest = {"job": job, "events": db.list_events(job_id), "job_metrics": db.get_job_metrics(job_id),
                "run_counts": db.run_counts(job_id)}
    return json.dumps(manifest, default=str, indent=2).encode()
