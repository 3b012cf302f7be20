"""Where a sweep's compute time and money went: Modal CPU-seconds and an estimated cost.

Each Modal input (a chunk of runs) reports how long it ran and how much CPU it used; a batch
adds them up (`Usage`), the batch's `progress` event keeps the sum, and `sweep_usage` adds the
events of a sweep up again for job_metrics' raw summary and the manifest.

The price is an estimate from Modal's published per-second rates. Modal bills a container for
max(reservation, use) of CPU and of memory for every second it lives, including start-up and
idle seconds before it scales down, and some regions and non-preemptible functions cost more:
the true bill is this figure or somewhat above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

# Modal's published rates for CPU functions (https://modal.com/pricing, as listed on 2026-06-27):
# $0.0000131 per physical core per second, $0.00000222 per GiB of memory per second.
PRICE_SOURCE = "https://modal.com/pricing (rates as listed on 2026-06-27)"
USD_PER_CORE_SECOND = 0.0000131
USD_PER_GIB_SECOND = 0.00000222

# What `run_simulations` reserves per container (modal_app.py uses these): one simulation at a
# time is single-threaded, so one physical core; memory for runs of up to thousands of agents.
CPU_CORES = 1.0
MEMORY_MIB = 2048


@dataclass
class Usage:
    """Compute spent on Modal by a batch (or a whole sweep)."""

    inputs: int = 0  # Modal inputs sent (chunks of runs, plus any runs re-sent on their own)
    runs: int = 0  # simulations those inputs ran
    wall_seconds: float = 0.0  # summed input durations inside the containers
    cpu_seconds: float = 0.0  # CPU time the containers used for them
    billed_core_seconds: float = 0.0  # max(reserved cores × wall, CPU used), input by input
    billed_gib_seconds: float = 0.0  # max(reserved memory, peak memory) × wall, input by input

    def add_input(self, report: Mapping[str, Any] | None, runs: int) -> None:
        """Count one input; `report` is what the container measured (None: it died unmeasured)."""
        self.inputs += 1
        self.runs += runs
        if not report:
            return
        wall, cpu = float(report.get("wall_seconds") or 0.0), float(report.get("cpu_seconds") or 0.0)
        peak_gib = float(report.get("peak_memory_mib") or 0.0) / 1024
        self.wall_seconds += wall
        self.cpu_seconds += cpu
        self.billed_core_seconds += max(CPU_CORES * wall, cpu)
        self.billed_gib_seconds += max(MEMORY_MIB / 1024, peak_gib) * wall

    def merge(self, other: Mapping[str, Any]) -> None:
        for name in asdict(self):
            setattr(self, name, getattr(self, name) + (other.get(name) or 0))

    def summary(self) -> dict[str, Any]:
        """The figures, rounded, with the estimated cost and the rates it used."""
        figures = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        cost = self.billed_core_seconds * USD_PER_CORE_SECOND + self.billed_gib_seconds * USD_PER_GIB_SECOND
        return {
            "executor": "modal",
            **figures,
            "estimated_cost_usd": round(cost, 6),
            "price": {"usd_per_core_second": USD_PER_CORE_SECOND, "usd_per_gib_second": USD_PER_GIB_SECOND,
                      "cpu_cores": CPU_CORES, "memory_mib": MEMORY_MIB, "source": PRICE_SOURCE},
        }


def sweep_usage(events: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The Modal usage of a whole sweep from its `progress` events (re-launches included, as
    they were paid for too); None when no batch of it ran on Modal."""
    total, seen = Usage(), False
    for event in events:
        spent = (event.get("details") or {}).get("compute") if event.get("event_type") == "progress" else None
        if spent:
            total.merge(spent)
            seen = True
    return total.summary() if seen else None


def usage_line(spent: Mapping[str, Any]) -> str:
    """One line for people: `jobs get` prints it under the job metrics."""
    return (f"Modal compute: {spent.get('cpu_seconds', 0):,.1f} CPU-seconds over {spent.get('wall_seconds', 0):,.1f} s "
            f"in {spent.get('inputs', 0):,} inputs ({spent.get('runs', 0):,} runs); estimated cost "
            f"${spent.get('estimated_cost_usd', 0):.6f} at Modal's published rates")
