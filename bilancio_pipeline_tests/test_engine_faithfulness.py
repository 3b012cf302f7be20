"""The engine against the original's reference results (MODEL.md §12), cash accounting as the
original (`bilancio_compat`): n=50, D=10, Q=10000, rho=1, seed 42."""

import pytest

from bilancio_pipeline.engine import RunParams, run_simulation

# kappa, c, mu, regime, delta_total, phi_total, delta_clean, n_defaults, n_clears_all,
# time_to_stability, last_sim_day, total_trades, trade_volume_cash
REFERENCE = [
    (0.25, 0.5, 0.0, "passive", 0.808857808858, 0.191142191142, 0.805434149184, 28, 1087, 2, 29, 0, 0.0),
    (0.25, 0.5, 0.0, "active", 0.830275564652, 0.169724435348, 0.830275564652, 28, 1595, 1, 29, 14, 893.8585),
    (0.5, 1.0, 0.5, "passive", 0.744350526134, 0.255649473866, 0.612040710712, 21, 204, 37, 29, 0, 0.0),
    (0.5, 1.0, 0.5, "active", 0.505521023766, 0.494478976234, 0.505521023766, 15, 179, 9, 21, 33, 5804.7936),
    (1.0, 2.0, 1.0, "passive", 0.685533010868, 0.314466989132, 0.574345122181, 18, 169, 17, 24, 0, 0.0),
    (1.0, 2.0, 1.0, "active", 0.429076259806, 0.570923740194, 0.429076259806, 16, 154, 10, 24, 24, 2656.4016),
    (2.0, 1.0, 0.5, "passive", 0.332091868405, 0.667908131595, 0.275260362784, 8, 223, 24, 26, 0, 0.0),
    (2.0, 1.0, 0.5, "active", 0.193418647166, 0.806581352834, 0.193418647166, 8, 215, 9, 24, 16, 3067.7116),
]


def _run(kappa, c, mu, regime):
    params = RunParams(n_agents=50, maturity_days=10, q_total=10000.0, kappa=kappa, concentration=c, mu=mu,
                       outside_mid_ratio=1.0, seed=42, regime=regime, cash_accounting="bilancio_compat")
    return run_simulation(params).summary


@pytest.fixture(scope="module")
def results():
    return {row[:4]: _run(*row[:4]) for row in REFERENCE}


@pytest.mark.parametrize("ref", [r for r in REFERENCE if r[3] == "passive"], ids=lambda r: f"k{r[0]}-c{r[1]}-mu{r[2]}")
def test_passive_rows_exactly(results, ref):
    s = results[ref[:4]]
    _, _, _, _, delta, phi, clean, n_defaults, n_clears, tts, last_day, _, _ = ref
    assert s["delta_total"] == pytest.approx(delta, abs=1e-9)
    assert s["phi_total"] == pytest.approx(phi, abs=1e-9)
    assert s["delta_clean"] == pytest.approx(clean, abs=1e-9)
    assert s["n_defaults"] == n_defaults
    assert s["n_clears_all"] == n_clears
    assert s["time_to_stability"] == tts
    assert s["last_sim_day"] == last_day
    assert s["total_trades"] == 0


@pytest.mark.parametrize("ref", [r for r in REFERENCE if r[3] == "active"], ids=lambda r: f"k{r[0]}-c{r[1]}-mu{r[2]}")
def test_active_rows(results, ref):
    s = results[ref[:4]]
    _, _, _, _, delta, phi, clean, n_defaults, n_clears, tts, last_day, trades, volume = ref
    assert s["delta_total"] == pytest.approx(delta, abs=0.05)  # the acceptance bound
    # the engine reproduces the original's trading path, so these hold exactly too
    assert s["delta_total"] == pytest.approx(delta, abs=1e-9)
    assert s["delta_clean"] == pytest.approx(clean, abs=1e-9)
    assert (s["n_defaults"], s["n_clears_all"], s["time_to_stability"], s["last_sim_day"]) == (
        n_defaults, n_clears, tts, last_day)
    assert s["total_trades"] == trades
    assert s["total_trade_volume"] == pytest.approx(volume, abs=1e-3)


def test_mean_trading_effect_over_the_four_pairs(results):
    cells = sorted({r[:3] for r in REFERENCE})
    ref = {r[:4]: r[4] for r in REFERENCE}
    ours = [results[c + ("passive",)]["delta_total"] - results[c + ("active",)]["delta_total"] for c in cells]
    theirs = [ref[c + ("passive",)] - ref[c + ("active",)] for c in cells]
    assert sum(ours) / 4 == pytest.approx(sum(theirs) / 4, abs=0.01)


# More results of the original (same code and runner: `bilancio sweep balanced`, n_banks 0, the
# "aggressive" preset), at the CLI's default outside_mid_ratio 0.9, where traders also buy
# (interior and pass-through) and one firm buys back its own debt (seed 102).
# kappa, c, mu, seed, regime, delta_total, n_defaults, time_to_stability, executed trades
MORE_REFERENCE_RHO_09 = [
    (0.25, 0.5, 0, 100, "passive", 0.7891658746984429, 29, 1, 0),
    (0.25, 0.5, 1, 101, "passive", 0.9160135092079271, 19, 19, 0),
    (0.25, 2, 0, 102, "passive", 0.5135905304690925, 33, 3, 0),
    (0.25, 2, 1, 103, "passive", 0.8370426254243681, 30, 27, 0),
    (1, 0.5, 0, 104, "passive", 0.5944816655860529, 25, 2, 0),
    (1, 0.5, 1, 105, "passive", 0.745831195484864, 14, 15, 0),
    (1, 2, 0, 106, "passive", 0.13793103448275862, 36, 2, 0),
    (1, 2, 1, 107, "passive", 0.5842399471058484, 17, 20, 0),
    (0.25, 0.5, 0, 100, "active", 0.7879961985525258, 29, 1, 19),
    (0.25, 0.5, 1, 101, "active", 0.7987519500780031, 19, 10, 19),
    (0.25, 2, 0, 102, "active", 0.5730951512942034, 38, 27, 178),
    (0.25, 2, 1, 103, "active", 0.6112257806778081, 30, 15, 35),
    (1, 0.5, 0, 104, "active", 0.5466374269005848, 25, 1, 13),
    (1, 0.5, 1, 105, "active", 0.6470846670432436, 16, 22, 156),
    (1, 2, 0, 106, "active", 0.11406649616368286, 35, 1, 11),
    (1, 2, 1, 107, "active", 0.4630402671633164, 18, 19, 140),
]


@pytest.mark.parametrize("ref", MORE_REFERENCE_RHO_09, ids=lambda r: f"{r[4]}-seed{r[3]}")
def test_more_results_of_the_original_at_rho_09(ref):
    kappa, c, mu, seed, regime, delta, n_defaults, tts, trades = ref
    params = RunParams(n_agents=50, kappa=kappa, concentration=c, mu=mu, outside_mid_ratio=0.9, seed=seed,
                       regime=regime, cash_accounting="bilancio_compat")
    s = run_simulation(params).summary
    assert s["delta_total"] == pytest.approx(delta, abs=1e-9)
    assert (s["n_defaults"], s["time_to_stability"], s["total_trades"]) == (n_defaults, tts, trades)


@pytest.mark.parametrize(
    "regime, delta, n_defaults, tts, trades",
    [("passive", 0.8087002715145791, 41, 27, 0), ("active", 0.7886740331491713, 46, 35, 315)],
)
def test_a_larger_ring_of_the_original(regime, delta, n_defaults, tts, trades):
    # n=100, kappa 0.5, c 1, mu 1, rho 0.8, seed 300: many sells, buys and rejections
    params = RunParams(n_agents=100, kappa=0.5, concentration=1.0, mu=1.0, outside_mid_ratio=0.8, seed=300,
                       regime=regime, cash_accounting="bilancio_compat")
    s = run_simulation(params).summary
    assert s["delta_total"] == pytest.approx(delta, abs=1e-9)
    assert (s["n_defaults"], s["time_to_stability"], s["total_trades"]) == (n_defaults, tts, trades)


def test_job_aggregate_over_these_pairs_equals_the_originals():
    # the original's aggregate/summary.json for this sweep: mean trading effect 0.07204980557324832
    from bilancio_pipeline.engine import aggregate_job_metrics

    rows = []
    for kappa, c, mu, seed, regime, *_ in MORE_REFERENCE_RHO_09:
        params = RunParams(n_agents=50, kappa=kappa, concentration=c, mu=mu, outside_mid_ratio=0.9, seed=seed,
                           regime=regime, cash_accounting="bilancio_compat")
        summary = run_simulation(params).summary
        rows.append({"kappa": kappa, "concentration": c, "mu": mu, "outside_mid_ratio": 0.9, "seed": seed, **summary})
    out = aggregate_job_metrics(rows)
    assert out["n_pairs"] == 8
    assert out["mean_trading_effect"] == pytest.approx(0.07204980557324832, abs=1e-9)
    assert (out["positive_effects"], out["negative_effects"]) == (7, 1)
