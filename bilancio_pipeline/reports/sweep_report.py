"""The HTML report of one sweep (`bilancio-pipeline report`, `jobs visualize`, the `sweep_report`
asset): what the original's Plotly page showed, and what a researcher asks next.

Pure: rows in, one self-contained HTML string out. The numbers a reader needs without a browser
script (summary cards, the spec, the grid table with each cell's mean trading effect and its
95% interval, job_metrics, the pairs) are HTML tables. The figures (δ and φ across κ per
concentration, δ passive vs active, the trading effect per pair, heatmaps of δ and of the
trading effect over κ × μ per concentration, distributions, parallel coordinates with brushing,
a rotatable 3-D surface, the variance decomposition, the comparison with a second sweep) are
drawn in the browser as inline SVG by a small script (reports/report_js.py) from the data the
page embeds, gzipped, with the loader the run pages use: nothing is fetched, the page opens
offline, and a 1,000-run sweep's report stays near 100 KB (a Plotly page carries a 3.5 MB
library).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from statistics import fmean
from typing import Any

from bilancio_pipeline.engine.aggregate import aggregate_job_metrics
from bilancio_pipeline.engine.run_report import UNPACK_JS, embed_json, pack
from bilancio_pipeline.engine.stats import FACTORS, cell_effects
from bilancio_pipeline.reports.report_js import REPORT_JS

MAX_PAIR_ROWS = 500  # beyond this the pairs table is cut (the figures still show every pair)
MAX_COMPARE_ROWS = 500
MAX_GRID_ROWS = 1000
_RUN_COLUMNS = ("regime", *FACTORS, "delta_total", "phi_total")
_PAIR_COLUMNS = (*FACTORS, "delta_passive", "delta_active", "trading_effect")
_VIEWER = pack(REPORT_JS.encode(), 9)  # the same in every report: packed once

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;color:#222;max-width:1250px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin-top:30px;border-bottom:1px solid #eee;padding-bottom:4px}
h3{font-size:14px;margin:14px 0 2px}
.muted{color:#666}.small{font-size:13px}.note{color:#8a6d3b}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(165px,1fr));gap:8px;margin-top:12px}
.card{border:1px solid #e4e4e4;border-radius:6px;padding:8px 10px;background:#fbfbfb}
.card .v{font-size:18px;font-weight:600}.card .k{font-size:12px;color:#666}
table{border-collapse:collapse;margin-top:8px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f6f6f6}
td.l,th.l{text-align:left}.pos{color:#1a7f37}.neg{color:#c62828}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:13px}dt{font-weight:600}dd{margin:0}
.panels{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
svg.chart{max-width:100%;height:auto;border:1px solid #eee;background:#fff;font-size:10px}
svg .title{font-size:12px;font-weight:600}svg .lab{font-size:11px;fill:#333}svg .tick,.axis text{fill:#555;font-size:10px}
svg .note{font-size:10px;fill:#666}svg .cv{font-size:9px;pointer-events:none}
.axis line{stroke:#999}.axis line.grid{stroke:#eee}line.ref{stroke:#777;stroke-dasharray:4 3}
rect.brush{fill:rgba(30,100,200,.18);stroke:#1e64c8}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center;font-size:12px;margin:6px 0}
.legend .lt{color:#555;font-weight:600}.legend .li{display:inline-flex;align-items:center;gap:3px}
.controls{font-size:13px;margin:6px 0}
#tip{position:absolute;display:none;background:#222;color:#fff;font-size:12px;padding:4px 7px;border-radius:4px;pointer-events:none;max-width:420px;z-index:9}
"""

_VIEWS = (
    ("delta", "δ (share of dues not settled on time) across κ",
     "Mean over seeds and outside-mid ratios, one panel per concentration; colour and marker: μ; dashed: passive, solid: active."),
    ("phi", "φ (share of dues settled on time) across κ", ""),
    ("scatter", "δ passive against δ active", "One point per passive/active pair; hover for its cell."),
    ("effect", "Trading effect per pair across κ",
     "trading effect = δ passive − δ active; above zero the dealers reduced defaults. Lines: mean over seeds and ρ per μ."),
    ("heatmaps", "Heatmaps over κ × μ, per concentration", ""),
    ("distributions", "Distributions", ""),
    ("parallel", "Parallel coordinates", "Every pair (in a ring sweep: every run) as a line across its parameters and outcomes; drag on an "
                 "axis to select a range."),
    ("surface", "Surface over κ × μ", ""),
)


def render_sweep_report(
    job: Mapping[str, Any],
    runs_rows: Sequence[Mapping[str, Any]],
    job_metrics_row: Mapping[str, Any] | None,
    pairs: Sequence[Mapping[str, Any]],
    comparison: Mapping[str, Any] | None = None,
) -> str:
    """The report as HTML. `runs_rows` are run_results rows (runs with their metrics), `pairs`
    the passive/active pairs ({kappa, concentration, mu, outside_mid_ratio, seed, delta_passive,
    delta_active, trading_effect}, or the parameters nested under "parameters"); `comparison`
    is `reports.compare.compare_sweeps(...)` of this sweep (A) and another (B)."""
    pairs = [_flat(p) for p in pairs]
    completed = [r for r in runs_rows if r.get("status") == "completed" and r.get("delta_total") is not None]
    analysis = aggregate_job_metrics(completed)["raw_summary"]
    cells = cell_effects(pairs)
    job_id = str(job.get("job_id", ""))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Sweep {escape(job_id)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Sweep {escape(job_id)}</h1>",
        f"<div class='muted small'>{escape(str(job.get('description') or ''))}</div>",
        _cards(job, runs_rows, job_metrics_row, pairs, cells),
        "<h2>Sweep</h2>", _spec(job),
        "<noscript><p class='note'>The figures are drawn by the page's script, which is turned off; "
        "the tables below hold the numbers.</p></noscript>",
        "<main id='report'>",
    ]
    if completed:
        for name, title, note in _VIEWS:
            if name in ("delta", "phi", "distributions", "parallel") or pairs:  # a ring sweep has no pairs
                parts.append(f"<section><h2>{escape(title)}</h2>"
                             + (f"<p class='small muted'>{escape(note)}</p>" if note else "")
                             + f"<div class='view' data-view='{name}'></div></section>")
        parts += ["<section><h2>What drives δ: shares of variance</h2>",
                  "<p class='small muted'>Exact ANOVA decomposition over the full grid (κ, c, μ, ρ, seed): the share of "
                  "the total sum of squares due to each factor's main effect and each two-way interaction; the rest is "
                  "higher-order interactions. Factors with a single level explain nothing and are left out. A grid "
                  "with missing cells (failed runs) is not decomposed.</p>",
                  "<div class='view' data-view='variance'></div>", _variance_table(analysis), "</section>"]
    else:
        parts.append("<p>No completed runs with metrics yet.</p>")
    if pairs:
        parts += ["<h2>Grid summary</h2>", _grid_table(cells, analysis)]
    if comparison:
        parts += _comparison(comparison)
    parts.append("</main>")
    if pairs:
        parts += ["<h2>Pairs</h2>", _pairs_table(pairs)]
    if job_metrics_row:
        parts += ["<h2>job_metrics</h2>", _definition_list(
            {k: v for k, v in job_metrics_row.items() if k not in ("job_id", "raw_summary")})]
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class='small muted'>Generated {generated}.</p>")
    if completed:
        data = _data(completed, pairs, analysis, comparison)
        # the run pages' loader (engine.run_report): it unpacks the data and the viewer, then runs it
        parts.append(f'<script type="application/gzip+base64" id="run-data">{pack(embed_json(data), 6)}</script>'
                     f"<script data-viewer='{_VIEWER}'>{UNPACK_JS}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _data(completed, pairs, analysis, comparison) -> dict[str, Any]:
    """What the script draws from: runs and pairs as column lists (compact), the grid's levels."""
    levels = {f: sorted({r[f] for r in completed if r.get(f) is not None}) for f in FACTORS}
    return {
        "levels": levels,
        "runs": {"cols": _RUN_COLUMNS, "rows": [[r.get(c) for c in _RUN_COLUMNS] for r in completed]},
        "pairs": {"cols": _PAIR_COLUMNS, "rows": [[p.get(c) for c in _PAIR_COLUMNS] for p in pairs]},
        "variance_decomposition": analysis.get("variance_decomposition", {}),
        "compare": {k: comparison[k] for k in ("a", "b", "cells")} if comparison else None,
    }


# --- pieces ---------------------------------------------------------------------------------


def _flat(pair: Mapping[str, Any]) -> dict[str, Any]:
    flat = dict(pair.get("parameters") or {})
    flat.update({k: v for k, v in pair.items() if k != "parameters"})
    return flat


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v, digits) for v in value)
    return str(value)


def _cards(job, runs_rows, job_metrics_row, pairs, cells) -> str:
    effects = [p["trading_effect"] for p in pairs if p.get("trading_effect") is not None]
    stats = dict(job_metrics_row or {})
    low, high = stats.get("trading_effect_ci_low"), stats.get("trading_effect_ci_high")
    with_interval = [c for c in cells if c["ci_low"] is not None]
    cards = [
        ("status", job.get("status")),
        ("completed runs", f"{sum(r.get('status') == 'completed' for r in runs_rows)} / {len(runs_rows)}"),
        ("pairs", len(pairs)),
        ("mean trading effect", stats.get("mean_trading_effect", fmean(effects) if effects else None)),
        ("95% interval (t over pairs)", f"[{_fmt(low)}, {_fmt(high)}]" if low is not None else "–"),
        ("cells whose interval excludes 0", f"{sum(c['excludes_zero'] for c in with_interval)} / {len(with_interval)}"),
        ("dealers help / hurt", f"{sum(e > 0.001 for e in effects)} / {sum(e < -0.001 for e in effects)}"),
        ("mean δ passive", stats.get("mean_delta_passive", _mean(pairs, "delta_passive"))),
        ("mean δ active", stats.get("mean_delta_active", _mean(pairs, "delta_active"))),
    ]
    body = "".join(f"<div class='card'><div class='k'>{escape(k)}</div><div class='v'>{escape(_fmt(v))}</div></div>" for k, v in cards)
    return f"<div class='cards'>{body}</div>"


def _mean(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return fmean(values) if values else None


def _spec(job) -> str:
    keys = ("sweep_type", "n_agents", "maturity_days", "kappas", "concentrations", "mus", "outside_mid_ratios",
            "seeds", "cash_accounting", "executor", "created_at", "completed_at")
    return _definition_list({k: job.get(k) for k in keys if job.get(k) is not None})


def _definition_list(values: Mapping[str, Any]) -> str:
    items = "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(_fmt(v))}</dd>" for k, v in values.items())
    return f"<dl>{items}</dl>"


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], attrs: str = "", classes=None) -> str:
    header = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f"<td{_cls(classes, i, v)}>{escape(v if isinstance(v, str) else _fmt(v))}</td>"
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table{attrs}>{header}{body}</table>"


def _cls(classes, index, value) -> str:
    name = classes(index, value) if classes else ""
    return f" class='{name}'" if name else ""


def _sign(value) -> str:
    if not isinstance(value, (int, float)):
        return ""
    return "pos" if value > 0.001 else "neg" if value < -0.001 else ""


def _grid_table(cells, analysis) -> str:
    """Per (κ, c, μ, ρ): seeds, mean δ, the mean trading effect ± its 95% t interval over seeds."""
    rows = []
    for c in cells[:MAX_GRID_ROWS]:
        half = None if c["ci_low"] is None else (c["ci_high"] - c["ci_low"]) / 2
        effect = _fmt(c["mean"]) + ("" if half is None else f" ± {_fmt(half, 3)}")
        interval = "–" if half is None else f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]"
        rows.append([c["kappa"], c["concentration"], c["mu"], c["outside_mid_ratio"], c["n"],
                     c["delta_passive"], c["delta_active"], effect, interval,
                     "–" if half is None else ("yes" if c["excludes_zero"] else "no")])
    with_interval = analysis.get("cells_with_interval", 0)
    note = (f"<p class='small' data-role='ci-count'><b>{analysis.get('cells_ci_excluding_zero', 0)} of {with_interval}</b> "
            "grid cells with two or more seeds have a 95% interval of the mean trading effect that excludes 0 "
            "(Student t over the cell's seeds).</p>") if with_interval else (
            "<p class='small muted'>One seed per cell: no interval per cell (the sweep-wide interval is in the cards).</p>")
    head = ("κ", "c", "μ", "ρ", "seeds", "δ passive", "δ active", "trading effect ± 95% CI", "95% interval", "excludes 0")
    cut = (f"<p class='small muted'>First {MAX_GRID_ROWS} of {len(cells)} cells.</p>" if len(cells) > MAX_GRID_ROWS else "")
    return note + _table(head, rows, " data-table='grid'",
                         lambda i, v: _sign(float(v.split(" ")[0])) if i == 7 and v[0] != "–" else "") + cut


def _variance_table(analysis) -> str:
    decomposition = {k: v for k, v in (analysis.get("variance_decomposition") or {}).items() if v.get("computed")}
    if not decomposition:
        return ""
    names = list(dict.fromkeys(n for v in decomposition.values() for n in v["shares"]))
    rows = [[n, *(f"{v['shares'].get(n, 0) * 100:.1f}%" for v in decomposition.values())] for n in names]
    return _table(("effect", *(k.replace("_", " ") for k in decomposition)), rows, " data-table='variance'")


def _pairs_table(pairs) -> str:
    ordered = sorted(pairs, key=lambda p: tuple((p.get(c) is None, p.get(c) or 0) for c in FACTORS))
    rows = [[p.get(c) for c in _PAIR_COLUMNS] for p in ordered[:MAX_PAIR_ROWS]]
    note = f"<p class='small muted'>First {MAX_PAIR_ROWS} of {len(pairs)} pairs.</p>" if len(pairs) > MAX_PAIR_ROWS else ""
    return _table(_PAIR_COLUMNS, rows, " data-table='pairs'", lambda i, v: _sign(v) if i == 7 else "") + note


def _comparison(comparison) -> list[str]:
    a, b = comparison["a"], comparison["b"]
    differences = [[k, _fmt(v["a"]), _fmt(v["b"])] for k, v in comparison["spec_differences"].items()]
    cells = comparison["cells"]
    diffs = [c["trading_effect_diff"] for c in cells if c["trading_effect_diff"] is not None]
    columns = (*FACTORS, "trading_effect_a", "trading_effect_b", "trading_effect_diff")
    rows = [[c[k] for k in columns] for c in cells[:MAX_COMPARE_ROWS]]
    return [
        f"<section><h2>Comparison: A = {escape(a)}, B = {escape(b)}</h2>",
        "<h3>Spec differences</h3>",
        _table(("field", "A", "B"), differences, " data-table='spec-differences'") if differences else "<p>none</p>",
        f"<p class='small'>{len(cells)} grid cells in both; only in A: {len(comparison['only_in_a'])}, only in B: "
        f"{len(comparison['only_in_b'])}. Mean B − A trading effect: {_fmt(fmean(diffs) if diffs else None)} over "
        f"{len(diffs)} cells.</p>",
        "<div class='view' data-view='compare'></div>",
        _table(columns, rows, " data-table='compare'", lambda i, v: _sign(v) if i == 7 else ""),
        f"<p class='small muted'>First {MAX_COMPARE_ROWS} of {len(cells)} cells.</p>" if len(cells) > MAX_COMPARE_ROWS else "",
        "</section>",
    ]
