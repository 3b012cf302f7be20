"""Engine speed: milliseconds per run for the passive and active regime at n_agents 50, 100, 200.

    python -m bilancio_pipeline.benchmarks.engine [--repeats 7] [--sizes 50,100,200] [--dir DIR]

Runs in this one process (one core). For each cell it prints the median wall-clock and CPU time
of several runs, without artifacts and with them written to a fresh folder under DIR (default:
the system's temp folder). Creating a run's ten files is kernel time that depends on the file
system: compare a memory file system (`--dir /dev/shm`) with a disk folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bilancio_pipeline.engine.params import RunParams
from bilancio_pipeline.engine.run import run_simulation


def measure(params: RunParams, repeats: int, with_artifacts: bool, parent: str | None = None) -> tuple[float, float, float]:
    """Median wall ms, median CPU ms and fastest CPU ms over `repeats` runs, after one warm-up run
    (the fastest is what the code costs when nothing else on the machine gets in the way)."""
    walls, cpus = [], []
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        for i in range(repeats + 1):
            out_dir = Path(tmp) / f"run{i}" if with_artifacts else None
            wall0, cpu0 = time.perf_counter(), time.process_time()
            run_simulation(params, out_dir)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if i:  # the first run warms imports and caches
                walls.append(wall * 1000)
                cpus.append(cpu * 1000)
    return statistics.median(walls), statistics.median(cpus), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--dir", help="folder to write the artifacts under (default: the system temp folder)")
    parser.add_argument("--cash-accounting", default="bilancio_compat", choices=["bilancio_compat", "conserving"])
    args = parser.parse_args()
    print(f"artifacts written under {args.dir or tempfile.gettempdir()}")
    print("cell: kappa=0.5 c=1 mu=0.5 rho=1 seed=42, cash_accounting=" + args.cash_accounting)
    print(f"{'regime':8} {'n':>4} {'artifacts':>9} {'wall ms':>9} {'cpu ms':>9} {'best cpu':>9}")
    for n in [int(x) for x in args.sizes.split(",")]:
        for regime in ("passive", "active"):
            params = RunParams(
                n_agents=n, kappa=0.5, concentration=1.0, mu=0.5, outside_mid_ratio=1.0, seed=42,
                regime=regime, cash_accounting=args.cash_accounting,
            )
            for with_artifacts in (False, True):
                wall, cpu, best = measure(params, args.repeats, with_artifacts, args.dir)
                print(f"{regime:8} {n:>4} {'yes' if with_artifacts else 'no':>9} {wall:9.1f} {cpu:9.1f} {best:9.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
