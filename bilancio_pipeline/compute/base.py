"""The compute interface: run a batch of simulations, each result or failure on its own."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunTask:
    """One simulation to run: its key, its sweep, its parameters (`RunParams.to_dict()`) and
    which artifacts it keeps (engine.artifacts.ARTIFACT_POLICIES)."""

    run_id: str
    job_id: str
    params: dict[str, Any]
    artifact_policy: str = "all"


@dataclass
class RunOutcome:
    """What came back for one task. `ok` is False when the simulation (or its worker) failed;
    then `error` says why and `summary` is empty."""

    run_id: str
    ok: bool
    summary: dict[str, Any] = field(default_factory=dict)  # the engine's per-run metrics
    day_metrics: list[dict[str, Any]] = field(default_factory=list)
    artifact_dir: str | None = None  # a local folder holding the run's artifacts (local pool)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path/URL already stored
    artifacts_error: str | None = None  # why a completed run's artifacts could not be stored
    wall_ms: float = 0.0
    error: str | None = None
    call_id: str | None = None  # Modal function-call id, when run there


class Compute(ABC):
    name: str  # "local" or "modal"

    @abstractmethod
    def run_batch(self, tasks: Sequence[RunTask], artifacts_root: str) -> Iterator[RunOutcome]:
        """Run the tasks in parallel and yield one outcome per task as each finishes (any
        order). A failing task yields a failed outcome; it never stops the others."""

    def check(self, artifacts: Any = None) -> None:
        """Raise with a clear message if this compute cannot be used (not configured, wrong
        deployed version, artifacts stored elsewhere than `artifacts`, the store the results
        are read from). Called once before a batch."""

    def usage_summary(self) -> dict[str, Any] | None:
        """What the last batch spent where it is billed per second (Modal), else None."""
        return None
