"""How long writing one run's artifacts takes (wall and CPU), per file and in total.

    python -m bilancio_pipeline.benchmarks.bench_artifacts [--n-agents 50] [--repeat 200]

Each repetition writes into a fresh folder, as a sweep does (rewriting the same files measures
the file system's truncate-and-replace handling instead).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bilancio_pipeline.engine import RunParams
from bilancio_pipeline.engine import artifacts as A
from bilancio_pipeline.engine import run_report as R
from bilancio_pipeline.engine.run import simulate


def _ms(fn, repeat: int) -> tuple[float, float]:
    """(median wall ms, median CPU ms) of fn over `repeat` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - wall) * 1e3)
        cpus.append((time.process_time() - cpu) * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-agents", type=int, default=50)
    parser.add_argument("--kappa", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
    try:
        for regime in ("passive", "active"):
            output = simulate(RunParams(n_agents=args.n_agents, kappa=args.kappa, regime=regime, cash_accounting="bilancio_compat"))
            days = A.public_day_rows(output.day_metrics)
            parts = {
                "scenario.yaml": lambda: A.scenario_yaml(output),
                "events.jsonl": lambda: A.events_jsonl(output.events),
                "balances.csv": lambda: A.csv_text(output.balances, A.BALANCE_COLUMNS),
                "metrics.html": lambda: R.render_metrics_html(output, days),
                "run.html": lambda: R.render_run_html(output, days),
            }
            counter = iter(range(10**9))
            wall, cpu = _ms(lambda: A.write_artifacts(output, root / regime / str(next(counter))), args.repeat)
            sizes = {p.name: p.stat().st_size for p in (root / regime / "0").rglob("*") if p.is_file()}
            print(f"{regime}: n_agents={args.n_agents}, {len(output.events)} events, simulation {output.wall_ms:.1f} ms")
            render_wall, render_cpu = _ms(lambda: A.render_artifacts(output), args.repeat)
            print(f"  write_artifacts:  {wall:.2f} ms wall, {cpu:.2f} ms CPU (median of {args.repeat}); {sum(sizes.values()) / 1024:.0f} KiB in {len(sizes)} files")
            print(f"  render_artifacts: {render_wall:.2f} ms wall, {render_cpu:.2f} ms CPU (the same without the file system)")
            for name, fn in parts.items():
                part_wall, part_cpu = _ms(fn, args.repeat)
                print(f"    {name:14s} {part_cpu:.3f} ms CPU")
        print(f"load average during the measurement: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
