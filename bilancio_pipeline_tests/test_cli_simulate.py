"""`bilancio-pipeline simulate`: grids, JSON lines, the table, validation, --out artifacts."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bilancio_pipeline.cli.main import cli
from bilancio_pipeline.engine import RunParams, run_simulation
from bilancio_pipeline.engine.artifacts import ARTIFACT_PATHS, read_run_artifacts, stored_path

SMALL = ["--n-agents", "12", "--mu", "0.5"]
REQUIRED = (
    "delta_total", "phi_total", "delta_clean", "n_defaults", "n_clears", "time_to_stability",
    "last_sim_day", "total_trades", "total_trade_volume", "cascade_fraction", "wall_ms",
)


def invoke(*args: str):
    return CliRunner().invoke(cli, ["simulate", *args])


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_a_list_grid_prints_one_json_line_per_run_in_grid_order():
    result = invoke(*SMALL, "--kappa", "0.5,1", "--regime", "passive,active", "--workers", "2", "--json")
    assert result.exit_code == 0, result.output
    rows = json_lines(result.stdout)
    assert [(r["kappa"], r["regime"]) for r in rows] == [(0.5, "passive"), (0.5, "active"), (1.0, "passive"), (1.0, "active")]
    for row in rows:
        for key in REQUIRED:
            assert key in row, key
        assert row["n_agents"] == 12 and row["mu"] == 0.5 and row["seed"] == 42
        assert row["delta_total"] == pytest.approx(1 - row["phi_total"])
        # the pool gives the same numbers as running the engine directly
        direct = run_simulation(RunParams(n_agents=12, mu=0.5, kappa=row["kappa"], regime=row["regime"]))
        assert row["delta_total"] == direct.summary["delta_total"]
        assert row["n_defaults"] == direct.summary["n_defaults"]
        assert row["total_trades"] == direct.summary["total_trades"]
    assert rows[0]["total_trades"] == 0  # passive runs never trade
    assert len({r["run"] for r in rows}) == 4


def test_a_single_run_defaults_to_the_model_defaults():
    result = invoke("--n-agents", "10", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json_lines(result.stdout)
    defaults = RunParams(n_agents=10).to_dict()
    assert {k: row[k] for k in defaults} == defaults
    assert row["q_total"] == 10000 and row["face_value"] == 20 and row["rollover"] is True
    assert row["default_handling"] == "expel-agent"


def test_cash_accounting_and_other_lists_multiply_the_grid():
    result = invoke(*SMALL, "--kappa", "0.5", "--regime", "active", "--cash-accounting", "conserving,bilancio_compat",
                    "--seed", "1,2", "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    rows = json_lines(result.stdout)
    assert {(r["seed"], r["cash_accounting"]) for r in rows} == {(1, "conserving"), (1, "bilancio_compat"), (2, "conserving"), (2, "bilancio_compat")}
    assert all("bilancio_compat" in r["run"] for r in rows if r["cash_accounting"] == "bilancio_compat")


def test_without_json_prints_an_aligned_table():
    result = invoke(*SMALL, "--kappa", "0.5,2", "--regime", "passive", "--workers", "1")
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip("\n").splitlines()
    header, rule, *body = lines
    assert header.split()[:2] == ["regime", "n"] and "delta_total" in header and "wall_ms" in header
    assert set(rule.replace(" ", "")) == {"-"}
    assert len(body) == 2
    assert all(len(line) <= len(rule) for line in body)
    # numbers are right-aligned: the header, its dashes and every value end in the same place
    end = header.index("delta_total") + len("delta_total")
    assert rule[end - 1] == "-" and rule[end] == " "
    assert all(line[end - 1] != " " and line[end] == " " for line in body)
    direct = run_simulation(RunParams(n_agents=12, mu=0.5, kappa=2.0))
    assert f"{direct.summary['delta_total']:.4g}" in body[1]


@pytest.mark.parametrize(
    ("args", "flag", "allowed"),
    [
        (["--kappa", "-1"], "--kappa", ">= 0"),
        (["--kappa", "0.5,-0.25"], "--kappa", ">= 0"),
        (["--kappa", "nan"], "--kappa", "finite"),
        (["--kappa", "abc"], "--kappa", "not a number"),
        (["--concentration", "0"], "--concentration", "> 0"),
        (["--mu", "1.5"], "--mu", "[0, 1]"),
        (["--n-agents", "1"], "--n-agents", ">= 2"),
        (["--n-agents", "2.5"], "--n-agents", "not an integer"),
        (["--regime", "sideways"], "--regime", "passive, active"),
        (["--cash-accounting", "magic"], "--cash-accounting", "conserving, bilancio_compat"),
        (["--seed", "1,,2"], "--seed", "empty item"),
        (["--workers", "0"], "--workers", "0"),
    ],
)
def test_invalid_parameters_exit_non_zero_naming_the_flag_before_writing(tmp_path, args, flag, allowed):
    out = tmp_path / "runs"
    result = invoke(*SMALL, "--kappa", "0.5", *args, "--out", str(out), "--json")
    assert result.exit_code != 0
    assert flag in result.output and allowed in result.output, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert not out.exists()  # nothing was written


def test_out_writes_every_runs_artifacts_in_a_folder_named_after_the_run(tmp_path):
    result = invoke(*SMALL, "--kappa", "0.5", "--regime", "passive,active", "--cash-accounting", "bilancio_compat",
                    "--out", str(tmp_path), "--workers", "2", "--json")
    assert result.exit_code == 0, result.output
    rows = json_lines(result.stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(r["run"] for r in rows)
    for row in rows:
        run_dir = tmp_path / row["run"]
        assert row["artifacts_dir"] == str(run_dir)
        for name in ARTIFACT_PATHS:  # the data files gzipped, as a sweep keeps them
            assert (run_dir / stored_path(name)).is_file(), stored_path(name)
        back = read_run_artifacts(run_dir)
        assert back.scenario["cash_accounting"] == "bilancio_compat"
        assert back.scenario["balanced_dealer"]["mode"] == row["regime"]
        assert sum(1 for e in back.events if e["kind"] == "AgentDefaulted") == row["n_defaults"]
        assert sum(1 for e in back.events if e["kind"] == "dealer_trade") == row["total_trades"]


def test_a_failing_run_is_reported_and_the_others_still_finish(tmp_path):
    blocked = tmp_path / "passive_n12_k0.5_c1_mu0.5_rho1_s42"
    blocked.write_text("a file where the run's folder should go")
    result = invoke(*SMALL, "--kappa", "0.5", "--regime", "passive,active", "--out", str(tmp_path), "--workers", "1", "--json")
    assert result.exit_code == 1
    rows = json_lines(result.stdout)
    assert [r["run"] for r in rows] == [blocked.name, "active_n12_k0.5_c1_mu0.5_rho1_s42"]
    assert "error" in rows[0] and "delta_total" not in rows[0]
    assert rows[1]["delta_total"] is not None and (tmp_path / rows[1]["run"] / "run.html").is_file()
    assert "1 of 2 runs failed" in result.stderr
