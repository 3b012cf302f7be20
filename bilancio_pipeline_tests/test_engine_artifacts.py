"""Run artifacts (MODEL.md section 6): every file's shape, and clear errors for corrupt ones.

The simulation output here is built by a small toy settlement loop over a real compiled
scenario, so the artifacts hold every event kind a run produces without depending on the
engine's day loop.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import yaml

from bilancio_pipeline.engine.artifacts import (
    ARTIFACT_PATHS,
    BALANCE_COLUMNS,
    DAY_METRIC_COLUMNS,
    COMPRESSED,
    ArtifactCorrupt,
    events_jsonl,
    read_csv_rows,
    read_events,
    read_run_artifacts,
    read_scenario,
    render_artifacts,
    stored_path,
    write_artifacts,
)
from bilancio_pipeline.engine.output import SimulationOutput
from bilancio_pipeline.engine.run_report import read_page_data
from bilancio_pipeline.engine.params import RunParams
from bilancio_pipeline.engine.scenario import generate

PHASES = ("PhaseA", "SubphaseB1", "SubphaseB_Dealer", "SubphaseB2", "SubphaseB_Rollover", "PhaseC")


def toy_output(params: RunParams, days: int = 20) -> SimulationOutput:
    """A run-shaped output: setup events from the compiled scenario, then a plain pay-what-you-can
    loop with defaults, write-offs, reassignment, rollover and (active) dealer sells."""
    scenario = generate(params)
    doc = scenario.to_dict()
    ids = scenario.agent_ids
    cash = {a: 0 for a in ids}
    events: list[dict] = []
    for m in scenario.mints:
        cash[ids[m.to]] += m.amount
        events.append({"kind": "CashMinted", "day": 0, "phase": "setup", "to": ids[m.to], "amount": m.amount, "alias": m.alias})
    live = {}
    for k, p in enumerate(scenario.payables):
        pid = f"PAY_{k:04d}"
        live[pid] = {"debtor": ids[p.debtor], "creditor": ids[p.creditor], "amount": p.amount, "due": p.due_day, "dt": p.due_day, "alias": p.alias}
        events.append({"kind": "PayableCreated", "day": 0, "phase": "setup", "debtor": ids[p.debtor], "creditor": ids[p.creditor], "amount": p.amount, "due_day": p.due_day, "maturity_distance": p.due_day, "payable_id": pid, "alias": p.alias})
    dues_by_day: dict[int, float] = {}
    settled_by_day: dict[int, float] = {}
    for pay in live.values():
        dues_by_day[pay["due"]] = dues_by_day.get(pay["due"], 0) + pay["amount"]
    defaulted: set[str] = set()
    ticket = 0
    for day in range(days):
        for phase in PHASES[:3]:
            events.append({"kind": phase, "day": day, "phase": "simulation"})
        if params.regime == "active" and day < 5:
            for trader in ids[: params.n_agents : 7]:
                ticket += 1
                events.append({"kind": "dealer_trade", "day": day, "phase": "simulation", "trader": trader, "side": "sell", "ticket_id": f"T{ticket}", "bucket": "short", "price": 18.2, "unit_price": 0.91, "face": 20.0, "is_passthrough": ticket % 3 == 0, "is_liquidity_driven": True})
                events.append({"kind": "ClaimTransferredDealer", "day": day, "phase": "simulation", "from": trader, "to": "dealer_short", "ticket_id": f"T{ticket}"})
                events.append({"kind": "buy_rejected", "day": day, "phase": "simulation", "trader": trader, "reason": "ev_below_threshold"})
        events.append({"kind": "SubphaseB2", "day": day, "phase": "simulation"})
        horizon = max([p["due"] for p in live.values()] + [day])
        for pid, pay in [(pid, p) for pid, p in live.items() if p["due"] == day]:
            debtor, creditor, amount = pay["debtor"], pay["creditor"], pay["amount"]
            if debtor in defaulted:
                continue
            paid = min(amount, cash[debtor])
            cash[debtor] -= paid
            cash[creditor] += paid
            if paid:
                events.append({"kind": "CashTransferred", "day": day, "phase": "simulation", "frm": debtor, "to": creditor, "amount": paid})
            if paid == amount:
                settled_by_day[day] = settled_by_day.get(day, 0) + amount
                events.append({"kind": "PayableSettled", "day": day, "phase": "simulation", "pid": pid, "contract_id": pid, "alias": pay["alias"], "debtor": debtor, "creditor": creditor, "amount": amount})
                pay["due"] = horizon + pay["dt"]
                events.append({"kind": "PayableRolledOver", "day": day, "phase": "simulation", "pid": pid, "new_due_day": pay["due"]})
                continue
            if paid:
                events.append({"kind": "PartialSettlement", "day": day, "phase": "simulation", "pid": pid, "amount_paid": paid})
            events.append({"kind": "ObligationDefaulted", "day": day, "phase": "simulation", "pid": pid, "contract_id": pid, "debtor": debtor, "creditor": creditor, "shortfall": amount - paid, "amount_paid": paid, "original_amount": amount})
            events.append({"kind": "AgentDefaulted", "day": day, "phase": "simulation", "agent": debtor, "trigger_contract": pid, "shortfall": amount - paid})
            defaulted.add(debtor)
            del live[pid]
            for other_id, other in list(live.items()):
                if other["debtor"] == debtor:
                    events.append({"kind": "ObligationWrittenOff", "day": day, "phase": "simulation", "contract_id": other_id, "debtor": debtor, "creditor": other["creditor"], "amount": other["amount"]})
                    del live[other_id]
                elif other["creditor"] == debtor:
                    new_id = f"RA_{other_id}"
                    events.append({"kind": "ReceivableReassigned", "day": day, "phase": "simulation", "old_contract_id": other_id, "new_contract_id": new_id})
                    events.append({"kind": "PayableCreated", "day": day, "phase": "simulation", "debtor": other["debtor"], "creditor": creditor, "amount": other["amount"], "due_day": day + other["dt"], "maturity_distance": other["dt"], "contract_id": new_id, "reason": "receivable_reassignment"})
                    del live[other_id]
                    live[new_id] = {**other, "creditor": creditor, "due": day + other["dt"]}
        for phase in PHASES[4:]:
            events.append({"kind": phase, "day": day, "phase": "simulation"})

    money = sum(cash.values())
    day_metrics = []
    for day in sorted(dues_by_day):
        s_t = dues_by_day[day]
        phi = settled_by_day.get(day, 0) / s_t
        mbar = 0.4 * s_t
        steps = [e for e in events if e["kind"] == "PayableSettled" and e["day"] == day]
        day_metrics.append({
            "day": day, "S_t": s_t, "phi_t": phi, "delta_t": 1 - phi, "Mbar_t": mbar, "alpha_t": 1 - mbar / s_t, "M_t": money,
            "G_t": max(0, mbar - money), "Mpeak_t": 0.5 * s_t, "gross_settled_t": settled_by_day.get(day, 0),
            "v_t": 2 * phi if phi else None, "HHIplus_t": 0.07, "n_debtors": 20, "n_creditors": 21, "notes": "",
            # helper lists the engine attaches for debtor_shares.csv and intraday.csv
            "_debtor_shares": [{"day": day, "agent": a, "DS_t": Decimal(1) / 3} for a in ids[:3]],
            "_intraday": [{"day": day, "step": k + 1, "payer": e["debtor"], "payee": e["creditor"], "amount": Decimal(e["amount"]), "P_prefix": Decimal(e["amount"]) * (k % 3)} for k, e in enumerate(steps)],
        })
    balances = [
        {"agent_id": a, "agent_kind": "household", "agent_name": a, "assets_cash": cash[a], "assets_payable": 0, "liabilities_cash": 0, "liabilities_payable": sum(p["amount"] for p in live.values() if p["debtor"] == a), "net_financial": cash[a], "total_financial_assets": cash[a], "total_financial_liabilities": 0, "total_inventory_value": 0, "total_nonfinancial_value": 0}
        for a in ids
    ]
    balances.append({"agent_id": "SYSTEM", "agent_kind": "system", "item_name": "cash", "item_type": "cash", "amount": money})
    s_total = sum(dues_by_day.values())
    phi_total = sum(settled_by_day.values()) / s_total
    n_trades = sum(1 for e in events if e["kind"] == "dealer_trade")
    summary = {
        "delta_total": 1 - phi_total,
        "phi_total": phi_total,
        "delta_clean": 1 - phi_total,
        "n_defaults": len(defaulted),
        "n_clears_all": sum(1 for e in events if e["kind"] == "PayableSettled"),
        "time_to_stability": max(dues_by_day),
        "last_sim_day": days - 1,
        "total_trades": n_trades,
        "trade_volume_cash": 18.2 * n_trades,
        "cascade_fraction": 0.25,
        "S_total": s_total,
    }
    dealer_metrics = {"dealer_total_pnl": 12.5, "total_trades": n_trades, "pnl_by_bucket": {"short": 12.5, "mid": 0.0, "long": 0.0}, "debt_to_money_ratio": Decimal("1.25")}
    return SimulationOutput(params, doc, events, balances, day_metrics, summary, dealer_metrics, wall_ms=3.5)


@pytest.fixture(scope="module", params=["passive", "active"])
def output(request) -> SimulationOutput:
    return toy_output(RunParams(n_agents=12, kappa=0.4, mu=0.5, regime=request.param, cash_accounting="bilancio_compat"))


@pytest.fixture
def run_dir(tmp_path, output) -> Path:
    """The artifacts written plain: what the compressed files hold (see the tests of compression)."""
    written = write_artifacts(output, tmp_path / "run", compress=False)
    assert written == ARTIFACT_PATHS
    return tmp_path / "run"


def test_every_artifact_is_written_where_the_mapping_says(run_dir):
    for relative in ARTIFACT_PATHS.values():
        assert (run_dir / relative).is_file(), relative
        assert (run_dir / relative).stat().st_size > 0, relative


def test_render_artifacts_gives_the_bytes_that_are_written(run_dir, output):
    rendered = render_artifacts(output)
    assert set(rendered) == set(ARTIFACT_PATHS)
    for name, relative in ARTIFACT_PATHS.items():
        assert rendered[name] == (run_dir / relative).read_bytes(), name


def test_scenario_yaml_has_the_compiled_scenario_and_the_cash_accounting(run_dir, output):
    doc = yaml.safe_load((run_dir / "scenario.yaml").read_text())
    for key in ("version", "name", "description", "agents", "initial_actions", "scheduled_actions", "run", "dealer", "balanced_dealer"):
        assert key in doc, key
    assert doc["version"] == 1
    assert doc["cash_accounting"] == "bilancio_compat"
    assert doc["run"]["max_days"] == output.scenario["run"]["max_days"]
    assert [a["id"] for a in doc["agents"]] == [a["id"] for a in output.scenario["agents"]]
    payables = [a["create_payable"] for a in doc["initial_actions"] if "create_payable" in a]
    mints = [a["mint_cash"] for a in doc["initial_actions"] if "mint_cash" in a]
    assert len(payables) == sum(1 for e in output.events if e["kind"] == "PayableCreated" and e["phase"] == "setup")
    assert {"from", "to", "amount", "due_day", "alias", "maturity_distance"} <= set(payables[0])
    assert {"to", "amount", "alias"} <= set(mints[0])
    # the un-truncated amounts are kept: some are not integers
    assert any(p["amount"] != int(p["amount"]) for p in payables)


def test_scenario_yaml_keeps_every_digit_of_a_decimal_amount(tmp_path, output):
    exact = Decimal("123.4567890123456789012345678")
    scenario = dict(output.scenario, initial_actions=[{"mint_cash": {"to": "H1", "amount": exact, "alias": "x"}}, {"mint_cash": {"to": "H2", "amount": Decimal("0.00000001"), "alias": "y"}}])
    write_artifacts(SimulationOutput(output.params, scenario, [], [], [], {}), tmp_path, compress=False)
    text = (tmp_path / "scenario.yaml").read_text()
    assert "123.4567890123456789012345678" in text
    doc = yaml.safe_load(text)
    assert isinstance(doc["initial_actions"][1]["mint_cash"]["amount"], float)
    assert doc["initial_actions"][1]["mint_cash"]["amount"] == pytest.approx(1e-8)


def test_events_jsonl_has_one_event_per_line_with_kind_day_phase(run_dir, output):
    lines = (run_dir / "out/events.jsonl").read_bytes().splitlines()
    assert len(lines) == len(output.events)
    parsed = [orjson.loads(line) for line in lines]
    assert all({"kind", "day", "phase"} <= set(e) for e in parsed)
    assert {e["phase"] for e in parsed} == {"setup", "simulation"}
    assert parsed == output.events
    kinds = {e["kind"] for e in parsed}
    assert {"CashMinted", "PayableCreated", "PayableSettled", "AgentDefaulted", "ObligationWrittenOff", "PhaseA", "SubphaseB2"} <= kinds
    if output.params.regime == "active":
        assert "dealer_trade" in kinds


@pytest.mark.parametrize(
    "tricky",
    [
        {"kind": "Note", "day": 1, "phase": "simulation", "text": 'a "},{" inside a string'},
        {"kind": "Batch", "day": 1, "phase": "simulation", "items": [{"a": 1}, {"b": 2}]},
        {"kind": "Empty", "day": 1, "phase": "simulation", "nested": {"x": {}}},
    ],
)
def test_events_jsonl_keeps_one_event_per_line_whatever_the_events_hold(tmp_path, tricky):
    events = [{"kind": "PhaseA", "day": 0, "phase": "simulation"}, tricky, {"kind": "PhaseC", "day": 1, "phase": "simulation", "amount": Decimal("2.5")}]
    path = tmp_path / "events.jsonl"
    data = events_jsonl(events)
    path.write_bytes(data)
    assert data.count(b"\n") == 3
    assert read_events(path) == [events[0], tricky, {**events[2], "amount": 2.5}]


def test_balances_csv_has_the_columns_of_the_original(run_dir, output):
    with open(run_dir / "out/balances.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == BALANCE_COLUMNS
        rows = list(reader)
    assert [r["agent_id"] for r in rows] == [b["agent_id"] for b in output.balances]
    assert int(rows[0]["assets_cash"]) == output.balances[0]["assets_cash"]
    assert rows[-1]["agent_name"] == ""  # a missing value is an empty cell


def test_metrics_csv_columns_are_sorted_and_equal_metrics_json(run_dir, output):
    with open(run_dir / "out/metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == sorted(header)
    assert tuple(header) == DAY_METRIC_COLUMNS
    from_json = orjson.loads((run_dir / "out/metrics.json").read_bytes())
    from_csv = read_csv_rows(run_dir / "out/metrics.csv")
    assert from_json == [{k: v for k, v in row.items() if not k.startswith("_")} for row in output.day_metrics]
    assert len(from_csv) == len(from_json)
    for row_csv, row_json in zip(from_csv, from_json):
        for column in header:
            expected = row_json[column]
            if expected == "":
                expected = None
            assert row_csv[column] == expected, (column, row_json["day"])
            assert type(row_csv[column]) is type(expected), column


def test_debtor_shares_and_intraday_csv_come_from_the_day_rows_helper_lists(run_dir, output):
    with open(run_dir / "out/debtor_shares.csv", newline="") as f:
        shares = list(csv.DictReader(f))
    assert list(shares[0]) == ["DS_t", "agent", "day"]
    assert len(shares) == sum(len(r["_debtor_shares"]) for r in output.day_metrics)
    assert float(shares[0]["DS_t"]) == pytest.approx(1 / 3)
    with open(run_dir / "out/intraday.csv", newline="") as f:
        steps = list(csv.DictReader(f))
    assert list(steps[0]) == ["P_prefix", "amount", "day", "payee", "payer", "step"]
    first = next(step for r in output.day_metrics for step in r["_intraday"])
    assert steps[0]["payer"] == first["payer"] and int(steps[0]["amount"]) == first["amount"]
    # the helper lists stay out of the day table
    assert "_intraday" not in (run_dir / "out/metrics.csv").read_text()
    assert "_debtor_shares" not in (run_dir / "out/metrics.json").read_text()


def test_dealer_metrics_json_is_written_in_both_regimes(run_dir, output):
    data = orjson.loads((run_dir / "out/dealer_metrics.json").read_bytes())
    assert data["total_trades"] == output.dealer_metrics["total_trades"]
    assert data["pnl_by_bucket"] == {"short": 12.5, "mid": 0.0, "long": 0.0}
    assert data["debt_to_money_ratio"] == 1.25  # Decimal written as a JSON number


def page_data(html: str) -> dict:
    """The run data a page embeds for its viewer (the one packed block)."""
    blocks = re.findall(r'<script type="application/gzip\+base64" id="run-data">([A-Za-z0-9+/=]*)</script>', html)
    assert len(blocks) == 1
    return read_page_data(html)


def _offline(html: str) -> bool:
    """Nothing is loaded from elsewhere: no src/href attributes, no URL but the SVG namespace."""
    return not re.search(r"\b(src|href)\s*=", html) and "http" not in html.replace('"http://www.w3.org/2000/svg"', "")


def test_metrics_html_embeds_the_day_rows_shares_and_steps_for_its_viewer(run_dir, output):
    html = (run_dir / "out/metrics.html").read_text()
    assert '<main id="report" data-page="metrics">' in html and "<noscript>" in html
    assert f"<h1>Day metrics: {output.scenario['name']}</h1>" in html
    assert "<h2>Metric Explanations</h2>" in html  # static: readable without JavaScript
    assert html.count("<script") == 2 and _offline(html)
    data = page_data(html)
    assert data["days"] == orjson.loads((run_dir / "out/metrics.json").read_bytes())
    shares = [s for r in output.day_metrics for s in r["_debtor_shares"]]
    assert data["debtor_shares"] == [[s["day"], s["agent"], pytest.approx(float(s["DS_t"]))] for s in shares]
    steps = [s for r in output.day_metrics for s in r["_intraday"]]
    assert data["intraday"] == [[s["day"], int(s["P_prefix"])] for s in steps]
    assert data["summary"]["delta_total"] == pytest.approx(output.summary["delta_total"])


def test_run_html_embeds_defaults_trades_kinds_and_balances(run_dir, output):
    html = (run_dir / "run.html").read_text()
    assert len(html.encode()) < 200_000
    assert '<main id="report" data-page="run">' in html and html.count("<script") == 2 and _offline(html)
    assert "bilancio_compat" in html  # the parameters line, written for readers without JavaScript
    data = page_data(html)
    defaults = [e for e in output.events if e["kind"] == "AgentDefaulted"]
    trades = [e for e in output.events if e["kind"] == "dealer_trade"]
    assert data["defaults"]["rows"] == [[e["day"], e["agent"], e["trigger_contract"], e["shortfall"]] for e in defaults]
    assert len(data["trades"]["rows"]) == len(trades)
    if trades:
        ticket = data["trades"]["columns"].index("ticket_id")
        assert [row[ticket] for row in data["trades"]["rows"]] == [e["ticket_id"] for e in trades]
    kinds = {}
    for event in output.events:
        kinds[event["kind"]] = kinds.get(event["kind"], 0) + 1
    assert data["event_kinds"] == kinds
    assert data["params"] == orjson.loads(orjson.dumps(output.params.to_dict()))
    assert [row[0] for row in data["balances"]["rows"]] == [b["agent_id"] for b in output.balances]
    assert data["dealer_metrics"]["debt_to_money_ratio"] == 1.25


def test_pages_keep_days_without_a_value_and_runs_without_days(tmp_path, output):
    rows = [dict(r) for r in output.day_metrics]
    rows[1]["phi_t"] = None
    rows[1]["delta_t"] = float("nan")
    write_artifacts(SimulationOutput(output.params, output.scenario, [], [], rows, {}), tmp_path / "gap", compress=False)
    day = page_data((tmp_path / "gap/out/metrics.html").read_text())["days"][1]
    assert day["phi_t"] is None and day["delta_t"] is None  # NaN as "no value", as in metrics.json
    with open(tmp_path / "gap/out/metrics.csv", newline="") as f:
        second = list(csv.DictReader(f))[1]
    assert second["phi_t"] == "" and second["delta_t"] == ""
    write_artifacts(SimulationOutput(output.params, output.scenario, [], [], [], {}), tmp_path / "empty", compress=False)
    empty = page_data((tmp_path / "empty/out/metrics.html").read_text())
    assert empty["days"] == [] and empty["debtor_shares"] == [] and empty["intraday"] == []
    assert page_data((tmp_path / "empty/run.html").read_text())["event_kinds"] == {}
    assert (tmp_path / "empty/out/metrics.csv").read_text().splitlines()[0].split(",") == list(DAY_METRIC_COLUMNS)


def test_hostile_strings_stay_inside_the_data_block(tmp_path, output):
    hostile = "</script><script>alert(1)</script><!--<img src=x onerror=alert(2)>"
    scenario = dict(output.scenario, name=hostile)
    events = [{"kind": "AgentDefaulted", "day": 1, "phase": "simulation", "agent": hostile, "trigger_contract": "</SCRIPT>", "shortfall": 5}]
    rows = [dict(r, notes=hostile) for r in output.day_metrics]
    write_artifacts(SimulationOutput(output.params, scenario, events, output.balances, rows, {"stop_reason": hostile}), tmp_path, compress=False)
    for page in ("out/metrics.html", "run.html"):
        html = (tmp_path / page).read_text()
        assert html.lower().count("<script") == 2 and html.lower().count("</script") == 2
        assert "<img" not in html and "<!--" not in html
        data = page_data(html)
        assert data["summary"]["stop_reason"] == hostile
        assert data["days"][0]["notes"] == hostile
    assert page_data((tmp_path / "run.html").read_text())["defaults"]["rows"][0][1:3] == [hostile, "</SCRIPT>"]


def test_read_run_artifacts_gives_back_what_was_written(run_dir, output):
    back = read_run_artifacts(run_dir)
    assert back.events == output.events
    assert back.day_metrics == [{k: v for k, v in row.items() if not k.startswith("_")} for row in output.day_metrics]
    assert len(back.debtor_shares) == 3 * len(output.day_metrics)
    assert back.debtor_shares[0] == {"DS_t": pytest.approx(1 / 3), "agent": "H1", "day": output.day_metrics[0]["day"]}
    assert len(back.intraday) == sum(len(row["_intraday"]) for row in output.day_metrics)
    assert [b["agent_id"] for b in back.balances] == [b["agent_id"] for b in output.balances]
    assert back.scenario["cash_accounting"] == output.params.cash_accounting
    assert back.dealer_metrics["total_trades"] == output.dealer_metrics["total_trades"]


# -- corrupt artifacts ------------------------------------------------------------------------


def test_truncated_events_line_names_the_file_and_line(run_dir):
    path = run_dir / "out/events.jsonl"
    data = path.read_bytes()
    n_lines = data.count(b"\n")
    path.write_bytes(data[: len(data) - 20])  # cut inside the last event
    with pytest.raises(ArtifactCorrupt) as info:
        read_run_artifacts(run_dir)
    assert info.value.file == "out/events.jsonl"
    assert info.value.line == n_lines
    assert "out/events.jsonl, line" in str(info.value)


def test_invalid_json_in_the_middle_of_events_names_its_line(run_dir):
    path = run_dir / "out/events.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4][:-7]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ArtifactCorrupt, match=r"events.jsonl, line 5: invalid JSON"):
        read_events(path)


def test_event_without_phase_is_rejected(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"kind":"PhaseA","day":0,"phase":"simulation"}\n{"kind":"PhaseA","day":1}\n')
    with pytest.raises(ArtifactCorrupt, match=r"line 2: event without phase"):
        read_events(path)


def test_invalid_yaml_names_the_file_and_line(run_dir):
    path = run_dir / "scenario.yaml"
    lines = path.read_text().splitlines()
    lines[3] = lines[3] + ': [unclosed'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ArtifactCorrupt) as info:
        read_run_artifacts(run_dir)
    assert info.value.file == "scenario.yaml"
    assert info.value.line is not None and 4 <= info.value.line <= 6
    assert "invalid YAML" in str(info.value)


def test_yaml_that_is_not_a_scenario_is_rejected(tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_text("version: 1\nname: x\n")
    with pytest.raises(ArtifactCorrupt, match="missing key"):
        read_scenario(path)


def test_short_csv_row_names_its_line(run_dir):
    path = run_dir / "out/balances.csv"
    lines = path.read_text().splitlines()
    lines[3] = ",".join(lines[3].split(",")[:5])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ArtifactCorrupt, match=r"out/balances.csv, line 4: expected 15 fields, found 5"):
        read_run_artifacts(run_dir)


def test_truncated_metrics_json_and_missing_file_are_named(run_dir):
    path = run_dir / "out/metrics.json"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ArtifactCorrupt, match=r"out/metrics.json, line \d+: invalid JSON"):
        read_run_artifacts(run_dir)
    path.unlink()
    with pytest.raises(ArtifactCorrupt, match=r"out/metrics.json: file is missing"):
        read_run_artifacts(run_dir)


def test_metrics_csv_and_json_that_disagree_on_days_are_rejected(run_dir):
    path = run_dir / "out/metrics.csv"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(ArtifactCorrupt, match=r"out/metrics.csv: \d+ day rows, but metrics.json has"):
        read_run_artifacts(run_dir)


def test_numpy_values_are_written_as_plain_numbers(tmp_path, output):
    import numpy as np

    rows = [{"day": np.int64(1), "S_t": np.float64(10.5), "phi_t": np.float64(0.25)}]
    scenario = dict(output.scenario, extra={"weight": np.float64(0.5), "count": np.int32(3)})
    write_artifacts(SimulationOutput(output.params, scenario, [{"kind": "X", "day": np.int64(2), "phase": "simulation", "amount": np.float64(1.5)}], [], rows, {}, {"x": np.float32(0.5)}), tmp_path, compress=False)
    back = read_run_artifacts(tmp_path)
    assert back.day_metrics == [{"day": 1, "S_t": 10.5, "phi_t": 0.25}]
    assert back.events == [{"kind": "X", "day": 2, "phase": "simulation", "amount": 1.5}]
    assert back.scenario["extra"] == {"weight": 0.5, "count": 3}
    assert math.isclose(back.dealer_metrics["x"], 0.5)


# -- the YAML writer --------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bilancio_pipeline.engine import plain_yaml  # noqa: E402

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
_plain_data = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=25)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _plain_data, max_size=6))
def test_plain_yaml_reads_back_exactly_with_libyaml(data):
    assert yaml.load(plain_yaml.dump(data), Loader=yaml.CSafeLoader) == data


@pytest.mark.parametrize(
    "text",
    ["yes", "No", "on", "null", "~", "", " lead", "trail ", "a: b", "a #b", "- x", "1e3", "0x1F", "12:30", "2026-11-23", ".inf", "=", "<<", "é ρ μ", "tab\there", "nel\x85x", "line\u2028sep", "del\x7f", "'quote'", '"dq"', "{flow}", "[seq]", "&anchor", "*alias", "!tag", "%dir", "@at", "`bt", "|", ">", "?"],
)
def test_plain_yaml_quotes_strings_a_loader_would_misread(text):
    assert yaml.load(plain_yaml.dump({text: [text, {"k": text}]}), Loader=yaml.CSafeLoader) == {text: [text, {"k": text}]}


def test_plain_yaml_writes_special_numbers_readably():
    data = {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "tiny": 1e-8, "huge": 1e300, "dec": Decimal("0.10"), "big": Decimal("1E+3")}
    text = plain_yaml.dump(data)
    back = yaml.load(text, Loader=yaml.CSafeLoader)
    assert math.isnan(back["nan"]) and back["inf"] == math.inf and back["ninf"] == -math.inf
    assert back["tiny"] == 1e-8 and back["huge"] == 1e300
    assert back["dec"] == 0.1 and "dec: 0.1\n" in text
    assert back["big"] == 1000 and isinstance(back["big"], int)
    assert yaml.load(plain_yaml.dump({"t": (1, 2), "empty": {}, "none": [], "nested": [[1, [2]], []]}), Loader=yaml.CSafeLoader) == {"t": [1, 2], "empty": {}, "none": [], "nested": [[1, [2]], []]}
    with pytest.raises(TypeError, match="cannot write object"):
        plain_yaml.dump({"x": object()})


# -- the fast paths give the general paths' bytes ------------------------------------------------

from hypothesis import HealthCheck  # noqa: E402

from bilancio_pipeline.engine.artifacts import csv_text, events_jsonl_buffer  # noqa: E402

_numbers = (
    st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.floats(min_value=-1e-3, max_value=1e-3)
    | st.floats(min_value=1e14, max_value=1e18)
    | st.decimals(places=6, allow_nan=False)
)
_record_scalars = st.none() | st.booleans() | _numbers | st.text(max_size=12) | st.sampled_from(["H1", "", "yes", "a: b", "50%", "\u2028"])
_record_keys = st.sampled_from(["id", "to", "amount", "alias", "due_day", "yes", "a: b", "%s", "", "1"]) | st.integers(0, 3)
_odd_values = st.sampled_from([[], {}, [1, [2]], (3, 4), {"k": []}])


@st.composite
def _records(draw, depth=0):
    """A list of mappings drawn from a few shared key orders, so that runs of equal shapes
    (the fast path's case) and mixed shapes both occur; values are mostly scalars, sometimes a
    nested record or a container the fast path must hand to the general emitter."""
    shapes = draw(st.lists(st.lists(_record_keys, max_size=4, unique=True), min_size=1, max_size=3))
    values = _record_scalars | (_records(depth + 1).map(lambda rows: rows[0]) if depth < 2 else _record_scalars)
    if draw(st.booleans()):
        values = values | _odd_values
    return [{key: draw(values) for key in draw(st.sampled_from(shapes))} for _ in range(draw(st.integers(1, 8)))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records(), st.lists(_record_scalars, max_size=6), st.lists(_records(), max_size=3))
def test_plain_yaml_records_path_writes_what_the_general_emitter_writes(records, scalars, nested):
    data = {"items": records, "scalars": scalars, "deeper": {"lists": nested}}
    assert plain_yaml.dump(data) == plain_yaml.dump(data, records=False)


def test_plain_yaml_records_path_is_taken_for_a_scenario_and_matches():
    scenario = generate(RunParams(n_agents=30, kappa=0.7, regime="active")).to_dict()
    assert plain_yaml._records_text(scenario["initial_actions"], "- ", "  ") is not None  # the case it is for
    assert plain_yaml.dump(scenario) == plain_yaml.dump(scenario, records=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False) | st.floats(min_value=-1e-3, max_value=1e-3), min_size=1, max_size=20))
def test_number_texts_are_str_of_each_number_or_refused(values):
    texts = plain_yaml.number_texts(values)
    assert texts is None or texts == [str(v) for v in values]
    if all(type(v) is int and abs(v) < 2**63 for v in values):
        assert texts == [str(v) for v in values]


_cells = st.none() | st.booleans() | _numbers | st.text(max_size=8) | st.sampled_from(["a,b", 'say "x"', "two\nlines", "cr\r", " pad ", "", "H1"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_cells, _cells, _cells), max_size=8), st.booleans())
def test_csv_text_writes_what_the_csv_module_writes(cells, drop_a_key):
    columns = ("a", "b", "c")
    rows = [dict(zip(columns, row)) for row in cells]
    if drop_a_key and rows:
        del rows[0]["b"]  # a missing value: an empty cell
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[row.get(c) for c in columns] for row in rows])
    assert csv_text(rows, columns) == buffer.getvalue()


_event_values = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=10) | st.sampled_from(["},{", "}\n{", "[", "]"])
_events = st.lists(
    st.fixed_dictionaries({"kind": st.sampled_from(["PhaseA", "PayableSettled"]), "day": st.integers(0, 9), "phase": st.just("simulation")}, optional={"x": _event_values, "items": st.lists(st.dictionaries(st.sampled_from(["a", "b"]), _event_values), max_size=3)}),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(_events)
def test_events_jsonl_is_one_orjson_dump_per_event(events):
    expected = b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events)
    assert bytes(events_jsonl_buffer(events)) == expected == events_jsonl(events)


# -- with the real engine -----------------------------------------------------------------------


def test_data_files_are_kept_gzipped_pages_plain_and_the_bytes_are_reproducible(tmp_path, output):
    written = write_artifacts(output, tmp_path / "a")
    write_artifacts(output, tmp_path / "b")
    rendered = render_artifacts(output)
    assert written == {name: stored_path(name) for name in ARTIFACT_PATHS}
    assert {name for name, path in written.items() if path.endswith(".gz")} == COMPRESSED
    assert {"events_jsonl", "balances_csv", "metrics_csv", "scenario_yaml"} <= COMPRESSED
    assert not {"run_html", "metrics_html"} & COMPRESSED
    for name, path in written.items():
        data = (tmp_path / "a" / path).read_bytes()
        assert data == (tmp_path / "b" / path).read_bytes(), f"{path} differs between two writes"
        assert (gzip.decompress(data) if name in COMPRESSED else data) == rendered[name], name
        assert not (tmp_path / "a" / ARTIFACT_PATHS[name]).exists() or name not in COMPRESSED
    assert read_run_artifacts(tmp_path / "a") == read_run_artifacts(tmp_path / "b")


@pytest.mark.parametrize(("policy", "dropped"), [("all", set()), ("summary", {"events_jsonl"}), ("none", set(ARTIFACT_PATHS))])
def test_artifact_policy_decides_which_files_are_written(tmp_path, output, policy, dropped):
    written = write_artifacts(output, tmp_path / policy, policy)
    assert set(written) == set(ARTIFACT_PATHS) - dropped
    on_disk = {p.relative_to(tmp_path / policy).as_posix() for p in (tmp_path / policy).rglob("*") if p.is_file()}
    assert on_disk == set(written.values())
    with pytest.raises(ValueError, match="artifact policy 'some' must be one of all, summary, none"):
        write_artifacts(output, tmp_path / "x", "some")


def test_damaged_compressed_file_is_named(tmp_path, output):
    write_artifacts(output, tmp_path)
    path = tmp_path / stored_path("events_jsonl")
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ArtifactCorrupt, match=r"corrupt artifact out/events.jsonl: compressed data is cut short"):
        read_run_artifacts(tmp_path)


@pytest.mark.parametrize("regime", ["passive", "active"])
def test_artifacts_of_a_real_run_read_back_as_the_run_produced_them(tmp_path, regime):
    from bilancio_pipeline.engine.run import simulate

    params = RunParams(n_agents=12, kappa=0.5, mu=0.5, regime=regime, seed=7)
    output = simulate(params)
    write_artifacts(output, tmp_path)
    back = read_run_artifacts(tmp_path)
    assert back.events == orjson.loads(orjson.dumps(output.events))
    assert [r["day"] for r in back.day_metrics] == [r["day"] for r in output.day_metrics]
    assert back.day_metrics[0]["S_t"] == pytest.approx(float(output.day_metrics[0]["S_t"]))
    assert len(back.balances) == len(output.balances)
    assert back.scenario["cash_accounting"] == "conserving"
    assert back.scenario["balanced_dealer"]["mode"] == regime
    data = page_data((tmp_path / "run.html").read_text())
    assert len(data["defaults"]["rows"]) == output.summary["n_defaults"]
    assert len(data["trades"]["rows"]) == output.summary["total_trades"]
