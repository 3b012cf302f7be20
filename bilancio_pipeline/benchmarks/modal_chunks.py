"""What one Modal input costs: a chunk of runs through `run_simulations`, run in this process.

    python -m bilancio_pipeline.benchmarks.modal_chunks [--runs 40] [--sizes 50,200] [--dir DIR]

For each size and regime it runs one chunk of `--runs` runs (reference cell κ=0.5 c=1 μ=0.5
ρ=1, seeds 1..N, maturity 10) through the Modal function's own body (`.local()`), writing the
"volume" under DIR (default: the system's temp folder), and prints what the container would
report: wall and CPU seconds per run, the chunk planner's estimate beside it (the estimate
only has to be right within a few times: it sizes inputs to seconds), and the estimated Modal
cost per 1,000 runs at the published rates of compute/cost.py for a container whose core is
its own (its wall time = this CPU time; on a shared machine the wall time here is longer). No Modal account is used; a real container adds its start-up, a few seconds
once per container, and R2 uploads that overlap the next run's simulation.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings

from bilancio_pipeline.compute.chunks import estimated_seconds
from bilancio_pipeline.compute.cost import Usage
from bilancio_pipeline.engine.params import RunParams


def chunk(n_agents: int, regime: str, runs: int) -> list[dict]:
    return [{"run_id": f"bench_{regime}_{n_agents}_{seed:04d}", "job_id": "bench",
             "params": RunParams(n_agents=n_agents, maturity_days=10, kappa=0.5, concentration=1.0, mu=0.5,
                                 outside_mid_ratio=1.0, seed=seed, regime=regime).to_dict()} for seed in range(1, runs + 1)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="runs per chunk (one Modal input)")
    parser.add_argument("--sizes", default="50,200", help="comma-separated n_agents")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the stand-in volume is written")
    args = parser.parse_args(argv)
    for name in ("BILANCIO_R2_BUCKET",):  # the volume path: no network in a benchmark
        os.environ.pop(name, None)
    os.environ["BILANCIO_MODAL_RESULTS_DIR"] = tempfile.mkdtemp(prefix="modal-volume-", dir=args.dir)
    warnings.simplefilter("ignore")  # "executing locally"
    from bilancio_pipeline import modal_app

    print(f"one chunk of {args.runs} runs per row (maturity 10), in this process; volume under {args.dir}")
    print(f"{'n_agents':>8} {'regime':>8} {'wall ms/run':>12} {'CPU ms/run':>11} {'estimate ms':>12} "
          f"{'runs per 4 s input':>19} {'est. $ per 1,000 runs':>22}")
    for n_agents in (int(s) for s in args.sizes.split(",")):
        for regime in ("passive", "active"):
            tasks = chunk(n_agents, regime, args.runs)
            out = modal_app.run_simulations.local(tasks)
            assert all(r["ok"] for r in out["results"]), [r.get("error") for r in out["results"] if not r["ok"]]
            wall_ms = out["usage"]["wall_seconds"] * 1000 / len(tasks)
            cpu_ms = out["usage"]["cpu_seconds"] * 1000 / len(tasks)
            usage = Usage()  # on a core of its own: wall = CPU
            usage.add_input({**out["usage"], "wall_seconds": out["usage"]["cpu_seconds"]}, len(tasks))
            spent = usage.summary()
            estimate_ms = estimated_seconds(tasks[0]["params"]) * 1000
            print(f"{n_agents:>8} {regime:>8} {wall_ms:>12.1f} {cpu_ms:>11.1f} {estimate_ms:>12.1f} "
                  f"{int(4000 / cpu_ms):>19} {spent['estimated_cost_usd'] * 1000 / len(tasks):>22.4f}")


if __name__ == "__main__":
    main()
