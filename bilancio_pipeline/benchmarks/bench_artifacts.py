"""How long writing one run's artifacts takes (CPU and wall), per file and in total; and with
--footprint, how many bytes a run keeps, by file and artifact policy.

    python -m bilancio_pipeline.benchmarks.bench_artifacts [--n-agents 50] [--repeat 300] [--dir PATH]
    python -m bilancio_pipeline.benchmarks.bench_artifacts --footprint [--n-agents 50]

--footprint writes the runs of the throughput benchmark's 100-run balanced sweep (maturity_days
10) once per policy, plus once with the data files plain (not gzipped), and prints the average
bytes per run of every file and the CPU the writing took per run.

Each repetition of write_artifacts writes into a fresh folder under --dir (default: the
system's temporary folder), as a sweep does (rewriting the same files measures the file
system's truncate-and-replace handling instead). Creating ten files is a good part of the
cost and depends on the file system and on what else writes to it: a folder on tmpfs
(/dev/shm) shows the cost of the code itself. Figures are the median and the minimum over
the repetitions: on a shared machine the minimum is the better estimate of the work itself,
the median of what a run pays while others run.
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


def _ms(fn, repeat: int) -> tuple[float, float, float]:
    """(median wall ms, median CPU ms, minimum CPU ms) of fn over `repeat` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - wall) * 1e3)
        cpus.append((time.process_time() - cpu) * 1e3)
    return statistics.median(walls), statistics.median(cpus), min(cpus)


def _parts(output) -> dict:
    """One function per artifact (as render_artifacts builds it), plus the shared day rows."""
    days = A.public_day_rows(output.day_metrics)
    shares = [share for row in output.day_metrics for share in row.get("_debtor_shares", ())]
    steps = [step for row in output.day_metrics for step in row.get("_intraday", ())]
    return {
        "(day rows)": lambda: A.public_day_rows(output.day_metrics),
        "scenario.yaml": lambda: A.scenario_yaml(output),
        "events.jsonl": lambda: A.events_jsonl_buffer(output.events),
        "balances.csv": lambda: A.csv_text(output.balances, A.BALANCE_COLUMNS),
        "metrics.csv": lambda: A.csv_text(days, A.day_metric_columns(days)),
        "metrics.json": lambda: A.orjson.dumps(days, default=A._json_default, option=A._JSON_DOC),
        "debtor_shares.csv": lambda: A.csv_text(shares, A.DEBTOR_SHARE_COLUMNS),
        "intraday.csv": lambda: A.csv_text(steps, A.INTRADAY_COLUMNS),
        "dealer_metrics.json": lambda: A.orjson.dumps(output.dealer_metrics, default=A._json_default, option=A._JSON_DOC),
        "metrics.html": lambda: R.render_metrics_html(output, days, shares, steps),
        "run.html": lambda: R.render_run_html(output, days),
    }


def footprint(n_agents: int, root: Path) -> None:
    """Bytes per run by file for the 100-run balanced sweep, under each way of writing it."""
    from bilancio_pipeline.benchmarks.sweep_throughput import GRIDS, MATURITY_DAYS
    from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate

    lists = {k: tuple(v) for k, v in GRIDS[100].items()}
    spec = validate(SweepSpec(n_agents=n_agents, maturity_days=MATURITY_DAYS, job_id="footprint", **lists))
    outputs = [simulate(run.params) for run in expand(spec)]
    ways = {"all, data files plain": ("all", False), **{policy: (policy, True) for policy in A.ARTIFACT_POLICIES}}
    print(f"footprint: {len(outputs)}-run balanced sweep, n_agents={n_agents}, maturity_days={MATURITY_DAYS}; "
          "average bytes per run (KB = 1,000 bytes)")
    for label, (policy, compress) in ways.items():
        folder = root / label.split(",")[0] / ("gz" if compress else "plain")
        cpu = time.process_time()
        for i, output in enumerate(outputs):
            A.write_artifacts(output, folder / str(i), policy, compress)
        cpu_ms = (time.process_time() - cpu) * 1e3 / len(outputs)
        by_file: dict[str, int] = {}
        for path in folder.rglob("*") if folder.exists() else ():
            if path.is_file():
                name = path.relative_to(folder).as_posix().split("/", 1)[1]
                by_file[name] = by_file.get(name, 0) + path.stat().st_size
        total = sum(by_file.values()) / len(outputs)
        print(f"  {label:28s} {total / 1e3:7.1f} KB per run, writing {cpu_ms:.2f} ms CPU per run")
        for name, size in sorted(by_file.items(), key=lambda item: -item[1]):
            print(f"    {name:28s} {size / len(outputs) / 1e3:7.1f} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footprint", action="store_true", help="bytes per run of a 100-run sweep, by file and policy")
    parser.add_argument("--n-agents", type=int, default=50)
    parser.add_argument("--kappa", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--regimes", default="passive,active")
    parser.add_argument("--dir", default=None, help="where to write the run folders (default: the temporary folder)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-artifacts-", dir=args.dir))
    try:
        if args.footprint:
            footprint(args.n_agents, root)
            return
        for regime in args.regimes.split(","):
            params = RunParams(n_agents=args.n_agents, kappa=args.kappa, regime=regime, cash_accounting="bilancio_compat")
            output = simulate(params)
            counter = iter(range(10**9))
            print(f"{regime}: n_agents={args.n_agents}, {len(output.events)} events, simulation {output.wall_ms:.1f} ms")
            for compress in (True, False):
                folder = root / regime / str(compress)
                wall, cpu, cpu_min = _ms(lambda: A.write_artifacts(output, folder / str(next(counter)), compress=compress),
                                         args.repeat)
                sizes = {p.name.removesuffix(A.GZIP_SUFFIX): p.stat().st_size
                         for p in next(folder.iterdir()).rglob("*") if p.is_file()}
                print(
                    f"  write_artifacts, {'data gzipped (as a sweep)' if compress else 'all plain':26s} {cpu:.2f} ms CPU "
                    f"median, {cpu_min:.2f} min, {wall:.2f} ms wall (of {args.repeat}); "
                    f"{sum(sizes.values()) / 1024:.0f} KiB in {len(sizes)} files"
                )
            _, render_cpu, render_min = _ms(lambda: A.render_artifacts(output), args.repeat)
            print(f"  render_artifacts: {render_cpu:.2f} ms CPU median, {render_min:.2f} min (the same without the file system)")
            for name, fn in _parts(output).items():
                _, part_cpu, part_min = _ms(fn, args.repeat)
                size = sizes.get(Path(name).name)
                print(f"    {name:20s} {part_cpu:.3f} ms CPU median, {part_min:.3f} min" + (f"  {size / 1024:7.1f} KiB" if size else ""))
        print(f"load average during the measurement: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
