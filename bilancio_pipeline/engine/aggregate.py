"""Sweep aggregate (MODEL.md §5.5): pair passive and active runs, summarise the trading effect.

A pure function over run result dicts; the caller stores the returned columns in `job_metrics`.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable

from bilancio_pipeline.engine.stats import CONFIDENCE, cell_effects, mean_ci, variance_decomposition

PAIR_KEYS = ("kappa", "concentration", "mu", "outside_mid_ratio", "seed")
REQUIRED_KEYS = ("regime", *PAIR_KEYS, "delta_total", "phi_total")
NEUTRAL_BAND = 0.001  # |effect| <= this counts as neutral, as in the original


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _side(regime: Any) -> str | None:
    """The original's rule: a regime naming "passive" (or empty) is passive, "active" is active."""
    text = str(regime or "")
    if "passive" in text or text == "":
        return "passive"
    if "active" in text:
        return "active"
    return None


def pair_runs(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Complete passive/active pairs sharing (kappa, c, mu, rho, seed), both with a delta."""
    grouped: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"run row {index} must be a dict, got {type(row).__name__}")
        for key in REQUIRED_KEYS:
            if key not in row:
                raise ValueError(f"run row {index} is missing the field {key!r}")
        side = _side(row["regime"])
        if side is None:
            continue
        key = tuple(_number(row[k]) for k in PAIR_KEYS)
        grouped.setdefault(key, {})[side] = row  # a later run of the same cell replaces an earlier one
    pairs = []
    for sides in grouped.values():
        passive, active = sides.get("passive"), sides.get("active")
        if passive is None or active is None:
            continue
        d_passive, d_active = _number(passive["delta_total"]), _number(active["delta_total"])
        if d_passive is None or d_active is None:
            continue
        effect = d_passive - d_active
        c_passive, c_active = _number(passive.get("delta_clean")), _number(active.get("delta_clean"))
        pairs.append(
            {
                **{k: passive[k] for k in PAIR_KEYS},
                "delta_passive": d_passive,
                "delta_active": d_active,
                "phi_passive": _number(passive["phi_total"]),
                "phi_active": _number(active["phi_total"]),
                "delta_clean_passive": c_passive,
                "delta_clean_active": c_active,
                "trading_effect": effect,
                "trading_effect_clean": None if c_passive is None or c_active is None else c_passive - c_active,
                "trading_relief_ratio": effect / d_passive if d_passive != 0 else 0.0,
            }
        )
    return pairs


def aggregate_job_metrics(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The job_metrics columns for a sweep's runs, plus the per-pair list under `pairs`."""
    rows = list(rows)
    pairs = pair_runs(rows)
    if not pairs:
        empty = {"n_comparisons": 0, "n_pairs": 0}
        columns = {
            "mean_trading_effect": None, "min_trading_effect": None, "max_trading_effect": None,
            "std_trading_effect": None, "positive_effects": None, "negative_effects": None,
            "neutral_effects": None, "mean_delta_passive": None, "mean_delta_active": None,
            "mean_phi_passive": None, "mean_phi_active": None, "mean_trading_effect_clean": None,
            "trading_effect_ci_low": None, "trading_effect_ci_high": None,
        }
        return {**empty, **columns, "raw_summary": {**empty, **_analysis(rows, pairs)}, "pairs": []}
    effects = [p["trading_effect"] for p in pairs]
    ci_low, ci_high = mean_ci(effects)
    clean = [p["trading_effect_clean"] for p in pairs if p["trading_effect_clean"] is not None]
    summary = {
        "n_comparisons": len(pairs),
        "n_pairs": len(pairs),
        "mean_trading_effect": _mean(effects),
        "min_trading_effect": min(effects),
        "max_trading_effect": max(effects),
        "std_trading_effect": statistics.stdev(effects) if len(effects) > 1 else 0.0,
        "positive_effects": sum(1 for e in effects if e > NEUTRAL_BAND),
        "negative_effects": sum(1 for e in effects if e < -NEUTRAL_BAND),
        "neutral_effects": sum(1 for e in effects if -NEUTRAL_BAND <= e <= NEUTRAL_BAND),
        "mean_delta_passive": _mean([p["delta_passive"] for p in pairs]),
        "mean_delta_active": _mean([p["delta_active"] for p in pairs]),
        "mean_phi_passive": _mean([p["phi_passive"] for p in pairs if p["phi_passive"] is not None]),
        "mean_phi_active": _mean([p["phi_active"] for p in pairs if p["phi_active"] is not None]),
        "mean_trading_effect_clean": _mean(clean),
        "trading_effect_ci_low": ci_low,
        "trading_effect_ci_high": ci_high,
    }
    return {**summary, "raw_summary": {**summary, **_analysis(rows, pairs)}, "pairs": pairs}


def _decomposed(rows: list[dict[str, Any]], value: str, none: str) -> dict[str, Any]:
    return variance_decomposition(rows, value) if rows else {"computed": False, "reason": none}


def _analysis(rows: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the raw summary adds to the columns: how the interval is computed, the cells whose
    own interval excludes zero, and the variance decomposition of δ and of the trading effect."""
    by_regime = {side: [{**r, "delta": _number(r["delta_total"])} for r in rows if _side(r["regime"]) == side]
                 for side in ("passive", "active")}
    cells = cell_effects(pairs)
    with_interval = [c for c in cells if c["ci_low"] is not None]
    return {
        "trading_effect_ci_method": f"{CONFIDENCE:.0%} Student t interval of the mean over the pairs "
                                    "(mean ± t(n-1) · sd/√n), treating pairs as independent draws",
        "cells_with_interval": len(with_interval),
        "cells_ci_excluding_zero": sum(c["excludes_zero"] for c in with_interval),
        "variance_decomposition": {
            "delta_passive": _decomposed(by_regime["passive"], "delta", "no passive runs"),
            "delta_active": _decomposed(by_regime["active"], "delta", "no active runs"),
            "trading_effect": _decomposed(pairs, "trading_effect", "no passive/active pairs"),
        },
    }
