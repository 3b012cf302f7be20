"""`bilancio-pipeline metrics query`: filter runs and their metrics across jobs.

    bilancio-pipeline metrics query --job castle-river-mountain \\
        --where "kappa < 0.5 and delta_total > 0.1" --order-by -delta_total --limit 10

--where takes the filter language of `storage.filters` over the columns of the run_results view
(run parameters and metrics); it is translated into the backend's query with the values as
parameters. JSON output is a list of objects with the run_results columns (or --columns).
"""

from __future__ import annotations

import click

from bilancio_pipeline.cli import output
from bilancio_pipeline.cli.errors import friendly_errors, open_store
from bilancio_pipeline.cli.results import require_job
from bilancio_pipeline.storage.filters import And, Compare, parse_filter
from bilancio_pipeline.storage.schema import RUN_RESULTS_COLUMNS

TABLE_COLUMNS = ("run_id", "job_id", "regime", "kappa", "concentration", "mu", "outside_mid_ratio", "seed",
                 "delta_total", "phi_total", "trading_effect")
HEADERS = {"concentration": "conc", "outside_mid_ratio": "rho"}
DEFAULT_LIMIT = 100


def _order_by(ctx, param, value):
    """`col`, `-col` or `col:desc` / `col:asc` -> (column, descending)."""
    if value is None:
        return None
    text = value.strip()
    descending = text.startswith("-")
    text = text.lstrip("-")
    if ":" in text:
        text, _, direction = text.partition(":")
        if direction.lower() not in ("asc", "desc"):
            raise click.BadParameter(f"direction must be asc or desc, not {direction!r}")
        descending = direction.lower() == "desc"
    if text not in RUN_RESULTS_COLUMNS:
        raise click.BadParameter(f"unknown column {text!r}; the columns are: {', '.join(sorted(RUN_RESULTS_COLUMNS))}")
    return text, descending


def _columns(ctx, param, value):
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUN_RESULTS_COLUMNS]
    if unknown or not names:
        raise click.BadParameter(f"unknown column(s) {', '.join(unknown) or '(none given)'}; the columns are: {', '.join(sorted(RUN_RESULTS_COLUMNS))}")
    return names


def _delta_bound(ctx, param, value):
    if value is not None and not 0 <= value <= 1:  # also refuses nan
        raise click.BadParameter(f"{value} is not a delta: it must lie in [0, 1]")
    return value


def _combined(expr, min_delta, max_delta):
    """--where AND the --min-delta/--max-delta bounds, as one filter the backend evaluates."""
    bounds = [Compare("delta_total", op, value) for op, value in ((">=", min_delta), ("<=", max_delta))
              if value is not None]
    parts = ([expr] if expr is not None else []) + bounds
    if len(parts) <= 1:
        return parts[0] if parts else None
    return And(tuple(parts))


@click.group("metrics")
def command():
    """Query run parameters and metrics across jobs."""


@command.command("query")
@click.option("--job", "job_id", help="Only this job's runs.")
@click.option("--where", "where", metavar="EXPR",
              help="Filter, e.g. \"kappa < 0.5 and delta_total > 0.1\"; comparisons < <= > >= = !=, "
                   "and, or, not, parentheses; text in quotes, null for missing.")
@click.option("--regime", type=click.Choice(("passive", "active")), help="Only runs of this regime.")
@click.option("--min-delta", type=float, callback=_delta_bound, metavar="X", help="Only runs with delta_total >= X (combines with --where).")
@click.option("--max-delta", type=float, callback=_delta_bound, metavar="Y", help="Only runs with delta_total <= Y (combines with --where).")
@click.option("--order-by", "order_by", callback=_order_by, metavar="COL",
              help="Sort by this column; -COL or COL:desc for descending.")
@click.option("--desc", "descending", is_flag=True, help="Sort descending (same as -COL).")
@click.option("--limit", type=click.IntRange(min=0), default=DEFAULT_LIMIT, show_default=True,
              help="At most this many rows; 0 for all.")
@click.option("--columns", callback=_columns, metavar="A,B,…", help="Show these columns (default: all for csv/json).")
@output.format_option()
@friendly_errors
def query(job_id, where, regime, min_delta, max_delta, order_by, descending, limit, columns, fmt):
    """Runs joined with their metrics, filtered, sorted and limited by the backend."""
    expr = _combined(parse_filter(where) if where is not None else None, min_delta, max_delta)
    column, desc = order_by or (None, False)
    wanted = limit or None
    with open_store() as store:
        if job_id:
            require_job(store, job_id)
        rows = store.query_results(
            expr, job_id=job_id, regime=regime, order_by=column, descending=desc or descending,
            limit=wanted + 1 if wanted else None,
        )
    more = wanted is not None and len(rows) > wanted
    rows = rows[:wanted] if wanted else rows
    shown = columns or (TABLE_COLUMNS if fmt == "table" else RUN_RESULTS_COLUMNS)
    if fmt == "table" and not rows:
        output.echo("No matching runs.")
        return
    output.echo(output.render_rows(rows, fmt, shown, HEADERS if fmt == "table" else None))
    if fmt == "table":
        output.echo(f"\n{len(rows)} run{'s' if len(rows) != 1 else ''}{' (more match; raise --limit or use --limit 0)' if more else ''}")
    elif more:
        click.echo(f"note: more than {wanted} rows match; showing the first {wanted} (--limit 0 for all)", err=True)
