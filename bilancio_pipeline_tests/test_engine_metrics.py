"""Per-day and per-run metrics (MODEL.md §5) on hand-written event lists."""

from decimal import Decimal

import pytest

from bilancio_pipeline.engine.metrics import compute_day_metrics, money_supply, run_level_metrics


def created(pid, debtor, creditor, amount, due, *, alias=None, reassigned=False):
    e = {"kind": "PayableCreated", "day": 0, "phase": "setup", "debtor": debtor, "creditor": creditor,
         "amount": amount, "due_day": due, "maturity_distance": due}
    if reassigned:
        e.update(contract_id=pid, reason="receivable_reassignment")
    else:
        e.update(payable_id=pid, alias=alias)
    return e


def settled(pid, debtor, creditor, amount, day, alias=None):
    return {"kind": "PayableSettled", "day": day, "phase": "simulation", "pid": pid, "contract_id": pid,
            "alias": alias, "debtor": debtor, "creditor": creditor, "amount": amount}


EVENTS = [
    created("P1", "A", "B", 100, 1, alias="P_A_B"),
    created("P2", "B", "C", 60, 1),
    created("P3", "C", "A", 40, 1),
    created("P4", "A", "C", 50, 3, reassigned=True),  # reassigned: only a contract_id
    settled("P2", "B", "C", 60, 1),
    settled("P3", "C", "A", 40, 1),
    settled("R9", "A", "B", 7, 1),  # a rolled-over payable: settles, but is not a due
    settled("P4", "A", "C", 50, 3),
    {"kind": "AgentDefaulted", "day": 1, "phase": "simulation", "agent": "A"},
    {"kind": "ObligationDefaulted", "day": 1, "phase": "simulation", "shortfall": 100, "contract_kind": "payable"},
    {"kind": "ObligationWrittenOff", "day": 1, "phase": "simulation", "amount": 30, "contract_kind": "payable"},
    {"kind": "AgentDefaulted", "day": 2, "phase": "simulation", "agent": "C"},
    {"kind": "AgentDefaulted", "day": 2, "phase": "simulation", "agent": "C"},
    {"kind": "dealer_trade", "day": 0, "phase": "simulation", "price": 9.5, "face": 10},
    {"kind": "dealer_trade", "day": 0, "phase": "simulation", "price": 18.0, "face": 20},
]


def test_day_rows_follow_the_definitions():
    rows, summary = compute_day_metrics(EVENTS, Decimal(30))
    assert [r["day"] for r in rows] == [1, 3]
    day1 = rows[0]
    assert day1["S_t"] == 200
    # nets: A owes 100 (P1) and receives 40 (P3) -> -60; B: +100-60 = +40; C: +60-40 = +20
    assert day1["Mbar_t"] == 60  # only A is a net debtor: 100 - 40
    assert day1["alpha_t"] == pytest.approx(1 - 60 / 200)
    assert day1["phi_t"] == pytest.approx(100 / 200)  # P2 + P3; R9 is not a due of the day
    assert day1["delta_t"] == pytest.approx(0.5)
    assert (day1["n_debtors"], day1["n_creditors"]) == (1, 2)
    assert day1["HHIplus_t"] == pytest.approx((40 / 60) ** 2 + (20 / 60) ** 2)
    # RTGS replay of cumulative net outflows: B pays 60 -> {B: 60} P=60; C pays A 40 -> C is
    # -20, A -40, P=60; A pays B 7 -> B 53, P=53. The peak is 60.
    assert day1["gross_settled_t"] == 107
    assert day1["Mpeak_t"] == 60
    assert day1["v_t"] == pytest.approx(107 / 60)
    assert day1["M_t"] == 30 and day1["G_t"] == 30  # G = max(0, Mbar - M)
    assert [s["P_prefix"] for s in day1["_intraday"]] == [60, 60, 53]
    assert {s["agent"]: s["DS_t"] for s in day1["_debtor_shares"]}["A"] == 1.0


def test_summary_weights_by_value_and_keeps_the_reassignment_bug_in_delta_total():
    _, summary = compute_day_metrics(EVENTS, None)
    # compat: the reassigned P4 (day 3) never matches its settlement -> 100% defaulted
    assert summary["phi_total"] == pytest.approx(100 / 250)
    assert summary["delta_total"] == pytest.approx(150 / 250)
    # clean: matched by contract id
    assert summary["delta_clean"] == pytest.approx(100 / 250)
    assert summary["S_total"] == 250
    assert summary["time_to_stability"] == 3  # the largest due day, not the stop day
    assert summary["n_clears_tracked"] == 2
    assert summary["alpha_1"] == pytest.approx(0.7) and summary["Mpeak_1"] == 60
    assert summary["max_G_t"] is None  # no money figure given


def test_alias_matches_a_due_when_the_id_differs():
    events = [created("P1", "A", "B", 10, 1, alias="P_A_B"), settled("OTHER", "A", "B", 10, 1, alias="P_A_B")]
    _, summary = compute_day_metrics(events, None)
    assert summary["delta_total"] == 0


def test_run_level_counts_and_losses():
    run = run_level_metrics(EVENTS, 250.0)
    assert run["n_defaults"] == 2  # distinct agents
    assert run["n_clears_all"] == run["n_clears"] == 4
    assert run["payable_default_loss"] == run["total_loss"] == 130
    assert run["total_loss_pct"] == pytest.approx(130 / 250)
    assert (run["total_trades"], run["total_trade_volume"], run["trade_volume_face"]) == (2, 27.5, 30)
    # A is owed by C, which had not defaulted yet -> primary; C is owed by B and A, and A
    # defaulted before C -> secondary
    assert run["cascade_fraction"] == pytest.approx(1 / 2)


def test_no_dues_gives_empty_metrics():
    rows, summary = compute_day_metrics([], None)
    assert rows == [] and summary["delta_total"] is None and summary["time_to_stability"] == 0
    assert run_level_metrics([], 0.0)["cascade_fraction"] is None


def test_money_supply_skips_summary_rows():
    rows = [
        {"agent_id": "H1", "assets_cash": 10},
        {"agent_id": "H2", "assets_cash": ""},
        {"agent_id": "SYSTEM", "assets_cash": 10},
        {"agent_id": "SYSTEM", "item_type": "summary", "assets_cash": 99},
    ]
    assert money_supply(rows) == 10
