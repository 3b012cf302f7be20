"""run_simulation end to end: validation, determinism, the two cash accountings, dealer trading."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bilancio_pipeline.engine import InvalidParameter, RunParams, run_simulation
from bilancio_pipeline.engine.run import simulate

SUMMARY_KEYS = {
    "regime", "cash_accounting", "wall_ms", "delta_total", "phi_total", "delta_clean", "n_defaults", "n_clears",
    "n_clears_all", "n_clears_tracked", "time_to_stability", "last_sim_day", "total_trades", "total_trade_volume",
    "trade_volume_face", "cascade_fraction", "payable_default_loss", "total_loss", "total_loss_pct", "S_total",
    "max_G_t", "alpha_1", "Mpeak_1", "v_1", "HHIplus_1",
}
CELL = dict(n_agents=30, kappa=0.5, concentration=1.0, mu=0.5, seed=7)


def _without_timing(summary):
    return {k: v for k, v in summary.items() if k != "wall_ms"}


@pytest.mark.parametrize(
    "field, value",
    [("kappa", -0.1), ("n_agents", 1), ("mu", 1.5), ("regime", "both"), ("cash_accounting", "magic"), ("seed", -1)],
)
def test_invalid_parameters_name_the_field(field, value):
    with pytest.raises(InvalidParameter, match=field):
        RunParams(**{field: value})


def test_run_simulation_requires_run_params(tmp_path):
    with pytest.raises(TypeError):
        run_simulation({"kappa": 0.5}, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("regime", ["passive", "active"])
def test_summary_has_every_metric_and_is_deterministic(regime):
    params = RunParams(regime=regime, cash_accounting="bilancio_compat", **CELL)
    first, second = run_simulation(params), run_simulation(params)
    assert SUMMARY_KEYS <= set(first.summary)
    assert first.summary["regime"] == regime
    assert _without_timing(first.summary) == _without_timing(second.summary)
    assert first.day_metrics == second.day_metrics
    assert first.wall_ms > 0


def test_identical_across_processes_with_different_hash_seeds():
    code = (
        "import json; from bilancio_pipeline.engine import RunParams, run_simulation;"
        f"s = run_simulation(RunParams(regime='active', cash_accounting='bilancio_compat', **{CELL!r})).summary;"
        "s.pop('wall_ms'); print(json.dumps(s, sort_keys=True))"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                              cwd=Path(__file__).resolve().parents[1])
        outputs.add(done.stdout)
    assert len(outputs) == 1


def test_passive_and_active_share_the_scenario_and_passive_never_trades():
    passive = simulate(RunParams(regime="passive", **CELL))
    active = simulate(RunParams(regime="active", **CELL))
    setup = lambda out: [e for e in out.events if e["phase"] == "setup"]  # noqa: E731
    assert setup(passive) == setup(active)
    assert passive.summary["total_trades"] == 0
    assert not [e for e in passive.events if e["kind"] in ("dealer_trade", "ClaimTransferredDealer")]


def _money(out):
    minted_at_setup = sum(e["amount"] for e in out.events if e["kind"] == "CashMinted" and e["phase"] == "setup")
    return minted_at_setup, out.summary["money_end"]


def test_conserving_accounting_creates_no_money():
    out = simulate(RunParams(regime="active", cash_accounting="conserving", n_agents=50, kappa=0.5, concentration=1.0, mu=0.5, seed=42))
    assert out.summary["total_trades"] > 0
    start, end = _money(out)
    assert start == end
    assert not [e for e in out.events if e["kind"] in ("CashMinted", "CashRetired") and e["phase"] == "simulation"]
    trade = next(e for e in out.events if e["kind"] == "dealer_trade")
    assert trade["price"] == pytest.approx(trade["unit_price"] * trade["face"], abs=0.5)  # whole units


def test_compat_accounting_mints_the_unit_face_gap():
    # MODEL.md §4.6: cash outstanding 12,076 passive vs 17,850 active for this cell
    compat = simulate(RunParams(regime="active", cash_accounting="bilancio_compat", n_agents=50, kappa=0.5, concentration=1.0, mu=0.5, seed=42))
    passive = simulate(RunParams(regime="passive", cash_accounting="bilancio_compat", n_agents=50, kappa=0.5, concentration=1.0, mu=0.5, seed=42))
    assert passive.summary["money_end"] == 12076
    assert compat.summary["money_end"] == 17850
    start, end = _money(compat)
    assert end > start


def test_sold_claims_are_transferred_to_the_dealer_and_paid_there():
    out = simulate(RunParams(regime="active", cash_accounting="bilancio_compat", n_agents=50, kappa=0.5, concentration=1.0, mu=0.5, seed=42))
    trades = [e for e in out.events if e["kind"] == "dealer_trade"]
    transfers = [e for e in out.events if e["kind"] == "ClaimTransferredDealer"]
    assert trades and all(t["side"] == "sell" for t in trades)
    assert len(transfers) == len(trades)
    assert {t["to_holder"].split("_")[0] for t in transfers} <= {"dealer", "vbt"}
    assert out.summary["total_trade_volume"] == pytest.approx(sum(t["price"] for t in trades))
    paid_to_desk = [e for e in out.events if e["kind"] == "PayableSettled" and e["creditor"].startswith("dealer")]
    assert paid_to_desk
    assert out.dealer_metrics["buy_rejected"] > 0  # counted, not logged
    assert not [e for e in out.events if e["kind"] in ("buy_rejected", "sell_rejected")]


def test_active_run_without_rollover_and_fail_fast_complete():
    out = simulate(RunParams(regime="active", rollover=False, **CELL))
    assert out.summary["stop_reason"] in ("stable", "max_days")
    out = simulate(RunParams(regime="active", default_handling="fail-fast", kappa=0.1, n_agents=20, seed=3))
    assert out.summary["stop_reason"] == "default_fail_fast"


def test_artifacts_are_written_when_a_folder_is_given(tmp_path):
    result = run_simulation(RunParams(regime="active", **CELL), tmp_path)
    assert result.artifacts
    for relative in result.artifacts.values():
        assert (tmp_path / relative).is_file()
    events = gzip.decompress((tmp_path / result.artifacts["events_jsonl"]).read_bytes()).decode().splitlines()
    assert json.loads(events[0])["kind"] == "CashMinted"
