"""`bilancio-pipeline simulate`: run one simulation, or every combination of a few values.

    bilancio-pipeline simulate --kappa 0.5 --regime active --json
    bilancio-pipeline simulate --kappa 0.25,0.5,1 --regime passive,active --workers 2 --out runs/

Every parameter flag takes one value or a comma-separated list; the command runs the product
of all lists on a local process pool and prints one line per run (JSON with --json, else an
aligned table). Parameters are checked before anything runs or is written: a bad value exits
with a message naming the flag and its allowed range.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Iterator

import click
import orjson

from bilancio_pipeline.engine.params import InvalidParameter, RunParams

# RunParams field -> short label used in run names (the regime leads the name instead)
NAME_LABELS = {
    "n_agents": "n",
    "maturity_days": "D",
    "kappa": "k",
    "concentration": "c",
    "mu": "mu",
    "outside_mid_ratio": "rho",
    "seed": "s",
    "cash_accounting": "",
    "q_total": "Q",
    "face_value": "S",
    "monotonicity": "m",
    "rollover": "rollover",
    "default_handling": "",
}
ALWAYS_NAMED = ("kappa", "concentration", "mu", "outside_mid_ratio", "seed")

OPTION_HELP = {
    "n_agents": "ring traders (integer >= 2)",
    "maturity_days": "horizon over which due days are spread (integer >= 1)",
    "kappa": "liquidity ratio L0/S1 (>= 0)",
    "concentration": "Dirichlet concentration of debt sizes (> 0)",
    "mu": "maturity misalignment in [0, 1]",
    "outside_mid_ratio": "VBT mid price as a fraction of face (> 0)",
    "seed": "scenario seed (integer >= 0)",
    "regime": "passive (no dealer trading) or active",
    "cash_accounting": "conserving, or bilancio_compat to reproduce the original's money creation",
    "q_total": "total face value of the ring debt (> 0)",
    "face_value": "ticket size S in the dealer kernel (> 0)",
    "monotonicity": "sorting of debt sizes in [-1, 1]",
    "rollover": "re-issue repaid claims (on/off)",
    "default_handling": "expel-agent or fail-fast",
}

HEADLINE = (
    "delta_total",
    "phi_total",
    "delta_clean",
    "n_defaults",
    "n_clears",
    "time_to_stability",
    "last_sim_day",
    "total_trades",
    "total_trade_volume",
    "cascade_fraction",
    "wall_ms",
)
TABLE_HEADERS = {
    "maturity_days": "D",
    "n_agents": "n",
    "concentration": "c",
    "outside_mid_ratio": "rho",
    "cash_accounting": "cash",
    "time_to_stability": "tts",
    "last_sim_day": "last_day",
    "total_trade_volume": "volume",
    "cascade_fraction": "cascade",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(RunParams) if f.default is not MISSING}


def _parse_one(name: str, text: str, kind: type) -> Any:
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise click.BadParameter(f"{text!r} is not true or false", param_hint=_flag(name))
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise click.BadParameter(f"{text!r} is not an integer", param_hint=_flag(name)) from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a number", param_hint=_flag(name)) from None
    return text


def parse_values(name: str, raw: str | None, default: Any) -> list[Any]:
    """The distinct values of one flag, in the order given (the default if not given)."""
    if raw is None:
        return [default]
    items = [item.strip() for item in raw.split(",")]
    if not all(items):
        raise click.BadParameter(f"{raw!r} has an empty item; give values separated by commas", param_hint=_flag(name))
    values = [_parse_one(name, item, type(default)) for item in items]
    return list(dict.fromkeys(values))


def build_grid(raw_values: dict[str, str | None]) -> list[RunParams]:
    """Every combination of the given values, each validated (InvalidParameter -> usage error)."""
    defaults = _defaults()
    lists = {name: parse_values(name, raw_values.get(name), default) for name, default in defaults.items()}
    # check every value on its own first, so the error names the flag that holds the bad value
    for name, values in lists.items():
        for value in values:
            _check({**defaults, name: value}, name)
    grid = []
    names = list(lists)
    for combination in itertools.product(*(lists[n] for n in names)):
        grid.append(_check(dict(zip(names, combination)), None))
    return grid


def _check(values: dict[str, Any], flag_name: str | None) -> RunParams:
    try:
        return RunParams(**values)
    except InvalidParameter as exc:
        name = flag_name or exc.name
        raise click.BadParameter(
            f"{exc.value!r}: {exc.name} must be {exc.allowed}", param_hint=_flag(name)
        ) from None


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def run_name(params: RunParams, varying: set[str] = frozenset()) -> str:
    """A readable folder name: the regime, the grid coordinates, and any other parameter that
    varies in the grid or differs from its default (so names are unique within a grid)."""
    defaults = _defaults()
    parts = [params.regime]
    for name, label in NAME_LABELS.items():
        value = getattr(params, name)
        if name in ALWAYS_NAMED or name in varying or value != defaults[name]:
            # text values name themselves ("bilancio_compat", "fail-fast")
            parts.append(value if isinstance(value, str) else f"{label}{_label(value)}")
    return "_".join(parts)


def _varying(grid: list[RunParams]) -> set[str]:
    return {f.name for f in fields(RunParams) if len({getattr(p, f.name) for p in grid}) > 1}


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    try:
        return float(value)  # Decimal
    except (TypeError, ValueError):
        return str(value)


def result_row(name: str, params: RunParams, outcome: Any) -> dict[str, Any]:
    """One printed line: run name, parameters, the headline metrics, then every other metric."""
    row: dict[str, Any] = {"run": name, **params.to_dict()}
    if not outcome.ok:
        row["error"] = outcome.error
        return row
    summary = dict(outcome.summary)
    summary.setdefault("n_clears", summary.get("n_clears_all"))
    summary.setdefault("total_trade_volume", summary.get("trade_volume_cash"))
    summary["wall_ms"] = outcome.wall_ms
    for key in HEADLINE:
        row[key] = summary.get(key)
    for key, value in summary.items():
        row.setdefault(key, value)
    if outcome.artifact_dir:
        row["artifacts_dir"] = outcome.artifact_dir
    return row


def run_grid(grid: list[RunParams], names: list[str], out: Path | None, workers: int) -> Iterator[tuple[int, Any]]:
    """(grid index, RunOutcome) for every run, in grid order; parallel when it pays off."""
    from bilancio_pipeline.compute.base import RunTask
    from bilancio_pipeline.compute.local import LocalCompute, run_task

    tasks = [RunTask(run_id=name, job_id="", params=p.to_dict()) for name, p in zip(names, grid)]
    root = str(out) if out is not None else None
    if workers == 1 or len(tasks) == 1:  # no pool start-up for a single run
        for index, task in enumerate(tasks):
            yield index, run_task(task, root)
        return
    index_of = {task.run_id: i for i, task in enumerate(tasks)}
    done: dict[int, Any] = {}
    next_index = 0
    for outcome in LocalCompute(workers=min(workers, len(tasks))).run_batch(tasks, root):
        done[index_of[outcome.run_id]] = outcome
        while next_index in done:  # print in grid order, as soon as the order allows
            yield next_index, done.pop(next_index)
            next_index += 1


def _table_columns(grid: list[RunParams], rows: list[dict[str, Any]]) -> list[str]:
    varying = _varying(grid)
    columns = ["regime", "n_agents", "maturity_days", "kappa", "concentration", "mu", "outside_mid_ratio", "seed"]
    columns += [name for name in NAME_LABELS if name in varying and name not in columns]
    columns += list(HEADLINE)
    if any("error" in row for row in rows):
        columns.append("error")
    return columns


def _options(command):
    for name, default in reversed(list(_defaults().items())):
        shown = _label(default) if not isinstance(default, str) else default
        command = click.option(
            _flag(name),
            name,
            default=None,
            metavar="LIST",
            help=f"{OPTION_HELP.get(name, name)} [default: {shown}]",
        )(command)
    return command


@click.command("simulate")
@_options
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="write each run's artifacts to OUT/<run name>/ (the data files gzipped, as a sweep keeps them)")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="parallel processes for a grid [default: number of cores]")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per run and line (for programs)")
def command(out: Path | None, workers: int | None, as_json: bool, **raw_values: str | None) -> None:
    """Run the Kalecki ring for every combination of the given parameter values.

    Every parameter takes one value or a comma-separated LIST (--kappa 0.25,0.5,1).
    """
    grid = list(dict.fromkeys(build_grid(raw_values)))  # every RunParams is valid before anything runs
    varying = _varying(grid)
    names = [run_name(p, varying) for p in grid]
    workers = workers or os.cpu_count() or 1

    rows: list[dict[str, Any]] = []
    failed = 0
    for index, outcome in run_grid(grid, names, out, workers):
        row = result_row(names[index], grid[index], outcome)
        failed += "error" in row
        if as_json:
            click.echo(orjson.dumps(row, default=_json_default, option=_JSON_OPTIONS).decode())
        else:
            rows.append(row)
    if not as_json:
        from bilancio_pipeline.cli.output import render_rows

        click.echo(render_rows(rows, "table", _table_columns(grid, rows), TABLE_HEADERS))
    if failed:
        raise click.ClickException(f"{failed} of {len(grid)} runs failed (see the error field)")
