"""Accounting invariants: real runs pass; a deliberately broken engine (money minted on
rollover, payables left in the ledger after they were settled) fails the check, naming the
offending runs, also as the `accounting_invariants` asset check of a sweep through Dagster."""

from __future__ import annotations

import dagster as dg
import pytest

from bilancio_pipeline.compute.base import Compute, RunTask
from bilancio_pipeline.compute.local import run_task
from bilancio_pipeline.defs.inprocess import run_sweep
from bilancio_pipeline.defs.instance import DAGSTER_ENV, ensure_dagster_home
from bilancio_pipeline.defs.resources import ComputeResource
from bilancio_pipeline.definitions import build_definitions
from bilancio_pipeline.engine import simulate as engine
from bilancio_pipeline.sweeps.batch import metrics_row
from bilancio_pipeline.sweeps.invariants import check_runs

CELLS = [dict(kappa=k, mu=mu) for k in (0.25, 1.0) for mu in (0.0, 1.0)]


def _rows(tmp_path, cash_accounting="conserving"):
    """metrics rows of real runs (both regimes over CELLS), as a batch stores them."""
    rows = []
    for i, cell in enumerate(CELLS):
        for regime in ("passive", "active"):
            run_id = f"inv_{regime}_{i}"
            params = dict(n_agents=12, maturity_days=5, concentration=1.0, outside_mid_ratio=1.0, seed=3,
                          regime=regime, cash_accounting=cash_accounting, **cell)
            outcome = run_task(RunTask(run_id, "inv", params), str(tmp_path))
            assert outcome.ok, outcome.error
            rows.append(metrics_row("inv", outcome))
    return rows


def mint_on_rollover(monkeypatch):
    """A broken engine: every rollover also creates one unit of money out of nothing."""
    real = engine.roll_over

    def broken(ledger, t, settled):
        real(ledger, t, settled)
        ledger.cash[0] += 1

    monkeypatch.setattr(engine, "roll_over", broken)


def keep_some_settled_payables(monkeypatch):
    """A broken engine: every 7th payable stays in the ledger after it leaves it (settled and
    outstanding at once)."""
    real = engine.Ledger.remove

    def broken(self, p):
        if p.serial % 7:
            real(self, p)

    monkeypatch.setattr(engine.Ledger, "remove", broken)


def test_real_runs_conserve_money_and_end_each_payable_once(tmp_path):
    rows = _rows(tmp_path)
    report = check_runs(rows)
    assert report.passed and report.runs_checked == len(rows) == 8 and not report.not_checked
    facts = rows[0]["raw_metrics"]["accounting"]
    assert len(facts["money_by_day"]) == rows[0]["raw_metrics"]["last_sim_day"] + 1
    assert facts["payables"]["created"] > facts["payables"]["settled"] > 0


def test_minting_engine_fails_the_money_check_for_conserving_runs_only(tmp_path, monkeypatch):
    mint_on_rollover(monkeypatch)
    report = check_runs(_rows(tmp_path))
    assert not report.passed and not report.payables_unbalanced
    assert set(report.money_not_conserved) == {r for r in report.offending_runs}
    first = next(iter(report.money_not_conserved.values()))
    assert first["money_that_day"] > first["issued"]
    # bilancio_compat creates money by design: only its payables are checked
    assert check_runs(_rows(tmp_path / "compat", "bilancio_compat")).passed


def test_payables_in_two_states_fail_the_check(tmp_path, monkeypatch):
    keep_some_settled_payables(monkeypatch)
    report = check_runs(_rows(tmp_path))
    assert not report.passed and report.payables_unbalanced
    counts = next(iter(report.payables_unbalanced.values()))
    assert counts["settled"] + counts["defaulted"] + counts["replaced"] + counts["outstanding"] > counts["created"]


def test_rows_without_facts_are_reported_not_checked():
    report = check_runs([{"run_id": "old", "raw_metrics": {"delta_total": 0.1}}])
    assert report.passed and report.not_checked == ["old"] and report.runs_checked == 0


class InProcessCompute(ComputeResource):
    """Runs the simulations in the test's own process, so a monkeypatched engine is the one used."""

    def open(self, executor=None):
        class Local(Compute):
            name = "in-process"

            def run_batch(self, tasks, artifacts_root):
                for task in tasks:
                    yield run_task(task, artifacts_root)

        return Local()


@pytest.fixture
def instance(tmp_path, monkeypatch):
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    for name, value in DAGSTER_ENV.items():
        monkeypatch.setenv(name, value)
    for var in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_KEY", "BILANCIO_R2_BUCKET"):
        monkeypatch.delenv(var, raising=False)
    ensure_dagster_home()
    with dg.DagsterInstance.get() as inst:
        yield inst


def test_the_asset_check_names_the_runs_of_a_broken_engine(instance, monkeypatch):
    mint_on_rollover(monkeypatch)
    spec = {"n_agents": 10, "maturity_days": 5, "kappas": [0.5, 1.0], "concentrations": [1.0], "mus": [1.0],
            "outside_mid_ratios": [1.0], "seeds": [1], "job_id": "broken-engine"}
    run_sweep(build_definitions(compute=InProcessCompute()), instance, spec, batch_size=10)
    key = dg.AssetCheckKey(dg.AssetKey("run_metrics"), "accounting_invariants")
    (record,) = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
    evaluation = record.event.dagster_event.event_specific_data
    assert evaluation.passed is False
    offending = evaluation.metadata["offending_runs"].value
    assert offending and all(r.startswith("broken-engine_") for r in offending)
    assert set(offending) == set(evaluation.metadata["money_not_conserved"].value)
