"""Two sweeps side by side: how their specs differ and, for every grid cell (κ, c, μ, ρ, seed)
both ran, δ passive, δ active and the trading effect of each.

Pure: job rows and run_results rows in, one dict out (the JSON of `jobs compare`, the data of
`report A --compare B`). `trading_effect_diff` is B − A: how the second sweep changes the effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bilancio_pipeline.engine.stats import FACTORS

CELL_VALUES = ("delta_passive", "delta_active", "trading_effect")
CELL_COLUMNS = (*FACTORS, "delta_passive_a", "delta_passive_b", "delta_active_a", "delta_active_b",
                "trading_effect_a", "trading_effect_b", "trading_effect_diff")
# Spec fields that name or describe a sweep rather than define it.
_NOT_COMPARED = ("job_id", "description")


def cell_values(rows: Sequence[Mapping[str, Any]]) -> dict[tuple, dict[str, float | None]]:
    """Per cell of a sweep's completed runs: δ of each regime, and their difference when both ran."""
    cells: dict[tuple, dict[str, float | None]] = {}
    for r in rows:
        if r.get("status") != "completed" or r.get("delta_total") is None or r.get("regime") not in ("passive", "active"):
            continue
        cell = cells.setdefault(tuple(r[f] for f in FACTORS), dict.fromkeys(CELL_VALUES))
        cell[f"delta_{r['regime']}"] = float(r["delta_total"])
    for cell in cells.values():
        if cell["delta_passive"] is not None and cell["delta_active"] is not None:
            cell["trading_effect"] = cell["delta_passive"] - cell["delta_active"]
    return cells


def spec_differences(job_a: Mapping[str, Any], job_b: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    spec_a, spec_b = job_a.get("spec") or {}, job_b.get("spec") or {}
    keys = [k for k in dict.fromkeys([*spec_a, *spec_b]) if k not in _NOT_COMPARED]
    return {k: {"a": spec_a.get(k), "b": spec_b.get(k)} for k in keys if spec_a.get(k) != spec_b.get(k)}


def compare_sweeps(job_a: Mapping[str, Any], rows_a: Sequence[Mapping[str, Any]],
                   job_b: Mapping[str, Any], rows_b: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    cells_a, cells_b = cell_values(rows_a), cell_values(rows_b)
    cells = []
    for key in sorted(cells_a.keys() & cells_b.keys()):
        a, b = cells_a[key], cells_b[key]
        row: dict[str, Any] = dict(zip(FACTORS, key))
        for value in CELL_VALUES:
            row[f"{value}_a"], row[f"{value}_b"] = a[value], b[value]
        effects = (a["trading_effect"], b["trading_effect"])
        row["trading_effect_diff"] = None if None in effects else effects[1] - effects[0]
        cells.append(row)
    return {
        "a": job_a["job_id"],
        "b": job_b["job_id"],
        "spec_differences": spec_differences(job_a, job_b),
        "cells": cells,
        "only_in_a": [dict(zip(FACTORS, k)) for k in sorted(cells_a.keys() - cells_b.keys())],
        "only_in_b": [dict(zip(FACTORS, k)) for k in sorted(cells_b.keys() - cells_a.keys())],
    }
