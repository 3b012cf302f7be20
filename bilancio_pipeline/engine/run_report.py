"""The two HTML pages of a run: out/metrics.html (day metrics) and run.html (run summary).

Both are static and offline: inline CSS and an inline SVG chart drawn here, no scripts, no
external files. They are built with plain string joins because they are written for every run
of a sweep: together they cost about a millisecond.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from decimal import Decimal
from html import escape
from typing import Any, Iterable

from bilancio_pipeline.engine.output import SimulationOutput

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:21px;margin:0 0 4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #eee;padding-bottom:4px}
.muted{color:#666}.small{font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:8px}
.card{border:1px solid #e4e4e4;border-radius:6px;padding:8px 10px;background:#fbfbfb}
.card .v{font-size:18px;font-weight:600}
table{border-collapse:collapse;margin-top:8px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f6f6f6}
td.l,th.l{text-align:left}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:13px}dt{font-weight:600}dd{margin:0}
svg text{font-size:11px;fill:#333}
"""

# series of the chart: key, label, colour
RATE_SERIES = (("phi_t", "φ_t settled on time", "#2a9d4b"), ("delta_t", "δ_t not settled", "#d62728"), ("alpha_t", "α_t netting potential", "#1f77b4"))
AMOUNT_LINES = (("gross_settled_t", "gross settled", "#ff7f0e"), ("Mbar_t", "M̄_t liquidity needed", "#9467bd"), ("Mpeak_t", "M^peak_t", "#8c564b"))

EXPLANATIONS = (
    ("day", "A day on which initial or reassigned payables fall due (rolled-over payables are not tracked)."),
    ("S_t", "Total dues: the face value of the tracked payables due on day t."),
    ("φ_t (phi_t)", "Share of day t's dues, by value, settled on day t."),
    ("δ_t (delta_t)", "1 − φ_t: the share of day t's dues, by value, not settled on time (defaulted or written off)."),
    ("M̄_t (Mbar_t)", "Least money the day needs if payments net perfectly: Σ over agents of max(0, outflow due − inflow due)."),
    ("α_t (alpha_t)", "Netting potential 1 − M̄_t / S_t: the share of dues that circulation alone could clear."),
    ("M_t", "Cash held by all agents in the end-of-run balance sheet (the same on every day)."),
    ("G_t", "Liquidity gap max(0, M̄_t − M_t)."),
    ("M^peak_t (Mpeak_t)", "Largest amount of money out at once while replaying the day's settlements in order."),
    ("gross_settled_t", "Value of every settlement on day t, rolled-over payables included."),
    ("v_t", "Intraday velocity: gross settled / M^peak_t."),
    ("HHIplus_t", "Concentration (Herfindahl index) of the net creditor positions of day t."),
    ("n_debtors, n_creditors", "Agents with net outflow / net inflow due on day t."),
    ("δ_total, φ_total", "Value-weighted over days: Σ S_t·δ_t / Σ S_t, and 1 − δ_total."),
    ("δ_clean", "δ_total with reassigned payables matched to their settlements by contract id."),
    ("n_defaults", "Distinct agents that defaulted during the run."),
    ("cascade fraction", "Share of defaults that are secondary: an agent that owed the defaulter had defaulted before it."),
)


# ---------------------------------------------------------------------------------------------
# formatting


def fmt(value: Any, digits: int = 4) -> str:
    """A cell's text: integers as they are, other numbers to `digits` decimals, text escaped."""
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is str:
        return escape(value) if _NEEDS_ESCAPE.search(value) else value
    if value is None:
        return "—"
    if kind is bool:
        return "yes" if value else "no"
    if kind is float or isinstance(value, (int, float, Decimal)) or hasattr(value, "item"):
        number = float(value)
        if number != number:
            return "—"
        if number.is_integer() and abs(number) < 1e15:
            return str(int(number))
        text = f"{number:.{digits}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return escape(str(value))


_NEEDS_ESCAPE = re.compile("[&<>\"']")


def _number(value: Any) -> float | None:
    """The value as a finite float, or None (no value, text, NaN, infinite)."""
    kind = type(value)
    if kind is float:  # the common case first: the chart reads ~1,000 values per run
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    if value is None or isinstance(value, (str, bool)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _page(title: str, subtitle: str, sections: Iterable[str]) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1>{escape(title)}</h1><p class="muted small">{escape(subtitle)}</p></header>'
        + "".join(sections)
        + "</body></html>\n"
    )


def _section(title: str, body: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


def _cards(items: Iterable[tuple[str, Any]]) -> str:
    return '<div class="cards">' + "".join(f'<div class="card"><div class="muted small">{escape(label)}</div><div class="v">{fmt(value)}</div></div>' for label, value in items) + "</div>"


def _cell(value: Any) -> str:
    """One table cell: text left-aligned, numbers right-aligned."""
    kind = type(value)
    if kind is int:  # the most common cell, without a call to fmt
        return f"<td>{value}</td>"
    if kind is str:
        return f'<td class="l">{escape(value) if _NEEDS_ESCAPE.search(value) else value}</td>'
    return f"<td>{fmt(value)}</td>"


_BLANK_CELL = _cell("")


def _table(columns: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """A table; text cells are left-aligned, numbers right-aligned."""
    cell = _cell
    return _table_html(columns, ["<tr>" + "".join([cell(v) for v in row]) + "</tr>" for row in rows])


def _table_html(columns: list[str], row_lines: list[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(row_lines)}</tbody></table>"


def _empty(text: str) -> str:
    return f'<p class="muted small">{escape(text)}</p>'


def _params_line(output: SimulationOutput) -> str:
    p = output.params
    return (
        f"{p.regime} · n={p.n_agents} · D={p.maturity_days} · κ={p.kappa:g} · c={p.concentration:g} · μ={p.mu:g} · "
        f"ρ={p.outside_mid_ratio:g} · seed {p.seed} · cash accounting {p.cash_accounting}"
    )


# ---------------------------------------------------------------------------------------------
# the chart


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _polylines(points: list[tuple[str, str] | None], colour: str, dash: str = "", width: float = 2) -> str:
    """One polyline per run of defined points, given as formatted (x, y) coordinates (a day
    without a value breaks the line)."""
    segments, current = [], []
    for point in points + [None]:
        if point is None:
            if current:
                segments.append(current)
            current = []
        else:
            current.append(point)
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return "".join(
        f'<polyline fill="none" stroke="{colour}" stroke-width="{width}"{dash_attr} points="' + " ".join([f"{x},{y}" for x, y in seg]) + '"/>'
        for seg in segments
    )


def day_metrics_svg(rows: list[dict[str, Any]], width: int = 760) -> str:
    """Two stacked panels over the days: the rates φ_t, δ_t, α_t on [0, 1], and the amounts
    (S_t as bars; gross settled, M̄_t and M^peak_t as lines). Each point carries a tooltip."""
    days = [int(r["day"]) for r in rows if _number(r.get("day")) is not None]
    if not days:
        return _empty("No day metrics: no payable fell due.")
    rows = [r for r in rows if _number(r.get("day")) is not None]
    left, right, top, panel_h, gap = 56, 16, 26, 150, 46
    height = top + 2 * panel_h + gap + 34
    first, last = min(days), max(days)
    span = max(1, last - first)
    plot_w = width - left - right
    slot = plot_w / (span + 1)

    def x(day: float) -> float:
        return left + slot / 2 + (day - first) * slot

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="day-by-day metrics">']
    # every coordinate is formatted once and shared by the polyline and the point's circle
    day_xs = [f"{x(int(r['day'])):.1f}" for r in rows]
    values = {key: [_number(r.get(key)) for r in rows] for key in ["S_t"] + [k for k, _, _ in RATE_SERIES + AMOUNT_LINES]}

    # panel 1: rates on [0, 1]
    y0 = top

    def y_rate(v: float) -> float:
        return y0 + panel_h * (1 - v)

    for tick in (0, 0.25, 0.5, 0.75, 1):
        y = y_rate(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/><text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for key, label, colour in RATE_SERIES:
        points = [None if v is None else (px, f"{y_rate(min(1.0, max(0.0, v))):.1f}") for px, v in zip(day_xs, values[key])]
        parts.append(_polylines(points, colour, "5,3" if key == "alpha_t" else ""))
        for r, point in zip(rows, points):
            if point is not None:
                parts.append(f'<circle cx="{point[0]}" cy="{point[1]}" r="3" fill="{colour}"><title>day {r["day"]}: {key} = {fmt(r.get(key))}</title></circle>')

    # panel 2: amounts
    y1 = top + panel_h + gap
    keys = ["S_t"] + [k for k, _, _ in AMOUNT_LINES]
    peak = max((v for k in keys for v in values[k] if v is not None), default=0.0)
    top_value = _nice_ceiling(peak)

    def y_amount(v: float) -> float:
        return y1 + panel_h * (1 - max(0.0, v) / top_value)

    for i in range(5):
        tick = top_value * i / 4
        y = y_amount(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/><text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(tick, 0)}</text>')
    bar_w = max(2.0, slot * 0.6)
    for r, v in zip(rows, values["S_t"]):
        if v is not None:
            y = y_amount(v)
            parts.append(f'<rect x="{x(int(r["day"])) - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{y1 + panel_h - y:.1f}" fill="#cfd8e3"><title>day {r["day"]}: S_t = {fmt(v)}</title></rect>')
    for key, _label, colour in AMOUNT_LINES:
        points = [None if v is None else (px, f"{y_amount(v):.1f}") for px, v in zip(day_xs, values[key])]
        # gross settled is drawn wide underneath, so it stays visible where M^peak_t equals it
        parts.append(_polylines(points, colour, width=5 if key == "gross_settled_t" else 2))
        for r, point in zip(rows, points):
            if point is not None:
                parts.append(f'<circle cx="{point[0]}" cy="{point[1]}" r="2.5" fill="{colour}"><title>day {r["day"]}: {key} = {fmt(r.get(key))}</title></circle>')

    # day axis (labels thinned so they never overlap) and legends
    axis_y = y1 + panel_h
    every = max(1, math.ceil((span + 1) * 22 / plot_w))
    for day in range(first, last + 1):
        if (day - first) % every == 0:
            parts.append(f'<text x="{x(day):.1f}" y="{axis_y + 16:.1f}" text-anchor="middle">{day}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{axis_y + 30:.1f}" text-anchor="middle">day</text>')
    parts.append(_legend(left, top - 10, [(label, colour) for _, label, colour in RATE_SERIES]))
    parts.append(_legend(left, y1 - 10, [("S_t dues", "#cfd8e3")] + [(label, colour) for _, label, colour in AMOUNT_LINES]))
    parts.append("</svg>")
    return "".join(parts)


def _legend(x: float, y: float, items: list[tuple[str, str]]) -> str:
    out = []
    for label, colour in items:
        out.append(f'<rect x="{x:.0f}" y="{y - 8:.0f}" width="10" height="10" fill="{colour}"/><text x="{x + 14:.0f}" y="{y + 1:.0f}">{escape(label)}</text>')
        x += 24 + 6.5 * len(label)
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# metrics.html


def _day_summary(output: SimulationOutput, rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    summary = output.summary

    def total(key: str) -> float:
        return sum(v for r in rows if (v := _number(r.get(key))) is not None)

    velocities = [v for r in rows if (v := _number(r.get("v_t"))) is not None]
    peaks = [v for r in rows if (v := _number(r.get("Mpeak_t"))) is not None]
    return [
        ("Days analysed", len(rows)),
        ("Total dues Σ S_t", total("S_t")),
        ("Gross settled total", total("gross_settled_t")),
        ("Largest M^peak_t", max(peaks) if peaks else None),
        ("Mean velocity v_t", sum(velocities) / len(velocities) if velocities else None),
        ("φ_total (value-weighted)", summary.get("phi_total")),
        ("δ_total (value-weighted)", summary.get("delta_total")),
        ("δ_clean", summary.get("delta_clean")),
        ("Defaulted agents", summary.get("n_defaults")),
        ("Cascade fraction", summary.get("cascade_fraction")),
        ("Time to stability (max due day)", summary.get("time_to_stability")),
        ("Last simulated day", summary.get("last_sim_day")),
    ]


def _day_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return _empty("No day metrics.")
    columns = sorted({k for r in rows for k in r})
    if "day" in columns:  # day first, then the metrics in the file's (alphabetical) order
        columns.remove("day")
        columns.insert(0, "day")
    return _table(columns, ([r.get(c) for c in columns] for r in rows))


def _explanations() -> str:
    return "<dl>" + "".join(f"<dt>{escape(term)}</dt><dd>{escape(text)}</dd>" for term, text in EXPLANATIONS) + "</dl>"


def _debtor_share_matrix(shares: list[dict[str, Any]]) -> str:
    """DS_t(i) as one agent-by-day table (an agent that is no net debtor that day: blank)."""
    if not shares:
        return _empty("No net debtors on the analysed days.")
    days = sorted({s["day"] for s in shares})
    # cells are formatted once per share; most of the agent-by-day grid is one blank cell
    by_agent: dict[str, dict[Any, str]] = {}
    for s in shares:
        by_agent.setdefault(str(s["agent"]), {})[s["day"]] = _cell(s.get("DS_t"))
    lines = []
    for agent in sorted(by_agent, key=_agent_order):
        cells = by_agent[agent]
        lines.append("<tr>" + _cell(agent) + "".join([cells.get(day, _BLANK_CELL) for day in days]) + "</tr>")
    return _table_html(["agent"] + [f"day {d}" for d in days], lines)


def _agent_order(agent: str) -> tuple[int, str]:
    digits = agent.lstrip("Habcdefghijklmnopqrstuvwxyz_")  # H12 sorts after H2
    return (int(digits), agent) if digits.isdigit() else (10**9, agent)


def intraday_svgs(steps: list[dict[str, Any]]) -> str:
    """One small chart per day of the prefix liquidity P(s) over the day's settlement steps."""
    by_day: dict[Any, list[float]] = {}
    for step in steps:
        value = _number(step.get("P_prefix"))
        if value is not None:
            by_day.setdefault(step["day"], []).append(value)
    if not by_day:
        return _empty("No settlement steps.")
    width, height, pad = 230, 90, 6
    charts = []
    for day, values in sorted(by_day.items()):
        peak = max(values) or 1.0
        n = len(values)
        dx = (width - 2 * pad) / max(1, n)
        points = [f"{pad:.1f},{height - pad:.1f}"]
        xs = [f"{pad + i * dx:.1f}" for i in range(n + 1)]  # each x ends one step and starts the next
        for i, v in enumerate(values):  # a step line: P(s) holds until the next settlement
            y = f"{height - pad - (height - 2 * pad) * v / peak:.1f}"
            points.append(f"{xs[i]},{y} {xs[i + 1]},{y}")
        charts.append(
            f'<figure style="margin:0"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa" stroke="#e4e4e4"/>'
            f'<polyline fill="none" stroke="#8c564b" stroke-width="1.5" points="{" ".join(points)}"><title>day {day}: {n} steps, M^peak = {fmt(peak)}</title></polyline>'
            f'</svg><figcaption class="small muted">day {day}: {n} steps, M^peak {fmt(peak)}</figcaption></figure>'
        )
    return '<div style="display:flex;flex-wrap:wrap;gap:10px">' + "".join(charts) + "</div>"


def render_metrics_html(
    output: SimulationOutput,
    days: list[dict[str, Any]] | None = None,
    debtor_shares: list[dict[str, Any]] = (),
    intraday: list[dict[str, Any]] = (),
    plot: str | None = None,
) -> str:
    """out/metrics.html; `days` are the day rows without helper keys (default: output's),
    `plot` the day chart if already drawn for run.html."""
    days = output.day_metrics if days is None else days
    name = output.scenario.get("name") or "Kalecki ring"
    return _page(
        f"Day metrics: {name}",
        _params_line(output),
        [
            _section("Summary Across Days", _cards(_day_summary(output, days))),
            _section("Day-by-Day Plot", plot if plot is not None else day_metrics_svg(days)),
            _section("Day-by-Day Metrics", _day_table(days)),
            _section("Debtor Shortfall Shares DS_t(i)", _debtor_share_matrix(list(debtor_shares))),
            _section(
                "Intraday Diagnostics: Prefix Liquidity P(s)",
                '<p class="muted small">P(s) = Σ_i max(0, cumulative net outflow of i after step s), replaying the day\'s settlements in order; M^peak_t = max_s P(s).</p>'
                + intraday_svgs(list(intraday)),
            ),
            _section("Metric Explanations", _explanations()),
        ],
    )


# ---------------------------------------------------------------------------------------------
# run.html

HEADLINE_KEYS = (
    ("δ_total", "delta_total"),
    ("φ_total", "phi_total"),
    ("δ_clean", "delta_clean"),
    ("defaulted agents", "n_defaults"),
    ("cascade fraction", "cascade_fraction"),
    ("settlements", "n_clears_all"),
    ("time to stability", "time_to_stability"),
    ("last simulated day", "last_sim_day"),
    ("trades", "total_trades"),
    ("trade volume (cash)", "trade_volume_cash"),
    ("total loss", "total_loss"),
)

TRADE_COLUMNS = ("day", "trader", "side", "bucket", "ticket_id", "face", "price", "unit_price", "is_passthrough", "is_liquidity_driven")
BALANCE_SHOWN = ("agent_id", "agent_kind", "assets_cash", "assets_payable", "liabilities_payable", "net_financial")


def _flat_items(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            items.extend(_flat_items(value, f"{prefix}{key}."))
        elif isinstance(value, (list, tuple)):
            items.append((f"{prefix}{key}", ", ".join(str(v) for v in value)))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _headline(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    aliases = {"n_clears_all": "n_clears", "trade_volume_cash": "total_trade_volume"}
    cards = []
    for label, key in HEADLINE_KEYS:
        if key in summary or aliases.get(key) in summary:
            cards.append((label, summary.get(key, summary.get(aliases.get(key, ""), None))))
    return cards


def render_run_html(output: SimulationOutput, days: list[dict[str, Any]] | None = None, plot: str | None = None) -> str:
    """run.html; `days` are the day rows without helper keys (default: output's), `plot` the
    day chart if already drawn for metrics.html."""
    days = output.day_metrics if days is None else days
    events = output.events
    kinds = Counter([e.get("kind") for e in events])
    defaults = [e for e in events if e.get("kind") == "AgentDefaulted"] if kinds["AgentDefaulted"] else []
    trades = [e for e in events if e.get("kind") == "dealer_trade"] if kinds["dealer_trade"] else []
    balances = [b for b in output.balances if b.get("agent_id")]
    name = output.scenario.get("name") or "Kalecki ring"
    sections = [
        _section("Headline Metrics", _cards(_headline(output.summary))),
        _section("Day-by-Day Plot", (plot if plot is not None else day_metrics_svg(days)) + '<p class="muted small">The full day table is in out/metrics.html.</p>'),
        _section(
            f"Defaults ({len(defaults)})",
            _table(["day", "agent", "trigger contract", "shortfall"], ([e.get("day"), e.get("agent"), e.get("trigger_contract"), e.get("shortfall")] for e in defaults))
            if defaults
            else _empty("No agent defaulted."),
        ),
        _section(
            f"Trades ({len(trades)})",
            _table(list(TRADE_COLUMNS), ([e.get(c) for c in TRADE_COLUMNS] for e in trades)) if trades else _empty("No dealer trades in this run."),
        ),
        _section("Parameters", _table(["parameter", "value"], output.params.to_dict().items())),
        _section("All Run Metrics", _table(["metric", "value"], sorted(_flat_items(output.summary)))),
        _section(
            "Dealer Metrics",
            _table(["metric", "value"], _flat_items(output.dealer_metrics)) if output.dealer_metrics else _empty("No dealer metrics."),
        ),
        _section("Events by Kind", _table(["kind", "count"], sorted(kinds.items(), key=lambda kv: (-kv[1], str(kv[0]))))),
        _section(
            "End-of-Run Balances",
            _table(list(BALANCE_SHOWN), ([b.get(c) for c in BALANCE_SHOWN] for b in balances)) if balances else _empty("No balances."),
        ),
    ]
    return _page(f"Run: {name}", f"{_params_line(output)} · simulated in {fmt(output.wall_ms, 1)} ms", sections)
