"""Everything one simulation produces, before it is written anywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bilancio_pipeline.engine.params import RunParams


@dataclass
class SimulationOutput:
    params: RunParams
    scenario: dict[str, Any]  # the compiled scenario, in the shape of scenario.yaml (MODEL.md §6)
    events: list[dict[str, Any]]  # every event in order; each has kind, day, phase (MODEL.md §6)
    balances: list[dict[str, Any]]  # end-of-run rows with the columns of balances.csv
    day_metrics: list[dict[str, Any]]  # per-day rows (MODEL.md §5.2), keys = metrics.csv columns
    summary: dict[str, Any]  # per-run metrics (MODEL.md §5.3-5.4); see engine/run.py
    dealer_metrics: dict[str, Any] = field(default_factory=dict)  # dealer_metrics.json
    wall_ms: float = 0.0  # simulation and metrics, without writing artifacts
