"""The day loop (MODEL.md §3) on tiny hand-built ledgers: one rule per test."""

from decimal import Decimal

from bilancio_pipeline.engine.params import RunParams
from bilancio_pipeline.engine.scenario import MintSpec, PayableSpec, Scenario
from bilancio_pipeline.engine.simulate import build_ledger, expel, roll_over, run_day_loop, settle_due

DESKS = ["vbt_short", "dealer_short", "vbt_mid", "dealer_mid", "vbt_long", "dealer_long"]


def make_ledger(cash, payables, *, desk_cash=None, max_days=30, quiet_days=11):
    """Traders H1..Hn with `cash`; payables as (debtor, creditor, amount, due) by agent id."""
    n = len(cash)
    ids = [f"H{i + 1}" for i in range(n)] + DESKS
    index = {agent: i for i, agent in enumerate(ids)}
    mints = [MintSpec(i, Decimal(c), c, f"LIQ_{ids[i]}") for i, c in enumerate(cash)]
    for desk, amount in (desk_cash or {}).items():
        mints.append(MintSpec(index[desk], Decimal(amount), amount, f"LIQ_{desk}"))
    specs = [
        PayableSpec(index[d], index[c], Decimal(a), a, due, f"P_{d}_{c}") for d, c, a, due in payables
    ]
    scenario = Scenario(
        params=RunParams(n_agents=max(n, 2)), agent_ids=ids, n_traders=n, mints=mints, payables=specs,
        kappa=Decimal(1), p_prior=Decimal("0.05"), max_days=max_days, quiet_days=quiet_days,
    )
    return build_ledger(scenario), index


def kinds(ledger, day=None):
    return [e["kind"] for e in ledger.events if e["phase"] == "simulation" and (day is None or e["day"] == day)]


def test_full_payment_goes_to_the_holder_and_is_logged():
    ledger, ix = make_ledger([100, 0], [("H1", "H2", 60, 1)])
    settled = settle_due(ledger, 1, fail_fast=False)
    assert ledger.cash[:2] == [40, 60]
    assert settled == [(ix["H1"], ix["H2"], 60, 1)]
    event = ledger.events[-1]
    assert (event["kind"], event["debtor"], event["creditor"], event["amount"], event["alias"]) == (
        "PayableSettled", "H1", "H2", 60, "P_H1_H2")
    assert not ledger.payables


def test_sold_claim_is_paid_to_the_new_holder_but_rolls_over_to_the_original_creditor():
    ledger, ix = make_ledger([100, 0], [("H1", "H2", 60, 2)], desk_cash={"dealer_short": 0})
    (p,) = ledger.payables.values()
    p.holder = ix["dealer_short"]  # sold on the secondary market
    ledger.day = 2
    settled = settle_due(ledger, 2, fail_fast=False)
    assert ledger.cash[ix["dealer_short"]] == 60 and ledger.cash[ix["H2"]] == 0
    assert ledger.events[-1]["creditor"] == "dealer_short"
    roll_over(ledger, 2, settled)
    (renewed,) = ledger.payables.values()
    assert (renewed.creditor, renewed.holder, renewed.amount) == (ix["H2"], ix["H2"], 60)


def test_partial_payment_stays_with_creditor_then_the_debtor_is_expelled():
    ledger, ix = make_ledger(
        [30, 0, 0], [("H1", "H2", 50, 1), ("H1", "H3", 20, 4), ("H1", "vbt_short", 10, 1)]
    )
    settle_due(ledger, 1, fail_fast=False)
    assert ledger.cash[ix["H2"]] == 30 and ledger.cash[ix["H1"]] == 0
    assert ledger.defaulted[ix["H1"]]
    assert kinds(ledger) == ["PartialSettlement", "ObligationDefaulted", "AgentDefaulted",
                             "ObligationWrittenOff", "ObligationWrittenOff"]
    defaulted = [e for e in ledger.events if e["kind"] == "ObligationDefaulted"][0]
    assert (defaulted["shortfall"], defaulted["amount_paid"], defaulted["original_amount"]) == (20, 30, 50)
    written = [(e["creditor"], e["amount"]) for e in ledger.events if e["kind"] == "ObligationWrittenOff"]
    assert written == [("H3", 20), ("vbt_short", 10)]  # full face, in creation order
    assert not ledger.payables
    assert ledger.history == [(1, ix["H1"], True)]


def test_no_partial_event_when_nothing_was_paid():
    ledger, _ = make_ledger([0, 0], [("H1", "H2", 50, 1)])
    settle_due(ledger, 1, fail_fast=False)
    assert kinds(ledger) == ["ObligationDefaulted", "AgentDefaulted"]


def test_receivables_of_a_defaulter_are_reassigned_pro_rata_to_its_creditors():
    # H2 defaults owing H3 60 (due 1) and H4 40 (due 5); H1 owes H2 100 due day 3 (distance 3).
    ledger, ix = make_ledger(
        [0, 0, 0, 0], [("H2", "H3", 60, 1), ("H2", "H4", 40, 5), ("H1", "H2", 100, 3)]
    )
    ledger.day = 1
    settle_due(ledger, 1, fail_fast=False)
    new = sorted(((p.creditor, p.amount, p.due, p.dist) for p in ledger.payables.values() if p.debtor == ix["H1"]))
    # weights include the defaulting payable at full amount: 60/100 and 40/100; due = t + distance
    assert new == [(ix["H3"], 60, 4, 3), (ix["H4"], 40, 4, 3)]
    created = [e for e in ledger.events if e["kind"] == "PayableCreated" and e["phase"] == "simulation"]
    assert [e["reason"] for e in created] == ["receivable_reassignment"] * 2
    assert all("contract_id" in e and "payable_id" not in e for e in created)
    assert kinds(ledger).count("ReceivableReassigned") == 2


def test_reassignment_amounts_truncate_and_skip_below_one():
    ledger, ix = make_ledger([0, 0, 0, 0], [("H2", "H3", 299, 1), ("H2", "H4", 1, 5), ("H1", "H2", 10, 3)])
    ledger.day = 1
    settle_due(ledger, 1, fail_fast=False)
    new = [(p.creditor, p.amount) for p in ledger.payables.values() if p.debtor == ix["H1"]]
    assert new == [(ix["H3"], 9)]  # int(10*0.9967) = 9; int(10*0.0033) = 0 is skipped


def test_self_loop_is_dropped_when_the_sole_creditor_is_the_debtor():
    # Two-agent ring: H1 defaults owing H2; H2's debt to H1 would become H2 -> H2.
    ledger, ix = make_ledger([0, 0], [("H1", "H2", 50, 1), ("H2", "H1", 30, 2)])
    ledger.day = 1
    settle_due(ledger, 1, fail_fast=False)
    assert not ledger.payables
    assert "RingCollapsed" in kinds(ledger)


def test_receivables_are_cancelled_when_the_defaulter_has_no_other_creditors():
    ledger, ix = make_ledger([0, 0, 0], [("H1", "H2", 50, 1), ("H3", "H1", 30, 2)])
    ledger.day = 1
    settle_due(ledger, 1, fail_fast=False)
    assert [(p.debtor, p.creditor, p.amount) for p in ledger.payables.values()] == [(ix["H3"], ix["H2"], 30)]


def test_pro_rata_recovery_shares_remaining_cash_before_write_off():
    ledger, ix = make_ledger([90, 0, 0], [("H1", "H2", 100, 5), ("H1", "H3", 200, 5)])
    trigger = next(iter(ledger.payables.values()))
    expel(ledger, ix["H1"], trigger, 0)
    assert ledger.cash[:3] == [0, 30, 60]
    recovery = [e for e in ledger.events if e["kind"] == "ProRataRecovery"][0]
    assert recovery["total_distributed"] == 90 and recovery["total_claims"] == 300


def test_rollover_is_due_after_the_latest_maturity_and_trader_creditors_move_no_cash():
    ledger, ix = make_ledger([100, 0, 0], [("H1", "H2", 60, 1), ("H3", "H2", 5, 9)])
    settled = settle_due(ledger, 1, fail_fast=False)
    roll_over(ledger, 1, settled)
    renewed = [p for p in ledger.payables.values() if p.debtor == ix["H1"]][0]
    assert renewed.due == 9 + 1  # MAX (9) + distance (1)
    assert ledger.cash[:2] == [40, 60]
    event = ledger.events[-1]
    assert (event["kind"], event["cash_transfer"]) == ("PayableRolledOver", False)


def test_rollover_to_a_desk_lends_the_cash_again_and_logs_a_partial_when_short():
    ledger, ix = make_ledger([100, 100], [("H1", "vbt_short", 60, 1), ("H2", "dealer_short", 80, 1)],
                             desk_cash={"dealer_short": 0})
    settled = settle_due(ledger, 1, fail_fast=False)
    assert ledger.cash[ix["vbt_short"]] == 60 and ledger.cash[ix["dealer_short"]] == 80
    ledger.cash[ix["dealer_short"]] = 50  # the dealer spent part of it meanwhile
    roll_over(ledger, 1, settled)
    assert ledger.cash[ix["H1"]] == 100 and ledger.cash[ix["vbt_short"]] == 0
    assert ledger.cash[ix["H2"]] == 20 + 50 and ledger.cash[ix["dealer_short"]] == 0
    assert [e["kind"] for e in ledger.events[-2:]] == ["PayableRolledOver", "RolloverPartial"]


def test_no_rollover_for_a_defaulted_party():
    ledger, ix = make_ledger([100, 0], [("H1", "H2", 60, 1)])
    settled = settle_due(ledger, 1, fail_fast=False)
    ledger.defaulted[ix["H2"]] = True
    roll_over(ledger, 1, settled)
    assert not ledger.payables


def test_settlement_follows_creation_order_within_a_day():
    # H1 can pay only one of two debts: the one created first is paid.
    ledger, ix = make_ledger([50, 0, 0], [("H1", "H3", 50, 1), ("H1", "H2", 50, 1)])
    settle_due(ledger, 1, fail_fast=False)
    assert ledger.cash[ix["H3"]] == 50 and ledger.cash[ix["H2"]] == 0


def test_stops_after_quiet_days_without_defaults():
    ledger, _ = make_ledger([100, 100], [("H1", "H2", 10, 1), ("H2", "H1", 10, 1)], quiet_days=3)
    result = run_day_loop(ledger, None, rollover=True, fail_fast=False)
    assert (result.last_sim_day, result.stop_reason) == (2, "stable")  # days 0, 1, 2 had no default


def test_quiet_count_restarts_after_a_default_and_max_days_caps_the_run():
    ledger, _ = make_ledger([0, 100, 0], [("H1", "H2", 10, 4), ("H2", "H3", 5, 1)], quiet_days=5, max_days=30)
    result = run_day_loop(ledger, None, rollover=True, fail_fast=False)
    # days 0-3 quiet (4 < 5), the default on day 4 restarts the count, days 5-9 make it 5
    assert result.last_sim_day == 9 and result.stop_reason == "stable"
    ledger, _ = make_ledger([0, 100, 0], [("H1", "H2", 10, 4)], quiet_days=40, max_days=6)
    result = run_day_loop(ledger, None, rollover=True, fail_fast=False)
    assert (result.last_sim_day, result.stop_reason) == (5, "max_days")


def test_without_rollover_stops_once_nothing_is_open_and_nothing_settles():
    ledger, _ = make_ledger([100, 0], [("H1", "H2", 10, 2)], quiet_days=2)
    result = run_day_loop(ledger, None, rollover=False, fail_fast=False)
    assert result.stop_reason == "stable" and result.last_sim_day == 4  # settles day 2, quiet 3 and 4


def test_fail_fast_ends_the_run_at_the_first_default():
    ledger, ix = make_ledger([0, 0], [("H1", "H2", 10, 1)])
    result = run_day_loop(ledger, None, rollover=True, fail_fast=True)
    assert result.stop_reason == "default_fail_fast" and result.last_sim_day == 1
    assert not ledger.defaulted[ix["H1"]]


def test_a_firm_holding_its_own_debt_cannot_pay_itself_and_defaults():
    # As in the original, paying oneself is refused: nothing is paid, the payable defaults,
    # and the firm's remaining cash is shared among its other creditors before write-off.
    ledger, ix = make_ledger([50, 0], [("H1", "H2", 20, 1), ("H1", "H2", 30, 4)])
    own, other = ledger.payables.values()
    own.holder = ix["H1"]  # H1 bought back its own debt
    settle_due(ledger, 1, fail_fast=False)
    assert ledger.defaulted[ix["H1"]]
    defaulted = [e for e in ledger.events if e["kind"] == "ObligationDefaulted"][0]
    assert (defaulted["amount_paid"], defaulted["shortfall"]) == (0, 20)
    assert ledger.cash[:2] == [0, 50]  # pro-rata recovery hands all 50 to the only other creditor


def test_a_claim_bought_by_the_defaulter_is_reassigned_and_one_it_sold_is_not():
    # H1 defaults on day 1 owing H3 100. It bought H2's debt (originally held by H4) and sold
    # its claim on H4 to a dealer desk: only the claim it holds at the default is reassigned.
    ledger, ix = make_ledger(
        [0, 0, 0, 0], [("H1", "H3", 100, 1), ("H2", "H4", 50, 3), ("H4", "H1", 40, 3)],
        desk_cash={"dealer_short": 0},
    )
    bought, sold = list(ledger.payables.values())[1:]
    bought.holder = ix["H1"]
    sold.holder = ix["dealer_short"]
    ledger.day = 1
    settle_due(ledger, 1, fail_fast=False)
    reassigned = [e for e in ledger.events if e["kind"] == "ReceivableReassigned"]
    assert [(e["debtor"], e["new_creditor"], e["old_payable"], e["amount"]) for e in reassigned] == [
        ("H2", "H3", bought.cid, 50)]
    assert not bought.live and sold.live and sold.holder == ix["dealer_short"]
    assert sorted(ledger.receivables(ix["dealer_short"]), key=lambda p: p.serial) == [sold]


def test_receivables_come_in_creation_order_whatever_the_order_of_purchase():
    ledger, ix = make_ledger([0, 0, 0, 0], [("H2", "H3", 10, 5), ("H3", "H4", 20, 5), ("H4", "H2", 30, 5)])
    first, second, third = ledger.payables.values()
    for p in (third, first, second):  # H1 buys them in another order than they were created
        p.holder = ix["H1"]
    assert ledger.receivables(ix["H1"]) == [first, second, third]
    assert ledger.receivables(ix["H3"]) == []


def test_rollover_max_ignores_payables_written_off_before_it():
    # H3's payable due day 9 is written off when H3 defaults on day 1, so the repaid payable
    # rolls over to the latest *live* maturity (day 4) plus its distance.
    ledger, ix = make_ledger([100, 0, 0], [("H1", "H2", 60, 1), ("H3", "H2", 5, 1), ("H3", "H2", 7, 9),
                                           ("H2", "H1", 1, 4)])
    ledger.day = 1
    settled = settle_due(ledger, 1, fail_fast=False)
    assert ledger.defaulted[ix["H3"]]
    roll_over(ledger, 1, settled)
    renewed = [p for p in ledger.payables.values() if p.debtor == ix["H1"]][0]
    assert renewed.due == 4 + 1
