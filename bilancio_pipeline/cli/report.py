"""`bilancio-pipeline report JOB [--compare B]` (and `jobs visualize JOB`, the original's name):
write the sweep's HTML report, which opens offline."""

from __future__ import annotations

from pathlib import Path

import click

from bilancio_pipeline.cli.errors import friendly_errors, open_store
from bilancio_pipeline.cli.results import require_job, run_results, trading_pairs


def write_report(job_id: str, out_file: Path | None, compare_with: str | None = None) -> None:
    from bilancio_pipeline.reports.compare import compare_sweeps
    from bilancio_pipeline.reports.sweep_report import render_sweep_report

    with open_store() as store:
        job = require_job(store, job_id)
        rows = run_results(store, job_id)
        job_metrics = store.get_job_metrics(job_id)
        other = (require_job(store, compare_with), run_results(store, compare_with)) if compare_with else None
    _, pairs = trading_pairs(rows)
    comparison = compare_sweeps(job, rows, *other) if other else None
    html = render_sweep_report(job, rows, job_metrics, pairs, comparison)
    out_file = out_file or Path(f"{job_id}_report.html")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(html, encoding="utf-8")
    versus = f", compared with {compare_with}: {len(comparison['cells'])} cells in both" if comparison else ""
    click.echo(f"Wrote {out_file} ({len(html.encode()) / 1024:.0f} KB, {len(rows)} runs, {len(pairs)} pairs{versus})")


@click.command("report")
@click.argument("job_id")
@click.option("--out", "-o", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write [default: ./<JOB_ID>_report.html].")
@click.option("--compare", "compare_with", metavar="JOB_B",
              help="Also draw the comparison with this sweep (spec differences, trading effect per shared cell).")
@friendly_errors
def command(job_id, out_file, compare_with):
    """Write a self-contained HTML report of a sweep: δ and φ across the grid, heatmaps over
    κ × μ, the trading effect of every pair with its uncertainty, what drives δ, parallel
    coordinates, a 3-D surface, and the tables behind them."""
    write_report(job_id, out_file, compare_with)
