"""The sweep report's viewer: plain JavaScript that draws every figure as inline SVG from the
data the page embeds (RUN_DATA, a JSON text). No library and nothing from the network: the page
opens offline and stays small (the script is ~20 KB before gzip, the data a few dozen bytes
per run).

Views: δ and φ across κ per concentration, δ passive vs δ active, the trading effect per pair,
heatmaps of δ and of the trading effect over κ × μ per concentration, distributions, parallel
coordinates with brushing, a rotatable 3-D surface, the variance decomposition, and the
comparison with a second sweep. μ is told apart by colour and by marker everywhere; legends
are HTML that wraps, so no entry is ever cut.
"""

REPORT_JS = r"""
"use strict";
var D = JSON.parse(RUN_DATA);
var NS = "http://www.w3.org/2000/svg";
var PALETTE = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf"];
var MARKERS = ["circle","square","triangle","diamond","cross","star","tdown","plus"];
var W = 380, H = 270, M = {l: 48, r: 12, t: 26, b: 40};

function el(name, attrs, parent) {
  var e = document.createElementNS(NS, name);
  for (var k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function html(tag, attrs, parent, text) {
  var e = document.createElement(tag);
  for (var k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(v, d) {
  if (v === null || v === undefined || (typeof v === "number" && isNaN(v))) return "–";
  if (typeof v !== "number") return String(v);
  var s = Number(v.toPrecision(d || 4));
  return String(s);
}
function mean(a) { var s = 0, n = 0; a.forEach(function (v) { if (v !== null && !isNaN(v)) { s += v; n++; } }); return n ? s / n : null; }
function uniq(a) { return Array.from(new Set(a)).sort(function (x, y) { return x - y; }); }
function view(name) { return document.querySelector('[data-view="' + name + '"]'); }

var LV = D.levels;
function muColor(mu) {
  var i = LV.mu.indexOf(mu), n = LV.mu.length;
  if (n <= PALETTE.length) return PALETTE[i];
  return ramp(n > 1 ? i / (n - 1) : 0);
}
function muMarker(mu) { return MARKERS[LV.mu.indexOf(mu) % MARKERS.length]; }
function cMarker(c) { return MARKERS[LV.concentration.indexOf(c) % MARKERS.length]; }
function ramp(t) {  // viridis-like sequential colours
  var stops = [[68,1,84],[59,82,139],[33,145,140],[94,201,98],[253,231,37]];
  var x = Math.max(0, Math.min(1, t)) * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  var c = stops[i].map(function (v, k) { return Math.round(v + f * (stops[i + 1][k] - v)); });
  return "rgb(" + c.join(",") + ")";
}
function dark(rgb) {  // text on this fill should be white
  var c = rgb.match(/\d+/g).map(Number);
  return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] < 120;
}
function diverging(t) {  // t in [-1, 1]: red (dealers hurt) .. white .. green (dealers helped)
  var a = Math.max(-1, Math.min(1, t)), lo = [198,40,40], hi = [26,127,55], w = [247,247,247];
  var end = a < 0 ? lo : hi, f = Math.abs(a);
  return "rgb(" + w.map(function (v, k) { return Math.round(v + f * (end[k] - v)); }).join(",") + ")";
}

// --- marks, axes, tooltips ---------------------------------------------------------------------
function marker(g, shape, x, y, r, color, tip) {
  var e, s = r * 1.8;
  if (shape === "circle") e = el("circle", {cx: x, cy: y, r: r}, g);
  else if (shape === "square") e = el("rect", {x: x - r, y: y - r, width: 2 * r, height: 2 * r}, g);
  else {
    var pts = {
      triangle: [[0, -s * 0.7], [s * 0.65, s * 0.5], [-s * 0.65, s * 0.5]],
      tdown: [[0, s * 0.7], [s * 0.65, -s * 0.5], [-s * 0.65, -s * 0.5]],
      diamond: [[0, -s * 0.7], [s * 0.6, 0], [0, s * 0.7], [-s * 0.6, 0]],
      cross: [[-r, -r], [r, r], [0, 0], [r, -r], [-r, r], [0, 0]],
      plus: [[0, -s * 0.6], [0, s * 0.6], [0, 0], [-s * 0.6, 0], [s * 0.6, 0], [0, 0]],
      star: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(function (k) { var a = Math.PI * k / 5 - Math.PI / 2, q = k % 2 ? r * 0.5 : r * 1.2; return [q * Math.cos(a), q * Math.sin(a)]; })
    }[shape];
    e = el("polygon", {points: pts.map(function (p) { return (x + p[0]) + "," + (y + p[1]); }).join(" ")}, g);
    if (shape === "cross" || shape === "plus") { e.setAttribute("fill", "none"); e.setAttribute("stroke", color); e.setAttribute("stroke-width", 1.8); }
  }
  if (shape !== "cross" && shape !== "plus") { e.setAttribute("fill", color); e.setAttribute("stroke", "#fff"); e.setAttribute("stroke-width", 0.6); }
  e.setAttribute("class", "mark");
  if (tip) e.setAttribute("data-tip", tip);
  return e;
}
function scale(domain, range, log) {
  var d0 = domain[0], d1 = domain[1];
  if (log) { d0 = Math.log(d0); d1 = Math.log(d1); }
  if (d1 === d0) { d0 -= 0.5; d1 += 0.5; }
  var f = function (v) { var x = log ? Math.log(v) : v; return range[0] + (x - d0) / (d1 - d0) * (range[1] - range[0]); };
  f.log = log; f.domain = domain;
  return f;
}
function niceTicks(lo, hi, n) {
  var span = hi - lo || 1, step = Math.pow(10, Math.floor(Math.log10(span / n))), err = n / span * step;
  if (err <= 0.15) step *= 10; else if (err <= 0.35) step *= 5; else if (err <= 0.75) step *= 2;
  var t = [], v = Math.ceil(lo / step) * step;
  for (; v <= hi + step * 1e-9; v += step) t.push(Number(v.toPrecision(12)));
  return t;
}
function kappaScale(kappas, range) {
  var pos = kappas.filter(function (k) { return k > 0; });
  var log = pos.length === kappas.length && pos.length > 1 && Math.min.apply(null, pos) * 10 <= Math.max.apply(null, pos);
  var lo = Math.min.apply(null, kappas), hi = Math.max.apply(null, kappas);
  if (log) return scale([lo / 1.25, hi * 1.25], range, true);
  var pad = (hi - lo) * 0.06 || 0.5;
  return scale([lo - pad, hi + pad], range, false);
}
function panel(parent, title, xlab, ylab, w, h) {
  var svg = el("svg", {viewBox: "0 0 " + (w || W) + " " + (h || H), width: w || W, height: h || H, class: "chart"}, parent);
  if (title) el("text", {x: (w || W) / 2, y: 15, "text-anchor": "middle", class: "title"}, svg).textContent = title;
  if (xlab) el("text", {x: M.l + ((w || W) - M.l - M.r) / 2, y: (h || H) - 6, "text-anchor": "middle", class: "lab"}, svg).textContent = xlab;
  if (ylab) el("text", {x: 12, y: M.t + ((h || H) - M.t - M.b) / 2, "text-anchor": "middle", class: "lab",
                         transform: "rotate(-90 12 " + (M.t + ((h || H) - M.t - M.b) / 2) + ")"}, svg).textContent = ylab;
  return svg;
}
function axes(svg, sx, sy, xticks, yticks, w, h) {
  w = w || W; h = h || H;
  var g = el("g", {class: "axis"}, svg);
  el("line", {x1: M.l, x2: w - M.r, y1: h - M.b, y2: h - M.b}, g);
  el("line", {x1: M.l, x2: M.l, y1: M.t, y2: h - M.b}, g);
  xticks.forEach(function (t) {
    var x = sx(t);
    el("line", {x1: x, x2: x, y1: M.t, y2: h - M.b, class: "grid"}, g);
    el("text", {x: x, y: h - M.b + 13, "text-anchor": "middle"}, g).textContent = fmt(t, 3);
  });
  yticks.forEach(function (t) {
    var y = sy(t);
    el("line", {x1: M.l, x2: w - M.r, y1: y, y2: y, class: "grid"}, g);
    el("text", {x: M.l - 4, y: y + 3, "text-anchor": "end"}, g).textContent = fmt(t, 3);
  });
}
function legend(parent, items, title) {
  var box = html("div", {class: "legend"}, parent);
  if (title) html("span", {class: "lt"}, box, title);
  items.forEach(function (it) {
    var item = html("span", {class: "li", "data-legend": it.label}, box);
    var svg = el("svg", {width: 30, height: 14, viewBox: "0 0 30 14"}, item);
    if (it.dash !== undefined) el("line", {x1: 1, x2: 29, y1: 7, y2: 7, stroke: it.color || "#444", "stroke-width": 2, "stroke-dasharray": it.dash}, svg);
    if (it.shape) marker(svg, it.shape, 15, 7, 4, it.color || "#444");
    html("span", {}, item, it.label);
  });
  return box;
}
function muLegend(parent, withLine) {
  return legend(parent, LV.mu.map(function (mu) { return {label: "μ = " + fmt(mu), color: muColor(mu), shape: muMarker(mu), dash: withLine ? "" : undefined}; }), "maturity misalignment:");
}
var tipBox = html("div", {id: "tip"}, document.body);
document.addEventListener("mouseover", function (ev) {
  var t = ev.target.closest ? ev.target.closest("[data-tip]") : null;
  if (!t) { tipBox.style.display = "none"; return; }
  tipBox.textContent = t.getAttribute("data-tip");
  tipBox.style.display = "block";
});
document.addEventListener("mousemove", function (ev) {
  tipBox.style.left = (ev.pageX + 12) + "px"; tipBox.style.top = (ev.pageY + 12) + "px";
});
function cellTip(o) {
  return "κ " + fmt(o.kappa) + ", c " + fmt(o.concentration) + ", μ " + fmt(o.mu) + ", ρ " + fmt(o.outside_mid_ratio) +
    (o.seed !== undefined ? ", seed " + o.seed : "");
}

// --- data --------------------------------------------------------------------------------------
function rowsOf(t) { return t.rows.map(function (r) { var o = {}; t.cols.forEach(function (c, i) { o[c] = r[i]; }); return o; }); }
var RUNS = rowsOf(D.runs), PAIRS = rowsOf(D.pairs);
function groupMean(rows, keyFn, valFn) {
  var m = new Map();
  rows.forEach(function (r) { var k = keyFn(r); if (!m.has(k)) m.set(k, []); m.get(k).push(valFn(r)); });
  var out = new Map(); m.forEach(function (v, k) { out.set(k, mean(v)); });
  return out;
}

// --- δ and φ across κ, one panel per concentration; a line per (μ, regime) ----------------------
function acrossKappa(name, metric, label) {
  var box = view(name); if (!box || !RUNS.length) return;
  var wrap = html("div", {class: "panels"}, box);
  var means = groupMean(RUNS, function (r) { return [r.concentration, r.mu, r.regime, r.kappa].join("|"); }, function (r) { return r[metric]; });
  var regimes = uniq(RUNS.map(function (r) { return r.regime; }));
  var sy = scale([0, 1], [H - M.b, M.t]);
  LV.concentration.forEach(function (c) {
    var svg = panel(wrap, "concentration c = " + fmt(c), "κ (liquidity ratio)", label);
    var sx = kappaScale(LV.kappa, [M.l, W - M.r]);
    axes(svg, sx, sy, LV.kappa.length <= 10 ? LV.kappa : niceTicks(sx.domain[0], sx.domain[1], 6), [0, 0.25, 0.5, 0.75, 1]);
    LV.mu.forEach(function (mu) {
      regimes.forEach(function (regime) {
        var pts = [];
        LV.kappa.forEach(function (k) { var v = means.get([c, mu, regime, k].join("|")); if (v !== undefined && v !== null) pts.push([k, v]); });
        if (!pts.length) return;
        el("polyline", {points: pts.map(function (p) { return sx(p[0]) + "," + sy(p[1]); }).join(" "), fill: "none",
                        stroke: muColor(mu), "stroke-width": 1.6, "stroke-dasharray": regime === "passive" ? "5 3" : "",
                        "data-series": "mu=" + mu + " " + regime}, svg);
        var g = el("g", {}, svg);
        pts.forEach(function (p) {
          marker(g, muMarker(mu), sx(p[0]), sy(p[1]), 3.2, muColor(mu),
                 regime + ": c " + fmt(c) + ", μ " + fmt(mu) + ", κ " + fmt(p[0]) + " → " + label + " " + fmt(p[1]));
        });
      });
    });
  });
  muLegend(box, true);
  legend(box, regimes.map(function (r) { return {label: r === "passive" ? "passive (dealers never trade)" : "active (dealers trade)", dash: r === "passive" ? "5 3" : ""}; }), "regime:");
}

// --- δ passive against δ active, every pair ---------------------------------------------------
function scatterPassiveActive() {
  var box = view("scatter"); if (!box || !PAIRS.length) return;
  var svg = panel(box, "δ active against δ passive (one point per pair)", "δ passive", "δ active", 460, 380);
  var w = 460, h = 380, sx = scale([0, 1], [M.l, w - M.r]), sy = scale([0, 1], [h - M.b, M.t]);
  axes(svg, sx, sy, [0, 0.25, 0.5, 0.75, 1], [0, 0.25, 0.5, 0.75, 1], w, h);
  el("line", {x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(1), class: "ref"}, svg);
  el("text", {x: sx(0.97), y: sy(0.9), "text-anchor": "end", class: "note"}, svg).textContent = "below the diagonal: dealers reduced defaults";
  var g = el("g", {}, svg);
  PAIRS.forEach(function (p) {
    marker(g, cMarker(p.concentration), sx(p.delta_passive), sy(p.delta_active), 3.4, muColor(p.mu),
           cellTip(p) + ": δ passive " + fmt(p.delta_passive) + ", δ active " + fmt(p.delta_active) + ", effect " + fmt(p.trading_effect));
  });
  legend(box, LV.mu.map(function (mu) { return {label: "μ = " + fmt(mu), color: muColor(mu), shape: "circle"}; }), "colour: μ");
  legend(box, LV.concentration.map(function (c) { return {label: "c = " + fmt(c), color: "#555", shape: cMarker(c)}; }), "marker: concentration");
}

// --- trading effect per pair across κ, panel per concentration ----------------------------------
function effectAcrossKappa() {
  var box = view("effect"); if (!box || !PAIRS.length) return;
  var wrap = html("div", {class: "panels"}, box);
  var vals = PAIRS.map(function (p) { return p.trading_effect; });
  var lo = Math.min(0, Math.min.apply(null, vals)), hi = Math.max(0, Math.max.apply(null, vals));
  var pad = (hi - lo) * 0.08 || 0.01, sy = scale([lo - pad, hi + pad], [H - M.b, M.t]);
  var nmu = LV.mu.length;
  LV.concentration.forEach(function (c) {
    var svg = panel(wrap, "concentration c = " + fmt(c), "κ (liquidity ratio)", "trading effect");
    var sx = kappaScale(LV.kappa, [M.l, W - M.r]);
    axes(svg, sx, sy, LV.kappa.length <= 10 ? LV.kappa : niceTicks(sx.domain[0], sx.domain[1], 6), niceTicks(lo - pad, hi + pad, 5));
    el("line", {x1: M.l, x2: W - M.r, y1: sy(0), y2: sy(0), class: "ref"}, svg);
    LV.mu.forEach(function (mu, i) {
      var off = (i - (nmu - 1) / 2) * 5;  // μ side by side at each κ
      var mine = PAIRS.filter(function (p) { return p.concentration === c && p.mu === mu; });
      var g = el("g", {}, svg);
      mine.forEach(function (p) {
        marker(g, muMarker(mu), sx(p.kappa) + off, sy(p.trading_effect), 2.8, muColor(mu),
               cellTip(p) + ": effect " + fmt(p.trading_effect));
      });
      var m = groupMean(mine, function (p) { return p.kappa; }, function (p) { return p.trading_effect; });
      var pts = LV.kappa.filter(function (k) { return m.has(k); }).map(function (k) { return sx(k) + off + "," + sy(m.get(k)); });
      if (pts.length) el("polyline", {points: pts.join(" "), fill: "none", stroke: muColor(mu), "stroke-width": 1.4, opacity: 0.8}, svg);
    });
  });
  muLegend(box, true);
}

// --- heatmaps over κ × μ, per concentration ---------------------------------------------------
function heatmap(parent, title, cells, valueOf, colorOf, name, c) {
  var w = Math.max(260, 70 + LV.kappa.length * 46), h = 70 + LV.mu.length * 30;
  var svg = panel(parent, title, "κ", "μ", w, h);
  svg.setAttribute("data-heatmap", name);
  svg.setAttribute("data-concentration", c);
  var cw = (w - M.l - M.r) / LV.kappa.length, ch = (h - M.t - M.b) / LV.mu.length;
  LV.mu.forEach(function (mu, j) {
    el("text", {x: M.l - 4, y: M.t + (LV.mu.length - 1 - j) * ch + ch / 2 + 4, "text-anchor": "end", class: "tick"}, svg).textContent = fmt(mu);
    LV.kappa.forEach(function (k, i) {
      var v = valueOf(cells.get(k + "|" + mu));
      var x = M.l + i * cw, y = M.t + (LV.mu.length - 1 - j) * ch;
      el("rect", {x: x, y: y, width: cw - 1, height: ch - 1, fill: v === null ? "#eee" : colorOf(v), class: "cell",
                  "data-kappa": k, "data-mu": mu, "data-value": v === null ? "" : v,
                  "data-tip": title + ": κ " + fmt(k) + ", μ " + fmt(mu) + " → " + fmt(v)}, svg);
      var t = el("text", {x: x + cw / 2, y: y + ch / 2 + 4, "text-anchor": "middle", class: "cv",
                          fill: v !== null && dark(colorOf(v)) ? "#fff" : "#111"}, svg);
      t.textContent = v === null ? "" : fmt(v, 2);
    });
  });
  LV.kappa.forEach(function (k, i) {
    el("text", {x: M.l + i * cw + cw / 2, y: h - M.b + 13, "text-anchor": "middle", class: "tick"}, svg).textContent = fmt(k);
  });
}
function colorbar(parent, label, colorOf, lo, hi) {
  var box = html("div", {class: "legend"}, parent);
  html("span", {class: "lt"}, box, label);
  var svg = el("svg", {width: 220, height: 26, viewBox: "0 0 220 26"}, box);
  for (var i = 0; i < 40; i++) el("rect", {x: 10 + i * 5, y: 2, width: 5.5, height: 10, fill: colorOf(lo + (hi - lo) * i / 39)}, svg);
  el("text", {x: 10, y: 24, class: "tick"}, svg).textContent = fmt(lo, 3);
  el("text", {x: 210, y: 24, "text-anchor": "end", class: "tick"}, svg).textContent = fmt(hi, 3);
}
function heatmaps() {
  var box = view("heatmaps"); if (!box || !PAIRS.length) return;
  // the effect's colour scale spans the largest |mean| of a heatmap cell, so the cells' differences show
  var cellMeans = groupMean(PAIRS, function (p) { return [p.concentration, p.kappa, p.mu].join("|"); }, function (p) { return p.trading_effect; });
  var maxAbs = Math.max.apply(null, Array.from(cellMeans.values()).map(Math.abs).concat([1e-9]));
  var seq = function (v) { return ramp(v); }, div = function (v) { return diverging(v / maxAbs); };
  LV.concentration.forEach(function (c) {
    html("h3", {}, box, "concentration c = " + fmt(c) + " (mean over seeds and ρ)");
    var row = html("div", {class: "panels"}, box);
    var mine = PAIRS.filter(function (p) { return p.concentration === c; });
    var cells = new Map();
    mine.forEach(function (p) { var k = p.kappa + "|" + p.mu; if (!cells.has(k)) cells.set(k, []); cells.get(k).push(p); });
    var avg = function (key) { return function (list) { return list ? mean(list.map(function (p) { return p[key]; })) : null; }; };
    heatmap(row, "δ passive, c = " + fmt(c), cells, avg("delta_passive"), seq, "delta_passive", c);
    heatmap(row, "δ active, c = " + fmt(c), cells, avg("delta_active"), seq, "delta_active", c);
    heatmap(row, "trading effect, c = " + fmt(c), cells, avg("trading_effect"), div, "trading_effect", c);
  });
  colorbar(box, "δ:", seq, 0, 1);
  colorbar(box, "trading effect (green: dealers reduced defaults):", div, -maxAbs, maxAbs);
}

// --- distributions -----------------------------------------------------------------------------
function histogram(parent, title, series, bins, ylabel) {
  var all = [].concat.apply([], series.map(function (s) { return s.values; }));
  if (!all.length) return;
  var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
  if (hi === lo) { lo -= 0.5; hi += 0.5; }
  var width = (hi - lo) / bins, counts = series.map(function (s) {
    var c = new Array(bins).fill(0);
    s.values.forEach(function (v) { c[Math.min(bins - 1, Math.floor((v - lo) / width))]++; });
    return c;
  });
  var top = Math.max.apply(null, [].concat.apply([], counts));
  var svg = panel(parent, title, "", ylabel || "runs", W, H);
  var sx = scale([lo, hi], [M.l, W - M.r]), sy = scale([0, top * 1.08], [H - M.b, M.t]);
  axes(svg, sx, sy, niceTicks(lo, hi, 5), niceTicks(0, top, 4));
  series.forEach(function (s, j) {
    counts[j].forEach(function (n, i) {
      if (!n) return;
      el("rect", {x: sx(lo + i * width) + 1, y: sy(n), width: Math.max(1, sx(lo + (i + 1) * width) - sx(lo + i * width) - 2),
                  height: sy(0) - sy(n), fill: s.color, opacity: series.length > 1 ? 0.55 : 0.85,
                  "data-tip": s.label + ": " + n + " in [" + fmt(lo + i * width, 3) + ", " + fmt(lo + (i + 1) * width, 3) + ")"}, svg);
    });
  });
  legend(parent, series.filter(function (s) { return s.values.length; }).map(function (s) { return {label: s.label + " (n = " + s.values.length + ")", color: s.color, shape: "square"}; }));
}
function distributions() {
  var box = view("distributions"); if (!box || !RUNS.length) return;
  var wrap = html("div", {class: "panels"}, box);
  var d = function (reg) { return RUNS.filter(function (r) { return r.regime === reg && r.delta_total !== null; }).map(function (r) { return r.delta_total; }); };
  var a = html("div", {}, wrap);
  histogram(a, "δ total of the runs", [{label: "passive", color: "#6c757d", values: d("passive")}, {label: "active", color: "#d9480f", values: d("active")}], 20);
  if (PAIRS.length) {
    var b = html("div", {}, wrap);
    histogram(b, "trading effect of the pairs", [{label: "trading effect", color: "#1a7f37", values: PAIRS.map(function (p) { return p.trading_effect; })}], 20, "pairs");
  }
}

// --- parallel coordinates with brushing ---------------------------------------------------------
function parallel() {
  var box = view("parallel"); if (!box) return;
  var rows = PAIRS.length ? PAIRS : RUNS;
  if (!rows.length) return;
  var dims = PAIRS.length ? ["kappa", "concentration", "mu", "outside_mid_ratio", "seed", "delta_passive", "delta_active", "trading_effect"]
                          : ["kappa", "concentration", "mu", "outside_mid_ratio", "seed", "delta_total", "phi_total"];
  var names = {kappa: "κ", concentration: "c", mu: "μ", outside_mid_ratio: "ρ", seed: "seed", delta_passive: "δ passive",
               delta_active: "δ active", trading_effect: "trading effect", delta_total: "δ", phi_total: "φ"};
  var w = Math.max(640, dims.length * 105), h = 340, top = 34, bottom = h - 28;
  var svg = el("svg", {viewBox: "0 0 " + w + " " + h, width: w, height: h, class: "chart"}, box);
  var colorKey = PAIRS.length ? "trading_effect" : "delta_total";
  var cv = rows.map(function (r) { return r[colorKey]; }), cmax = Math.max.apply(null, cv.map(Math.abs).concat([1e-9]));
  var xs = dims.map(function (_, i) { return 40 + i * (w - 80) / (dims.length - 1); });
  var scales = dims.map(function (dname) {
    var v = rows.map(function (r) { return r[dname]; }).filter(function (x) { return x !== null; });
    var lo = Math.min.apply(null, v), hi = Math.max.apply(null, v);
    return scale([lo, hi === lo ? lo + 1 : hi], [bottom, top]);
  });
  var lines = el("g", {}, svg);
  var paths = rows.map(function (r) {
    var d = dims.map(function (dname, i) { return (i ? "L" : "M") + xs[i] + "," + scales[i](r[dname] === null ? 0 : r[dname]); }).join("");
    var col = PAIRS.length ? diverging(r[colorKey] / cmax) : ramp(r[colorKey]);
    return el("path", {d: d, fill: "none", stroke: col, "stroke-width": 1.2, opacity: 0.75, class: "pline",
                       "data-tip": cellTip(r) + dims.slice(5).map(function (k) { return ", " + names[k] + " " + fmt(r[k]); }).join("")}, lines);
  });
  var brushes = dims.map(function () { return null; });
  var counter = html("p", {class: "small muted", "data-role": "selected"}, box);
  function update() {
    var n = 0;
    rows.forEach(function (r, j) {
      var on = brushes.every(function (b, i) { if (!b) return true; var y = scales[i](r[dims[i]]); return y >= b[0] && y <= b[1]; });
      paths[j].setAttribute("opacity", on ? 0.8 : 0.06);
      paths[j].setAttribute("data-selected", on ? "1" : "0");
      if (on) n++;
    });
    counter.textContent = n + " of " + rows.length + (PAIRS.length ? " pairs" : " runs") + " selected" +
      (brushes.some(Boolean) ? " (drag on an axis to narrow, click an axis to clear it)" : " (drag on any axis to select a range)");
  }
  dims.forEach(function (dname, i) {
    var g = el("g", {class: "axis", "data-axis": dname}, svg);
    el("line", {x1: xs[i], x2: xs[i], y1: top, y2: bottom}, g);
    el("text", {x: xs[i], y: top - 14, "text-anchor": "middle", class: "lab"}, g).textContent = names[dname];
    var dom = scales[i].domain;
    el("text", {x: xs[i] + 4, y: top + 3, class: "tick"}, g).textContent = fmt(dom[1], 3);
    el("text", {x: xs[i] + 4, y: bottom + 3, class: "tick"}, g).textContent = fmt(dom[0], 3);
    var sel = el("rect", {x: xs[i] - 8, y: top, width: 16, height: 0, class: "brush"}, g);
    var hit = el("rect", {x: xs[i] - 12, y: top - 4, width: 24, height: bottom - top + 8, fill: "transparent", style: "cursor:crosshair"}, g);
    var start = null;
    function yOf(ev) { var b = svg.getBoundingClientRect(); return (ev.clientY - b.top) * h / b.height; }
    hit.addEventListener("mousedown", function (ev) { start = yOf(ev); ev.preventDefault(); });
    window.addEventListener("mousemove", function (ev) {
      if (start === null) return;
      var y = yOf(ev), a = Math.max(top, Math.min(start, y)), b = Math.min(bottom, Math.max(start, y));
      sel.setAttribute("y", a); sel.setAttribute("height", b - a);
      brushes[i] = b - a > 2 ? [a, b] : null; update();
    });
    window.addEventListener("mouseup", function () {
      if (start === null) return;
      start = null;
      if (!brushes[i]) { sel.setAttribute("height", 0); update(); }
    });
  });
  update();
  if (PAIRS.length) colorbar(box, "line colour: trading effect", function (v) { return diverging(v / cmax); }, -cmax, cmax);
}

// --- 3-D surface over κ × μ, drag to rotate -----------------------------------------------------
function surface() {
  var box = view("surface"); if (!box || !PAIRS.length || LV.kappa.length < 2 || LV.mu.length < 2) {
    if (box) html("p", {class: "small muted"}, box, "A surface needs at least two κ and two μ values and some complete pairs.");
    return;
  }
  var controls = html("div", {class: "controls"}, box);
  html("label", {}, controls, "concentration ");
  var csel = html("select", {"data-role": "surface-c"}, controls);
  LV.concentration.forEach(function (c) { html("option", {value: c}, csel, "c = " + fmt(c)); });
  html("label", {}, controls, "  value ");
  var vsel = html("select", {"data-role": "surface-v"}, controls);
  [["delta_passive", "δ passive"], ["delta_active", "δ active"], ["trading_effect", "trading effect"]].forEach(function (o) { html("option", {value: o[0]}, vsel, o[1]); });
  html("span", {class: "small muted"}, controls, "  drag the surface to turn it");
  var w = 560, h = 420, svg = el("svg", {viewBox: "0 0 " + w + " " + h, width: w, height: h, class: "chart", style: "cursor:grab"}, box);
  var yaw = -0.7, pitch = 0.55;
  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var c = Number(csel.value), key = vsel.value;
    var m = groupMean(PAIRS.filter(function (p) { return p.concentration === c; }), function (p) { return p.kappa + "|" + p.mu; }, function (p) { return p[key]; });
    var vals = Array.from(m.values()).filter(function (v) { return v !== null; });
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals), span = hi - lo || 1;
    var nk = LV.kappa.length, nm = LV.mu.length, S = 0.5 * Math.min(w, h);
    function P(i, j, v) {  // grid index -> unit cube -> rotated -> screen
      var x = i / (nk - 1) - 0.5, y = j / (nm - 1) - 0.5, z = v === null ? 0 : (v - lo) / span - 0.5;
      var x1 = x * Math.cos(yaw) - y * Math.sin(yaw), y1 = x * Math.sin(yaw) + y * Math.cos(yaw);
      var y2 = y1 * Math.cos(pitch) - z * Math.sin(pitch), d = y1 * Math.sin(pitch) + z * Math.cos(pitch);
      return [w / 2 + x1 * S, h / 2 - d * S + 10, y2];
    }
    var quads = [];
    for (var i = 0; i < nk - 1; i++) for (var j = 0; j < nm - 1; j++) {
      var corners = [[i, j], [i + 1, j], [i + 1, j + 1], [i, j + 1]].map(function (q) { return [q[0], q[1], m.get(LV.kappa[q[0]] + "|" + LV.mu[q[1]])]; });
      if (corners.some(function (q) { return q[2] === undefined || q[2] === null; })) continue;
      var pts = corners.map(function (q) { return P(q[0], q[1], q[2]); });
      quads.push({pts: pts, depth: mean(pts.map(function (p) { return p[2]; })), v: mean(corners.map(function (q) { return q[2]; })),
                  tip: "κ " + fmt(LV.kappa[i]) + "–" + fmt(LV.kappa[i + 1]) + ", μ " + fmt(LV.mu[j]) + "–" + fmt(LV.mu[j + 1])});
    }
    quads.sort(function (a, b) { return b.depth - a.depth; });
    var base = [[0, 0], [nk - 1, 0], [nk - 1, nm - 1], [0, nm - 1]].map(function (q) { return P(q[0], q[1], lo); });
    el("polygon", {points: base.map(function (p) { return p[0] + "," + p[1]; }).join(" "), fill: "#f4f4f4", stroke: "#bbb"}, svg);
    var cmax = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    quads.forEach(function (q) {
      el("polygon", {points: q.pts.map(function (p) { return p[0] + "," + p[1]; }).join(" "), class: "quad",
                     fill: key === "trading_effect" ? diverging(q.v / cmax) : ramp(q.v), stroke: "#333", "stroke-width": 0.4,
                     "data-tip": q.tip + ": mean " + fmt(q.v)}, svg);
    });
    [[0, 0, "κ " + fmt(LV.kappa[0])], [nk - 1, 0, "κ " + fmt(LV.kappa[nk - 1])], [0, nm - 1, "μ " + fmt(LV.mu[nm - 1])]].forEach(function (a) {
      var p = P(a[0], a[1], lo); el("text", {x: p[0], y: p[1] + 14, "text-anchor": "middle", class: "tick"}, svg).textContent = a[2];
    });
    el("text", {x: 10, y: 16, class: "lab"}, svg).textContent = vsel.options[vsel.selectedIndex].text + " over κ × μ, c = " + fmt(c) + " (range " + fmt(lo, 3) + " … " + fmt(hi, 3) + ")";
  }
  var drag = null;
  svg.addEventListener("mousedown", function (ev) { drag = [ev.clientX, ev.clientY, yaw, pitch]; ev.preventDefault(); });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) return;
    yaw = drag[2] + (ev.clientX - drag[0]) * 0.01;
    pitch = Math.max(-1.4, Math.min(1.4, drag[3] + (ev.clientY - drag[1]) * 0.01));
    draw();
  });
  window.addEventListener("mouseup", function () { drag = null; });
  csel.addEventListener("change", draw); vsel.addEventListener("change", draw);
  draw();
}

// --- what drives δ: shares of variance -------------------------------------------------------
function variance() {
  var box = view("variance"); if (!box) return;
  var dec = D.variance_decomposition || {}, keys = Object.keys(dec), done = keys.filter(function (k) { return dec[k].computed; });
  var colors = {delta_passive: "#6c757d", delta_active: "#d9480f", trading_effect: "#1a7f37"};
  var labels = {delta_passive: "δ passive", delta_active: "δ active", trading_effect: "trading effect"};
  keys.filter(function (k) { return !dec[k].computed; }).forEach(function (k) {
    html("p", {class: "small muted"}, box, labels[k] + ": not computed: " + dec[k].reason);
  });
  if (!done.length) return;
  var effects = [];
  done.forEach(function (k) { Object.keys(dec[k].shares).forEach(function (e) { if (effects.indexOf(e) < 0) effects.push(e); }); });
  var rowH = 8 * done.length + 8, w = 560, h = M.t + effects.length * rowH + 36, left = 110;
  var svg = el("svg", {viewBox: "0 0 " + w + " " + h, width: w, height: h, class: "chart"}, box);
  var sx = scale([0, 1], [left, w - 20]);
  [0, 0.25, 0.5, 0.75, 1].forEach(function (t) {
    el("line", {x1: sx(t), x2: sx(t), y1: M.t - 4, y2: h - 24, class: "grid"}, svg);
    el("text", {x: sx(t), y: h - 10, "text-anchor": "middle", class: "tick"}, svg).textContent = (t * 100) + "%";
  });
  effects.forEach(function (e, i) {
    var y0 = M.t + i * rowH;
    el("text", {x: left - 6, y: y0 + rowH / 2 + 2, "text-anchor": "end", class: "tick"}, svg).textContent = e;
    done.forEach(function (k, j) {
      var s = dec[k].shares[e] || 0;
      el("rect", {x: sx(0), y: y0 + j * 8, width: Math.max(0.5, sx(s) - sx(0)), height: 7, fill: colors[k], class: "bar",
                  "data-effect": e, "data-of": k, "data-share": s, "data-tip": labels[k] + ": " + e + " explains " + fmt(s * 100, 3) + "% of the variance"}, svg);
    });
  });
  legend(box, done.map(function (k) { return {label: labels[k], color: colors[k], shape: "square"}; }), "share of the variance of:");
}

// --- comparison with a second sweep -------------------------------------------------------------
function comparison() {
  var box = view("compare"); if (!box || !D.compare) return;
  var cells = D.compare.cells.filter(function (c) { return c.trading_effect_a !== null && c.trading_effect_b !== null; });
  if (!cells.length) { html("p", {}, box, "No grid cell has a complete pair in both sweeps."); return; }
  var wrap = html("div", {class: "panels"}, box);
  var all = [].concat(cells.map(function (c) { return c.trading_effect_a; }), cells.map(function (c) { return c.trading_effect_b; }));
  var lo = Math.min(0, Math.min.apply(null, all)), hi = Math.max(0, Math.max.apply(null, all)), pad = (hi - lo) * 0.08 || 0.01;
  var w = 420, h = 360, svg = panel(wrap, "trading effect per cell: " + D.compare.b + " against " + D.compare.a, D.compare.a, D.compare.b, w, h);
  var sx = scale([lo - pad, hi + pad], [M.l, w - M.r]), sy = scale([lo - pad, hi + pad], [h - M.b, M.t]);
  axes(svg, sx, sy, niceTicks(lo - pad, hi + pad, 5), niceTicks(lo - pad, hi + pad, 5), w, h);
  el("line", {x1: sx(lo - pad), y1: sy(lo - pad), x2: sx(hi + pad), y2: sy(hi + pad), class: "ref"}, svg);
  var g = el("g", {}, svg);
  cells.forEach(function (c) {
    marker(g, cMarker(c.concentration), sx(c.trading_effect_a), sy(c.trading_effect_b), 3.4, muColor(c.mu),
           cellTip(c) + ": A " + fmt(c.trading_effect_a) + ", B " + fmt(c.trading_effect_b) + ", B − A " + fmt(c.trading_effect_diff));
  });
  var hbox = html("div", {}, wrap);
  histogram(hbox, "B − A trading effect per cell", [{label: "B − A", color: "#5f3dc4", values: cells.map(function (c) { return c.trading_effect_diff; })}], 20, "cells");
  legend(box, LV.mu.map(function (mu) { return {label: "μ = " + fmt(mu), color: muColor(mu), shape: "circle"}; }), "colour: μ");
  legend(box, LV.concentration.map(function (c) { return {label: "c = " + fmt(c), color: "#555", shape: cMarker(c)}; }), "marker: concentration");
}

[function () { acrossKappa("delta", "delta_total", "δ total"); }, function () { acrossKappa("phi", "phi_total", "φ total"); },
 scatterPassiveActive, effectAcrossKappa, heatmaps, distributions, parallel, surface, variance, comparison].forEach(function (f) {
  try { f(); } catch (e) { console.error(e); var p = document.createElement("p"); p.className = "note"; p.textContent = "A figure could not be drawn: " + e; document.getElementById("report").appendChild(p); }
});
document.body.setAttribute("data-drawn", "1");
"""
