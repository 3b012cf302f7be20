"""How a batch's runs are packed into Modal inputs: by estimated cost, so an input lasts seconds.

A run takes 5-120 ms; one Modal input per run would spend more on scheduling than on
simulation. Runs are packed, in order, until a chunk's estimated time reaches the per-input
target: `TARGET_INPUT_SECONDS`, or less when the batch is small, so its inputs still spread
over the containers (never below `MIN_INPUT_SECONDS`, where Modal's per-input overhead would
weigh again).

The estimate is the engine benchmark's (README, Performance: CPU ms per run with artifacts,
maturity 10): passive ≈ 1 ms + 0.009 ms per agent-day, active ≈ 0.06 ms per agent-day, plus a
few ms per run for storing its files. It only has to be right within a factor of a few.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

TARGET_INPUT_SECONDS = 4.0
MIN_INPUT_SECONDS = 1.0
MAX_RUNS_PER_INPUT = 1_000  # keeps an input's payload and result small whatever the estimate says

RUN_OVERHEAD_MS = 5.0  # storing ten files, result serialisation
MS_PER_AGENT_DAY = {"passive": 0.009, "active": 0.06}

T = TypeVar("T")


def estimated_seconds(params: Mapping[str, Any]) -> float:
    """Rough time of one run in a container, from its size and regime."""
    agent_days = float(params.get("n_agents") or 50) * float(params.get("maturity_days") or 10)
    per = MS_PER_AGENT_DAY.get(str(params.get("regime")), MS_PER_AGENT_DAY["active"])
    return (RUN_OVERHEAD_MS + per * agent_days) / 1000.0


def plan_chunks(tasks: Sequence[T], params_of, parallelism: int,
                target_seconds: float = TARGET_INPUT_SECONDS) -> list[list[T]]:
    """Split tasks (in order) into chunks of about the same estimated time each.

    `params_of(task)` gives a task's run parameters; `parallelism` is how many inputs may run
    at once, so a small batch is cut finer to keep that many containers busy."""
    costs = [estimated_seconds(params_of(t)) for t in tasks]
    per_input = min(target_seconds, max(MIN_INPUT_SECONDS, sum(costs) / max(1, parallelism)))
    chunks: list[list[T]] = []
    current: list[T] = []
    spent = 0.0
    for task, cost in zip(tasks, costs):
        if current and (spent + cost > per_input or len(current) >= MAX_RUNS_PER_INPUT):
            chunks.append(current)
            current, spent = [], 0.0
        current.append(task)
        spent += cost
    if current:
        chunks.append(current)
    return chunks
