"""What per-run metadata costs the Dagster event log: `python -m bilancio_pipeline.benchmarks.partition_metadata`.

A batch step materializes three assets for each of N `runs` partitions. This times that
bookkeeping alone (no simulation), on a fresh instance with the project's configuration (the
batching SQLite event log, DAGSTER_EVENT_BATCH_SIZE), two ways:
- `ranged output`: what the batch step did before, one Output per asset for the whole range
  (every partition gets the same few metadata entries, written at the step's end);
- `per-run, flushed`: what it does now, each partition's own metadata (parameters, headline
  metrics, links: `defs.run_metadata`), logged in flushes of `--flush` runs as they finish.
Prints the run's seconds (and the same run materializing nothing, the fixed cost of a run over
the range), the seconds per 1,000 partitions above that, and the event log's growth on disk.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import dagster as dg
import yaml

from bilancio_pipeline.defs.asset_events import log_materializations
from bilancio_pipeline.defs.instance import DAGSTER_ENV, instance_config
from bilancio_pipeline.defs.run_metadata import run_metadata, sweep_page

ASSETS = ("sweep_runs", "run_metrics", "run_artifacts")
partitions = dg.DynamicPartitionsDefinition(name="runs")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the console would cost more than the log


def _fake_run(i: int) -> tuple[dict, dict]:
    params = {"regime": ("passive", "active")[i % 2], "kappa": 0.25 * (1 + i % 8), "concentration": 1.0,
              "mu": 0.5, "outside_mid_ratio": 1.0, "seed": 42 + i // 16, "n_agents": 50, "maturity_days": 10,
              "cash_accounting": "conserving"}
    metrics = {"delta_total": 0.4123456789 + i % 7 / 100, "phi_total": 0.5876543211, "delta_clean": 0.39,
               "n_defaults": 21, "total_trades": 137}
    return params, metrics


def _job(mode: str, flush: int) -> dg.JobDefinition:
    @dg.multi_asset(specs=[dg.AssetSpec(name) for name in ASSETS], partitions_def=partitions, can_subset=True)
    def batch(context):
        keys = list(context.partition_keys)
        if mode == "none":
            return
        if mode == "ranged":
            for name in ASSETS:
                yield dg.MaterializeResult(asset_key=name, metadata={"runs_executed": len(keys), "simulate_seconds": 1.0})
            return
        for start in range(0, len(keys), flush):
            events = []
            for i, key in enumerate(keys[start:start + flush], start):
                params, metrics = _fake_run(i)
                meta = run_metadata(params, metrics, f"http://127.0.0.1:3001/job/runs/{key}/run.html", sweep_page("job"))
                events += [dg.AssetMaterialization(asset_key=name, partition=key, metadata=meta) for name in ASSETS]
            log_materializations(context, events)

    return dg.define_asset_job("batch", selection=[batch]).resolve(asset_graph=dg.Definitions(assets=[batch]).resolve_asset_graph())


def measure(n_runs: int, mode: str, flush: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "dagster.yaml").write_text(yaml.safe_dump(instance_config(Path(home))))
        with dg.DagsterInstance.from_config(home) as instance:
            keys = [f"job_{'passive' if i % 2 == 0 else 'active'}_{i:012x}" for i in range(n_runs)]
            instance.add_dynamic_partitions("runs", keys)
            job = _job(mode, flush)
            before = _size(Path(home))
            started = time.perf_counter()
            result = job.execute_in_process(instance=instance, run_config=QUIET, tags={
                "dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
            seconds = time.perf_counter() - started
            assert result.success
            materialized = instance.get_materialized_partitions(dg.AssetKey("run_metrics"))
            assert len(materialized) == (0 if mode == "none" else n_runs), len(materialized)
            return seconds, _size(Path(home)) - before


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--flush", type=int, default=200, help="runs per flush (a few seconds of a batch)")
    args = parser.parse_args()
    for name, value in DAGSTER_ENV.items():
        os.environ.setdefault(name, value)
    print(f"{'runs':>7}  {'mode':<20} {'run s':>7} {'s / 1k runs':>11} {'event log growth':>17}")
    for n in args.runs:
        modes = (("none", "no materialization"), ("ranged", "ranged output"), ("flushed", f"per-run, flush {args.flush}"))
        for mode, label in modes:
            seconds, grown = measure(n, mode, args.flush)
            if mode == "none":
                fixed = seconds
            extra = f"{(seconds - fixed) / n * 1000:>11.2f}" if mode != "none" else f"{'':>11}"
            print(f"{n:>7}  {label:<20} {seconds:>7.2f} {extra} {grown / 1e6:>14.1f} MB", flush=True)


if __name__ == "__main__":
    main()
