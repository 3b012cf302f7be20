"""The sweep aggregate (MODEL.md §5.5) from the stored results, and what goes beside it."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from bilancio_pipeline.compute.cost import sweep_usage
from bilancio_pipeline.engine.aggregate import aggregate_job_metrics
from bilancio_pipeline.storage.base import Row, Store
from bilancio_pipeline.storage.schema import job_metrics as job_metrics_table

_JOB_METRICS_COLUMNS = tuple(job_metrics_table.columns.keys())
_CELL = ("kappa", "concentration", "mu", "outside_mid_ratio", "seed")  # what pairs a passive with an active run


@dataclass
class SweepSummary:
    row: Row  # the job_metrics row
    pairs: list[dict[str, Any]]  # per passive/active pair: parameters, deltas, trading effect
    results: list[Row]  # every run of the sweep joined with its metrics (run_results)


def summarize(store: Store, job_id: str) -> SweepSummary:
    """Aggregate a sweep's completed runs, and copy each pair's trading effect onto its runs."""
    results = store.query_results(job_id=job_id)
    completed = _completed(results)
    aggregate = aggregate_job_metrics(completed)
    pairs = aggregate.get("pairs", [])
    row = {c: aggregate.get(c) for c in _JOB_METRICS_COLUMNS if c in aggregate and c not in ("created_at", "updated_at")}
    row["job_id"] = job_id
    row["raw_summary"] = json.loads(json.dumps(aggregate.get("raw_summary", {}), default=float))
    spent = sweep_usage(store.list_events(job_id))  # Modal CPU-seconds and estimated cost
    if spent:
        row["raw_summary"]["compute"] = spent
    run_of = {(*(r[k] for k in _CELL), r["regime"]): r["run_id"] for r in completed}
    effects = {}
    for pair in pairs:
        for regime in ("passive", "active"):
            run_id = run_of.get((*(pair[k] for k in _CELL), regime))
            if run_id:
                effects[run_id] = pair["trading_effect"]
    if effects:
        store.upsert_metrics([{"run_id": r, "job_id": job_id, "trading_effect": e} for r, e in effects.items()])
    return SweepSummary(row=row, pairs=pairs, results=results)


def sweep_pairs(results: list[Row]) -> list[dict[str, Any]]:
    """The passive/active pairs of a sweep's results, with their trading effect."""
    return aggregate_job_metrics(_completed(results)).get("pairs", [])


def _completed(results: list[Row]) -> list[Row]:
    return [r for r in results if r["status"] == "completed" and r["delta_total"] is not None]


def delta_plot_png(results: list[Row]) -> bytes | None:
    """Mean delta_total by kappa for each regime: the picture of a sweep at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in results if r.get("delta_total") is not None]
    if not done:
        return None
    fig, ax = plt.subplots(figsize=(4.2, 2.8), dpi=100)  # fits the asset page's metadata column
    for regime, colour in (("passive", "#6c757d"), ("active", "#d9480f")):
        by_kappa: dict[float, list[float]] = {}
        for r in done:
            if r["regime"] == regime:
                by_kappa.setdefault(r["kappa"], []).append(r["delta_total"])
        if by_kappa:
            xs = sorted(by_kappa)
            ax.plot(xs, [sum(by_kappa[x]) / len(by_kappa[x]) for x in xs], "o-", color=colour, label=regime)
    ax.set_xlabel("kappa (liquidity)")
    ax.set_ylabel("mean delta_total (default rate)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()

