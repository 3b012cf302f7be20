"""The two HTML pages of a run: out/metrics.html (day metrics) and run.html (run summary).

Each page is a constant viewer (inline CSS and a small plain script, nothing from the network,
so it works opened from a file or from an object store link) plus the run's data, embedded
once as JSON. The browser draws the cards, tables and SVG charts from that data. Python only
gathers the data and dumps it with one orjson call: about 0.05 ms (metrics.html) and 0.1 ms
(run.html) at n_agents 50, where drawing the pages here cost over a millisecond per run.

Pages are kept plain (a browser opens them from a folder), so to stay small they carry the
viewer script and the data gzipped in base64 (`read_page_data` reads the data back); a short
loader unpacks both with the browser's DecompressionStream (Chrome 80, Firefox 113, Safari 16.4
and later). A page is a third of its unpacked size.

A reader without JavaScript sees the title, the parameters, a note and the metric
explanations; the data is in the run's CSV/JSON artifacts beside the page.
"""

from __future__ import annotations

import base64
import zlib
from collections import Counter
from decimal import Decimal
from html import escape
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from bilancio_pipeline.engine.output import SimulationOutput

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:21px;margin:0 0 4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #eee;padding-bottom:4px}
.muted{color:#666}.small{font-size:13px}.note{background:#fff8e1;border:1px solid #f0d58c;padding:8px 10px;border-radius:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:8px}
.card{border:1px solid #e4e4e4;border-radius:6px;padding:8px 10px;background:#fbfbfb}
.card .v{font-size:18px;font-weight:600}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin-top:8px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f6f6f6}
td.l,th.l{text-align:left}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:13px}dt{font-weight:600}dd{margin:0}
svg text{font-size:11px;fill:#333}
.charts{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0}
"""

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

TRADE_COLUMNS = ("day", "trader", "side", "bucket", "ticket_id", "face", "price", "unit_price", "is_passthrough", "is_liquidity_driven")
BALANCE_SHOWN = ("agent_id", "agent_kind", "assets_cash", "assets_payable", "liabilities_payable", "net_financial")
DEFAULT_COLUMNS = ("day", "agent", "trigger_contract", "shortfall")
DEBTOR_SHARE_FIELDS = ("day", "agent", "DS_t")
INTRADAY_FIELDS = ("day", "P_prefix")

# The viewer. It reads the run's data (the JSON text RUN_DATA, which the loader unpacks from
# the block "run-data") and builds every element with the DOM API
# (text goes in as text nodes, never as markup). The page kind comes from <main data-page>.
VIEWER_JS = r"""
(function () {
"use strict";
var NS = "http://www.w3.org/2000/svg";
var main = document.getElementById("report");
var data = JSON.parse(RUN_DATA);

function node(ns, tag, attrs, kids) {
  var n = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (var k in attrs || {}) n.setAttribute(k, attrs[k]);
  [].concat(kids == null ? [] : kids).forEach(function (kid) {
    if (kid != null) n.appendChild(typeof kid === "object" ? kid : document.createTextNode(String(kid)));
  });
  return n;
}
function h(tag, attrs, kids) { return node(null, tag, attrs, kids); }
function s(tag, attrs, kids) { return node(NS, tag, attrs, kids); }

// a value as the tables show it: integers as they are, other numbers to 4 decimals
function fmt(v, digits) {
  if (v === null || v === undefined) return "\u2014";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number") {
    if (!isFinite(v)) return "\u2014";
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
    var t = v.toFixed(digits == null ? 4 : digits);
    return t.indexOf(".") < 0 ? t : t.replace(/0+$/, "").replace(/\.$/, "");
  }
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}
function num(v) { return typeof v === "number" && isFinite(v) ? v : null; }
function px(v) { return v.toFixed(1); }

function section(title, body) { main.appendChild(h("section", {}, [h("h2", {}, title)].concat(body))); }
function empty(text) { return h("p", {"class": "muted small"}, text); }
function cards(items) {
  return h("div", {"class": "cards"}, items.map(function (item) {
    return h("div", {"class": "card"}, [h("div", {"class": "muted small"}, item[0]), h("div", {"class": "v"}, fmt(item[1]))]);
  }));
}
// text cells left-aligned, numbers right-aligned
function table(columns, rows) {
  return h("div", {"class": "scroll"}, h("table", {}, [
    h("thead", {}, h("tr", {}, columns.map(function (c) { return h("th", {}, c); }))),
    h("tbody", {}, rows.map(function (row) {
      return h("tr", {}, row.map(function (v) { return h("td", typeof v === "string" ? {"class": "l"} : {}, fmt(v)); }));
    }))
  ]));
}
function pick(obj, keys) { return keys.map(function (k) { return obj[k]; }); }
function flat(obj, prefix, out) {
  Object.keys(obj).forEach(function (k) {
    var v = obj[k];
    if (v && typeof v === "object" && !Array.isArray(v)) flat(v, prefix + k + ".", out);
    else out.push([prefix + k, Array.isArray(v) ? v.map(String).join(", ") : v]);
  });
  return out;
}

// the day chart: rates on [0, 1] above, amounts (S_t as bars) below; a tooltip per point
var RATES = [["phi_t", "\u03c6_t settled on time", "#2a9d4b"], ["delta_t", "\u03b4_t not settled", "#d62728"], ["alpha_t", "\u03b1_t netting potential", "#1f77b4"]];
var AMOUNTS = [["gross_settled_t", "gross settled", "#ff7f0e"], ["Mbar_t", "M\u0304_t liquidity needed", "#9467bd"], ["Mpeak_t", "M^peak_t", "#8c564b"]];

function niceCeiling(v) {
  if (v <= 0) return 1;
  var p = Math.pow(10, Math.floor(Math.log10(v)));
  var steps = [1, 2, 2.5, 5, 10];
  for (var i = 0; i < steps.length; i++) if (v <= steps[i] * p) return steps[i] * p;
  return 10 * p;
}
// one polyline per run of days with a value (a day without one breaks the line)
function series(key, colour, points, radius, attrs) {
  var g = s("g", {"class": "series", "data-metric": key}), run = [];
  function flush() {
    if (run.length) g.appendChild(s("polyline", Object.assign({fill: "none", stroke: colour, "stroke-width": 2, points: run.join(" ")}, attrs)));
    run = [];
  }
  points.forEach(function (p) {
    if (p === null) { flush(); return; }
    run.push(p.x + "," + p.y);
  });
  flush();
  points.forEach(function (p) {
    if (p !== null) g.appendChild(s("circle", {cx: p.x, cy: p.y, r: radius, fill: colour}, s("title", {}, "day " + p.day + ": " + key + " = " + fmt(p.v))));
  });
  return g;
}
function legend(x, y, items) {
  return items.map(function (item) {
    var g = s("g", {}, [s("rect", {x: x.toFixed(0), y: (y - 8).toFixed(0), width: 10, height: 10, fill: item[1]}), s("text", {x: (x + 14).toFixed(0), y: (y + 1).toFixed(0)}, item[0])]);
    x += 24 + 6.5 * item[0].length;
    return g;
  });
}
function dayChart(allRows) {
  var rows = allRows.filter(function (r) { return num(r.day) !== null; });
  if (!rows.length) return empty("No day metrics: no payable fell due.");
  var width = 760, left = 56, right = 16, top = 26, panelH = 150, gap = 46, height = top + 2 * panelH + gap + 34;
  var days = rows.map(function (r) { return Math.trunc(r.day); });
  var first = Math.min.apply(null, days), last = Math.max.apply(null, days);
  var span = Math.max(1, last - first), plotW = width - left - right, slot = plotW / (span + 1);
  function x(day) { return left + slot / 2 + (day - first) * slot; }
  var svg = s("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "day-by-day metrics", "class": "day-chart"});
  function grid(y, label) {
    svg.appendChild(s("line", {x1: left, x2: width - right, y1: px(y), y2: px(y), stroke: "#eee"}));
    svg.appendChild(s("text", {x: left - 6, y: px(y + 4), "text-anchor": "end"}, label));
  }
  function points(key, y) {
    return rows.map(function (r, i) { var v = num(r[key]); return v === null ? null : {x: px(x(days[i])), y: px(y(v)), day: r.day, v: r[key]}; });
  }
  // panel 1: rates on [0, 1]
  var y0 = top;
  function yRate(v) { return y0 + panelH * (1 - Math.min(1, Math.max(0, v))); }
  [0, 0.25, 0.5, 0.75, 1].forEach(function (t) { grid(yRate(t), String(t)); });
  RATES.forEach(function (r) { svg.appendChild(series(r[0], r[2], points(r[0], yRate), 3, r[0] === "alpha_t" ? {"stroke-dasharray": "5,3"} : {})); });
  // panel 2: amounts
  var y1 = top + panelH + gap, peak = 0;
  ["S_t"].concat(AMOUNTS.map(function (a) { return a[0]; })).forEach(function (k) {
    rows.forEach(function (r) { var v = num(r[k]); if (v !== null && v > peak) peak = v; });
  });
  var topValue = niceCeiling(peak);
  function yAmount(v) { return y1 + panelH * (1 - Math.max(0, v) / topValue); }
  for (var i = 0; i < 5; i++) grid(yAmount(topValue * i / 4), fmt(topValue * i / 4, 0));
  var barW = Math.max(2, slot * 0.6), bars = s("g", {"class": "bars", "data-metric": "S_t"});
  rows.forEach(function (r, i) {
    var v = num(r.S_t);
    if (v === null) return;
    var y = yAmount(v);
    bars.appendChild(s("rect", {x: px(x(days[i]) - barW / 2), y: px(y), width: px(barW), height: px(y1 + panelH - y), fill: "#cfd8e3"}, s("title", {}, "day " + r.day + ": S_t = " + fmt(v))));
  });
  svg.appendChild(bars);
  // gross settled is drawn wide underneath, so it stays visible where M^peak_t equals it
  AMOUNTS.forEach(function (a) { svg.appendChild(series(a[0], a[2], points(a[0], yAmount), 2.5, a[0] === "gross_settled_t" ? {"stroke-width": 5} : {})); });
  // day axis, labels thinned so they never overlap, and the legends
  var axisY = y1 + panelH, every = Math.max(1, Math.ceil((span + 1) * 22 / plotW));
  for (var day = first; day <= last; day++) {
    if ((day - first) % every === 0) svg.appendChild(s("text", {x: px(x(day)), y: px(axisY + 16), "text-anchor": "middle"}, day));
  }
  svg.appendChild(s("text", {x: px(left + plotW / 2), y: px(axisY + 30), "text-anchor": "middle"}, "day"));
  legend(left, top - 10, RATES.map(function (r) { return [r[1], r[2]]; })).forEach(function (g) { svg.appendChild(g); });
  legend(left, y1 - 10, [["S_t dues", "#cfd8e3"]].concat(AMOUNTS.map(function (a) { return [a[1], a[2]]; }))).forEach(function (g) { svg.appendChild(g); });
  return h("div", {"class": "scroll"}, svg);
}

function dayTable(rows) {
  if (!rows.length) return empty("No day metrics.");
  var seen = {};
  rows.forEach(function (r) { Object.keys(r).forEach(function (k) { seen[k] = true; }); });
  var columns = Object.keys(seen).sort();
  if (seen.day) columns = ["day"].concat(columns.filter(function (c) { return c !== "day"; }));
  return table(columns, rows.map(function (r) { return pick(r, columns); }));
}

function agentOrder(a, b) {  // H12 after H2
  var ma = /^[Ha-z_]*(\d+)$/.exec(a), mb = /^[Ha-z_]*(\d+)$/.exec(b);
  var na = ma ? Number(ma[1]) : 1e9, nb = mb ? Number(mb[1]) : 1e9;
  return na !== nb ? na - nb : (a < b ? -1 : a > b ? 1 : 0);
}
// DS_t(i) as one agent-by-day table; blank where the agent is no net debtor that day
function debtorMatrix(shares) {  // rows of [day, agent, DS_t]
  if (!shares.length) return empty("No net debtors on the analysed days.");
  var byAgent = {}, daySet = {};
  shares.forEach(function (sh) {
    var agent = String(sh[1]);
    daySet[sh[0]] = sh[0];
    (byAgent[agent] = byAgent[agent] || {})[sh[0]] = sh[2];
  });
  var days = Object.keys(daySet).map(function (k) { return daySet[k]; }).sort(function (a, b) { return a - b; });
  return table(["agent"].concat(days.map(function (d) { return "day " + d; })), Object.keys(byAgent).sort(agentOrder).map(function (agent) {
    return [agent].concat(days.map(function (d) { return d in byAgent[agent] ? byAgent[agent][d] : ""; }));
  }));
}
// one small chart per day of the prefix liquidity P(s) over the day's settlement steps
function intradayCharts(steps) {  // rows of [day, P_prefix]
  var byDay = {}, days = [];
  steps.forEach(function (st) {
    var v = num(st[1]);
    if (v === null) return;
    if (!(st[0] in byDay)) { byDay[st[0]] = []; days.push(st[0]); }
    byDay[st[0]].push(v);
  });
  if (!days.length) return empty("No settlement steps.");
  var width = 230, height = 90, pad = 6;
  days.sort(function (a, b) { return a - b; });
  return h("div", {"class": "charts"}, days.map(function (day) {
    var values = byDay[day], n = values.length, peak = Math.max.apply(null, values) || 1, dx = (width - 2 * pad) / Math.max(1, n);
    var pts = [px(pad) + "," + px(height - pad)];
    values.forEach(function (v, i) {  // a step line: P(s) holds until the next settlement
      var y = px(height - pad - (height - 2 * pad) * v / peak);
      pts.push(px(pad + i * dx) + "," + y, px(pad + (i + 1) * dx) + "," + y);
    });
    var caption = "day " + day + ": " + n + " steps, M^peak " + fmt(peak);
    return h("figure", {}, [
      s("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height, "class": "intraday", "data-day": day}, [
        s("rect", {x: 0, y: 0, width: width, height: height, fill: "#fafafa", stroke: "#e4e4e4"}),
        s("polyline", {fill: "none", stroke: "#8c564b", "stroke-width": 1.5, points: pts.join(" ")}, s("title", {}, caption))
      ]),
      h("figcaption", {"class": "small muted"}, caption)
    ]);
  }));
}

function total(rows, key) { return rows.reduce(function (t, r) { var v = num(r[key]); return v === null ? t : t + v; }, 0); }
function values(rows, key) { return rows.map(function (r) { return num(r[key]); }).filter(function (v) { return v !== null; }); }

function metricsPage(d) {
  var days = d.days, sm = d.summary, velocities = values(days, "v_t"), peaks = values(days, "Mpeak_t");
  section("Summary Across Days", cards([
    ["Days analysed", days.length],
    ["Total dues \u03a3 S_t", total(days, "S_t")],
    ["Gross settled total", total(days, "gross_settled_t")],
    ["Largest M^peak_t", peaks.length ? Math.max.apply(null, peaks) : null],
    ["Mean velocity v_t", velocities.length ? velocities.reduce(function (a, b) { return a + b; }, 0) / velocities.length : null],
    ["\u03c6_total (value-weighted)", sm.phi_total],
    ["\u03b4_total (value-weighted)", sm.delta_total],
    ["\u03b4_clean", sm.delta_clean],
    ["Defaulted agents", sm.n_defaults],
    ["Cascade fraction", sm.cascade_fraction],
    ["Time to stability (max due day)", sm.time_to_stability],
    ["Last simulated day", sm.last_sim_day]
  ]));
  section("Day-by-Day Plot", dayChart(days));
  section("Day-by-Day Metrics", dayTable(days));
  section("Debtor Shortfall Shares DS_t(i)", debtorMatrix(d.debtor_shares));
  section("Intraday Diagnostics: Prefix Liquidity P(s)", [
    h("p", {"class": "muted small"}, "P(s) = \u03a3_i max(0, cumulative net outflow of i after step s), replaying the day's settlements in order; M^peak_t = max_s P(s)."),
    intradayCharts(d.intraday)
  ]);
}

var HEADLINE = [["\u03b4_total", "delta_total"], ["\u03c6_total", "phi_total"], ["\u03b4_clean", "delta_clean"], ["defaulted agents", "n_defaults"],
  ["cascade fraction", "cascade_fraction"], ["settlements", "n_clears_all", "n_clears"], ["time to stability", "time_to_stability"],
  ["last simulated day", "last_sim_day"], ["trades", "total_trades"], ["trade volume (cash)", "trade_volume_cash", "total_trade_volume"], ["total loss", "total_loss"]];

function runPage(d) {
  var sm = d.summary, headline = [];
  HEADLINE.forEach(function (c) {
    if (c[1] in sm) headline.push([c[0], sm[c[1]]]);
    else if (c[2] && c[2] in sm) headline.push([c[0], sm[c[2]]]);
  });
  section("Headline Metrics", cards(headline));
  section("Day-by-Day Plot", [dayChart(d.days), h("p", {"class": "muted small"}, "The full day table is in out/metrics.html.")]);
  section("Defaults (" + d.defaults.rows.length + ")", d.defaults.rows.length ? table(["day", "agent", "trigger contract", "shortfall"], d.defaults.rows) : empty("No agent defaulted."));
  section("Trades (" + d.trades.rows.length + ")", d.trades.rows.length ? table(d.trades.columns, d.trades.rows) : empty("No dealer trades in this run."));
  section("Parameters", table(["parameter", "value"], Object.keys(d.params).map(function (k) { return [k, d.params[k]]; })));
  section("All Run Metrics", table(["metric", "value"], flat(sm, "", []).sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0; })));
  var dealer = flat(d.dealer_metrics || {}, "", []);
  section("Dealer Metrics", dealer.length ? table(["metric", "value"], dealer) : empty("No dealer metrics."));
  var kinds = Object.keys(d.event_kinds).map(function (k) { return [k, d.event_kinds[k]]; });
  kinds.sort(function (a, b) { return b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0); });
  section("Events by Kind", table(["kind", "count"], kinds));
  var balances = d.balances.rows.filter(function (r) { return r[0]; });
  section("End-of-Run Balances", balances.length ? table(d.balances.columns, balances) : empty("No balances."));
}

(main.getAttribute("data-page") === "run" ? runPage : metricsPage)(data);
main.setAttribute("data-drawn", "true");
})();
"""



def pack(data: bytes, level: int) -> str:
    """gzip, then base64: what the loader unpacks (base64 holds no "<", so it is safe in <script>)."""
    return base64.b64encode(zlib.compress(data, level, wbits=31)).decode("ascii")


# The viewer is the same in every page, packed once. The loader unpacks the viewer and the data
# and runs the viewer with the data's JSON text as RUN_DATA.
_VIEWER_PACKED = pack(VIEWER_JS.encode(), 9)
UNPACK_JS = (
    '(function(s){var m=document.getElementById("report");'
    'function say(t){var p=document.createElement("p");p.className="note";p.textContent=t;m.appendChild(p)}'
    'if(typeof DecompressionStream!=="function"){say("This browser is too old to draw the page (it lacks '
    'DecompressionStream). The numbers are in the run\'s CSV and JSON files.");return}'
    'function unpack(t){var b=Uint8Array.from(atob(t),function(c){return c.charCodeAt(0)});'
    'return new Response(new Blob([b]).stream().pipeThrough(new DecompressionStream("gzip"))).text()}'
    'Promise.all([unpack(document.getElementById("run-data").textContent),unpack(s.getAttribute("data-viewer"))])'
    '.then(function(r){Function("RUN_DATA",r[1])(r[0])}).catch(function(e){say("The page could not be drawn: "+e)})'
    '})(document.currentScript);'
)


def _shell(page: str, static_after: str = "") -> tuple[str, bytes, bytes]:
    """The page around its title, subtitle and data: (before the title, between the subtitle
    and the data, after the data). The title is written twice: <title> and <h1>."""
    head = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style><title>"
    )
    middle = (
        '</p></header><noscript><p class="note">This page draws its tables and charts with JavaScript, which is '
        'turned off. The numbers are in the run\'s CSV and JSON files.'
        f'</p></noscript><main id="report" data-page="{page}"></main>{static_after}'
        '<script type="application/gzip+base64" id="run-data">'
    )
    tail = f'</script><script data-viewer="{_VIEWER_PACKED}">{UNPACK_JS}</script></body></html>\n'
    return head, middle.encode(), tail.encode()


def _explanations() -> str:
    rows = "".join(f"<dt>{escape(term)}</dt><dd>{escape(text)}</dd>" for term, text in EXPLANATIONS)
    return f"<section><h2>Metric Explanations</h2><dl>{rows}</dl></section>"


_METRICS_SHELL = _shell("metrics", _explanations())
_RUN_SHELL = _shell("run")


def _page(shell: tuple[str, bytes, bytes], title: str, subtitle: str, data: dict[str, Any]) -> bytes:
    head, middle, tail = shell
    title = escape(title)
    top = f'{head}{title}</title></head><body><header><h1>{title}</h1><p class="muted small">{escape(subtitle)}'
    return b"".join((top.encode(), middle, pack(embed_json(data), DATA_LEVEL).encode(), tail))


DATA_LEVEL = 6  # a page's data is a few kilobytes: the best compression costs a tenth of a millisecond


def read_page_data(html: str) -> Any:
    """The data a page embeds, unpacked (for tests and scripts that read a page)."""
    packed = html.split('id="run-data">', 1)[1].split("</script>", 1)[0]
    return orjson.loads(zlib.decompress(base64.b64decode(packed), wbits=31))


def embed_json(data: Any) -> bytes:
    """JSON that is safe inside <script>: no "<" at all (JSON.parse reads \\u003c back as "<"),
    so no string can close the block or open a comment."""
    try:
        text = orjson.dumps(data, default=json_default)
    except orjson.JSONEncodeError:  # e.g. a non-string key
        text = orjson.dumps(data, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return text.replace(b"<", b"\\u003c")


def json_default(value: Any) -> Any:
    """What orjson cannot write itself: Decimal, NumPy scalars, sets and tuples, paths."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "item"):  # a NumPy scalar orjson does not know natively
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _params_line(output: SimulationOutput) -> str:
    p = output.params
    return (
        f"{p.regime} · n={p.n_agents} · D={p.maturity_days} · κ={p.kappa:g} · c={p.concentration:g} · μ={p.mu:g} · "
        f"ρ={p.outside_mid_ratio:g} · seed {p.seed} · cash accounting {p.cash_accounting}"
    )


def _columns(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The rows as tuples of the given columns (a missing one is None)."""
    try:
        return list(map(itemgetter(*columns), rows))
    except KeyError:
        return [tuple(map(row.get, columns)) for row in rows]


# ---------------------------------------------------------------------------------------------
# metrics.html


def render_metrics_html(
    output: SimulationOutput,
    days: list[dict[str, Any]] | None = None,
    debtor_shares: list[dict[str, Any]] = (),
    intraday: list[dict[str, Any]] = (),
) -> bytes:
    """out/metrics.html; `days` are the day rows without helper keys (default: output's)."""
    days = output.day_metrics if days is None else days
    name = output.scenario.get("name") or "Kalecki ring"
    data = {
        "days": days,
        "summary": output.summary,
        "debtor_shares": _columns(list(debtor_shares), DEBTOR_SHARE_FIELDS),
        "intraday": _columns(list(intraday), INTRADAY_FIELDS),
    }
    return _page(_METRICS_SHELL, f"Day metrics: {name}", _params_line(output), data)


# ---------------------------------------------------------------------------------------------
# run.html


def _events_of_kind(events: list[dict[str, Any]], kinds: list[Any], counts: Counter, kind: str) -> list[dict[str, Any]]:
    """The events of one kind, found with list.index (a scan in C): defaults and trades are few."""
    found = []
    at = -1
    for _ in range(counts[kind]):
        at = kinds.index(kind, at + 1)
        found.append(events[at])
    return found


def render_run_html(output: SimulationOutput, days: list[dict[str, Any]] | None = None) -> bytes:
    """run.html; `days` are the day rows without helper keys (default: output's)."""
    days = output.day_metrics if days is None else days
    events = output.events
    try:
        kinds = list(map(itemgetter("kind"), events))
    except (KeyError, TypeError):
        kinds = [event.get("kind") if isinstance(event, dict) else None for event in events]
    counts = Counter(kinds)
    defaults = _events_of_kind(events, kinds, counts, "AgentDefaulted")
    trades = _events_of_kind(events, kinds, counts, "dealer_trade")
    data = {
        "days": days,
        "summary": output.summary,
        "params": output.params,
        "dealer_metrics": output.dealer_metrics,
        "event_kinds": counts,
        "defaults": {"columns": DEFAULT_COLUMNS, "rows": _columns(defaults, DEFAULT_COLUMNS)},
        "trades": {"columns": TRADE_COLUMNS, "rows": _columns(trades, TRADE_COLUMNS)},
        "balances": {"columns": BALANCE_SHOWN, "rows": _columns(output.balances, BALANCE_SHOWN)},
    }
    name = output.scenario.get("name") or "Kalecki ring"
    subtitle = f"{_params_line(output)} · simulated in {output.wall_ms:.1f} ms"
    return _page(_RUN_SHELL, f"Run: {name}", subtitle, data)
