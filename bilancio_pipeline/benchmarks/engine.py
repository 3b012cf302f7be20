"""Engine speed per reference cell, against the original's timings (MODEL.md §10).

    python -m bilancio_pipeline.benchmarks.engine [--repeats 20] [--dir DIR] [--sizes 50,100,200]

Runs in this one process (one core), as a sweep worker does. For each reference cell (the cell
MODEL.md times, κ=0.5 c=1 μ=0.5 ρ=1 seed 42, at n_agents 50, 100, 200) and regime it runs the
engine alone (simulation and metrics) and the engine writing its artifacts, as a sweep keeps
them, to a fresh folder under DIR (default: the system's temp folder); it prints the median and
90th-percentile times and the 10th-percentile speed-up against the original: the original's
time divided by ours, exceeded by nine runs in ten. The original's time is the fastest MODEL.md
gives (its "aggressive" preset, the low end of the range), so the figure is the least favourable
one; the speed-up against its default ("compatible") preset is printed where MODEL.md has it.

Speed-ups are computed from CPU time, which another process on a busy core does not inflate
(this machine is shared); wall-clock p90 is printed beside it. Creating a run's files is kernel
time that depends on the file system and on what else writes to it: compare `--dir /dev/shm`.
The target: >= 100x (engine alone) on at least nine runs in ten, for passive and active runs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bilancio_pipeline.engine.params import RunParams
from bilancio_pipeline.engine.run import run_simulation

TARGET = 100.0


@dataclass(frozen=True)
class Cell:
    n: int
    original_s: dict[str, float]  # regime -> the original's fastest seconds (aggressive preset)
    compatible_s: dict[str, float]  # regime -> the low end with its default preset, where timed


CELLS = (  # MODEL.md §10
    Cell(50, {"passive": 0.6, "active": 39.0}, {"passive": 4.5, "active": 195.0}),
    Cell(100, {"passive": 1.9, "active": 131.0}, {"passive": 16.0}),
    Cell(200, {"passive": 2.5, "active": 503.0}, {"passive": 63.0}),
)


def measure(params: RunParams, repeats: int, parent: str | None, artifacts: bool) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of `repeats` runs (writing artifacts or not), after one warm-up run."""
    walls, cpus = [], []
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        for i in range(repeats + 1):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            run_simulation(params, Path(tmp) / f"run{i}" if artifacts else None)
            if i:  # the first run warms imports and caches
                walls.append(time.perf_counter() - wall0)
                cpus.append(time.process_time() - cpu0)
    return walls, cpus


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), by the nearest-rank rule: a value that was measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="runs per cell and regime (after a warm-up run)")
    parser.add_argument("--sizes", default="50,100,200", help="which reference sizes to run")
    parser.add_argument("--dir", help="folder to write the artifacts under (default: the system temp folder)")
    parser.add_argument("--cash-accounting", default="bilancio_compat", choices=["bilancio_compat", "conserving"])
    args = parser.parse_args()
    sizes = {int(x) for x in args.sizes.split(",")}
    print(f"cell: kappa=0.5 c=1 mu=0.5 rho=1 seed 42, cash_accounting={args.cash_accounting}; {args.repeats} runs "
          f"per row; artifacts written under {args.dir or tempfile.gettempdir()}")
    print(f"{'regime':8} {'n':>4} {'artifacts':>9} {'original':>9} {'cpu ms':>7} {'p90 cpu':>8} {'p90 wall':>9} "
          f"{'p10 speed-up':>13} {'vs compatible':>14}")
    met: dict[str, list[bool]] = {"passive": [], "active": []}
    for cell in (c for c in CELLS if c.n in sizes):
        for regime in ("passive", "active"):
            params = RunParams(n_agents=cell.n, kappa=0.5, concentration=1.0, mu=0.5, outside_mid_ratio=1.0, seed=42,
                               regime=regime, cash_accounting=args.cash_accounting)
            for artifacts in (False, True):
                walls, cpus = measure(params, args.repeats, args.dir, artifacts)
                slow = percentile(cpus, 90)  # nine runs in ten are at least this fast
                speed = cell.original_s[regime] / slow
                compatible = cell.compatible_s.get(regime)
                if not artifacts:
                    met[regime].append(speed >= TARGET)
                print(f"{regime:8} {cell.n:>4} {'yes' if artifacts else 'no':>9} {cell.original_s[regime]:>8g}s "
                      f"{statistics.median(cpus) * 1e3:7.1f} {slow * 1e3:8.1f} {percentile(walls, 90) * 1e3:9.1f} "
                      f"{speed:12.0f}x {f'{compatible / slow:13.0f}x' if compatible else '':>14}", flush=True)
    for regime, flags in met.items():
        print(f"{regime}: engine alone >= {TARGET:g}x on nine runs in ten (10th-percentile speed-up) in {sum(flags)} "
              f"of {len(flags)} reference cells")

if __name__ == "__main__":
    main()
