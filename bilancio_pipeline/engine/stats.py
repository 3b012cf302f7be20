"""Statistics of a sweep: confidence intervals of a mean and the variance decomposition of a grid.

Pure Python plus NumPy (no SciPy in the image): the Student t quantile is computed here from
the regularized incomplete beta function (the continued fraction of Numerical Recipes §6.4,
evaluated with the modified Lentz method) inverted by bisection, exact to ~1e-12; the tests
compare it with tabulated values.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CONFIDENCE = 0.95
FACTORS = ("kappa", "concentration", "mu", "outside_mid_ratio", "seed")
FACTOR_SYMBOLS = {"kappa": "κ", "concentration": "c", "mu": "μ", "outside_mid_ratio": "ρ", "seed": "seed"}
RESIDUAL = "higher-order"  # the share not in main effects or two-way interactions


# --- Student t ---------------------------------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side; else use symmetry
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@functools.lru_cache(maxsize=256)  # a sweep's intervals share a few (p, df): each costs ~2 ms
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df degrees of freedom (bisection on the CDF)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * max(1.0, high):
            break
    return 0.5 * (low + high)


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The t interval of the mean: mean ± t_{(1+confidence)/2, n-1} · s/√n; (None, None) below 2 values."""
    n = len(values)
    if n < 2:
        return None, None
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1.0 + confidence) / 2.0, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


# --- variance decomposition of a full factorial grid -------------------------------------------


def variance_decomposition(rows: Sequence[Mapping[str, Any]], value: str,
                           factors: Sequence[str] = FACTORS) -> dict[str, Any]:
    """Shares of the total sum of squares of `value` due to each factor's main effect and each
    two-way interaction, over a grid with exactly one row per cell of the product of the
    factors' levels (the ANOVA identity is exact there); the rest is the higher-order
    interactions. Factors with one level explain nothing and are left out. A grid with missing
    or repeated cells is reported as not computed, with the reason."""
    data = [(tuple(r[f] for f in factors), float(r[value])) for r in rows if r.get(value) is not None]
    if len(data) < 2:
        return {"computed": False, "reason": f"fewer than 2 values of {value}"}
    levels = {f: sorted({cell[i] for cell, _ in data}) for i, f in enumerate(factors)}
    varied = [f for f in factors if len(levels[f]) > 1]
    n_cells = math.prod(len(levels[f]) for f in factors)
    cells: dict[tuple, float] = {}
    for cell, v in data:
        if cell in cells:
            return {"computed": False, "reason": f"cell {dict(zip(factors, cell))} appears more than once"}
        cells[cell] = v
    if len(cells) != n_cells:
        return {"computed": False, "n_values": len(cells), "n_cells": n_cells,
                "reason": f"not a full factorial grid: {n_cells - len(cells)} of {n_cells} cells have no "
                          f"{value} (failed or unfinished runs)"}
    index = [{level: i for i, level in enumerate(levels[f])} for f in varied]
    positions = [factors.index(f) for f in varied]
    y = np.empty([len(levels[f]) for f in varied])
    for cell, v in cells.items():
        y[tuple(index[k][cell[p]] for k, p in enumerate(positions))] = v
    grand = y.mean()
    total = float(((y - grand) ** 2).sum())
    result: dict[str, Any] = {"computed": True, "n_cells": n_cells, "factors": varied,
                              "total_sum_of_squares": total, "variance": total / n_cells}
    if total <= 1e-15:
        return {**result, "computed": False, "reason": f"{value} is the same in every cell"}
    axes = range(len(varied))
    mains = {a: y.mean(axis=tuple(b for b in axes if b != a), keepdims=True) - grand for a in axes}
    shares = {}
    for a in axes:
        shares[FACTOR_SYMBOLS.get(varied[a], varied[a])] = float((np.broadcast_to(mains[a], y.shape) ** 2).sum()) / total
    for a, b in itertools.combinations(axes, 2):
        pair_mean = y.mean(axis=tuple(c for c in axes if c not in (a, b)), keepdims=True)
        effect = pair_mean - mains[a] - mains[b] - grand
        name = f"{FACTOR_SYMBOLS.get(varied[a], varied[a])}×{FACTOR_SYMBOLS.get(varied[b], varied[b])}"
        shares[name] = float((np.broadcast_to(effect, y.shape) ** 2).sum()) / total
    shares[RESIDUAL] = max(0.0, 1.0 - sum(shares.values()))
    return {**result, "shares": shares}


def cell_effects(pairs: Sequence[Mapping[str, Any]], value: str = "trading_effect") -> list[dict[str, Any]]:
    """Per grid cell (κ, c, μ, ρ) over its seeds: n, the mean of `value` and its t interval,
    and the mean δ passive and δ active."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    cell_keys = FACTORS[:-1]
    for p in pairs:
        if p.get(value) is not None:
            groups.setdefault(tuple(p[k] for k in cell_keys), []).append(p)
    cells = []
    for key in sorted(groups):
        group = groups[key]
        values = [float(p[value]) for p in group]
        low, high = mean_ci(values)
        cells.append({**dict(zip(cell_keys, key)), "n": len(values), "mean": math.fsum(values) / len(values),
                      "ci_low": low, "ci_high": high,
                      "excludes_zero": low is not None and (low > 0 or high < 0),
                      **{k: _mean_of(group, k) for k in ("delta_passive", "delta_active")}})
    return cells


def _mean_of(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    return math.fsum(values) / len(values) if values else None
