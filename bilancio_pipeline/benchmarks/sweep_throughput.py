"""How fast a sweep goes through the stack a user gets, the UI's and the CLI's, against the engine alone.

    python -m bilancio_pipeline.benchmarks.sweep_throughput [--runs 100 1000] [--paths ui cli]
        [--postgres | --postgres-url URL] [--instance-postgres] [--batch-size N] [--max-concurrent-runs N]
        [--env NAME=VALUE ...]

UI path: for each size it starts `dagster dev` (webserver, daemon, code server; our instance
config in a temporary DAGSTER_HOME), launches a balanced sweep (n_agents 50, maturity_days 10) by
the GraphQL `launchRun` mutation the Launchpad's button sends, and waits until the sweep's
job_metrics row is in the store. The daemon's sensors do the rest, exactly as after a click.
CLI path: it runs `bilancio-pipeline sweep balanced ...` in a fresh BILANCIO_HOME and
DAGSTER_HOME, from the command's start until it prints the job id it writes after reading the
job_metrics row (Python's and Dagster's start-up included, as a user waits for them).
With --postgres (a throwaway server) or --postgres-url (a database with the migrations applied)
each size also runs with the table store on PostgreSQL. --instance-postgres puts the Dagster
instance's own storage (runs, event log) on a throwaway PostgreSQL too; by default it is SQLite.
--batch-size, --max-concurrent-runs and --env set the server's environment, to compare settings
(e.g. `--env DAGSTER_EVENT_BATCH_SIZE=1000`).

It prints, per store and size:
- wall: seconds from the launchRun call (UI) or the command's start (CLI) to the job_metrics
  row being readable in the store;
- engine: the same runs through `engine.run_simulation` on a 2-worker process pool, artifacts
  written to a temp folder: the floor any orchestration is measured against; ratio = wall/engine;
- peak memory: the summed resident memory of the server's (or the command's) whole process tree
  (webserver, daemon, code servers, run workers, simulation pool), sampled every 0.2 s, as RSS
  (forked workers share pages, so the sum overstates what the machine uses: an upper bound) and
  as PSS (shared pages split among their processes: what the tree really holds);
- store writes: inside every batch run, the time from each output's STEP_OUTPUT event to its
  first ASSET_MATERIALIZATION event, which is the table IO manager's bulk upsert of that
  output's rows (one statement batch per output per Dagster run); the materialization events
  that follow, up to HANDLED_OUTPUT, are Dagster's per-partition bookkeeping and are shown
  apart. The launch step (registering the sweep and its runs) is shown apart too.
And a profile of where the wall time went: the Dagster runs' queue waits, process start-up,
step time, simulate/upload seconds from the batch metadata, and the sweep's milestones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bilancio_pipeline.benchmarks.dagster_server import DagsterDevServer, TreeMemorySampler

N_AGENTS, MATURITY_DAYS, WORKERS = 50, 10, 2
GRIDS = {  # balanced sweeps: cells x 2 regimes = runs
    100: {"kappas": [0.25, 0.5, 1.0, 1.5, 2.0], "concentrations": [0.5, 1.0],
          "mus": [0.0, 0.25, 0.5, 0.75, 1.0], "seeds": [1]},  # 5 x 2 x 5 x 1 = 50 cells
    1000: {"kappas": [0.1, 0.25, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0], "concentrations": [0.25, 0.5, 1.0, 2.0, 4.0],
           "mus": [0.0, 0.25, 0.5, 0.75, 1.0], "seeds": [1, 2]},  # 10 x 5 x 5 x 2 = 500 cells
}
SWEEP_TIMEOUT = 1800.0


def grid(runs: int) -> dict:
    """The sweep's lists for `runs` runs (even): a fixed grid for 100 and 1000, else kappas x 1 seed."""
    if runs in GRIDS:
        return GRIDS[runs]
    if runs < 2 or runs % 2:
        raise SystemExit(f"--runs {runs}: a balanced sweep has an even number of runs, at least 2")
    cells = runs // 2
    return {"kappas": [round(0.1 + 2.9 * i / max(cells - 1, 1), 6) for i in range(cells)], "concentrations": [1.0],
            "mus": [0.5], "seeds": [1]}


def sweep_config(runs: int, job_id: str) -> dict:
    return {"sweep_type": "balanced", "n_agents": N_AGENTS, "maturity_days": MATURITY_DAYS, "job_id": job_id,
            "outside_mid_ratios": [1.0], **grid(runs)}


# --- the engine alone ---------------------------------------------------------------------------

def _simulate(args: tuple[dict, str]) -> None:
    from bilancio_pipeline.engine import RunParams, run_simulation

    params, out_dir = args
    run_simulation(RunParams.from_dict(params), out_dir=Path(out_dir))


def engine_only_seconds(config: dict) -> float:
    """Wall seconds to simulate the sweep's runs on a fresh 2-worker pool, artifacts written."""
    from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate

    spec = validate(SweepSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}))
    planned = expand(spec)
    with tempfile.TemporaryDirectory(prefix="bilancio-engine-") as tmp:
        tasks = [(p.params.to_dict(), f"{tmp}/{p.run_id}") for p in planned]
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=WORKERS) as pool:
            list(pool.map(_simulate, tasks))
        return time.perf_counter() - started


# --- one sweep through dagster dev ---------------------------------------------------------------

@dataclass
class Figures:
    store: str
    runs: int
    job_id: str
    path: str = "ui"
    status: str = ""
    startup_s: float = 0.0
    wall_s: float = 0.0
    settled_s: float = 0.0  # until the last Dagster run of the sweep has ended
    engine_s: float = 0.0
    peak_rss: int = 0
    peak_pss: int = 0
    peak_processes: int = 0
    peak_kinds: dict = field(default_factory=dict)
    profile: dict = field(default_factory=dict)

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.wall_s if self.wall_s else 0.0

    @property
    def ratio(self) -> float:
        return self.wall_s / self.engine_s if self.engine_s else 0.0


def run_sweep(runs: int, store_name: str, db_url: str | None, extra_env: dict[str, str]) -> Figures:
    from bilancio_pipeline.storage.config import open_store

    job_id = f"bench-{runs}-{datetime.now(timezone.utc).strftime('%H%M%S')}"
    figures = Figures(store=store_name, runs=runs, job_id=job_id)
    config = sweep_config(runs, job_id)
    with tempfile.TemporaryDirectory(prefix="bilancio-bench-") as tmp:
        home, dagster_home = Path(tmp) / "home", Path(tmp) / "dagster"
        env = {"BILANCIO_WORKERS": str(WORKERS), **extra_env}
        if db_url:
            env["BILANCIO_SUPABASE_DB_URL"] = db_url
        server = DagsterDevServer(home, dagster_home, env=env, log_path=Path(tmp) / "dagster-dev.log")
        started = time.perf_counter()
        server.start()
        figures.startup_s = time.perf_counter() - started
        try:
            store = open_store(db_url=db_url, home=home)
            try:
                with TreeMemorySampler(server.process_tree) as memory:
                    t0 = time.perf_counter()
                    server.launch_run("launch_sweep_job", {"ops": {"launch_sweep": {"config": config}}})
                    server.wait_for(lambda: store.get_job_metrics(job_id), timeout=SWEEP_TIMEOUT,
                                    interval=0.2, what=f"job_metrics of {job_id}")
                    figures.wall_s = time.perf_counter() - t0
                    launched_at = time.time() - figures.wall_s
                    # Let the job_metrics run finish too: its memory and events belong to the sweep.
                    server.wait_for(lambda: all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED")
                                                for r in server.runs()), timeout=600, interval=0.2,
                                    what="the last Dagster run")
                    figures.settled_s = time.perf_counter() - t0
                _outcome(figures, memory, store)
            finally:
                store.close()
        except Exception:
            print(server.log_tail(6000))
            raise
        finally:
            server.stop()
        figures.profile = profile(dagster_home, launched_at, env)
    figures.engine_s = engine_only_seconds(config)
    return figures


def _outcome(figures: Figures, memory: TreeMemorySampler, store) -> dict:
    """Record the peak memory and the sweep's outcome; returns the job row."""
    figures.peak_rss, figures.peak_pss = memory.peak_bytes, memory.peak_pss
    figures.peak_processes, figures.peak_kinds = memory.peak_processes, memory.peak_kinds
    job, counts = store.get_job(figures.job_id), store.run_counts(figures.job_id)
    figures.status = (f"{job['status']}, {counts.get('completed', 0)}/{figures.runs} runs completed, "
                      f"{(store.get_job_metrics(figures.job_id) or {}).get('n_pairs')} pairs")
    return job


def run_cli_sweep(runs: int, store_name: str, db_url: str | None, extra_env: dict[str, str]) -> Figures:
    """The same sweep through `bilancio-pipeline sweep balanced`, timed from the command's start."""
    import psutil

    from bilancio_pipeline.storage.config import open_store

    job_id = f"bench-cli-{runs}-{datetime.now(timezone.utc).strftime('%H%M%S')}"
    figures = Figures(store=store_name, runs=runs, job_id=job_id, path="cli")
    config = sweep_config(runs, job_id)
    options = [f"--{name.replace('_', '-')}={','.join(map(str, value)) if isinstance(value, list) else value}"
               for name, value in config.items() if name != "sweep_type"]
    with tempfile.TemporaryDirectory(prefix="bilancio-bench-cli-") as tmp:
        home, dagster_home = Path(tmp) / "home", Path(tmp) / "dagster"
        env = {**os.environ, "BILANCIO_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
               "BILANCIO_WORKERS": str(WORKERS), **extra_env}
        env.pop("BILANCIO_SUPABASE_DB_URL", None)
        if db_url:
            env["BILANCIO_SUPABASE_DB_URL"] = db_url
        dagster_home.mkdir()
        command = [str(Path(sys.executable).with_name("bilancio-pipeline")), "sweep", "balanced", *options]
        with open(Path(tmp) / "stderr.log", "wb") as stderr:
            t0, launched_at = time.perf_counter(), time.time()
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr, cwd=tmp)
            tree = psutil.Process(process.pid)
            with TreeMemorySampler(lambda: [tree, *tree.children(recursive=True)]) as memory:
                for line in process.stdout:  # "job_id: ..." comes right after the job_metrics row is read
                    if line.startswith(b"job_id:"):
                        figures.wall_s = time.perf_counter() - t0
                        break
                process.stdout.read()
                code = process.wait(timeout=SWEEP_TIMEOUT)
                figures.settled_s = time.perf_counter() - t0
        if code or not figures.wall_s:
            log = (Path(tmp) / "stderr.log").read_text()[-4000:]
            raise SystemExit(f"`{' '.join(command)}` exited with {code}:\n{log}")
        store = open_store(db_url=db_url, home=home)
        try:
            job = _outcome(figures, memory, store)
            figures.startup_s = job["created_at"].timestamp() - launched_at  # until the sweep was registered
        finally:
            store.close()
        figures.profile = profile(dagster_home, launched_at, env)
    figures.engine_s = engine_only_seconds(config)
    return figures


# --- where the time went, from the Dagster event log ------------------------------------------------

def profile(dagster_home: Path, launched_at: float, env: dict[str, str]) -> dict:
    """Per Dagster run: queue wait, start-up, step time; and the store writes of the batch runs."""
    import dagster as dg
    from dagster import DagsterEventType as E

    _MARKS = _event_marks()
    if env.get("BILANCIO_DAGSTER_PG_URL"):  # dagster.yaml names the instance database by this variable
        os.environ["BILANCIO_DAGSTER_PG_URL"] = env["BILANCIO_DAGSTER_PG_URL"]
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    out: dict = {"runs": [], "store_write_s": 0.0, "bookkeeping_s": 0.0, "simulate_s": 0.0, "upload_s": 0.0,
                 "launch_step_s": 0.0}
    try:
        for record in sorted(instance.get_run_records(), key=lambda r: r.create_timestamp.timestamp()):
            run = record.dagster_run
            first: dict = {}
            outputs: dict[str, dict[str, float]] = defaultdict(dict)
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                kind = event.event_type
                first.setdefault(kind, entry.timestamp)
                if kind == E.STEP_OUTPUT:
                    outputs[event.event_specific_data.step_output_handle.output_name]["output"] = entry.timestamp
                elif kind == E.ASSET_MATERIALIZATION:
                    name = event.asset_key.path[-1]
                    outputs[name].setdefault("materialized", entry.timestamp)
                    meta = event.event_specific_data.materialization.metadata
                    if name == "sweep_runs" and "simulate_seconds" in meta and "counted" not in outputs[name]:
                        outputs[name]["counted"] = 1.0
                        out["simulate_s"] += meta["simulate_seconds"].value
                        out["upload_s"] += meta["upload_seconds"].value
                elif kind == E.HANDLED_OUTPUT:
                    outputs[event.event_specific_data.output_name]["handled"] = entry.timestamp
            marks = {name: first[kind] - launched_at for name, kind in _MARKS.items() if kind in first}
            phases = {
                "job": run.job_name,
                "created": record.create_timestamp.timestamp() - launched_at,
                "marks": marks,
                "queued_s": _span(first, E.RUN_ENQUEUED, E.RUN_STARTING),
                "startup_s": _span(first, E.RUN_STARTING, E.STEP_START),
                "step_s": _span(first, E.STEP_START, E.STEP_SUCCESS),
                "finish_s": _span(first, E.STEP_SUCCESS, E.RUN_SUCCESS),
                "ended": marks.get("success", marks.get("failure", float("nan"))),
            }
            if run.job_name == "sweep_batch_job":
                for marks in outputs.values():
                    if {"output", "materialized", "handled"} <= marks.keys():
                        out["store_write_s"] += marks["materialized"] - marks["output"]
                        out["bookkeeping_s"] += marks["handled"] - marks["materialized"]
            if run.job_name == "launch_sweep_job":
                out["launch_step_s"] = phases["step_s"]
            out["runs"].append(phases)
    finally:
        instance.dispose()
    return out


def _event_marks() -> dict:
    from dagster import DagsterEventType as E

    return {"enqueued": E.RUN_ENQUEUED, "starting": E.RUN_STARTING, "start": E.RUN_START, "step": E.STEP_START,
            "step_done": E.STEP_SUCCESS, "success": E.RUN_SUCCESS, "failure": E.RUN_FAILURE}


def _span(first: dict, start, end) -> float:
    return first[end] - first[start] if start in first and end in first else float("nan")


# --- report ---------------------------------------------------------------------------------------

def report(f: Figures) -> None:
    p = f.profile
    batches = [r for r in p["runs"] if r["job"] == "sweep_batch_job"]
    print(f"\n== {f.path.upper()}: {f.runs} runs, table store: {f.store}  ({f.job_id}: {f.status})")
    if f.path == "cli":
        print(f"command start -> sweep registered    {f.startup_s:8.1f} s (in wall)")
        print(f"wall, command start -> job_metrics   {f.wall_s:8.1f} s   ({f.runs_per_s:.1f} runs/s)")
        print(f"until the command exited             {f.settled_s:8.1f} s")
    else:
        print(f"dagster dev start-up (not in wall)   {f.startup_s:8.1f} s")
        print(f"wall, launchRun -> job_metrics       {f.wall_s:8.1f} s   ({f.runs_per_s:.1f} runs/s)")
        print(f"until the last Dagster run ended     {f.settled_s:8.1f} s")
    metrics_run = next((r for r in p["runs"] if r["job"] == "job_metrics_job"), None)
    last_batch = max((r["marks"].get("step_done", float("nan")) for r in batches), default=float("nan"))
    if metrics_run and metrics_run["marks"].get("step", float("inf")) < last_batch:
        print(f"  NOTE job_metrics' step started at {metrics_run['marks']['step']:.1f} s, before the last batch's step "
              f"ended at {last_batch:.1f} s (the completion sensor saw every run completed in the store)")
    print(f"engine only, {WORKERS}-worker pool           {f.engine_s:8.1f} s   ratio wall/engine {f.ratio:.2f}x")
    print(f"peak memory of the process tree      {f.peak_rss / 2**20:8.0f} MiB summed RSS ({f.peak_processes} processes), "
          f"{f.peak_pss / 2**20:.0f} MiB summed PSS")
    print(f"  at the peak: {', '.join(f'{n} {k}' for k, n in sorted(f.peak_kinds.items()))}")
    if p["store_write_s"] or p["bookkeeping_s"]:  # when the batch step returns its outputs
        print(f"store writes in batch runs (upserts) {p['store_write_s']:8.2f} s   "
              f"Dagster per-partition bookkeeping {p['bookkeeping_s']:.2f} s")
    print(f"launch step (register sweep + runs)  {p['launch_step_s']:8.2f} s")
    print(f"batch runs: {len(batches)}" + (f";  simulate {p['simulate_s']:.1f} s, upload {p['upload_s']:.1f} s (summed over "
                                           "batches)" if p["simulate_s"] else ""))
    if batches:
        for name in ("queued_s", "startup_s", "step_s", "finish_s"):
            values = [r[name] for r in batches if r[name] == r[name]]
            if values:
                print(f"  batch {name:<10} mean {statistics.mean(values):6.2f}  max {max(values):6.2f}")
    print("  timeline, seconds after launchRun: created, then the first event of each kind")
    for r in p["runs"]:
        marks = "  ".join(f"{k} {v:6.1f}" for k, v in r["marks"].items())
        print(f"    {r['job']:<17} created {r['created']:6.1f}  {marks}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[100, 1000], help="sweep sizes (even)")
    parser.add_argument("--paths", nargs="+", choices=["ui", "cli"], default=["ui"],
                        help="the UI's launch through dagster dev, the CLI's `sweep` command, or both")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--postgres-url", help="also run with the table store on this Postgres (migrations applied)")
    group.add_argument("--postgres", action="store_true", help="also run with the table store on a throwaway Postgres")
    parser.add_argument("--only-postgres", action="store_true", help="skip the embedded SQLite store")
    parser.add_argument("--batch-size", type=int, help="BILANCIO_BATCH_SIZE for the server (runs per Dagster run)")
    parser.add_argument("--max-concurrent-runs", type=int, help="BILANCIO_MAX_CONCURRENT_RUNS for the server")
    parser.add_argument("--instance-postgres", action="store_true",
                        help="the Dagster instance's own storage on a throwaway Postgres (BILANCIO_DAGSTER_PG_URL)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra environment setting for the server, e.g. DAGSTER_EVENT_BATCH_SIZE=100")
    args = parser.parse_args(argv)
    if args.only_postgres and not (args.postgres or args.postgres_url):
        parser.error("--only-postgres needs --postgres or --postgres-url")

    extra_env = {}
    if args.batch_size:
        extra_env["BILANCIO_BATCH_SIZE"] = str(args.batch_size)
    if args.max_concurrent_runs:
        extra_env["BILANCIO_MAX_CONCURRENT_RUNS"] = str(args.max_concurrent_runs)
    for setting in args.env:
        name, _, value = setting.partition("=")
        extra_env[name] = value
    print(f"cores {os.cpu_count()}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, "
          f"settings {extra_env or 'defaults'}")

    stores: list[tuple[str, str | None]] = [] if args.only_postgres else [("sqlite", None)]
    pg_server = None
    if args.postgres or args.instance_postgres:
        from bilancio_pipeline.benchmarks.pg_server import PostgresServer

        pg_server = PostgresServer().start()
    try:
        for runs in args.runs:
            for name, url in stores + ([("postgres", None)] if args.postgres or args.postgres_url else []):
                if name == "postgres":
                    url = args.postgres_url or _fresh_database(pg_server, runs)
                env = dict(extra_env)
                if args.instance_postgres:  # a fresh, empty database: Dagster creates its tables
                    env["BILANCIO_DAGSTER_PG_URL"] = pg_server.create_database(f"dagster_{runs}_{int(time.time())}")
                    name += ", instance on postgres"
                for path in args.paths:
                    figures = (run_cli_sweep if path == "cli" else run_sweep)(runs, name, url, env)
                    report(figures)
                    print(f"   load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    finally:
        if pg_server is not None:
            pg_server.stop()


def _fresh_database(server, runs: int) -> str:
    name = f"bench_{runs}_{int(time.time())}"
    url = server.create_database(name)
    server.apply_migrations(name)
    return url


if __name__ == "__main__":
    main()
