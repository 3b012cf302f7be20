"""`bilancio-pipeline jobs`: list sweeps and look into one.

JSON output (stable keys):
  jobs ls       [{job_id, status, sweep_type, description, created_at, started_at,
                  completed_at, duration_s, total_runs, completed_runs, failed_runs}]
  jobs get      {job: {every jobs column}, duration_s, run_counts: {status: n},
                 events: [{event_type, timestamp, details}], job_metrics: {…} | null}
  jobs runs     [{every run_results column: run_id, job_id, status, regime, parameters…, metrics…}]
  jobs metrics  {job_id, job_metrics: {…} | null, computed: {…}, pairs: [{kappa, concentration,
                 mu, outside_mid_ratio, seed, delta_passive, delta_active, trading_effect, …}]}
  jobs compare  {a, b, spec_differences: {field: {a, b}}, cells: [{kappa, concentration, mu,
                 outside_mid_ratio, seed, delta_passive_a, delta_passive_b, delta_active_a,
                 delta_active_b, trading_effect_a, trading_effect_b, trading_effect_diff (b − a)}],
                 only_in_a: [{kappa, …, seed}], only_in_b: [...]}

`jobs list` and `jobs show` are the original's names for `ls` and `get`. `--cloud` (accepted by
every jobs command) insists on the cloud store: the command refuses to fall back to the local
SQLite file when no Supabase store is configured.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click

from bilancio_pipeline.cli import output
from bilancio_pipeline.cli.errors import CommandError, friendly_errors, open_store
from bilancio_pipeline.cli.results import (
    PAIR_COLUMNS,
    duration_seconds,
    human_duration,
    require_job,
    run_results,
    trading_pairs,
)
from bilancio_pipeline.storage import schema
from bilancio_pipeline.storage.schema import JOB_STATUSES, RUN_RESULTS_COLUMNS, RUN_STATUSES

LS_COLUMNS = ("job_id", "status", "sweep_type", "description", "created_at", "started_at", "completed_at",
              "duration_s", "total_runs", "completed_runs", "failed_runs")
LS_TABLE = ("job_id", "status", "sweep_type", "created_at", "duration", "total_runs", "completed_runs", "failed_runs")
LS_HEADERS = {"job_id": "JOB ID", "status": "STATUS", "sweep_type": "TYPE", "created_at": "CREATED",
              "duration": "DURATION", "total_runs": "RUNS", "completed_runs": "DONE", "failed_runs": "FAILED"}

RUNS_TABLE = ("run_id", "status", "regime", "kappa", "concentration", "mu", "outside_mid_ratio", "seed",
              "delta_total", "phi_total", "trading_effect", "execution_time_ms")
RUNS_HEADERS = {"concentration": "conc", "outside_mid_ratio": "rho", "execution_time_ms": "ms"}

GET_KEYS = ("job_id", "status", "sweep_type", "description", "created_at", "started_at", "completed_at",
            "duration", "error", "executor", "cloud", "n_agents", "maturity_days", "kappas", "concentrations",
            "mus", "outside_mid_ratios", "seeds", "cash_accounting", "total_runs", "completed_runs",
            "failed_runs", "notes")
_CI = ("trading_effect_ci_low", "trading_effect_ci_high")
# the interval right after the mean it belongs to
JOB_METRICS_KEYS = tuple(k for c in schema.job_metrics.c if c.name not in ("job_id", "raw_summary", *_CI)
                         for k in ((c.name, *_CI) if c.name == "mean_trading_effect" else (c.name,)))
DECOMPOSED = ("delta_passive", "delta_active", "trading_effect")


@click.group("jobs")
def command():
    """List sweeps (jobs) and show one job's spec, runs and metrics."""


def cloud_option(fn):
    """`--cloud`: read the cloud store (Supabase REST or Postgres), never the local default."""

    @click.option("--cloud", is_flag=True, help="Require the cloud store (Supabase); fail if none is configured.")
    @functools.wraps(fn)
    def wrapper(*args, cloud, **kwargs):
        if cloud:
            require_cloud_store()
        return fn(*args, **kwargs)

    return wrapper


def require_cloud_store() -> None:
    env = os.environ.get
    db_url = env("BILANCIO_SUPABASE_DB_URL") or ""
    if env("BILANCIO_SUPABASE_URL") and env("BILANCIO_SUPABASE_KEY"):
        return
    if db_url and not db_url.lower().startswith("sqlite"):
        return
    why = "BILANCIO_SUPABASE_DB_URL names a local SQLite file" if db_url else "no cloud store is configured"
    raise CommandError(
        f"--cloud: {why}; set BILANCIO_SUPABASE_URL and BILANCIO_SUPABASE_KEY (Supabase REST) or "
        "BILANCIO_SUPABASE_DB_URL (a Postgres URL), or leave out --cloud to use the local store")


@command.command("ls")
@cloud_option
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many jobs, newest first.")
@output.format_option()
@friendly_errors
def ls(status, limit, fmt):
    """List jobs, newest first."""
    with open_store() as store:
        jobs = store.list_jobs(status=status, limit=limit)
    for job in jobs:
        job["duration_s"] = duration_seconds(job)
    if fmt != "table":
        output.echo(output.render_rows(jobs, fmt, LS_COLUMNS))
        return
    if not jobs:
        output.echo("No jobs found.")
        return
    for job in jobs:
        job["duration"] = human_duration(job["duration_s"]) if job.get("status") != "pending" else "-"
    output.echo(output.render_rows(jobs, "table", LS_TABLE, LS_HEADERS))
    output.echo(f"\nTotal: {len(jobs)} job{'s' if len(jobs) != 1 else ''}")


@command.command("get")
@cloud_option
@click.argument("job_id")
@output.format_option()
@friendly_errors
def get(job_id, fmt):
    """Show a job: its sweep spec, state, runs by status, events and job metrics."""
    with open_store() as store:
        job = require_job(store, job_id)
        counts = store.run_counts(job_id)
        events = store.list_events(job_id)
        job_metrics = store.get_job_metrics(job_id)
    if fmt == "json":
        output.echo(output.to_json({
            "job": job, "duration_s": duration_seconds(job), "run_counts": counts,
            "events": [{k: e.get(k) for k in ("event_type", "timestamp", "details")} for e in events],
            "job_metrics": job_metrics,
        }))
        return
    if fmt == "csv":
        output.echo(output.render_rows([{**job, "duration_s": duration_seconds(job)}], "csv",
                                       [c.name for c in schema.jobs.c] + ["duration_s"]))
        return
    shown = {**job, "duration": human_duration(duration_seconds(job))}
    output.echo(output.render_record(shown, "table", [k for k in GET_KEYS if shown.get(k) not in (None, "")]))
    output.echo("\nRuns by status: " + (", ".join(f"{s} {n}" for s, n in _ordered(counts) if n) or "none"))
    output.echo("\nEvents:")
    output.echo(output.render_rows(events, "table", ("timestamp", "event_type", "details")) if events else "  none")
    output.echo("\nJob metrics:")
    if job_metrics:
        output.echo(output.render_record(job_metrics, "table", JOB_METRICS_KEYS))
        spent = (job_metrics.get("raw_summary") or {}).get("compute")
        if spent:  # where the time and money went (a sweep run on Modal)
            from bilancio_pipeline.compute.cost import usage_line

            output.echo("\n" + usage_line(spent))
    else:
        output.echo("  not computed yet (see `jobs metrics` for the pairs computed from the runs)")


command.add_command(ls, "list")
command.add_command(get, "show")


def _ordered(counts):
    return sorted(counts.items(), key=lambda kv: RUN_STATUSES.index(kv[0]) if kv[0] in RUN_STATUSES else 99)


@command.command("runs")
@cloud_option
@click.argument("job_id")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs in this state.")
@output.format_option()
@friendly_errors
def runs(job_id, status, fmt):
    """List a job's runs with their parameters and main metrics, in grid order."""
    with open_store() as store:
        require_job(store, job_id)
        rows = run_results(store, job_id, status=status)
    if fmt != "table":
        output.echo(output.render_rows(rows, fmt, RUN_RESULTS_COLUMNS))
        return
    if not rows:
        output.echo("No runs found.")
        return
    output.echo(output.render_rows(rows, "table", RUNS_TABLE, RUNS_HEADERS))
    output.echo(f"\nTotal: {len(rows)} run{'s' if len(rows) != 1 else ''}")


@command.command("metrics")
@cloud_option
@click.argument("job_id")
@output.format_option()
@friendly_errors
def metrics(job_id, fmt):
    """Show a job's aggregate (job_metrics) and the trading effect of every passive/active pair."""
    with open_store() as store:
        require_job(store, job_id)
        stored = store.get_job_metrics(job_id)
        rows = run_results(store, job_id, status="completed")
    computed, pairs = trading_pairs(rows)
    if fmt == "json":
        output.echo(output.to_json({"job_id": job_id, "job_metrics": stored, "computed": computed, "pairs": pairs}))
        return
    if fmt == "csv":
        output.echo(output.render_rows(pairs, "csv", _pair_columns(pairs)))
        return
    n_runs = len(rows)
    output.echo(f"Job {job_id}: {n_runs} completed run{'s' if n_runs != 1 else ''}, {len(pairs)} passive/active pairs")
    summary = stored or computed
    label = "job_metrics" if stored else "job_metrics not stored yet; computed from the runs"
    output.echo(f"\n{label}:")
    output.echo(output.render_record(summary, "table", [k for k in JOB_METRICS_KEYS if k in summary]))
    analysis = {**computed.get("raw_summary", {}), **((stored or {}).get("raw_summary") or {})}
    _echo_analysis(analysis)
    if pairs:
        output.echo("\nTrading effect per pair (delta_passive - delta_active; > 0: dealers reduced defaults):")
        output.echo(output.render_rows(pairs, "table", PAIR_COLUMNS, RUNS_HEADERS))


def _echo_analysis(raw: dict) -> None:
    """The interval's method, the cells whose own interval excludes 0, and what drives δ."""
    if raw.get("trading_effect_ci_method"):
        output.echo(f"\ntrading_effect_ci: {raw['trading_effect_ci_method']}")
        output.echo(f"grid cells (κ, c, μ, ρ) whose interval over seeds excludes 0: "
                    f"{raw.get('cells_ci_excluding_zero', 0)} of {raw.get('cells_with_interval', 0)} with 2+ seeds")
    decomposition = raw.get("variance_decomposition") or {}
    done = {k: v for k, v in decomposition.items() if v.get("computed")}
    if decomposition:
        output.echo("\nShare of variance explained (exact ANOVA over the full grid: main effects and two-way interactions):")
    if done:
        names = list(dict.fromkeys(n for v in done.values() for n in v["shares"]))
        table = [{"effect": n, **{k: v["shares"].get(n) for k, v in done.items()}} for n in names]
        output.echo(output.render_rows(table, "table", ("effect", *done)))
    for key, value in decomposition.items():
        if not value.get("computed"):
            output.echo(f"  {key}: not computed: {value.get('reason')}")


def _pair_columns(pairs):
    extra = [k for k in (pairs[0] if pairs else {}) if k not in PAIR_COLUMNS]
    return [*PAIR_COLUMNS, *extra]


@command.command("compare")
@cloud_option
@click.argument("job_a")
@click.argument("job_b")
@output.format_option()
@friendly_errors
def compare(job_a, job_b, fmt):
    """Compare two sweeps: their spec differences, then every grid cell both ran with δ passive,
    δ active and the trading effect of each (diff = B − A)."""
    from bilancio_pipeline.reports.compare import CELL_COLUMNS, compare_sweeps

    with open_store() as store:
        job_rows = [(require_job(store, j), run_results(store, j, status="completed")) for j in (job_a, job_b)]
    result = compare_sweeps(*job_rows[0], *job_rows[1])
    if fmt == "json":
        output.echo(output.to_json(result))
        return
    if fmt == "csv":
        output.echo(output.render_rows(result["cells"], "csv", CELL_COLUMNS))
        return
    differences = result["spec_differences"]
    output.echo(f"Spec differences, A = {job_a}, B = {job_b}:")
    output.echo(output.render_rows([{"field": k, "A": v["a"], "B": v["b"]} for k, v in differences.items()],
                                   "table", ("field", "A", "B")) if differences else "  none")
    cells = result["cells"]
    output.echo(f"\n{len(cells)} grid cells in both (trading effect = δ passive − δ active; diff = B − A):")
    if cells:
        output.echo(output.render_rows(cells, "table", CELL_COLUMNS, COMPARE_HEADERS))
        diffs = [c["trading_effect_diff"] for c in cells if c["trading_effect_diff"] is not None]
        if diffs:
            output.echo(f"\nmean trading_effect_diff {sum(diffs) / len(diffs):.4g} over {len(diffs)} cells")
    output.echo(f"only in A: {len(result['only_in_a'])} cells, only in B: {len(result['only_in_b'])} cells")


@command.command("visualize")
@cloud_option
@click.argument("job_id")
@click.option("--output", "-o", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write [default: ./<JOB_ID>_report.html].")
@click.option("--compare", "compare_with", metavar="JOB_B", help="Also draw the comparison with this sweep.")
@friendly_errors
def visualize(job_id, out_file, compare_with):
    """The sweep's interactive HTML report (the same as `bilancio-pipeline report`)."""
    from bilancio_pipeline.cli.report import write_report

    write_report(job_id, out_file, compare_with)


COMPARE_HEADERS = {"concentration": "conc", "outside_mid_ratio": "rho", "delta_passive_a": "δp A",
                   "delta_passive_b": "δp B", "delta_active_a": "δa A", "delta_active_b": "δa B",
                   "trading_effect_a": "effect A", "trading_effect_b": "effect B", "trading_effect_diff": "diff"}
