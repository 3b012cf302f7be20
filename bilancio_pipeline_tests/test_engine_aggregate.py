"""Job aggregate (MODEL.md §5.5) as a pure function over run result rows."""

import statistics

import pytest

from bilancio_pipeline.engine.aggregate import aggregate_job_metrics
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
    assert out["raw_summary"] == {"n_comparisons": 0, "n_pairs": 0}
    assert out["n_pairs"] == 0 and out["mean_trading_effect"] is None and out["pairs"] == []


def test_missing_field_is_named():
    bad = row("passive", 0.5)
    del bad["seed"]
    with pytest.raises(ValueError, match="seed"):
        aggregate_job_metrics([bad])
