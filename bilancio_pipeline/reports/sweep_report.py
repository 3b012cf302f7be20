"""The HTML report of one sweep: δ and φ of passive vs active runs across the grid, the trading
effect of every passive/active pair, and the tables behind them.

Pure: rows in, one self-contained HTML string out (figures are inline base64 PNGs, the CSS is
inline, no scripts), so it opens offline and both the CLI (`report`) and the Dagster asset that
writes job_metrics can produce it.
"""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from statistics import fmean
from typing import Any

GRID = ("kappa", "concentration", "mu", "outside_mid_ratio", "seed")
MAX_PAIR_ROWS = 500  # beyond this the pairs table is cut (the figures still show every pair)

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;color:#222;max-width:1150px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin-top:30px;border-bottom:1px solid #eee;padding-bottom:4px}
.muted{color:#666}.small{font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(165px,1fr));gap:8px;margin-top:12px}
.card{border:1px solid #e4e4e4;border-radius:6px;padding:8px 10px;background:#fbfbfb}
.card .v{font-size:18px;font-weight:600}.card .k{font-size:12px;color:#666}
table{border-collapse:collapse;margin-top:8px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f6f6f6}
td.l,th.l{text-align:left}.pos{color:#1a7f37}.neg{color:#c62828}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:13px}dt{font-weight:600}dd{margin:0}
img{max-width:100%;height:auto;border:1px solid #eee;margin-top:8px}
"""


def render_sweep_report(
    job: Mapping[str, Any],
    runs_rows: Sequence[Mapping[str, Any]],
    job_metrics_row: Mapping[str, Any] | None,
    pairs: Sequence[Mapping[str, Any]],
) -> str:
    """The report as HTML. `runs_rows` are run_results rows (runs with their metrics), `pairs`
    the passive/active pairs ({kappa, concentration, mu, outside_mid_ratio, seed, delta_passive,
    delta_active, trading_effect}, or the parameters nested under "parameters")."""
    pairs = [_flat(p) for p in pairs]
    completed = [r for r in runs_rows if r.get("status") == "completed" and r.get("delta_total") is not None]
    job_id = str(job.get("job_id", ""))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Sweep {escape(job_id)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Sweep {escape(job_id)}</h1>",
        f"<div class='muted small'>{escape(str(job.get('description') or ''))}</div>",
        _cards(job, runs_rows, job_metrics_row, pairs),
        "<h2>Sweep</h2>", _spec(job),
    ]
    if completed:
        parts += [
            "<h2>δ (share of dues not settled on time) across κ</h2>",
            "<p class='small muted'>Mean over seeds and outside-mid ratios; dashed: passive, solid: active (dealers trade).</p>",
            _figure(_metric_across_kappa(completed, "delta_total", "δ total"), "delta across kappa"),
            "<h2>φ (share of dues settled on time) across κ</h2>",
            _figure(_metric_across_kappa(completed, "phi_total", "φ total"), "phi across kappa"),
        ]
    else:
        parts.append("<p>No completed runs with metrics yet.</p>")
    if pairs:
        parts += [
            "<h2>Trading effect per pair</h2>",
            "<p class='small muted'>trading effect = δ passive − δ active; above zero the dealers reduced defaults.</p>",
            _figure(_trading_effect_figure(pairs), "trading effect per pair"),
            "<h2>Grid summary</h2>", _grid_table(pairs),
            "<h2>Pairs</h2>", _pairs_table(pairs),
        ]
    if job_metrics_row:
        parts += ["<h2>job_metrics</h2>", _definition_list(
            {k: v for k, v in job_metrics_row.items() if k not in ("job_id", "raw_summary")})]
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class='small muted'>Generated {generated}.</p></body></html>")
    return "\n".join(parts)


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


def _cards(job, runs_rows, job_metrics_row, pairs) -> str:
    effects = [p["trading_effect"] for p in pairs if p.get("trading_effect") is not None]
    stats = dict(job_metrics_row or {})
    cards = [
        ("status", job.get("status")),
        ("completed runs", f"{sum(r.get('status') == 'completed' for r in runs_rows)} / {len(runs_rows)}"),
        ("pairs", len(pairs)),
        ("mean trading effect", stats.get("mean_trading_effect", fmean(effects) if effects else None)),
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


def _grid_table(pairs) -> str:
    """Mean δ passive, δ active and trading effect per (κ, c, μ), over seeds and ρ."""
    groups: dict[tuple, list] = defaultdict(list)
    for p in pairs:
        groups[(p.get("kappa"), p.get("concentration"), p.get("mu"))].append(p)
    head = "<tr><th>κ</th><th>c</th><th>μ</th><th>pairs</th><th>δ passive</th><th>δ active</th><th>trading effect</th></tr>"
    rows = []
    for key in sorted(groups, key=lambda k: tuple((v is None, v or 0) for v in k)):
        group = groups[key]
        effect = _mean(group, "trading_effect")
        rows.append("<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in key) + f"<td>{len(group)}</td>"
                    f"<td>{_fmt(_mean(group, 'delta_passive'))}</td><td>{_fmt(_mean(group, 'delta_active'))}</td>"
                    f"<td class='{_sign(effect)}'>{_fmt(effect)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _sign(value) -> str:
    if value is None:
        return ""
    return "pos" if value > 0.001 else "neg" if value < -0.001 else ""


def _pairs_table(pairs) -> str:
    columns = (*GRID, "delta_passive", "delta_active", "trading_effect")
    head = "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>"
    ordered = sorted(pairs, key=lambda p: tuple((p.get(c) is None, p.get(c) or 0) for c in GRID))
    rows = "".join(
        "<tr>" + "".join(f"<td class='{_sign(p.get(c)) if c == 'trading_effect' else ''}'>{escape(_fmt(p.get(c)))}</td>" for c in columns) + "</tr>"
        for p in ordered[:MAX_PAIR_ROWS]
    )
    note = f"<p class='small muted'>First {MAX_PAIR_ROWS} of {len(pairs)} pairs.</p>" if len(pairs) > MAX_PAIR_ROWS else ""
    return f"<table>{head}{rows}</table>{note}"


# --- figures (matplotlib's object API: no pyplot global state, safe in worker threads) -------


def _figure(fig, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{data}'>"


def _new_figure(n_panels: int):
    from matplotlib.figure import Figure

    columns = min(n_panels, 3)
    rows = math.ceil(n_panels / columns)
    fig = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    return fig, axes[:n_panels]


def _kappa_axis(ax, kappas):
    """κ on a log axis when the grid spans a decade or more, ticks at the grid's own values."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    positive = [k for k in kappas if k and k > 0]
    if positive and min(positive) * 10 <= max(positive) and len(positive) == len(kappas):
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    if 0 < len(kappas) <= 12:
        ax.xaxis.set_major_locator(FixedLocator(kappas))
        ax.set_xticklabels([f"{k:g}" for k in kappas])
    ax.set_xlabel("κ (liquidity ratio)")
    ax.grid(alpha=0.3)


def _metric_across_kappa(rows, metric: str, label: str):
    """One panel per concentration; a line per (μ, regime); mean over seeds and ρ."""
    cells: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        cells[(r.get("concentration"), r.get("mu"), r.get("regime"), r.get("kappa"))].append(r[metric] if r.get(metric) is not None else math.nan)
    concentrations = sorted({k[0] for k in cells}, key=lambda v: (v is None, v or 0))
    mus = sorted({k[1] for k in cells}, key=lambda v: (v is None, v or 0))
    fig, axes = _new_figure(len(concentrations))
    colors = _colors(len(mus))
    for ax, c in zip(axes, concentrations):
        kappas_seen = set()
        for mu, color in zip(mus, colors):
            for regime, style in (("passive", "--"), ("active", "-")):
                points = sorted((k[3], fmean(v)) for k, v in cells.items() if k[0] == c and k[1] == mu and k[2] == regime)
                if points:
                    xs, ys = zip(*points)
                    kappas_seen.update(xs)
                    ax.plot(xs, ys, style, marker="o", markersize=3, color=color, label=f"μ={_fmt(mu, 3)} {regime}")
        _kappa_axis(ax, sorted(kappas_seen))
        ax.set_title(f"concentration c = {_fmt(c, 3)}", fontsize=10)
        ax.set_ylabel(label)
    # one legend for all panels (the lines are the same in each): clearer, and a legend per panel
    # was most of the drawing time of a big sweep's report
    handles, labels = axes[0].get_legend_handles_labels() if len(axes) else ([], [])
    if handles:
        fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncols=min(len(labels), 6))
    return fig


def _trading_effect_figure(pairs):
    """Every pair's effect against κ, one colour per concentration, with the per-κ mean."""
    fig, (ax,) = _new_figure(1)
    fig.set_size_inches(8, 4)
    concentrations = sorted({p.get("concentration") for p in pairs}, key=lambda v: (v is None, v or 0))
    for c, color in zip(concentrations, _colors(len(concentrations))):
        points = [(p["kappa"], p["trading_effect"]) for p in pairs
                  if p.get("concentration") == c and p.get("trading_effect") is not None and p.get("kappa") is not None]
        if not points:
            continue
        xs, ys = zip(*points)
        ax.scatter(xs, ys, s=14, alpha=0.55, color=color, label=f"c = {_fmt(c, 3)}")
        by_kappa: dict[float, list[float]] = defaultdict(list)
        for x, y in points:
            by_kappa[x].append(y)
        mean_xs = sorted(by_kappa)
        ax.plot(mean_xs, [fmean(by_kappa[x]) for x in mean_xs], color=color, linewidth=1.5)
    ax.axhline(0, color="#555", linewidth=0.8)
    _kappa_axis(ax, sorted({p["kappa"] for p in pairs if p.get("kappa") is not None}))
    ax.set_ylabel("trading effect (δ passive − δ active)")
    ax.legend(fontsize=8)
    return fig


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["viridis" if n > 10 else "tab10"]
    return [cmap(i / max(n - 1, 1)) if n > 10 else cmap(i) for i in range(n)]
