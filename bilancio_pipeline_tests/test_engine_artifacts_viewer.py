"""The run's two HTML pages in a real browser: the viewer script must draw, from the data the
page embeds, the same cards, tables and charts the run's CSV/JSON files hold.

Pages are opened from file:// in headless Chromium, as a researcher opens them from a run
folder or a downloaded object; nothing may be fetched from anywhere else.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections import Counter
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from bilancio_pipeline.engine.artifacts import write_artifacts
from bilancio_pipeline.engine.output import SimulationOutput
from bilancio_pipeline.engine.params import RunParams
from bilancio_pipeline.engine.run import run_simulation, simulate
from bilancio_pipeline.engine.run_report import read_page_data
from bilancio_pipeline_tests.test_ui_launch import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

PLOTTED = ("phi_t", "delta_t", "alpha_t", "gross_settled_t", "Mbar_t", "Mpeak_t")
HOSTILE = "</script><script>alert(1)</script><!--<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module", params=["passive", "active"])
def run(request, tmp_path_factory):
    """A real run's folder and result (n=20: defaults in both regimes, trades in the active one)."""
    folder = tmp_path_factory.mktemp(f"run-{request.param}")
    result = run_simulation(RunParams(n_agents=20, kappa=0.5, regime=request.param, seed=3), folder)
    return folder, result


class Opened:
    """A page opened from file://, with what it logged, requested and tried to show."""

    def __init__(self, browser: Browser, path: Path, javascript: bool = True):
        self.context = browser.new_context(java_script_enabled=javascript)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", self._dialog)
        self.page.goto(path.as_uri())
        if javascript:
            self.page.wait_for_selector("main[data-drawn=true]", state="attached", timeout=10_000)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def section_table(self, title: str) -> list[list[str]]:
        """Cell texts (header row first) of the table in the section whose heading starts with title."""
        return self.page.evaluate(
            """title => {
              const section = [...document.querySelectorAll('section')].find(s => s.querySelector('h2').textContent.startsWith(title));
              const table = section && section.querySelector('table');
              return table ? [...table.rows].map(r => [...r.cells].map(c => c.textContent)) : null;
            }""",
            title,
        )

    def cards(self) -> dict[str, str]:
        return dict(self.page.evaluate("() => [...document.querySelectorAll('.card')].map(c => [c.children[0].textContent, c.children[1].textContent])"))

    def headings(self) -> list[str]:
        return self.page.evaluate("() => [...document.querySelectorAll('h2')].map(h => h.textContent)")

    def chart(self) -> dict:
        """Per plotted metric of the day chart: points per polyline, and the circles' tooltips."""
        return self.page.evaluate(
            """() => {
              const svg = document.querySelector('svg.day-chart');
              const out = {};
              for (const g of svg.querySelectorAll('g.series')) {
                out[g.dataset.metric] = {
                  lines: [...g.querySelectorAll('polyline')].map(p => p.getAttribute('points').trim().split(/\\s+/).length),
                  titles: [...g.querySelectorAll('circle')].map(c => c.textContent)};
              }
              out.S_t = {titles: [...svg.querySelectorAll('g.bars rect')].map(r => r.textContent)};
              return out;
            }"""
        )

    def close(self) -> None:
        self.context.close()

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.dialogs == []
        assert [url for url in self.requests if not url.startswith("file:")] == []


def _close_to(text: str, value: float) -> bool:
    """A number shown to 4 decimals is the value."""
    return math.isclose(float(text), value, abs_tol=5.1e-5, rel_tol=1e-12)


def _shown(text: str, value) -> bool:
    if value is None:
        return text == "—"
    if isinstance(value, bool):
        return text == ("yes" if value else "no")
    if isinstance(value, int):
        return text == str(value)
    if isinstance(value, float):
        return _close_to(text, value)
    return text == value


def _data(folder: Path, relative: str) -> bytes:
    """A data artifact's content (a run keeps it gzipped, as `<relative>.gz`)."""
    return gzip.decompress((folder / f"{relative}.gz").read_bytes())


def _csv_rows(folder: Path, relative: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(_data(folder, relative).decode(), newline="")))


def test_metrics_page_draws_the_chart_table_and_cards_of_metrics_json(browser, run):
    folder, result = run
    days = orjson.loads(_data(folder, "out/metrics.json"))
    opened = Opened(browser, folder / "out/metrics.html")
    try:
        chart = opened.chart()
        table = opened.section_table("Day-by-Day Metrics")
        cards = opened.cards()
        matrix = opened.section_table("Debtor Shortfall Shares")
        intraday = opened.page.eval_on_selector_all("figure svg.intraday", "svgs => svgs.map(s => s.dataset.day)")
        opened.assert_clean()
    finally:
        opened.close()

    # the chart: one line per plotted metric, one point per day, each tooltip the day's value
    assert set(PLOTTED) <= set(chart)
    for key in PLOTTED:
        assert chart[key]["lines"] == [len(days)], key
        assert len(chart[key]["titles"]) == len(days), key
        for title, day in zip(chart[key]["titles"], days):
            prefix = f"day {day['day']}: {key} = "
            assert title.startswith(prefix) and _close_to(title[len(prefix):], day[key]), (key, title)
    assert [title.split(" = ")[0] for title in chart["S_t"]["titles"]] == [f"day {d['day']}: S_t" for d in days]

    # the table: one row per day, the columns of metrics.json with day first, the same values
    header, *rows = table
    assert header == ["day"] + sorted(k for k in days[0] if k != "day")
    assert len(rows) == len(days)
    for cells, day in zip(rows, days):
        for column, text in zip(header, cells):
            assert _shown(text, day[column]), (day["day"], column, text, day[column])

    # the cards: totals over the days and the run's summary
    summary = result.summary
    assert cards["Days analysed"] == str(len(days))
    assert _close_to(cards["Total dues Σ S_t"], sum(d["S_t"] for d in days))
    assert _close_to(cards["φ_total (value-weighted)"], summary["phi_total"])
    assert _close_to(cards["δ_total (value-weighted)"], summary["delta_total"])
    assert cards["Defaulted agents"] == str(summary["n_defaults"])
    assert cards["Last simulated day"] == str(summary["last_sim_day"])

    # the debtor-share matrix (one row per agent that was a net debtor) and one chart per day with steps
    shares = _csv_rows(folder, "out/debtor_shares.csv")
    numbered = sorted((int(a[1:]), a) for a in {s["agent"] for s in shares} if a[1:].isdigit())  # H2 before H12
    named = sorted(a for a in {s["agent"] for s in shares} if not a[1:].isdigit())  # then dealers, VBTs by name
    assert [row[0] for row in matrix[1:]] == [a for _, a in numbered] + named
    assert matrix[0][1:] == [f"day {d}" for d in sorted({int(s["day"]) for s in shares})]
    assert sorted(map(int, intraday)) == sorted({int(s["day"]) for s in _csv_rows(folder, "out/intraday.csv")})


def test_run_page_draws_headline_defaults_trades_kinds_and_balances(browser, run):
    folder, result = run
    events = [orjson.loads(line) for line in _data(folder, "out/events.jsonl").splitlines()]
    opened = Opened(browser, folder / "run.html")
    try:
        cards = opened.cards()
        headings = opened.headings()
        defaults = opened.section_table("Defaults")
        trades = opened.section_table("Trades")
        kinds = opened.section_table("Events by Kind")
        balances = opened.section_table("End-of-Run Balances")
        parameters = opened.section_table("Parameters")
        title = opened.page.title()
        opened.assert_clean()
    finally:
        opened.close()

    summary = result.summary
    assert _close_to(cards["δ_total"], summary["delta_total"]) and _close_to(cards["φ_total"], summary["phi_total"])
    assert cards["defaulted agents"] == str(summary["n_defaults"])
    assert cards["settlements"] == str(summary["n_clears_all"])
    assert cards["trades"] == str(summary["total_trades"])

    defaulted = [e for e in events if e["kind"] == "AgentDefaulted"]
    assert f"Defaults ({len(defaulted)})" in headings
    assert [row[:2] for row in defaults[1:]] == [[str(e["day"]), e["agent"]] for e in defaulted]
    traded = [e for e in events if e["kind"] == "dealer_trade"]
    assert f"Trades ({len(traded)})" in headings
    if traded:
        ticket = trades[0].index("ticket_id")
        assert [row[ticket] for row in trades[1:]] == [e["ticket_id"] for e in traded]
    else:
        assert trades is None  # "No dealer trades in this run." instead of a table
    assert {kind: int(count) for kind, count in kinds[1:]} == Counter(e["kind"] for e in events)
    assert [row[0] for row in balances[1:]] == [row["agent_id"] for row in _csv_rows(folder, "out/balances.csv")]
    assert ["regime", result.params.regime] in parameters
    assert title.startswith("Run: ")


def test_days_without_a_value_break_the_lines_and_empty_runs_say_so(browser, tmp_path):
    output = simulate(RunParams(n_agents=20, kappa=0.5, seed=3))
    rows = [dict(r) for r in output.day_metrics]
    rows[2]["phi_t"] = None
    rows[2]["delta_t"] = float("nan")
    write_artifacts(SimulationOutput(output.params, output.scenario, output.events, output.balances, rows, output.summary), tmp_path / "gap")
    opened = Opened(browser, tmp_path / "gap/out/metrics.html")
    try:
        chart = opened.chart()
        opened.assert_clean()
    finally:
        opened.close()
    for key in ("phi_t", "delta_t"):  # one line before the gap, one after
        assert chart[key]["lines"] == [2, len(rows) - 3]
        assert len(chart[key]["titles"]) == len(rows) - 1
    assert chart["alpha_t"]["lines"] == [len(rows)]

    write_artifacts(SimulationOutput(output.params, output.scenario, [], [], [], {}), tmp_path / "empty")
    texts = {}
    for page in ("out/metrics.html", "run.html"):
        opened = Opened(browser, tmp_path / "empty" / page)
        try:
            texts[page] = opened.page.inner_text("main")
            opened.assert_clean()
        finally:
            opened.close()
    for note in ("No day metrics: no payable fell due.", "No day metrics.", "No net debtors on the analysed days.", "No settlement steps."):
        assert note in texts["out/metrics.html"]
    for note in ("No agent defaulted.", "No dealer trades in this run.", "No balances."):
        assert note in texts["run.html"]


def test_hostile_strings_are_shown_as_text_and_never_run(browser, tmp_path):
    output = simulate(RunParams(n_agents=20, kappa=0.5, seed=3))
    scenario = dict(output.scenario, name=HOSTILE)
    events = output.events + [{"kind": HOSTILE, "day": 1, "phase": "simulation"}, {"kind": "AgentDefaulted", "day": 2, "phase": "simulation", "agent": HOSTILE, "trigger_contract": "</SCRIPT>", "shortfall": 1}]
    rows = [dict(r, notes=HOSTILE) for r in output.day_metrics]
    summary = dict(output.summary, stop_reason=HOSTILE)
    write_artifacts(SimulationOutput(output.params, scenario, events, output.balances, rows, summary), tmp_path)
    for page, check in (("out/metrics.html", "Day-by-Day Metrics"), ("run.html", "Defaults")):
        opened = Opened(browser, tmp_path / page)
        try:
            scripts = opened.page.evaluate("() => document.scripts.length")
            images = opened.page.evaluate("() => document.images.length")
            title = opened.page.title()
            table = opened.section_table(check)
            opened.assert_clean()  # no alert dialog, no console error, no request
        finally:
            opened.close()
        assert scripts == 2 and images == 0
        assert title.endswith(HOSTILE)
        assert any(HOSTILE in row for row in table[1:])  # shown as the text it is


def test_without_javascript_the_page_says_so_and_still_holds_the_data(browser, run):
    """The note points to the CSV/JSON files; the page still carries the data, packed."""
    folder, _ = run
    opened = Opened(browser, folder / "out/metrics.html", javascript=False)
    try:
        note = opened.page.inner_text("p.note")
        heading = opened.page.inner_text("h1")
        explained = opened.page.locator("dl dt").count()
        drawn = opened.page.locator("main").inner_html()
        embedded = read_page_data((folder / "out/metrics.html").read_text())
    finally:
        opened.close()
    assert "JavaScript" in note and "CSV and JSON files" in note
    assert heading.startswith("Day metrics: ")
    assert explained > 10 and drawn == ""
    assert embedded["days"] == orjson.loads(_data(folder, "out/metrics.json"))
