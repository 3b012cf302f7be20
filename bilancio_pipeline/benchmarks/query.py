"""How fast `metrics query` answers over many stored runs.

Fills one store with N runs and their metrics (default 100,000) and times a typical query,
`--where "kappa < 0.5 and delta_total > 0.1" --order-by -delta_total --limit 50`, both as the
store call alone and as the whole CLI command. Target: under a second.

    python -m bilancio_pipeline.benchmarks.query                      # SQLite in a temp folder
    python -m bilancio_pipeline.benchmarks.query --postgres           # also a throwaway PostgreSQL
    python -m bilancio_pipeline.benchmarks.query --postgres-url postgresql://…   # an existing one
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

WHERE = "kappa < 0.5 and delta_total > 0.1"
CLI_ARGS = ["metrics", "query", "--where", WHERE, "--order-by", "-delta_total", "--limit", "50", "--format", "json"]
JOB_ID = "bench-query"


def fill(store, n_rows: int, seed: int = 1) -> float:
    """Write one job with n_rows runs and metrics; returns the seconds it took."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    kappas, concentrations, mus = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0], [0.25, 0.5, 1.0, 2.0, 4.0], [0.0, 0.25, 0.5, 0.75, 1.0]
    started = time.perf_counter()
    store.save_job({
        "job_id": JOB_ID, "status": "completed", "sweep_type": "balanced", "n_agents": 50, "maturity_days": 10,
        "kappas": kappas, "concentrations": concentrations, "mus": mus, "outside_mid_ratios": [1.0],
        "seeds": list(range(n_rows // 300 + 1)), "spec": {"benchmark": True}, "total_runs": n_rows,
        "completed_runs": n_rows, "created_at": now,
    })
    chunk = 10_000
    for start in range(0, n_rows, chunk):
        runs, metrics = [], []
        for i in range(start, min(start + chunk, n_rows)):
            run_id = f"{JOB_ID}_{'passive' if i % 2 == 0 else 'active'}_{i:08d}"
            kappa = rng.choice(kappas)
            delta = min(1.0, max(0.0, rng.gauss(0.6 / (1 + kappa), 0.1)))
            runs.append({
                "run_id": run_id, "job_id": JOB_ID, "status": "completed", "regime": "passive" if i % 2 == 0 else "active",
                "n_agents": 50, "maturity_days": 10, "kappa": kappa, "concentration": rng.choice(concentrations),
                "mu": rng.choice(mus), "outside_mid_ratio": 1.0, "seed": i // 300, "cash_accounting": "conserving",
                "execution_time_ms": rng.uniform(50, 500), "created_at": now,
            })
            metrics.append({
                "run_id": run_id, "job_id": JOB_ID, "delta_total": delta, "phi_total": 1 - delta,
                "n_defaults": rng.randint(0, 50), "total_trades": rng.randint(0, 400), "trading_effect": rng.gauss(0.02, 0.05),
            })
        store.upsert_runs(runs)
        store.upsert_metrics(metrics)
    return time.perf_counter() - started


def time_query(store, repeat: int) -> tuple[list[float], int]:
    from bilancio_pipeline.storage.filters import parse_filter

    expr = parse_filter(WHERE)
    timings, count = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = store.query_results(expr, order_by="delta_total", descending=True, limit=50)
        timings.append(time.perf_counter() - t0)
        count = len(rows)
    return timings, count


def time_cli(env: dict[str, str], repeat: int) -> list[float]:
    """The whole command in this process (store opened from the environment, rows printed)."""
    from click.testing import CliRunner

    from bilancio_pipeline.cli.main import cli

    runner = CliRunner()
    timings = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = runner.invoke(cli, CLI_ARGS, env=env, catch_exceptions=False)
        timings.append(time.perf_counter() - t0)
        if result.exit_code != 0:
            raise SystemExit(f"the command failed: {result.output}")
    return timings


def report(name: str, store, env: dict[str, str], rows: int, repeat: int) -> None:
    fill_s = fill(store, rows)
    print(f"[{name}] filled {rows:,} runs + {rows:,} metrics rows in {fill_s:.1f} s")
    store_times, found = time_query(store, repeat)
    cli_times = time_cli(env, repeat)
    for label, times in (("store.query_results", store_times), ("metrics query (CLI)", cli_times)):
        verdict = "OK" if statistics.median(times) < 1.0 else "SLOWER THAN 1 s"
        print(f"[{name}] {label:22s} median {statistics.median(times) * 1000:7.1f} ms  "
              f"min {min(times) * 1000:7.1f} ms  max {max(times) * 1000:7.1f} ms  ({found} rows)  {verdict}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="also start a throwaway PostgreSQL and measure it")
    parser.add_argument("--postgres-url", help="also measure this PostgreSQL (migrations applied, preferably empty)")
    args = parser.parse_args(argv)
    print(f"query: --where {WHERE!r} --order-by -delta_total --limit 50")

    from bilancio_pipeline.storage.sql import SqlStore

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        with SqlStore(url) as store:
            report("sqlite", store, {**_clean_env(), "BILANCIO_SUPABASE_DB_URL": url}, args.rows, args.repeat)

    if args.postgres_url:
        with SqlStore(args.postgres_url) as store:
            report("postgres", store, {**_clean_env(), "BILANCIO_SUPABASE_DB_URL": args.postgres_url}, args.rows, args.repeat)
    elif args.postgres:
        from bilancio_pipeline.benchmarks.pg_server import PostgresServer

        with PostgresServer() as server:
            url = server.create_database("bench_query")
            server.apply_migrations("bench_query")
            with SqlStore(url) as store:
                report("postgres", store, {**_clean_env(), "BILANCIO_SUPABASE_DB_URL": url}, args.rows, args.repeat)


def _clean_env() -> dict[str, str | None]:
    # The CLI must use exactly the store measured, whatever this shell has configured.
    return {name: None for name in os.environ if name.startswith("BILANCIO_")}


if __name__ == "__main__":
    main()
