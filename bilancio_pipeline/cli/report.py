"""`bilancio-pipeline report JOB`: write the sweep's HTML report (opens offline)."""

from __future__ import annotations

from pathlib import Path

import click

from bilancio_pipeline.cli.errors import friendly_errors, open_store
from bilancio_pipeline.cli.results import require_job, run_results, trading_pairs


@click.command("report")
@click.argument("job_id")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write [default: ./<JOB_ID>_report.html].")
@friendly_errors
def command(job_id, out_file):
    """Write a self-contained HTML report of a sweep: δ and φ across the grid, the trading
    effect of every passive/active pair, and the tables behind them."""
    from bilancio_pipeline.reports.sweep_report import render_sweep_report

    with open_store() as store:
        job = require_job(store, job_id)
        rows = run_results(store, job_id)
        job_metrics = store.get_job_metrics(job_id)
    _, pairs = trading_pairs(rows)
    html = render_sweep_report(job, rows, job_metrics, pairs)
    out_file = out_file or Path(f"{job_id}_report.html")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(html, encoding="utf-8")
    click.echo(f"Wrote {out_file} ({len(html) / 1024:.0f} KB, {len(rows)} runs, {len(pairs)} pairs)")
