"""How the query commands print rows: an aligned table for people, CSV or JSON for programs.

JSON (stable, for programs):
  * a listing is a top-level list of objects, one per row, keys in the order of `columns`
    (the table's column names from `storage.schema`, plus any documented extras);
  * timestamps are ISO 8601 strings with the UTC offset ("2026-11-23T11:47:49+00:00");
  * missing values and non-finite numbers are null; lists and JSON columns stay structured.
CSV: a header row of the same keys; missing values are empty; lists and JSON are JSON text.
Table: aligned columns; numbers to 4 significant digits, timestamps to the minute, "-" if missing.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

import click
from tabulate import tabulate

FORMATS = ("table", "csv", "json")


def format_option(default: str = "table"):
    """The `--format` option every listing takes."""
    return click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default=default, show_default=True,
        help="table for people; csv or json (documented, stable keys) for programs.",
    )


def iso(value: datetime) -> str:
    if value.tzinfo is None:  # stores hand back UTC; a naive value is UTC that lost its zone
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def json_value(value: Any) -> Any:
    """A value as JSON sees it (see the module docstring)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value


def to_json(data: Any) -> str:
    return json.dumps(json_value(data), indent=2, ensure_ascii=False, allow_nan=False)


def _csv_cell(value: Any) -> Any:
    value = json_value(value)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def table_cell(value: Any) -> str:
    """A value as a person reads it in a terminal."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return iso(value)[:16].replace("T", " ")
    if isinstance(value, (list, tuple)):
        return ", ".join(table_cell(v) for v in value)
    if isinstance(value, Mapping):
        text = json.dumps(json_value(value), separators=(",", ":"))
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def render_rows(rows: Iterable[Mapping[str, Any]], fmt: str, columns: Sequence[str] | None = None,
                headers: Mapping[str, str] | None = None) -> str:
    """Rows as a table, CSV or a JSON list; `headers` relabels columns in the table only."""
    rows = list(rows)
    keys = _columns(rows, columns)
    if fmt == "json":
        return to_json([{k: row.get(k) for k in keys} for row in rows])
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(keys)
        writer.writerows([_csv_cell(row.get(k)) for k in keys] for row in rows)
        return out.getvalue().rstrip("\n")
    if fmt == "table":
        labels = [(headers or {}).get(k, k) for k in keys]
        cells = [[table_cell(row.get(k)) for k in keys] for row in rows]
        # cells are already text; disable tabulate's own number parsing so "1e-05" stays put
        return tabulate(cells, headers=labels, tablefmt="simple", disable_numparse=True,
                        colalign=[_align(rows, k) for k in keys])
    raise click.BadParameter(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}", param_hint="--format")


def _align(rows: Sequence[Mapping[str, Any]], key: str) -> str:
    values = [row.get(key) for row in rows if row.get(key) is not None]
    numeric = values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return "right" if numeric else "left"


def render_record(record: Mapping[str, Any], fmt: str, keys: Sequence[str] | None = None) -> str:
    """One record: `key  value` lines in a table, a one-row CSV, or a JSON object."""
    keys = list(keys) if keys is not None else list(record)
    if fmt == "json":
        return to_json({k: record.get(k) for k in keys})
    if fmt == "csv":
        return render_rows([record], "csv", keys)
    return tabulate([[k, table_cell(record.get(k))] for k in keys], tablefmt="plain", disable_numparse=True)


def echo(text: str) -> None:
    click.echo(text)
