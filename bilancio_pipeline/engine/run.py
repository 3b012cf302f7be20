"""One simulation run: scenario -> day loop (with dealers when active) -> metrics -> artifacts."""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bilancio_pipeline.engine.accounting import accounting_facts
from bilancio_pipeline.engine.metrics import compute_day_metrics, public_row, run_level_metrics
from bilancio_pipeline.engine.output import SimulationOutput
from bilancio_pipeline.engine.params import RunParams
from bilancio_pipeline.engine.scenario import generate
from bilancio_pipeline.engine.simulate import Ledger, build_ledger, run_day_loop


@dataclass
class RunResult:
    params: RunParams
    summary: dict[str, Any]
    day_metrics: list[dict[str, Any]]
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact name -> path relative to out_dir
    wall_ms: float = 0.0  # simulation + metrics + artifacts


@contextmanager
def _gc_paused():
    """Hold off the cyclic garbage collector for one run.

    A run allocates thousands of short-lived objects but builds no reference cycles, so
    reference counting frees everything; the collector would only walk the run's live objects
    (and, as they get promoted, the whole process heap) over and over."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def simulate(params: RunParams) -> SimulationOutput:
    """Run the model for one parameter set and return everything it produced (no I/O)."""
    if not isinstance(params, RunParams):
        raise TypeError("params must be a RunParams")
    with _gc_paused():
        return _simulate(params)


def _simulate(params: RunParams) -> SimulationOutput:
    started = time.perf_counter()
    scenario = generate(params)
    ledger = build_ledger(scenario)
    ledger.track_new = params.regime == "active"
    market = None
    if params.regime == "active":
        from bilancio_pipeline.engine.dealer import DealerMarket

        market = DealerMarket(ledger, params)
    loop = run_day_loop(
        ledger,
        market.trading_phase if market is not None else None,
        rollover=params.rollover,
        fail_fast=params.default_handling == "fail-fast",
    )
    balances = balance_rows(ledger)
    # M_t of the end-of-run snapshot: every agent's cash, as metrics.money_supply(balances) sums it
    money = Decimal(sum(ledger.cash))
    rows, day_summary = compute_day_metrics(ledger.events, money)
    summary: dict[str, Any] = {
        "regime": params.regime,
        "cash_accounting": params.cash_accounting,
        **day_summary,
        **run_level_metrics(ledger.events, day_summary["S_total"]),
        "last_sim_day": loop.last_sim_day,
        "stop_reason": loop.stop_reason,
        "money_end": sum(ledger.cash),
        "cash_minted_total": ledger.cb_minted,
    }
    summary["accounting"] = accounting_facts(ledger, summary)  # what the invariant checks read
    dealer_metrics = passive_dealer_report(ledger)
    if market is not None:
        dealer_metrics.update(market.report())
    dealer_metrics["total_trades"] = summary["total_trades"]
    wall_ms = (time.perf_counter() - started) * 1000.0
    summary["wall_ms"] = wall_ms
    return SimulationOutput(
        params=params,
        scenario=scenario.to_dict(),
        events=ledger.events,
        balances=balances,
        day_metrics=rows,
        summary=summary,
        dealer_metrics=dealer_metrics,
        wall_ms=wall_ms,
    )


def run_simulation(params: RunParams, out_dir: Path | None = None, artifact_policy: str = "all") -> RunResult:
    """Simulate one run; when out_dir is given also write there the artifacts the policy
    keeps (engine.artifacts.ARTIFACT_POLICIES)."""
    started = time.perf_counter()
    with _gc_paused():
        output = simulate(params)
        artifacts: dict[str, str] = {}
        if out_dir is not None:
            from bilancio_pipeline.engine.artifacts import write_artifacts  # written separately; loaded on use

            artifacts = write_artifacts(output, Path(out_dir), artifact_policy)
    wall_ms = (time.perf_counter() - started) * 1000.0
    summary = dict(output.summary)
    summary["wall_ms"] = wall_ms
    day_metrics = [public_row(row) for row in output.day_metrics]
    return RunResult(params=params, summary=summary, day_metrics=day_metrics, artifacts=artifacts, wall_ms=wall_ms)


def balance_rows(ledger: Ledger) -> list[dict[str, Any]]:
    """End-of-run balance sheet rows with the columns of balances.csv (one per agent + SYSTEM)."""
    ids = ledger.ids
    held = [0] * len(ids)
    owed = [0] * len(ids)
    for p in ledger.payables.values():
        held[p.holder] += p.amount
        owed[p.debtor] += p.amount
    rows = []
    cb_liabilities = sum(ledger.cash)

    def row(agent_id: str, a_cash: int, a_pay: int, l_cash: int, l_pay: int) -> dict[str, Any]:
        assets = a_cash + a_pay
        liabilities = l_cash + l_pay
        return {
            "agent_id": agent_id,
            "agent_kind": "",
            "agent_name": "",
            "amount": "",
            "assets_cash": a_cash or "",
            "assets_payable": a_pay or "",
            "item_name": "",
            "item_type": "",
            "liabilities_cash": l_cash or "",
            "liabilities_payable": l_pay or "",
            "net_financial": assets - liabilities,
            "total_financial_assets": assets,
            "total_financial_liabilities": liabilities,
            "total_inventory_value": 0.0,
            "total_nonfinancial_value": 0.0,
        }

    rows.append(row("CB", 0, 0, cb_liabilities, 0))
    for i, agent_id in enumerate(ids):
        rows.append(row(agent_id, ledger.cash[i], held[i], 0, owed[i]))
    rows.append(row("SYSTEM", cb_liabilities, sum(held), cb_liabilities, sum(owed)))
    return rows


def passive_dealer_report(ledger: Ledger) -> dict[str, Any]:
    """dealer_metrics.json for a passive run: no trades; the desks' P&L from holding their claims."""
    scenario = ledger.scenario
    n = scenario.n_traders
    initial_money = sum(m.amount for m in scenario.mints if m.to < n)
    initial_debt = sum(p.amount for p in scenario.payables)
    return {
        "total_trades": 0,
        "total_sell_trades": 0,
        "total_buy_trades": 0,
        "interior_trades": 0,
        "passthrough_trades": 0,
        "spread_income_total": 0.0,
        "trade_volume_cash": 0.0,
        "trade_volume_face": 0,
        "initial_total_debt": float(initial_debt),
        "initial_total_money": float(initial_money),
        "debt_to_money_ratio": float(Decimal(initial_debt) / Decimal(initial_money)) if initial_money else None,
    }
