"""Job aggregate (MODEL.md §5.5) as a pure function over run result rows."""

import statistics

import pytest

from bilancio_pipeline.engine.aggregate import aggregate_job_metrics
from bilancio_pipeline.engine.stats import cell_effects, mean_ci, t_cdf, t_quantile, variance_decomposition
from bilancio_pipeline.storage.schema import job_metrics


def row(regime, delta, phi=None, *, kappa=0.5, c=1.0, mu=0.5, rho=1.0, seed=42, clean=None):
    return {"regime": regime, "kappa": kappa, "concentration": c, "mu": mu, "outside_mid_ratio": rho,
            "seed": seed, "delta_total": delta, "phi_total": None if delta is None else (1 - delta if phi is None else phi),
            "delta_clean": clean}


def test_pairs_effects_thresholds_and_means():
    rows = [
        row("passive", 0.70, clean=0.60), row("active", 0.50, clean=0.55),         # +0.20
        row("passive", 0.30, seed=43), row("active", 0.3005, seed=43),              # neutral
        row("passive", 0.20, seed=44), row("active", 0.25, seed=44),                # -0.05
        row("passive", 0.40, seed=45),                                              # no partner
        row("active", None, seed=46), row("passive", 0.9, seed=46),                 # null delta
    ]
    out = aggregate_job_metrics(rows)
    effects = [0.20, -0.0005, -0.05]
    assert out["n_pairs"] == out["n_comparisons"] == 3
    assert out["mean_trading_effect"] == pytest.approx(sum(effects) / 3)
    assert out["min_trading_effect"] == pytest.approx(-0.05)
    assert out["max_trading_effect"] == pytest.approx(0.20)
    assert out["std_trading_effect"] == pytest.approx(statistics.stdev(effects))
    assert (out["positive_effects"], out["negative_effects"], out["neutral_effects"]) == (1, 1, 1)
    assert out["mean_delta_passive"] == pytest.approx((0.7 + 0.3 + 0.2) / 3)
    assert out["mean_phi_active"] == pytest.approx((0.5 + 0.6995 + 0.75) / 3)
    assert out["mean_trading_effect_clean"] == pytest.approx(0.05)  # only the pair with clean deltas
    first = out["pairs"][0]
    assert first["trading_relief_ratio"] == pytest.approx(0.2 / 0.7)
    assert first["seed"] == 42 and first["delta_active"] == 0.5
    assert out["raw_summary"]["n_pairs"] == 3 and "pairs" not in out["raw_summary"]


def test_columns_match_the_job_metrics_table():
    out = aggregate_job_metrics([row("passive", 0.5), row("active", 0.4)])
    table = {c.name for c in job_metrics.columns} - {"job_id", "created_at", "updated_at"}
    assert table <= set(out)


def test_single_pair_has_zero_std_and_zero_relief_when_passive_is_zero():
    out = aggregate_job_metrics([row("passive", 0.0), row("active", 0.0)])
    assert out["std_trading_effect"] == 0.0
    assert out["pairs"][0]["trading_relief_ratio"] == 0.0


def test_regime_names_and_numeric_keys_are_matched_like_the_original():
    rows = [row("balanced_passive", 0.6, kappa=1), row("balanced_active", 0.5, kappa=1.0), row("", 0.3, seed=7),
            row("active", 0.1, seed=7), row("other", 0.9, seed=7)]
    out = aggregate_job_metrics(rows)
    assert out["n_pairs"] == 2
    assert sorted(round(p["trading_effect"], 6) for p in out["pairs"]) == [0.1, 0.2]


def test_no_pairs():
    out = aggregate_job_metrics([row("passive", 0.5)])
    assert {k: out["raw_summary"][k] for k in ("n_comparisons", "n_pairs")} == {"n_comparisons": 0, "n_pairs": 0}
    assert out["trading_effect_ci_low"] is None and out["raw_summary"]["cells_ci_excluding_zero"] == 0
    assert out["n_pairs"] == 0 and out["mean_trading_effect"] is None and out["pairs"] == []


def test_missing_field_is_named():
    bad = row("passive", 0.5)
    del bad["seed"]
    with pytest.raises(ValueError, match="seed"):
        aggregate_job_metrics([bad])


# --- uncertainty and variance decomposition (engine/stats.py) ---------------------------------

# Student t quantiles from printed tables (two-sided 95% unless noted), to the tables' 4 decimals
T_TABLE = [(0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 3, 3.1824), (0.975, 5, 2.5706), (0.975, 10, 2.2281),
           (0.975, 20, 2.0860), (0.975, 30, 2.0423), (0.975, 60, 2.0003), (0.975, 120, 1.9799),
           (0.995, 4, 4.6041), (0.95, 7, 1.8946), (0.9, 15, 1.3406)]


@pytest.mark.parametrize("p, df, expected", T_TABLE)
def test_t_quantile_matches_the_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-5)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=5e-5)
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-12)


def test_t_quantile_closed_forms_and_the_normal_limit():
    import math

    for p in (0.6, 0.9, 0.975, 0.999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-10)  # Cauchy
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-10)
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 3)


def test_mean_ci_is_the_t_interval():
    values = [0.1, 0.3, 0.2, 0.4]
    low, high = mean_ci(values)
    half = 3.1824 * statistics.stdev(values) / 2  # t(0.975, 3) · s / √4
    assert (low, high) == pytest.approx((0.25 - half, 0.25 + half), abs=1e-4)
    assert mean_ci([0.5]) == (None, None)


def test_job_metrics_carry_the_interval_and_the_cells_that_exclude_zero():
    rows = []
    effects = {0.5: [0.10, 0.12, 0.11], 1.0: [-0.05, 0.06, 0.01]}  # a clear effect, and a noisy one
    for kappa, cell in effects.items():
        for seed, effect in enumerate(cell):
            rows += [row("passive", 0.5, kappa=kappa, seed=seed), row("active", 0.5 - effect, kappa=kappa, seed=seed)]
    out = aggregate_job_metrics(rows)
    everything = [e for cell in effects.values() for e in cell]
    assert (out["trading_effect_ci_low"], out["trading_effect_ci_high"]) == pytest.approx(mean_ci(everything))
    summary = out["raw_summary"]
    assert summary["cells_with_interval"] == 2 and summary["cells_ci_excluding_zero"] == 1
    assert "Student t" in summary["trading_effect_ci_method"]
    cells = cell_effects(out["pairs"])
    assert [c["excludes_zero"] for c in cells] == [True, False]
    assert cells[0]["mean"] == pytest.approx(0.11) and cells[0]["delta_passive"] == pytest.approx(0.5)


def _grid(value, **levels):
    keys = ("kappa", "concentration", "mu", "outside_mid_ratio", "seed")
    grid = [{}]
    for key in keys:
        grid = [{**g, key: v} for g in grid for v in levels.get(key, [1.0])]
    return [{**g, "y": value(g)} for g in grid]


def test_variance_decomposition_is_exact_on_an_additive_grid_with_an_interaction():
    # y = 2κ + μ-effect + κ×μ interaction; c has one level, ρ and seed do nothing
    mu_effect = {0.0: -1.0, 1.0: 1.0}
    rows = _grid(lambda g: 2 * g["kappa"] + mu_effect[g["mu"]] + (0.5 if g["kappa"] == 2 and g["mu"] == 1 else -0.5 if g["kappa"] == 2 else 0),
                 kappa=[1.0, 2.0, 3.0], mu=[0.0, 1.0], outside_mid_ratio=[0.9, 1.1], seed=[1, 2])
    out = variance_decomposition(rows, "y")
    assert out["computed"] and out["factors"] == ["kappa", "mu", "outside_mid_ratio", "seed"]  # c: one level
    shares = out["shares"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["ρ"] == pytest.approx(0, abs=1e-12) and shares["seed"] == pytest.approx(0, abs=1e-12)
    assert shares["higher-order"] == pytest.approx(0, abs=1e-12)
    # sums of squares by hand: 24 cells, grand mean 5 (κ means 2,4,6 with the interaction centred)
    import numpy as np

    y = np.array([r["y"] for r in rows])
    total = ((y - y.mean()) ** 2).sum()
    kappa_means = {k: np.mean([r["y"] for r in rows if r["kappa"] == k]) for k in (1.0, 2.0, 3.0)}
    ss_kappa = sum(8 * (m - y.mean()) ** 2 for m in kappa_means.values())
    assert shares["κ"] == pytest.approx(ss_kappa / total) and shares["κ×μ"] > 0
    assert "c" not in shares and "κ×c" not in shares


def test_variance_decomposition_says_why_it_is_not_computed():
    rows = _grid(lambda g: g["kappa"], kappa=[1.0, 2.0], mu=[0.0, 1.0])
    missing = variance_decomposition(rows[:-1], "y")
    assert not missing["computed"] and "1 of 4 cells" in missing["reason"] and "failed" in missing["reason"]
    twice = variance_decomposition(rows + rows[:1], "y")
    assert not twice["computed"] and "more than once" in twice["reason"]
    flat = variance_decomposition(_grid(lambda g: 0.3, kappa=[1.0, 2.0]), "y")
    assert not flat["computed"] and "same in every cell" in flat["reason"]


def test_job_metrics_decompose_delta_and_the_effect_or_say_why_not():
    rows = [row(regime, (0.6 if regime == "passive" else 0.5) - 0.1 * kappa + 0.01 * seed, kappa=kappa, seed=seed)
            for kappa in (0.5, 1.0) for seed in (1, 2) for regime in ("passive", "active")]
    decomposition = aggregate_job_metrics(rows)["raw_summary"]["variance_decomposition"]
    assert decomposition["delta_passive"]["computed"] and decomposition["delta_active"]["computed"]
    assert decomposition["delta_passive"]["shares"]["κ"] == pytest.approx(0.0025 / (0.0025 + 0.0001))  # 4 · 0.025² against 4 · 0.005²
    assert not decomposition["trading_effect"]["computed"]  # the effect is 0.1 everywhere
    partial = aggregate_job_metrics(rows[:-1])["raw_summary"]["variance_decomposition"]
    assert not partial["delta_active"]["computed"] and "failed" in partial["delta_active"]["reason"]
