"""Engine speed: milliseconds per run for the passive and active regime at n_agents 50, 100, 200.

    python -m bilancio_pipeline.benchmarks.engine [--repeats 7] [--sizes 50,100,200]

Runs in this one process (one core). For each cell it prints the median wall-clock and CPU time
of several runs, without artifacts and (once the artifact writer exists) with them written to
a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bilancio_pipeline.engine.params import RunParams
from bilancio_pipeline.engine.run import run_simulation


def _artifacts_available() -> bool:
    try:
        from bilancio_pipeline.engine import artifacts  # noqa: F401
    except ImportError:
        return False
    return True


def measure(params: RunParams, repeats: int, with_artifacts: bool) -> tuple[float, float]:
    """Median (wall ms, CPU ms) over `repeats` runs, after one warm-up run."""
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):
            out_dir = Path(tmp) / f"run{i}" if with_artifacts else None
            wall0, cpu0 = time.perf_counter(), time.process_time()
            run_simulation(params, out_dir)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if i:  # the first run warms imports and caches
                walls.append(wall * 1000)
                cpus.append(cpu * 1000)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--cash-accounting", default="bilancio_compat", choices=["bilancio_compat", "conserving"])
    args = parser.parse_args()
    modes = [False, True] if _artifacts_available() else [False]
    if len(modes) == 1:
        print("(artifact writer not available: timing the simulation only)")
    print("cell: kappa=0.5 c=1 mu=0.5 rho=1 seed=42, cash_accounting=" + args.cash_accounting)
    print(f"{'regime':8} {'n':>4} {'artifacts':>9} {'wall ms':>9} {'cpu ms':>9}")
    for n in [int(x) for x in args.sizes.split(",")]:
        for regime in ("passive", "active"):
            params = RunParams(
                n_agents=n, kappa=0.5, concentration=1.0, mu=0.5, outside_mid_ratio=1.0, seed=42,
                regime=regime, cash_accounting=args.cash_accounting,
            )
            for with_artifacts in modes:
                wall, cpu = measure(params, args.repeats, with_artifacts)
                print(f"{regime:8} {n:>4} {'yes' if with_artifacts else 'no':>9} {wall:9.1f} {cpu:9.1f}", flush=True)


if __name__ == "__main__":
    main()
